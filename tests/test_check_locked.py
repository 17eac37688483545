"""`check` on Object Lock buckets (issue 13, Trust II), against SeaweedFS, which enforces the
lock: the canary gets the shortest retention the bucket allows, `check` says until when, and a
refused delete is reported as the lock, never as credentials."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import ObjectLocked
from archiver.simulator import RestcommSimulator
from archiver.storage.base import single_chunk
from archiver.storage.s3 import S3Storage
from tests.support.cli import run_cli
from tests.support.constants import TOKEN
from tests.support.s3 import S3Server, creds, s3_cli_config, s3_config


async def compliance_bucket(server: S3Server, days: int = 30) -> str:
    """A bucket whose default retention locks every new object in COMPLIANCE for ``days``."""
    bucket = await server.create_bucket(object_lock=True)
    async with server.client() as s3:
        await s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
            },
        )
    return bucket


async def canaries(server: S3Server, bucket: str) -> list[dict[str, Any]]:
    async with server.client() as s3:
        resp = await s3.list_object_versions(Bucket=bucket, Prefix="calls/archiver-check/")
    return list(resp.get("Versions", []))


@pytest.mark.parametrize("lock", [{}, {"object_lock_mode": "COMPLIANCE", "retention_days": 30}])
async def test_check_on_a_compliance_bucket_leaves_no_long_lived_canary(
    tmp_path: Path, seaweedfs_s3: S3Server, lock: dict[str, Any]
) -> None:
    bucket = await compliance_bucket(seaweedfs_s3)
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        cfg = s3_cli_config(tmp_path, sim, seaweedfs_s3, bucket, **lock)
        code, out, err = await run_cli("--config", str(cfg), "check", env=creds(seaweedfs_s3))
    assert code == 0, err
    assert "archive      ok: wrote, read back and verified" in out
    assert "canary under Object Lock GOVERNANCE until " in out
    assert "the shortest retention this bucket allows" in out
    shown = datetime.fromisoformat(out.split("GOVERNANCE until ", 1)[1].split(" ", 1)[0])
    assert abs(shown - (datetime.now(UTC) + timedelta(days=1))) < timedelta(minutes=1)
    assert "credentials" not in out + err
    # SeaweedFS lets the bucket owner lift GOVERNANCE early: the one-day canary is gone (under
    # the bucket's default it would stay 30 days in COMPLIANCE, refused as "credentials")
    assert "canary removed" in out
    assert await canaries(seaweedfs_s3, bucket) == []


async def test_a_refused_delete_of_a_locked_object_names_the_lock(
    tmp_path: Path, seaweedfs_s3: S3Server, aws_env: Callable[..., None]
) -> None:
    aws_env(seaweedfs_s3)
    bucket = await compliance_bucket(seaweedfs_s3, days=2)
    async with S3Storage(s3_config(seaweedfs_s3, bucket, tmp_path, prefix="calls/")) as s3:
        await s3.put("locked.txt", single_chunk(b"x"), content_type="text/plain")
        with pytest.raises(ObjectLocked, match=r"under Object Lock \(COMPLIANCE until ") as err:
            await s3.delete("locked.txt", bypass_governance=True)
    assert "credentials" not in str(err.value)


async def test_a_copy_altered_under_object_lock_is_reported_as_tampering(
    tmp_path: Path, seaweedfs_s3: S3Server
) -> None:
    bucket = await seaweedfs_s3.create_bucket(object_lock=True)
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        (rec,) = sim.generate(1, start=datetime.now(UTC) - timedelta(hours=1))
        cfg = s3_cli_config(
            tmp_path,
            sim,
            seaweedfs_s3,
            bucket,
            object_lock_mode="GOVERNANCE",
            retention_days=1,  # from date_created: the recording is an hour old, so locked
        )
        env = creds(seaweedfs_s3)
        code, out, err = await run_cli("--config", str(cfg), "sync", env=env)
        assert code == 0, out + err
    day = rec.date_created.astimezone(UTC).strftime("%Y/%m/%d")
    key = f"calls/{sim.account_sid}/{day}/{rec.sid}.{rec.ext}"
    async with seaweedfs_s3.client() as s3:
        # a new version on top of the locked one: the lock keeps the original, not the key
        await s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF-not-the-recording")
    code, out, err = await run_cli("--config", str(cfg), "verify", env=env)
    assert code == 1, out + err
    assert f"DRIFT {rec.sid}" in out and "TAMPERING: altered under Object Lock GOVERNANCE" in out
    code, out, err = await run_cli("--config", str(cfg), "verify", "--repair", env=env)
    assert code == 1, out + err
    assert f"REPAIR {rec.sid}: NOT archived again: evidence of tampering" in out, out
    journal = Path(f"{tmp_path / 'l.sqlite3'}.audit.jsonl").read_text()
    assert '"event":"tamper-evidence"' in journal and rec.sid in journal
