"""Verified deletion from the source (archiver/sync.py, the delete step): never unless enabled,
only after the archived copy is re-checked, within its age and budget, and never of anything
unverified, whatever the faults and crashes (simulator, SQLite, real files)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.config import Config
from archiver.ledger import Ledger
from archiver.simulator import RestcommSimulator, TwilioSimulator
from tests.support.archive import archive_copy, events, guard_deletes, served_sha256
from tests.support.config import make_config
from tests.support.constants import DAY, NOW
from tests.support.harness import Harness

Simulator = RestcommSimulator | TwilioSimulator


async def test_nothing_is_deleted_unless_enabled(
    any_sim: Simulator, config_for: Callable[..., Config]
) -> None:
    sim = any_sim  # every platform
    sim.generate(10, start=NOW - timedelta(hours=2))
    h = Harness(config_for(sim))
    await h.pass_()
    h.clock = lambda: NOW.timestamp() + 30 * DAY
    await h.pass_()
    assert sim.deleted == [] and not any(r.method == "DELETE" for r in sim.requests)


async def test_dry_run_journals_but_deletes_nothing(any_sim: Simulator, tmp_path: Path) -> None:
    sim = any_sim  # every platform
    sim.generate(6, start=NOW - timedelta(hours=2))
    cfg = make_config(sim, tmp_path, delete={"enabled": True, "min_age": "0s", "dry_run": True})
    result = await Harness(cfg).pass_()
    assert result.would_delete == 6 and result.deleted == 0 and sim.deleted == []
    assert [e["event"] for e in events(cfg)].count("would-delete") == 6


async def test_min_age_and_budget(any_sim: Simulator, tmp_path: Path) -> None:
    sim = any_sim  # every platform
    sim.generate(12, start=NOW - timedelta(hours=2))
    cfg = make_config(sim, tmp_path, delete={"enabled": True, "min_age": "24h", "max_per_pass": 5})
    problems = guard_deletes(sim, cfg)
    h = Harness(cfg)
    await h.pass_()
    assert sim.deleted == []  # verified just now: too young
    h.clock = lambda: NOW.timestamp() + DAY - 60
    await h.pass_()
    assert sim.deleted == []
    h.clock = lambda: NOW.timestamp() + DAY + 60
    first = await h.pass_()
    assert first.deleted == 5 and len(sim.deleted) == 5
    await h.pass_()
    await h.pass_()
    assert len(sim.deleted) == 12 and not problems
    async with Ledger(cfg.ledger.path) as ledger:
        assert (await ledger.counts())["deleted"] == 12
    deleted_events = [e for e in events(cfg) if e["event"] == "deleted"]
    assert len(deleted_events) == 12


async def test_recheck_refuses_a_missing_or_altered_copy(
    any_sim: Simulator, tmp_path: Path
) -> None:
    sim = any_sim  # every platform
    a, b, c = sim.generate(3, start=NOW - timedelta(hours=2))
    cfg = make_config(sim, tmp_path, delete={"enabled": True, "min_age": "1h"})
    h = Harness(cfg)
    await h.pass_()
    missing, altered = archive_copy(cfg, a.sid), archive_copy(cfg, b.sid)
    assert missing and altered
    missing.unlink()
    altered.write_bytes(altered.read_bytes()[:-1] + b"\x00")
    h.clock = lambda: NOW.timestamp() + 2 * 3600
    result = await h.pass_()
    assert sim.deleted == [c.sid] and result.delete_skipped == 2
    skipped = {e["sid"]: e["reason"] for e in events(cfg) if e["event"] == "delete-skipped"}
    assert set(skipped) == {a.sid, b.sid} and "missing" in str(skipped[a.sid])
    # the missing copy is archived again from the source; the altered one is never overwritten
    h.clock = lambda: NOW.timestamp() + 3 * 3600
    await h.pass_()
    restored = archive_copy(cfg, a.sid)
    assert restored and hashlib.sha256(restored.read_bytes()).hexdigest() == served_sha256(sim, a)
    rows = await h.ledger_rows()
    assert rows[b.sid][0] == "failed" and "ArchiveConflict" in rows[b.sid][2]
    assert b.sid not in sim.deleted


async def test_deleting_during_a_large_backlog_misses_nothing(tmp_path: Path) -> None:
    async with RestcommSimulator(seed=3) as sim:
        recs = sim.generate(
            1000,  # 50 pages of 20, deleted 300 a pass: four passes delete while paging
            start=NOW - timedelta(hours=20),
            spacing=timedelta(seconds=60),
            size=600,
            same_second_every=3,
        )
        cfg = make_config(
            sim,
            tmp_path,
            page_size=20,
            concurrency=8,
            delete={"enabled": True, "min_age": "0s", "max_per_pass": 300},
        )
        problems = guard_deletes(sim, cfg)
        h = Harness(cfg)
        for _ in range(10):
            await h.pass_()
            if len(sim.deleted) == len(recs):
                break
        assert not problems, problems[:3]
        assert sorted(sim.deleted) == sorted(r.sid for r in recs)
        for r in recs:
            copy = archive_copy(cfg, r.sid)
            assert copy is not None, f"{r.sid} was never archived"


faults = st.lists(st.sampled_from(["503", "truncate", "html", "slow", "list503"]), max_size=4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    faults=faults,
    crash_after=st.one_of(st.none(), st.integers(1, 60)),
    n=st.integers(1, 25),
    page=st.integers(1, 7),
)
def test_never_deletes_unverified(
    faults: list[str], crash_after: int | None, n: int, page: int
) -> None:
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with RestcommSimulator(seed=n) as sim:
                recs = sim.generate(
                    n, start=NOW - timedelta(hours=1), size=3000, same_second_every=2
                )
                for i, kind in enumerate(faults):
                    sid = recs[i % n].sid
                    if kind == "503":
                        sim.inject(path=rf"{sid}\.wav", status=503, times=2)
                    elif kind == "truncate":
                        sim.inject(path=rf"{sid}\.wav", truncate_after=1000)
                    elif kind == "html":
                        sim.inject(path=rf"{sid}\.wav", status=200, body=b"<html/>")
                    elif kind == "slow":
                        sim.inject(path=r"\.wav", delay=0.01, times=5)
                    else:
                        sim.inject(path="Recordings.json", status=503)
                cfg = make_config(
                    sim, Path(tmp), page_size=page, delete={"enabled": True, "min_age": "0s"}
                )
                problems = guard_deletes(sim, cfg)
                clock = [NOW.timestamp()]
                h = Harness(cfg, clock=lambda: clock[0])
                task = asyncio.ensure_future(h.pass_())
                if crash_after is not None:
                    start = len(sim.requests)
                    while not task.done() and len(sim.requests) - start < crash_after:  # noqa: ASYNC110
                        await asyncio.sleep(0)
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                for _ in range(4):
                    clock[0] += 3 * 3600  # past any retry delay
                    await h.pass_()
                assert not problems, problems
                assert sorted(sim.deleted) == sorted(r.sid for r in recs)

    asyncio.run(scenario())


async def test_a_recording_listed_again_after_its_delete_is_deleted_again(
    any_sim: Simulator, tmp_path: Path
) -> None:
    sim = any_sim  # every platform
    # The DELETE answers 200 but the recording stays (a lying server, a lagging replica).
    recs = sim.generate(3, start=NOW - timedelta(minutes=30))
    sim.lying_deletes = True
    cfg = make_config(sim, tmp_path, delete={"enabled": True, "min_age": "0s"})
    problems = guard_deletes(sim, cfg)
    h = Harness(cfg)
    first = await h.pass_()
    assert first.deleted == 3
    assert {s for s, *_ in (await h.ledger_rows()).values()} == {"deleted"}
    h.clock = lambda: NOW.timestamp() + 60
    second = await h.pass_(since=NOW - timedelta(hours=1))  # a reconcile lists them again
    assert second.scan.relisted == 3 and second.deleted == 3
    assert sorted(sim.deleted) == sorted([r.sid for r in recs] * 2)
    log = [e["event"] for e in events(cfg)]
    assert log.count("relisted") == 3 and log.count("deleted") == 6
    assert log.index("relisted") > log.index("deleted")
    assert problems == []
    # once the source really lets go, a listing no longer finds them and they stay deleted
    sim.lying_deletes = False
    await h.pass_(since=NOW - timedelta(hours=1))
    h.clock = lambda: NOW.timestamp() + 120
    third = await h.pass_(since=NOW - timedelta(hours=1))
    assert third.scan.relisted == 0 and not sim.recordings
