"""The sync pass end to end: simulator over HTTP, real SQLite, real files."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.config import Config
from archiver.copies import render_key
from archiver.listing import covering_page
from archiver.simulator import RestcommSimulator, SimRecording
from tests.support.archive import archived_files, assert_archive_matches
from tests.support.constants import NOW
from tests.support.harness import Harness


async def test_first_pass_archives_everything_with_sidecars(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(35, start=NOW - timedelta(hours=5), spacing=timedelta(minutes=3), ext_mp4_every=7)
    cfg = config_for(sim)
    h = Harness(cfg)
    result = await h.pass_()
    assert result.ok
    assert (result.scan.new, result.archived, result.verified) == (35, 35, 35)
    assert_archive_matches(sim, cfg)
    rec = next(iter(sim.recordings.values()))
    key = render_key(cfg.archive.key_template, _as_recording(rec))
    side = json.loads((Path(cfg.archive.path) / (key + ".json")).read_text())
    assert side["sid"] == rec.sid and side["sha256"] == rec.sha256() and side["size"] == rec.size
    assert side["date_created"] == rec.date_created.isoformat()
    assert isinstance(side["duration"], float)
    assert side["source"]["sid"] == rec.sid and isinstance(side["source"]["duration"], str)
    mp4 = [r for r in sim.recordings.values() if r.ext == "mp4"]
    assert mp4 and all(archived_files(cfg)[r.sid].suffix == ".mp4" for r in mp4)
    rows = await h.ledger_rows()
    assert {state for state, *_ in rows.values()} == {"verified"}
    assert await h.watermark() == max(r.date_created for r in sim.recordings.values())


def _as_recording(rec: SimRecording):  # type: ignore[no-untyped-def]
    from archiver.model import Recording

    return Recording(
        rec.sid, rec.account_sid, rec.call_sid, rec.date_created, rec.duration, rec.ext, {}
    )


@pytest.mark.parametrize(
    ("server_timezone", "pages"),
    [("+09:00", 2), ("", 4)],
    ids=["fixed-offset-zone", "unknown-zone"],
)
async def test_second_pass_repeats_nothing_and_stops_early(
    sim: RestcommSimulator, config_for: Callable[..., Config], server_timezone: str, pages: int
) -> None:
    sim.generate(200, start=NOW - timedelta(hours=20), spacing=timedelta(minutes=5))
    cfg = config_for(sim, page_size=10, server_timezone=server_timezone)
    h = Harness(cfg)
    first = await h.pass_()
    assert first.archived == 200
    media_before = sum(1 for r in sim.requests if r.path.endswith((".wav", ".mp4")))
    second = await h.pass_()
    assert (second.scan.new, second.archived) == (0, 0)
    media_after = sum(1 for r in sim.requests if r.path.endswith((".wav", ".mp4")))
    assert media_after == media_before
    # lookback is 15 min: the re-scan reads one page, not the 20 pages of the day's backlog;
    # a zone that may change its offset (unknown here) costs 2 h more: 24 recordings
    assert second.scan.pages <= pages


async def test_more_than_a_page_in_one_second_across_boundaries(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    # 3 groups of 25 recordings sharing one second each; pages of 10 split every group, and
    # the simulator shuffles ties on every request like a real DB without a tiebreak.
    sim.generate(
        75, start=NOW - timedelta(hours=1), spacing=timedelta(seconds=1), same_second_every=25
    )
    sim.generate(12, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=1))
    cfg = config_for(sim, page_size=10)
    result = await Harness(cfg).pass_()
    assert result.scan.complete
    assert_archive_matches(sim, cfg)
    # what the listing showed is counted once; the covering re-reads apart
    assert result.scan.listed == 87 and result.scan.new == 87
    assert result.scan.reread >= 3 * 25


async def test_late_arrival_inside_lookback_is_archived(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(20, start=NOW - timedelta(hours=1), spacing=timedelta(minutes=2))
    cfg = config_for(sim, lookback="15m")
    h = Harness(cfg)
    await h.pass_()
    watermark = await h.watermark()
    assert watermark is not None
    late = sim.generate(1, start=watermark - timedelta(minutes=10))[0]
    result = await h.pass_()
    assert result.scan.new == 1 and result.archived == 1
    assert late.sid in archived_files(cfg)


async def test_recordings_added_while_paging_are_not_missed(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(60, start=NOW - timedelta(hours=3), spacing=timedelta(minutes=1))
    added: list[SimRecording] = []

    def on_list(page: int) -> None:
        if page in (1, 3):  # new calls end while we page: they shift older rows down
            added.extend(sim.generate(3, start=NOW - timedelta(minutes=30 - page)))

    sim.on_list = on_list
    cfg = config_for(sim, page_size=10)
    h = Harness(cfg)
    await h.pass_()
    sim.on_list = None
    await h.pass_()
    assert len(added) == 6
    assert_archive_matches(sim, cfg)


async def test_around_server_midnight_in_its_time_zone(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    # the simulator runs at +09:00: its midnight is 15:00 UTC. Recordings on both sides of it,
    # and a watermark whose UTC date differs from the server's date.
    midnight_utc = NOW.replace(hour=15) - timedelta(days=1)
    sim.generate(30, start=midnight_utc - timedelta(minutes=30), spacing=timedelta(minutes=2))
    cfg = config_for(sim, lookback="5m")
    h = Harness(cfg)
    await h.pass_()
    sim.generate(5, start=midnight_utc + timedelta(minutes=28), spacing=timedelta(seconds=30))
    await h.pass_()
    assert_archive_matches(sim, cfg)


async def test_hostile_sid_is_failed_with_reason_and_never_a_path(
    sim: RestcommSimulator, config_for: Callable[..., Config], tmp_path: Path
) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    sim.add(
        SimRecording(
            sid="../../etc/x",
            account_sid=sim.account_sid,
            call_sid=None,
            date_created=NOW - timedelta(minutes=5),
            duration=1.0,
        )
    )
    cfg = config_for(sim)
    h = Harness(cfg)
    result = await h.pass_()
    assert not result.ok and result.scan.invalid == 1
    rows = await h.ledger_rows()
    state, _sha, error = rows["../../etc/x"]
    assert state == "failed" and "malformed" in error
    assert not (tmp_path / "etc").exists()
    assert all(p.is_relative_to(tmp_path / "archive") for p in (tmp_path / "archive").rglob("*"))
    assert len(archived_files(cfg)) == 3


async def test_error_page_served_as_audio_is_a_failure_not_an_archive(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    rec = sim.generate(1, start=NOW - timedelta(hours=1))[0]
    sim.inject(
        path=rf"{rec.sid}\.wav",
        status=200,
        times=None,
        content_type="text/html",
        body=b"<html><body>502 Bad Gateway</body></html>",
    )
    cfg = config_for(sim)
    h = Harness(cfg)
    result = await h.pass_()
    assert result.failed == 1 and not archived_files(cfg)
    state, _sha, error = (await h.ledger_rows())[rec.sid]
    assert state == "failed" and "not a recording" in error and "text/html" in error
    sim.clear_faults()
    # a later pass (once the retry delay has passed) archives it
    later = Harness(cfg, clock=lambda: NOW.timestamp() + 3600)
    result = await later.pass_()
    assert result.verified == 1
    assert_archive_matches(sim, cfg)


async def test_truncated_body_is_never_archived(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    rec = sim.generate(1, start=NOW - timedelta(hours=1), size=300_000)[0]
    sim.inject(path=rf"{rec.sid}\.wav", truncate_after=100_000, times=None)
    cfg = config_for(sim)
    h = Harness(cfg)
    result = await h.pass_()
    assert result.failed == 1 and not archived_files(cfg)
    assert not list((Path(cfg.archive.path) / ".archiver-tmp").iterdir())
    _state, _sha, error = (await h.ledger_rows())[rec.sid]
    assert "truncated" in error or "connection" in error


async def test_cancelled_pass_resumes_without_repeats(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    import asyncio

    sim.generate(40, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=2))
    sim.inject(path=r"\.wav", delay=0.05, times=None)
    cfg = config_for(sim, concurrency=2)
    h = Harness(cfg)
    task = asyncio.ensure_future(h.pass_())
    for _ in range(500):  # cancel mid-pass: once a few are verified, with more in flight
        await asyncio.sleep(0.01)
        verified = [r for r in (await h.ledger_rows()).values() if r[0] == "verified"]
        if len(verified) >= 5:
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    rows = await h.ledger_rows()
    done_before = {sid for sid, (state, *_) in rows.items() if state == "verified"}
    assert 0 < len(done_before) < 40
    sim.clear_faults()
    result = await h.pass_()
    assert result.verified == 40 - len(done_before)
    assert_archive_matches(sim, cfg)


async def test_concurrency_bounds_downloads_from_the_source(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    # A recording gives its download slot back once its body is in (the archive's durable
    # step does not hold it), but the source never sees more than `concurrency` at once.
    sim.generate(24, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=2))
    sim.inject(path=r"\.wav", delay=0.03, times=None)
    cfg = config_for(sim, concurrency=3)
    result = await Harness(cfg).pass_()
    assert result.verified == 24
    assert sim.peak_in_flight == 3
    assert_archive_matches(sim, cfg)


def test_covering_page_contains_the_range() -> None:
    for lo in range(0, 60):
        for hi in range(lo, lo + 40):
            page, size = covering_page(lo, hi)
            assert page * size <= lo and page * size + size - 1 >= hi


async def test_archived_row_is_verified_only_when_its_copy_reads_back(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    """A row left `archived` by a crash: the read-back and the sidecar run together, and a
    failed read-back fails the row even though its sidecar was written."""
    sim.generate(2, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    h = Harness(cfg)
    assert (await h.pass_()).verified == 2
    intact, lost = sorted(sim.recordings.values(), key=lambda r: r.sid)
    files = archived_files(cfg)
    async with h.syncer() as syncer:
        for rec in (intact, lost):
            row = await syncer.ledger.get(rec.sid)
            assert row is not None and row.archive_key and row.size and row.sha256
            await syncer.ledger.mark_archived(
                rec.sid, key=row.archive_key, size=row.size, sha256=row.sha256, now=1.0
            )
    files[lost.sid].unlink()  # the copy vanished before it was read back
    Path(f"{files[intact.sid]}.json").unlink()  # and this one's sidecar never got written
    result = await h.pass_()
    assert (result.archived, result.verified, result.failed) == (0, 1, 1)
    rows = await h.ledger_rows()
    assert rows[intact.sid][0] == "verified" and Path(f"{files[intact.sid]}.json").exists()
    assert rows[lost.sid][0] == "failed" and "missing" in rows[lost.sid][2]
    retried = await Harness(cfg, clock=lambda: NOW.timestamp() + 3600).pass_()
    assert (retried.archived, retried.verified) == (1, 1)  # archived again from the source
    assert_archive_matches(sim, cfg)
