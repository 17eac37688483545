"""The whole archiver with backend = "s3": simulator → archiver CLI → real S3 servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli
from tests.support.constants import NOW, TOKEN
from tests.support.s3 import S3Proxy, S3Server, creds, s3_cli_config

MiB = 2**20


async def test_sync_to_s3_archives_verifies_and_writes_sidecars(
    tmp_path: Path, moto_s3: S3Server
) -> None:
    bucket = await moto_s3.create_bucket()
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        recs = sim.generate(12, start=NOW - timedelta(hours=1), size=50_000, ext_mp4_every=5)
        big = sim.generate(1, start=NOW - timedelta(minutes=2), size=12 * MiB)[0]
        cfg = s3_cli_config(
            tmp_path, sim, moto_s3, bucket, storage_class="STANDARD_IA", sse="AES256"
        )
        code, out, err = await run_cli("--config", str(cfg), "sync", env=creds(moto_s3))
        assert code == 0, err
        assert "archived 13, verified 13, failed 0" in out
        code, out, err = await run_cli("--config", str(cfg), "sync", env=creds(moto_s3))
        assert code == 0 and "archived 0" in out  # nothing repeated
    async with moto_s3.client() as s3:
        listing = await s3.list_objects_v2(Bucket=bucket, Prefix="calls/")
        keys = {o["Key"] for o in listing.get("Contents", [])}
        for rec in [*recs, big]:
            day = rec.date_created.astimezone(UTC).strftime("%Y/%m/%d")
            key = f"calls/{sim.account_sid}/{day}/{rec.sid}.{rec.ext}"
            assert key in keys and f"{key}.json" in keys
            head = await s3.head_object(Bucket=bucket, Key=key)
            assert head["ContentLength"] == rec.size
            assert head["Metadata"]["sha256"] == rec.sha256()
            assert head["Metadata"]["sid"] == rec.sid
            assert head["ContentType"] == ("video/mp4" if rec.ext == "mp4" else "audio/x-wav")
            assert head.get("ServerSideEncryption") == "AES256"
            side = await s3.get_object(Bucket=bucket, Key=f"{key}.json")
            doc = json.loads(await side["Body"].read())
            assert doc["sha256"] == rec.sha256() and doc["size"] == rec.size
    code, out, _ = await run_cli("--config", str(cfg), "verify", env=creds(moto_s3))
    assert code == 0 and "0 discrepancies" in out


async def test_read_back_and_sidecar_go_out_together(tmp_path: Path, moto_s3: S3Server) -> None:
    """With the store 0.2 s away, a recording waits one round trip for both, not two."""
    bucket = await moto_s3.create_bucket()
    async with (
        RestcommSimulator(auth_token=TOKEN) as sim,
        S3Proxy(moto_s3, delay=0.2) as proxy,
    ):
        recs = sim.generate(3, start=NOW - timedelta(hours=1), size=20_000)
        cfg = s3_cli_config(tmp_path, sim, moto_s3, bucket, endpoint_url=proxy.endpoint_url)
        code, out, err = await run_cli("--config", str(cfg), "sync", env=creds(moto_s3))
    assert code == 0 and "verified 3, failed 0" in out, err
    for rec in recs:
        audio = [s for s in proxy.seen if s.path.endswith(f"{rec.sid}.{rec.ext}")]
        side = [s for s in proxy.seen if s.path.endswith(f"{rec.sid}.{rec.ext}.json")]
        put, read_back = audio[0], audio[-1]
        assert (put.method, read_back.method, [s.method for s in side]) == ("PUT", "HEAD", ["PUT"])
        assert side[0].started > put.answered  # the sidecar describes a copy that is there
        assert side[0].started < read_back.answered and read_back.started < side[0].answered


async def test_object_lock_asked_but_missing_is_refused(tmp_path: Path, moto_s3: S3Server) -> None:
    bucket = await moto_s3.create_bucket()
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(2, start=NOW - timedelta(hours=1))
        cfg = s3_cli_config(
            tmp_path, sim, moto_s3, bucket, object_lock_mode="COMPLIANCE", retention_days=3650
        )
        for command in ("sync", "check"):
            code, _out, err = await run_cli("--config", str(cfg), command, env=creds(moto_s3))
            assert code == 3 and "Object Lock" in err, err
    async with moto_s3.client() as s3:
        assert "Contents" not in await s3.list_objects_v2(Bucket=bucket)  # nothing unprotected


async def test_check_writes_verifies_and_removes_a_canary(
    tmp_path: Path, moto_s3: S3Server
) -> None:
    bucket = await moto_s3.create_bucket()
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        cfg = s3_cli_config(tmp_path, sim, moto_s3, bucket)
        code, out, err = await run_cli("--config", str(cfg), "check", env=creds(moto_s3))
    assert code == 0, err
    assert "source       ok" in out and "archive      ok" in out and "canary removed" in out
    assert "If-None-Match honoured" in out  # moto refuses an overwrite itself
    bad = creds(moto_s3) | {"AWS_ACCESS_KEY_ID": ""}
    code, _out, err = await run_cli("--config", str(cfg), "check", env=bad)
    assert code == 3


async def test_locked_archive_with_verified_deletion_on_seaweedfs(
    tmp_path: Path, seaweedfs_s3: S3Server
) -> None:
    bucket = await seaweedfs_s3.create_bucket(object_lock=True)
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        recs = sim.generate(4, start=NOW - timedelta(hours=1), size=30_000)
        cfg = s3_cli_config(
            tmp_path,
            sim,
            seaweedfs_s3,
            bucket,
            object_lock_mode="GOVERNANCE",
            retention_days=2,
            legal_hold=True,
            delete={"enabled": True, "min_age": "0s"},
        )
        before = datetime.now(UTC)  # the store's retention is real time, whatever NOW is
        code, _out, err = await run_cli("--config", str(cfg), "sync", env=creds(seaweedfs_s3))
        assert code == 0, err
        assert sorted(sim.deleted) == sorted(r.sid for r in recs)  # deleted after lock checks
    async with seaweedfs_s3.client() as s3:
        rec = recs[0]
        day = rec.date_created.astimezone(UTC).strftime("%Y/%m/%d")
        key = f"calls/{sim.account_sid}/{day}/{rec.sid}.wav"
        retention = await s3.get_object_retention(Bucket=bucket, Key=key)
        assert retention["Retention"]["Mode"] == "GOVERNANCE"
        until = retention["Retention"]["RetainUntilDate"]
        # retention_days after the recording was made, and never less than a day from the put
        assert until >= rec.date_created + timedelta(days=2)
        assert until >= before + timedelta(days=1)
        hold = await s3.get_object_legal_hold(Bucket=bucket, Key=key)
        assert hold["LegalHold"]["Status"] == "ON"


async def test_bad_media_never_reaches_s3(tmp_path: Path, moto_s3: S3Server) -> None:
    bucket = await moto_s3.create_bucket()
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        good = sim.generate(2, start=NOW - timedelta(hours=1), size=20_000)
        cut_big = sim.generate(1, start=NOW - timedelta(minutes=20), size=11 * MiB)[0]
        html = sim.generate(1, start=NOW - timedelta(minutes=10), size=20_000)[0]
        sim.inject(path=rf"{cut_big.sid}\.wav", truncate_after=7 * MiB, times=None)
        sim.inject(
            path=rf"{html.sid}\.wav",
            status=200,
            body=b"<html>503</html>",
            times=None,
            content_type="text/html",
        )
        spool = tmp_path / "spool"
        spool.mkdir()
        cfg = s3_cli_config(tmp_path, sim, moto_s3, bucket, spool_dir=str(spool))
        code, out, err = await run_cli("--config", str(cfg), "sync", env=creds(moto_s3))
    assert code == 1, err
    assert f"failed {cut_big.sid}" in out and f"failed {html.sid}" in out
    assert "not a recording" in out
    async with moto_s3.client() as s3:
        keys = {o["Key"] for o in (await s3.list_objects_v2(Bucket=bucket)).get("Contents", [])}
        uploads = await s3.list_multipart_uploads(Bucket=bucket)
    assert not any(cut_big.sid in k or html.sid in k for k in keys)
    assert all(any(r.sid in k for k in keys) for r in good)
    assert not uploads.get("Uploads")
    assert not list(spool.iterdir())


async def test_two_requests_per_recording_where_the_store_checks_our_checksum(
    tmp_path: Path, seaweedfs_s3: S3Server
) -> None:
    """SeaweedFS refuses a body that does not match its ChecksumSHA256: the PUT that it took
    is the verification, so a recording costs its PUT and its sidecar's PUT, no HEAD. With
    verify_after_put = "always" the HEAD comes back; `verify` always looks."""
    for mode, per_recording in (("auto", ["PUT", "PUT"]), ("always", ["PUT", "HEAD", "PUT"])):
        bucket = await seaweedfs_s3.create_bucket()
        folder = tmp_path / mode
        folder.mkdir()
        async with (
            RestcommSimulator(auth_token=TOKEN) as sim,
            S3Proxy(seaweedfs_s3, keep_host=True) as proxy,  # SeaweedFS checks the signed Host
        ):
            recs = sim.generate(5, start=NOW - timedelta(hours=1), size=20_000)
            cfg = s3_cli_config(
                folder,
                sim,
                seaweedfs_s3,
                bucket,
                endpoint_url=proxy.endpoint_url,
                verify_after_put=mode,
            )
            env = creds(seaweedfs_s3)
            code, out, err = await run_cli("--config", str(cfg), "sync", env=env)
            assert code == 0 and "verified 5, failed 0" in out, err
            for rec in recs:
                mine = [s for s in proxy.seen if f"/{rec.sid}.{rec.ext}" in s.path]
                assert sorted(s.method for s in mine) == sorted(per_recording), mode
                assert all(s.status == 200 for s in mine)
            probes = [s for s in proxy.seen if "/.archiver/" in s.path]
            # auto: If-None-Match probed (created, refused) and checksums (refused: BadDigest)
            assert [s.status for s in probes] == ([200, 412, 400] if mode == "auto" else [200, 412])
            proxy.seen.clear()
            code, out, err = await run_cli("--config", str(cfg), "verify", env=env)
            assert code == 0 and "0 discrepancies" in out, err
            for rec in recs:
                audio = [s.method for s in proxy.seen if s.path.endswith(f"/{rec.sid}.{rec.ext}")]
                assert "HEAD" in audio  # verify never trusts the put
