"""Verified deletion, the audit journal, verify and reconcile (simulator, SQLite, real files)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.audit import Head, Journal, last_line, verify_journal
from archiver.cli import main
from archiver.config import Config, journal_path
from archiver.ledger import Ledger
from archiver.simulator import RestcommSimulator
from tests.support.archive import archive_copy, events, guard_deletes
from tests.support.config import cli_config, make_config
from tests.support.constants import DAY, NOW
from tests.support.harness import Harness


async def test_nothing_is_deleted_unless_enabled(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(10, start=NOW - timedelta(hours=2))
    h = Harness(config_for(sim))
    await h.pass_()
    h.clock = lambda: NOW.timestamp() + 30 * DAY
    await h.pass_()
    assert sim.deleted == [] and not any(r.method == "DELETE" for r in sim.requests)


async def test_dry_run_journals_but_deletes_nothing(sim: RestcommSimulator, tmp_path: Path) -> None:
    sim.generate(6, start=NOW - timedelta(hours=2))
    cfg = make_config(sim, tmp_path, delete={"enabled": True, "min_age": "0s", "dry_run": True})
    result = await Harness(cfg).pass_()
    assert result.would_delete == 6 and result.deleted == 0 and sim.deleted == []
    assert [e["event"] for e in events(cfg)].count("would-delete") == 6


async def test_min_age_and_budget(sim: RestcommSimulator, tmp_path: Path) -> None:
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
    sim: RestcommSimulator, tmp_path: Path
) -> None:
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
    assert restored and hashlib.sha256(restored.read_bytes()).hexdigest() == a.sha256()
    rows = await h.ledger_rows()
    assert rows[b.sid][0] == "failed" and "ArchiveConflict" in rows[b.sid][2]
    assert b.sid not in sim.deleted


async def test_deleting_during_a_large_backlog_misses_nothing(tmp_path: Path) -> None:
    async with RestcommSimulator(seed=3) as sim:
        recs = sim.generate(
            2000,
            start=NOW - timedelta(hours=20),
            spacing=timedelta(seconds=30),
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


async def test_journal_chain_detects_edits_removals_and_reorders(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(4, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    await Harness(cfg).pass_()
    path = Path(journal_path(cfg))
    async with Ledger(cfg.ledger.path) as ledger:
        head = Head.decode(await ledger.get_meta("audit_head"))
    assert head is not None and head.seq == 8  # archived + verified for each
    assert verify_journal(path, head) is None
    good = path.read_bytes()
    lines = good.splitlines(keepends=True)

    def broken(data: bytes) -> tuple[int, str] | None:
        path.write_bytes(data)
        return verify_journal(path, head)

    edited = lines[2].replace(b'"size":16044', b'"size":16045')
    assert edited != lines[2]
    assert broken(b"".join([*lines[:2], edited, *lines[3:]]))[0] == 4  # type: ignore[index]
    assert broken(b"".join([*lines[:3], *lines[4:]]))[0] == 4  # type: ignore[index]
    assert broken(b"".join([*lines[:3], lines[4], lines[3], *lines[5:]]))[0] == 4  # type: ignore[index]
    result = broken(b"".join(lines[:-1]))  # the tail cut off: only the checkpoint shows it
    assert result is not None and "checkpoint" in result[1]
    path.write_bytes(good)
    config_file = cli_config(cfg, sim)
    assert await asyncio.to_thread(main, ["--config", str(config_file), "audit", "verify"]) == 0
    path.write_bytes(b"".join([*lines[:2], edited, *lines[3:]]))
    assert await asyncio.to_thread(main, ["--config", str(config_file), "audit", "verify"]) == 1


def test_last_line_reads_backwards_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "j"
    for lines in ([], [b"a" * 20], [b"x", b"y" * 30, b"z" * 3], [b"p" * 9, b"q" * 7]):
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        for block in (1, 2, 7, 8, 64, 65536):
            assert last_line(path, block) == (lines[-1] + b"\n" if lines else b"")


async def test_journal_reopens_from_its_last_line_alone(tmp_path: Path) -> None:
    # Opening reads only the last line, so a journal of years opens as fast as a new one; a
    # damaged older line does not stop archiving, and `audit verify` still finds it.
    path = tmp_path / "audit.jsonl"
    async with Journal(path) as journal:
        for n in range(5):
            journal.append("archived", sid=f"RE{n}", size=n)
        head = journal.head
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([b"not json\n", *lines[1:]]))
    async with Journal(path) as journal:
        assert journal.head == head
        after = journal.append("verified", sid="RE4")
    assert after.seq == 6
    assert json.loads(path.read_bytes().splitlines()[-1])["prev"] == head.sha256
    path.write_bytes(b"".join([*lines, path.read_bytes().splitlines(keepends=True)[-1]]))
    assert verify_journal(path, after) is None  # the chain, with line 1 restored, holds
    path.write_bytes(b"".join([b"not json\n", *path.read_bytes().splitlines(True)[1:]]))
    assert verify_journal(path, after) == (1, "not JSON")


async def test_daily_manifests_are_written_into_the_archive(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    h = Harness(cfg)
    await h.pass_()
    day = events(cfg)[0]["ts"]
    assert isinstance(day, str)
    h.clock = lambda: NOW.timestamp() + 3 * DAY  # the journal's day is now closed
    await h.pass_()
    manifest = Path(cfg.archive.path) / "audit" / day[:4] / day[5:7] / f"{day[8:10]}.jsonl"
    assert manifest.exists()
    assert (
        manifest.read_bytes() == Path(journal_path(cfg)).read_bytes()[: len(manifest.read_bytes())]
    )


async def test_verify_lists_removed_and_corrupted_copies(
    sim: RestcommSimulator, config_for: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _c = sim.generate(3, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    await Harness(cfg).pass_()
    cli = cli_config(cfg, sim)
    assert await asyncio.to_thread(main, ["--config", str(cli), "verify"]) == 0
    archive_copy(cfg, a.sid).unlink()  # type: ignore[union-attr]
    corrupt = archive_copy(cfg, b.sid)
    assert corrupt is not None
    corrupt.write_bytes(b"RIFF" + corrupt.read_bytes()[4:-3] + b"xyz")
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["--config", str(cli), "verify", "--deep"]) == 1
    out = capsys.readouterr().out
    assert f"DRIFT {a.sid}" in out and "missing" in out
    assert f"DRIFT {b.sid}" in out and "sha256" in out
    assert "2 discrepancies" in out


async def test_reconcile_finds_what_arrived_before_the_watermark(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(30, start=NOW - timedelta(hours=3), spacing=timedelta(minutes=6))
    cfg = config_for(sim, lookback="15m", page_size=10)
    h = Harness(cfg)
    await h.pass_()
    old = sim.generate(2, start=NOW - timedelta(hours=10))  # far behind the watermark
    normal = await h.pass_()
    assert normal.scan.new == 0  # outside the lookback: the normal pass cannot see them
    watermark = await h.watermark()
    reconciled = await h.pass_(since=NOW - timedelta(days=1))
    assert reconciled.scan.new == 2 and reconciled.verified == 2
    assert await h.watermark() == watermark  # a reconcile never moves the watermark
    assert all(archive_copy(cfg, r.sid) for r in old)


async def test_daemon_reconciles_on_schedule(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    from archiver.daemon import Daemon

    sim.generate(30, start=NOW - timedelta(hours=3), spacing=timedelta(minutes=6))
    cfg = config_for(sim, page_size=10, reconcile_interval="1h", reconcile_window="2d")
    await Harness(cfg).pass_()
    old = sim.generate(2, start=NOW - timedelta(hours=20))  # behind the watermark's lookback
    clock = [NOW.timestamp()]
    async with Harness(cfg, clock=lambda: clock[0]).syncer() as syncer:
        ledger = syncer.ledger
        await ledger.set_meta("last_reconcile_at", str(NOW.timestamp() - 600))
        daemon = Daemon(syncer, poll_interval=3600, max_backoff=3600)
        stopping = asyncio.Event()
        await daemon.one_pass(stopping)
        await daemon.maybe_reconcile(stopping)  # reconciled 10 minutes ago: not yet
        assert not any(archive_copy(cfg, r.sid) for r in old)
        clock[0] += 3600
        await daemon.maybe_reconcile(stopping)
        assert all(archive_copy(cfg, r.sid) for r in old)
        assert float(await ledger.get_meta("last_reconcile_at") or 0) == clock[0]


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


async def test_a_recording_listed_again_after_its_delete_is_deleted_again(
    sim: RestcommSimulator, tmp_path: Path
) -> None:
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
