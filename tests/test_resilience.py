"""Faults, crashes and hostile input lose nothing (issue: resilience)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import resource
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tenacity import RetryCallState

from archiver import retry
from archiver.cli import main
from archiver.config import Config
from archiver.daemon import Daemon
from archiver.errors import MediaInvalid, SourceUnavailable
from archiver.ledger import Ledger
from archiver.simulator import RestcommSimulator, SimRecording, TwilioSimulator
from archiver.source.restcomm import RateLimiter, RestcommClient
from archiver.sync import Syncer
from tests.support.archive import served_sha256
from tests.support.cli import run_cli, start_cli
from tests.support.config import cli_config, write_config
from tests.support.constants import NOW, TOKEN
from tests.support.harness import Harness


def test_retry_after_is_honoured_and_backoff_is_bounded() -> None:
    retry.set_testing(False)
    try:

        def state(exc: BaseException, attempt: int) -> RetryCallState:
            s = RetryCallState(None, None, (), {})
            s.attempt_number = attempt
            s.set_exception((type(exc), exc, None))
            return s

        assert retry._wait(state(SourceUnavailable("429", retry_after=7.0), 1)) == 7.0
        assert retry._wait(state(SourceUnavailable("x", retry_after=10_000), 1)) == 300.0
        waits = [retry._wait(state(SourceUnavailable("503"), n)) for n in range(1, 12)]
        assert all(0 < w <= retry.DEFAULT_MAX_WAIT + 1 for w in waits)
        assert max(waits) > 10  # it does grow
    finally:
        retry.set_testing(True)


async def test_transient_errors_are_retried_and_logged_permanent_ones_not(
    sim: RestcommSimulator,
) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    sim.inject(path="Recordings.json", status=503, retry_after="1", times=2)
    async with RestcommClient(sim.base_url, sim.account_sid, sim.auth_token) as c:
        with capture_logs() as logs:
            page = await retry.retrying("list_page", lambda: c.list_page(0, 10, None))
        assert len(page.items) == 3
        scheduled = [e for e in logs if e["event"] == "retry.scheduled"]
        assert len(scheduled) == 2 and scheduled[0]["operation"] == "list_page"
        sim.inject(path="Recordings.json", status=401, times=None)
        calls_before = len(sim.requests)
        with pytest.raises(Exception, match="401"):
            await retry.retrying("list_page", lambda: c.list_page(0, 10, None))
        assert len(sim.requests) == calls_before + 1  # a 401 is never retried


async def test_attempt_bound_counts_the_first_call(sim: RestcommSimulator) -> None:
    # The first call runs outside tenacity; it still counts as attempt 1 of `attempts`.
    sim.generate(1, start=NOW - timedelta(hours=1))
    sim.inject(path="Recordings.json", status=503, times=None)
    async with RestcommClient(sim.base_url, sim.account_sid, sim.auth_token) as c:
        before = len(sim.requests)
        with capture_logs() as logs, pytest.raises(Exception, match="503"):
            await retry.retrying("list_page", lambda: c.list_page(0, 10, None), attempts=3)
        assert len(sim.requests) == before + 3
        attempts = [e["attempt"] for e in logs if e["event"] == "retry.scheduled"]
        assert attempts == [1, 2]


async def test_rate_limit_caps_requests_across_workers() -> None:
    limiter = RateLimiter(20.0)
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(11)))
    assert time.monotonic() - start >= 0.45  # 11 requests at 20/s: at least 10 intervals
    limiter = RateLimiter(0)
    limiter.penalize(0.3)  # a 429 slows every worker down, not only the one that got it
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(3)))
    assert time.monotonic() - start >= 0.28


async def test_429_on_media_slows_the_whole_client(sim: RestcommSimulator) -> None:
    recs = sim.generate(4, start=NOW - timedelta(hours=1))
    sim.inject(path=rf"{recs[0].sid}\.wav", status=429, retry_after="0.3")
    async with RestcommClient(sim.base_url, sim.account_sid, sim.auth_token) as c:
        with pytest.raises(Exception, match="429"):
            async with c.media(recs[0].sid, "wav") as body:
                _ = [chunk async for chunk in body]
        start = time.monotonic()
        async with c.media(recs[1].sid, "wav") as body:
            _ = [chunk async for chunk in body]
        assert time.monotonic() - start >= 0.25


async def test_failed_recordings_back_off_then_stay_failed(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    rec = sim.generate(1, start=NOW - timedelta(hours=1))[0]
    sim.inject(path=rf"{rec.sid}\.wav", status=503, times=None)
    cfg = config_for(sim, max_attempts=3)
    clock = [NOW.timestamp()]
    h = Harness(cfg, clock=lambda: clock[0])
    await h.pass_()
    async with Ledger(cfg.ledger.path) as ledger:
        row = await ledger.get(rec.sid)
        assert row is not None and row.state == "failed" and row.attempts == 1
    media_calls = sum(r.path.endswith(".wav") for r in sim.requests)
    await h.pass_()  # too soon: not retried in a hot loop
    assert sum(r.path.endswith(".wav") for r in sim.requests) == media_calls
    for _ in range(4):
        clock[0] += 7 * 3600
        await h.pass_()
    async with Ledger(cfg.ledger.path) as ledger:
        row = await ledger.get(rec.sid)
        assert row is not None and row.attempts == 3 and row.permanent
        assert "503" in (row.last_error or "")
    calls = sum(r.path.endswith(".wav") for r in sim.requests)
    clock[0] += 30 * 86400
    await h.pass_()
    assert sum(r.path.endswith(".wav") for r in sim.requests) == calls  # stays failed
    code, out, _ = await run_cli("--config", str(cli_config(cfg, sim)), "status")
    assert code == 1 and rec.sid in out and "permanent" in out


async def test_retry_command_makes_failed_recordings_due_again(
    sim: RestcommSimulator, config_for: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    rec = sim.generate(1, start=NOW - timedelta(hours=1))[0]
    fault = sim.inject(path=r"\.wav", status=200, body=b"<html/>", times=None)
    cfg = config_for(sim, max_attempts=1)
    h = Harness(cfg)
    await h.pass_()
    assert (await h.ledger_rows())[rec.sid][0] == "failed"
    fault.remove()
    await h.pass_()
    assert (await h.ledger_rows())[rec.sid][0] == "failed"  # permanent: not retried by itself
    cli = cli_config(cfg, sim)
    assert await asyncio.to_thread(main, ["--config", str(cli), "retry", rec.sid]) == 0
    assert "1 failed recording(s)" in capsys.readouterr().out
    await h.pass_()
    assert (await h.ledger_rows())[rec.sid][0] == "verified"


async def test_media_404_is_retried_within_grace_without_counting(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    rec = sim.generate(1, start=NOW - timedelta(minutes=5))[0]
    fault = sim.inject(path=rf"{rec.sid}\.wav", status=404, times=None)
    cfg = config_for(sim, media_grace="1h")
    clock = [NOW.timestamp()]
    h = Harness(cfg, clock=lambda: clock[0])
    for _ in range(3):
        await h.pass_()
        clock[0] += 16 * 60  # the retry delay inside the grace is a quarter of it
    async with Ledger(cfg.ledger.path) as ledger:
        row = await ledger.get(rec.sid)
        assert row is not None and row.state == "failed" and row.attempts == 0
        assert "may still be writing it" in (row.last_error or "")
    fault.remove()
    await h.pass_()
    assert (await h.ledger_rows())[rec.sid][0] == "verified"


async def test_daemon_survives_failed_passes_and_logs_recovery(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(2, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    sim.inject(path="Recordings.json", status=503, times=None)
    async with Harness(cfg).syncer() as syncer:
        daemon = Daemon(syncer, poll_interval=0.01, max_backoff=0.02)
        stopping = asyncio.Event()
        with capture_logs() as logs:
            task = asyncio.ensure_future(daemon.run(stopping))
            while daemon.consecutive_failures < 12:  # noqa: ASYNC110 - polling the daemon
                await asyncio.sleep(0.01)
            sim.clear_faults()
            while daemon.passes < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            stopping.set()
            await task
    failed = [e for e in logs if e["event"] == "pass.failed"]
    assert [e["consecutive"] for e in failed] == [1, 10]  # the first, then at intervals
    assert [e["event"] for e in logs].count("daemon.recovered") == 1
    assert daemon.backoff() <= 0.02


async def test_absurd_content_length_is_refused(sim: RestcommSimulator) -> None:
    rec = sim.generate(1, start=NOW)[0]
    sim.inject(path=r"\.wav", content_length_delta=10**12)
    async with RestcommClient(sim.base_url, sim.account_sid, sim.auth_token) as c:
        with pytest.raises(MediaInvalid, match="absurd"):
            async with c.media(rec.sid, "wav"):
                pass


async def test_full_disk_stops_the_pass_cleanly(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(5, start=NOW - timedelta(hours=1), size=400_000)
        cfg = write_config(tmp_path, sim)

        def limit_file_size() -> None:  # the kernel refuses writes past 200 KB: EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

        proc = await start_cli("--config", str(cfg), "sync", preexec_fn=limit_file_size)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 3, err.decode()
    assert "StorageDenied" in err.decode() and "disk full" in err.decode()
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        counts = await ledger.counts()
    assert counts["discovered"] + counts["failed"] == 5 and counts["failed"] == 0
    assert not list((tmp_path / "archive" / ".archiver-tmp").iterdir())


async def test_unwritable_archive_or_ledger_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    blocked = tmp_path / "blocker"
    cfg = write_config(tmp_path, None, archive={"path": blocked / "archive"})
    code, _out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 3 and "archive folder" in err
    cfg = write_config(
        tmp_path,
        None,
        archive={"path": blocked / "archive"},
        ledger={"path": blocked / "l.sqlite3"},
    )
    code, _out, err = await run_cli("--config", str(cfg), "sync")
    # the state volume, not a config value: exit 3, which systemd restarts (issue 13)
    assert code == 3 and f"{tmp_path}/blocker/l.sqlite3" in err and "Not a directory" in err


@pytest.mark.parametrize(
    ("kind", "workers"),
    [(RestcommSimulator, 1), (TwilioSimulator, 1), (RestcommSimulator, 2)],
    ids=["restcomm", "twilio", "restcomm-2-workers"],
)
async def test_sigkill_at_random_moments_converges_to_one_correct_copy(
    tmp_path: Path, kind: type[RestcommSimulator] | type[TwilioSimulator], workers: int
) -> None:
    rng = random.Random(20261126)
    async with kind(auth_token=TOKEN, seed=5) as sim:
        recs = sim.generate(
            60,
            start=NOW - timedelta(hours=2),
            size=120_000,
            same_second_every=4,
            spacing=timedelta(seconds=40),
        )
        sim.inject(path=r"\.wav", delay=0.01, times=None)  # keep transfers in flight
        cfg = write_config(
            tmp_path,
            sim,
            concurrency=4,
            workers=workers,
            page_size=7,
            delete={"enabled": True, "min_age": "0s"},
        )
        deleted_unverified: list[str] = []

        def on_delete(rec: SimRecording) -> None:
            hits = [p for p in (tmp_path / "archive").rglob(f"{rec.sid}.*") if p.suffix != ".json"]
            served = served_sha256(sim, rec)
            if not hits or hashlib.sha256(hits[0].read_bytes()).hexdigest() != served:
                deleted_unverified.append(rec.sid)

        sim.on_delete = on_delete
        logs = bytearray()
        for round_ in range(10):
            proc = await start_cli("--config", str(cfg), "run", stdout=asyncio.subprocess.DEVNULL)
            await asyncio.sleep(rng.uniform(0.6, 1.6))
            proc.kill()  # SIGKILL: no cleanup of any kind
            _out, err = await proc.communicate()
            logs += err
            # its workers end with it (they held its stderr: communicate() saw them close it)
            for pid in started_workers(err):
                assert await ended(pid), f"worker {pid} outlived its killed parent"
            if round_ == 4:
                recs += sim.generate(10, start=NOW - timedelta(minutes=30), size=120_000)
        sim.clear_faults()
        for _ in range(3):
            code, out, err = await run_cli("--config", str(cfg), "sync")
            logs += err.encode()
        assert code == 0, err
    assert not deleted_unverified, deleted_unverified
    archive = tmp_path / "archive"
    copies: dict[str, list[Path]] = {}
    for p in archive.rglob("*"):
        if p.is_file() and p.suffix in (".wav", ".mp4") and ".archiver-tmp" not in p.parts:
            copies.setdefault(p.stem, []).append(p)
    assert set(copies) == {r.sid for r in recs}
    for r in recs:
        assert len(copies[r.sid]) == 1
        served = served_sha256(sim, r)
        assert hashlib.sha256(copies[r.sid][0].read_bytes()).hexdigest() == served
        side = json.loads(Path(f"{copies[r.sid][0]}.json").read_text())
        assert side["sha256"] == served
    assert not list((archive / ".archiver-tmp").iterdir())
    assert sorted(sim.deleted) == sorted(r.sid for r in recs)
    code, out, _ = await run_cli("--config", str(cfg), "audit", "verify")
    assert code == 0, out
    assert TOKEN.encode() not in logs
    assert bool(started_workers(bytes(logs))) == (workers > 1)


def started_workers(err: bytes) -> list[int]:
    """The PIDs of the worker processes a CLI's JSON log lines say it started."""
    pids = []
    for line in err.splitlines():
        if line.startswith(b"{") and b'"worker.started"' in line:
            pids.append(int(json.loads(line)["worker"]))
    return pids


async def ended(pid: int) -> bool:
    """Whether process ``pid`` is gone (or a zombie nobody reaped yet), within 5 s."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_daemon_outlives_an_unexpected_error_in_a_pass(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(2, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)

    class Flaky(Syncer):
        calls = 0

        async def run_pass(self, *args: object, **kw: object) -> object:  # type: ignore[override]
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise KeyError("a bug, not an ArchiverError")
            return await super().run_pass(*args, **kw)  # type: ignore[arg-type]

    async with Harness(cfg).syncer(Flaky) as syncer:
        daemon = Daemon(syncer, poll_interval=0.01, max_backoff=0.01)
        stopping = asyncio.Event()
        with capture_logs() as logs:
            task = asyncio.ensure_future(daemon.run(stopping))
            while daemon.passes < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            stopping.set()
            await task
    assert [e["event"] for e in logs].count("pass.crashed") == 1
    assert "daemon.recovered" in [e["event"] for e in logs]
