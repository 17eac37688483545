"""``source.workers = 2``: recordings copied by worker processes, everything else of a pass
(listing, ledger, journal, counting) in one. Real processes, real pipes, real signals: a
worker SIGKILLed mid-copy, a recording that takes its worker down twice, a worker that cannot
start. The parent's own SIGKILL is in test_resilience and test_archive_faults."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.config import Config
from archiver.errors import WorkersFailed
from archiver.metrics import REGISTRY
from archiver.simulator import RestcommSimulator
from archiver.sync import Syncer
from archiver.workers import WorkerPool
from tests.support.archive import archived_files, assert_archive_matches
from tests.support.cli import run_cli
from tests.support.config import cli_config
from tests.support.constants import NOW
from tests.support.harness import Harness

WAIT = 30.0  # seconds a test waits for a worker to be handed a recording


def pool_of(syncer: Syncer) -> WorkerPool:
    pool = syncer.transfers.copier
    assert isinstance(pool, WorkerPool)
    return pool


async def until(holds: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.01)):
        if holds():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {what} in {WAIT:.0f}s")


async def until_busy(pool: WorkerPool) -> list[int]:
    """The PIDs of the workers that hold a recording, as soon as one does."""
    await until(lambda: any(pool.in_hand.values()), "a worker holding a recording")
    return [pid for pid, n in pool.in_hand.items() if n]


def media_answers() -> float:
    """Answers of the source with status 200 this process's metrics counted."""
    return REGISTRY.get_sample_value("archiver_source_requests_total", {"status": "200"}) or 0.0


async def test_workers_copy_every_recording_and_this_process_counts_them(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    recs = sim.generate(40, start=NOW - timedelta(hours=1), size=50_000)
    cfg = config_for(sim, concurrency=4, workers=2)
    harness = Harness(cfg)
    before = media_answers()
    async with harness.syncer() as syncer:
        result = await syncer.run_pass()
        pids = pool_of(syncer).pids
    assert result.ok and result.archived == result.verified == 40, result.summary()
    # copied by two other processes, which reported their requests here (the metrics)
    assert len(pids) == 2 and os.getpid() not in pids
    assert media_answers() - before >= 40
    assert_archive_matches(sim, cfg)
    rows = await harness.ledger_rows()
    assert {state for state, *_ in rows.values()} == {"verified"} and len(rows) == len(recs)
    code, out, _ = await run_cli("--config", str(cli_config(cfg, sim)), "audit", "verify")
    assert code == 0, out


async def test_a_worker_killed_mid_copy_loses_nothing_and_charges_nothing(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(40, start=NOW - timedelta(hours=1), size=50_000)
    sim.inject(path=r"\.wav", delay=0.05, times=None)  # keep copies in flight
    cfg = config_for(sim, concurrency=4, workers=2)
    async with Harness(cfg).syncer() as syncer:
        running = asyncio.create_task(syncer.run_pass())
        victim = (await until_busy(pool_of(syncer)))[0]
        os.kill(victim, signal.SIGKILL)
        result = await running
        assert victim not in pool_of(syncer).pids  # replaced
    # what it held went to another worker: nothing failed, nothing twice
    assert result.ok and result.verified == 40 and result.failed == 0, result.summary()
    assert_archive_matches(sim, cfg)


async def test_a_recording_whose_worker_dies_twice_is_charged_and_archived_later(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    [rec] = sim.generate(1, start=NOW - timedelta(hours=1), size=50_000)
    sim.inject(path=r"\.wav", delay=60, times=2)  # held until its worker is killed
    cfg = config_for(sim, concurrency=2, workers=2)
    now = [NOW.timestamp()]
    harness = Harness(cfg, clock=lambda: now[0])
    async with harness.syncer() as syncer:
        running = asyncio.create_task(syncer.run_pass())
        killed: list[int] = []
        for _ in range(2):
            victim = (await until_busy(pool_of(syncer)))[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            # seen dead before the next is looked for (never the same one killed twice)
            await until(lambda: killed[-1] not in pool_of(syncer).in_hand, "the kill seen")
        result = await running
        assert not result.ok and result.failed == 1, result.summary()
        [(sid, reason)] = result.failures
        assert sid == rec.sid and reason.startswith("WorkerLost: worker process ")
        assert f"{killed[1]} died (killed by SIGKILL)" in reason
        state, _sha, last_error = (await harness.ledger_rows())[rec.sid]
        assert state == "failed" and last_error == reason
        # tried again like any failure, once its retry is due
        now[0] += 3600
        again = await syncer.run_pass()
    assert again.ok and again.verified == 1, again.summary()
    assert set(archived_files(cfg)) == {rec.sid}


async def test_a_worker_that_cannot_start_stops_the_pass_and_charges_nothing(
    sim: RestcommSimulator,
    config_for: Callable[..., Config],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    harness = Harness(config_for(sim, concurrency=2, workers=2))
    async with harness.syncer() as syncer:
        # a Python that cannot start (as a broken install would): workers inherit the env
        monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-python-here"))
        with pytest.raises(WorkersFailed, match=r"worker process \d+ did not start \(exit code"):
            await syncer.run_pass()
    rows = await harness.ledger_rows()
    assert len(rows) == 3 and {state for state, *_ in rows.values()} == {"discovered"}
