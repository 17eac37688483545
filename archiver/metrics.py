"""Prometheus metrics (prometheus-client), in one registry of our own.

Counters are incremented where things happen (client, sync, retry); gauges that describe the
ledger are refreshed from it after every pass by :func:`refresh_from_ledger`.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:  # metrics is imported by the client, which the ledger imports
    from archiver.ledger import Ledger

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDINGS = Gauge(
    "archiver_recordings", "Recordings in the ledger by state", ["state"], registry=REGISTRY
)
ARCHIVED_RECORDINGS = Counter(
    "archiver_archived_recordings_total", "Recordings archived and verified", registry=REGISTRY
)
ARCHIVED_BYTES = Counter(
    "archiver_archived_bytes_total", "Bytes of recordings archived and verified", registry=REGISTRY
)
FAILURES = Counter(
    "archiver_failures_total",
    "Recording transfers that failed, by reason",
    ["reason"],
    registry=REGISTRY,
)
DELETIONS = Counter(
    "archiver_deletions_total",
    "Recordings deleted from the source, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
SOURCE_REQUESTS = Counter(
    "archiver_source_requests_total",
    "Requests to the Restcomm API by HTTP status",
    ["status"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "archiver_retries_total", "Retries scheduled, by operation", ["operation"], registry=REGISTRY
)
PASSES = Counter(
    "archiver_passes_total",
    "Sync passes by outcome (ok, failures, error)",
    ["outcome"],
    registry=REGISTRY,
)
PASS_DURATION = Histogram(
    "archiver_pass_duration_seconds",
    "Duration of sync passes",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
    registry=REGISTRY,
)
WATERMARK = Gauge(
    "archiver_watermark_timestamp_seconds",
    "The watermark (newest listed date_created), Unix time",
    registry=REGISTRY,
)
OUTSTANDING = Gauge(
    "archiver_outstanding_recordings",
    "Recordings not done yet, by kind (untried, unverified, failed_waiting, failed_permanent): "
    "what keeps sync's exit code at 1",
    ["kind"],
    registry=REGISTRY,
)
SCAN_COMPLETE = Gauge(
    "archiver_last_scan_complete",
    "1 when the last pass listed everything it set out to, 0 when a page kept failing",
    registry=REGISTRY,
)
LAST_PASS_SUCCESS = Gauge(
    "archiver_last_pass_success_timestamp_seconds",
    "When the last pass finished without error",
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "archiver_in_flight_transfers", "Recording transfers in progress", registry=REGISTRY
)
AUDIT_JOURNAL_BYTES = Gauge(
    "archiver_audit_journal_bytes",
    "Size of the local audit journal (it is never pruned: size its volume)",
    registry=REGISTRY,
)

_newest_archived: list[float | None] = [None]


def _lag() -> float:
    newest = _newest_archived[0]
    return float("nan") if newest is None else max(time.time() - newest, 0.0)


ARCHIVE_LAG = Gauge(
    "archiver_archive_lag_seconds",
    "Now minus the date_created of the newest archived recording",
    registry=REGISTRY,
)
ARCHIVE_LAG.set_function(_lag)


def set_newest_archived(when: datetime | None) -> None:
    _newest_archived[0] = None if when is None else when.timestamp()


async def refresh_from_ledger(ledger: Ledger, now: float, max_attempts: int) -> None:
    from archiver.ledger import STATES

    counts = await ledger.counts()
    for state in STATES:
        RECORDINGS.labels(state).set(counts.get(state, 0))
    left = await ledger.outstanding(now, max_attempts)
    for kind, n in (
        ("untried", left.untried),
        ("unverified", left.unverified),
        ("failed_waiting", left.waiting),
        ("failed_permanent", left.permanent),
    ):
        OUTSTANDING.labels(kind).set(n)
    watermark = await ledger.watermark()
    if watermark is not None:
        WATERMARK.set(watermark.timestamp())
    set_newest_archived(await ledger.newest_archived())


def set_journal_size(path: Path) -> None:
    # not written yet, or its volume is gone: the pass reports that itself
    with contextlib.suppress(OSError):
        AUDIT_JOURNAL_BYTES.set(path.stat().st_size)
