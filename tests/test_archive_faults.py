"""Archive faults handled where they happen (issue 13, Trust II): real file systems (a year
folder on another one, a full one, a folder that refuses us) and SeaweedFS behind a proxy that
loses answers, corrupts bodies, or watches a child process get SIGKILLed mid-upload."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from archiver.simulator import RestcommSimulator
from tests.support.cli import no_traceback, run_cli
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN
from tests.support.mounts import ROOT_ONLY
from tests.support.s3 import S3Proxy, S3Server, creds, open_uploads, s3_cli_config

MiB = 2**20


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.part*") if p.is_file()]


def day_folder(archive: Path, account: str, when: timedelta) -> Path:
    return archive / account / (NOW - when).astimezone(UTC).strftime("%Y/%m/%d")


# -- local: the file systems under the archive -------------------------------------------------


async def test_a_year_folder_on_another_file_system_is_written_into(
    tmp_path: Path, tmpfs: object
) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(4, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        year = tmp_path / "archive" / sim.account_sid / f"{NOW:%Y}"
        assert callable(tmpfs)
        tmpfs("year", "8m", at=year)  # a mount point inside the archive: rename(2) can't cross
        code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0 and "archived 4, verified 4, failed 0" in out, out + err
    wavs = list(year.rglob("*.wav"))
    assert len(wavs) == 4 and all(w.stat().st_dev == year.stat().st_dev for w in wavs)
    assert year.stat().st_dev != (tmp_path / "archive").stat().st_dev
    assert leftovers(tmp_path / "archive") == []


async def test_a_full_archive_disk_stops_the_pass_cleanly(tmp_path: Path, tmpfs: object) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(6, start=NOW - timedelta(hours=1), size=400_000)
        cfg = write_config(tmp_path, sim, concurrency=1)
        assert callable(tmpfs)
        archive = tmpfs("archive", "1m")
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 3, err
        assert "StorageDenied" in err and "disk full" in err and str(archive) in err
        no_traceback(err)
        assert leftovers(archive) == []  # no half-written temp file left to fill it further
        code, out, _err = await run_cli("--config", str(cfg), "status", "--json")
    states = json.loads(out)["states"]
    assert states["failed"] == 0 and states["discovered"] > 0  # the pass stopped, nothing blamed


async def run_cli_without_dac(*args: str) -> tuple[int, str, str]:
    """``python -m archiver ARGS`` that folder modes bind: as root, without CAP_DAC_OVERRIDE."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip(f"{ROOT_ONLY}; and setpriv, to drop CAP_DAC_OVERRIDE, is missing")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "archiver",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_day_folder_that_refuses_us_fails_only_its_recordings(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        today = sim.generate(3, start=NOW - timedelta(hours=1))
        before = sim.generate(2, start=NOW - timedelta(days=1, hours=1))
        cfg = write_config(tmp_path, sim)
        locked = day_folder(tmp_path / "archive", sim.account_sid, timedelta(days=1, hours=1))
        locked.mkdir(parents=True)
        locked.chmod(0o500)
        code, out, err = await run_cli_without_dac("--config", str(cfg), "sync")
        assert code == 1, out + err  # the pass ran; two recordings failed
        assert "archived 3, verified 3, failed 2" in out
        for rec in before:
            assert f"failed {rec.sid}: StorageError: writing {locked}/{rec.sid}.wav" in out
        assert f"Permission denied in {locked}" in out
        no_traceback(err)
        assert all(
            day_folder(tmp_path / "archive", sim.account_sid, timedelta(hours=1)).glob(
                f"{r.sid}.wav"
            )
            for r in today
        )
        locked.chmod(0o700)
        code, out, err = await run_cli("--config", str(cfg), "retry")
        assert code == 0, err
        code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0 and "archived 2, verified 2, failed 0" in out, out + err
    assert leftovers(tmp_path / "archive") == []


# -- S3: multipart uploads nobody will finish, bodies corrupted on the way ----------------------


async def test_a_lost_create_multipart_answer_leaks_no_upload(
    tmp_path: Path, seaweedfs_s3: S3Server
) -> None:
    bucket = await seaweedfs_s3.create_bucket()
    lost: list[str] = []

    def lose_first_create(method: str, path: str, query: str) -> bool:
        if method == "POST" and query == "uploads" and not lost:
            lost.append(path)  # SeaweedFS creates the upload; its id never reaches us
            return True
        return False

    async with (
        RestcommSimulator(auth_token=TOKEN) as sim,
        S3Proxy(seaweedfs_s3, keep_host=True) as proxy,
    ):
        sim.generate(1, start=NOW - timedelta(hours=1), size=12 * MiB)
        proxy.drop = lose_first_create
        cfg = s3_cli_config(tmp_path, sim, seaweedfs_s3, bucket, endpoint_url=proxy.endpoint_url)
        code, out, err = await run_cli("--config", str(cfg), "sync", env=creds(seaweedfs_s3))
    assert code == 0 and "archived 1, verified 1" in out, out + err
    assert lost  # the answer was lost, botocore asked again, the second upload completed
    creates = [s for s in proxy.seen if s.method == "POST" and s.path == lost[0]]
    assert len(creates) >= 3  # two creates (one lost), one complete
    assert await open_uploads(seaweedfs_s3, bucket) == []  # the first one swept at pass end
    assert not list(tmp_path.glob("archiver-s3-uploads-*.json"))


async def test_a_body_corrupted_on_the_way_is_sent_again(
    tmp_path: Path, seaweedfs_s3: S3Server
) -> None:
    bucket = await seaweedfs_s3.create_bucket()
    corrupted: list[str] = []

    def flip_first_audio(method: str, path: str, query: str, body: bytes) -> bytes:
        if method == "PUT" and path.endswith(".wav") and not query and not corrupted:
            corrupted.append(path)
            data = bytearray(body)
            data[len(data) // 2] ^= 0x01
            return bytes(data)
        return body

    async with (
        RestcommSimulator(auth_token=TOKEN) as sim,
        S3Proxy(seaweedfs_s3, keep_host=True) as proxy,
    ):
        sim.generate(2, start=NOW - timedelta(hours=1), size=50_000)
        proxy.mangle = flip_first_audio
        cfg = s3_cli_config(tmp_path, sim, seaweedfs_s3, bucket, endpoint_url=proxy.endpoint_url)
        code, out, err = await run_cli("--config", str(cfg), "sync", env=creds(seaweedfs_s3))
    assert code == 0 and "archived 2, verified 2, failed 0" in out, out + err
    puts = [s.status for s in proxy.seen if s.method == "PUT" and s.path == corrupted[0]]
    assert puts[0] == 400 and puts[-1] == 200  # refused (BadDigest), then sent again


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "2-workers"])
async def test_a_killed_upload_is_swept_by_a_restart_seconds_later(
    tmp_path: Path, seaweedfs_s3: S3Server, workers: int
) -> None:
    bucket = await seaweedfs_s3.create_bucket()
    reached = asyncio.Event()
    release = asyncio.Event()

    async def hold_second_part(method: str, path: str, query: str) -> None:
        if method == "PUT" and "partNumber=2" in query and not release.is_set():
            reached.set()
            await release.wait()

    async with (
        RestcommSimulator(auth_token=TOKEN) as sim,
        S3Proxy(seaweedfs_s3, keep_host=True) as proxy,
    ):
        [rec] = sim.generate(1, start=NOW - timedelta(hours=1), size=12 * MiB)
        proxy.before = hold_second_part
        cfg = s3_cli_config(
            tmp_path,
            sim,
            seaweedfs_s3,
            bucket,
            endpoint_url=proxy.endpoint_url,
            source={"workers": workers, "concurrency": 2},
        )
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "archiver",
            "--config",
            str(cfg),
            "sync",
            env={**os.environ, **creds(seaweedfs_s3)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: it and any worker of its
        )
        try:
            await asyncio.wait_for(reached.wait(), 60)
        finally:
            # every process of the service at once (the OOM killer, systemd's final SIGKILL)
            os.killpg(child.pid, signal.SIGKILL)
            await child.wait()
            release.set()
        assert await open_uploads(seaweedfs_s3, bucket) == [f"calls/{key_of(sim, rec)}"]
        # restarted at once: far inside the one-minute grace for uploads of unknown owners
        code, out, err = await run_cli("--config", str(cfg), "sync", env=creds(seaweedfs_s3))
    assert code == 0 and "archived 1, verified 1" in out, out + err
    assert "its process died" in err
    assert await open_uploads(seaweedfs_s3, bucket) == []


def key_of(sim: RestcommSimulator, rec: object) -> str:
    date_created = rec.date_created  # type: ignore[attr-defined]
    day = date_created.astimezone(UTC).strftime("%Y/%m/%d")
    return f"{sim.account_sid}/{day}/{rec.sid}.wav"  # type: ignore[attr-defined]
