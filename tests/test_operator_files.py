"""The files operators copy as they stand: the Grafana dashboard queries only metrics archiver
exports, and the IAM policies grant every S3 action the backend's code calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from archiver.metrics import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"

# every S3 operation the backend calls, and the IAM actions it needs (with Object Lock: more)
OPERATION_ACTIONS: dict[str, tuple[set[str], set[str]]] = {
    "put_object": ({"s3:PutObject"}, {"s3:PutObjectRetention", "s3:PutObjectLegalHold"}),
    "create_multipart_upload": ({"s3:PutObject"}, {"s3:PutObjectRetention"}),
    "upload_part": ({"s3:PutObject"}, set()),
    "complete_multipart_upload": ({"s3:PutObject"}, set()),
    "abort_multipart_upload": ({"s3:AbortMultipartUpload"}, set()),
    "get_object": ({"s3:GetObject"}, {"s3:GetObjectVersion"}),
    "head_object": (
        {"s3:GetObject"},
        {"s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"},
    ),
    "delete_object": (
        {"s3:DeleteObject"},
        {"s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"},
    ),
    "head_bucket": ({"s3:ListBucket"}, set()),
    "list_objects_v2": ({"s3:ListBucket"}, set()),
    "list_multipart_uploads": ({"s3:ListBucketMultipartUploads"}, set()),
    "get_object_lock_configuration": (set(), {"s3:GetBucketObjectLockConfiguration"}),
}


def exported() -> set[str]:
    """Every series name a scrape can show, labelled counters not yet counted included."""
    families = list(REGISTRY.collect())
    names = {s.name for f in families for s in f.samples} | {f.name for f in families}
    return names | {f"{f.name}_total" for f in families if f.type == "counter"}


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dash = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    named = {name for expr in exprs for name in re.findall(r"\barchiver_[a-z_]+", expr)}
    assert len(dash["panels"]) >= 12 and all(panel["title"] for panel in dash["panels"])
    assert named <= exported(), named - exported()
    # the dashboard covers what the alerts in docs/operating.md watch: lag, failures, what is left
    for needed in (
        "archiver_archive_lag_seconds",
        "archiver_failures_total",
        "archiver_outstanding_recordings",
        "archiver_last_scan_complete",
    ):
        assert needed in named


def operations_called() -> set[str]:
    code = "".join(p.read_text() for p in (ROOT / "archiver" / "storage").glob("s3*.py"))
    called = set(re.findall(r"\b_?client\.([a-z_0-9]+)\(", code))
    called |= set(re.findall(r'get_paginator\("([a-z_0-9]+)"\)', code))
    return called - {"get_paginator"}


def granted(policy: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def test_the_iam_policies_grant_every_action_the_backend_calls() -> None:
    called = operations_called()
    assert len(called) >= 10, called
    assert called <= set(OPERATION_ACTIONS), called - set(OPERATION_ACTIONS)  # map a new call
    plain = granted(json.loads((CONFIG / "iam-policy.json").read_text()))
    locked = granted(json.loads((CONFIG / "iam-policy-object-lock.json").read_text()))
    for op in called:
        base, with_lock = OPERATION_ACTIONS[op]
        assert base <= plain, (op, base - plain)
        assert base | with_lock <= locked, (op, (base | with_lock) - locked)
    assert not any(a.endswith("*") for a in plain | locked)  # least privilege, named actions
