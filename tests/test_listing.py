"""The listing is complete by construction: whatever the envelope, the zones or the clocks say.

Each test reproduces, in the simulator, a way the real server (or the host it shares a clock
with) can mislead a client, and checks that every listed recording ends archived.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from archiver.config import Config
from archiver.simulator import RestcommSimulator, SimRecording
from tests.support.archive import archived_files, assert_archive_matches
from tests.support.constants import NOW
from tests.support.harness import Harness


def add_at(sim: RestcommSimulator, when: datetime, n: int = 1) -> list[SimRecording]:
    return [
        sim.add(
            SimRecording(
                sid=sim.make_sid(),
                account_sid=sim.account_sid,
                call_sid=None,
                date_created=when.astimezone(UTC).replace(microsecond=0),
                duration=1.0,
                size=2000,
            )
        )
        for _ in range(n)
    ]


def start_dates(sim: RestcommSimulator) -> list[date]:
    return [
        date.fromisoformat(r.query["StartTime"])
        for r in sim.requests
        if r.path.endswith("Recordings.json") and "StartTime" in r.query
    ]


async def test_a_full_page_carrying_another_requests_envelope_does_not_end_the_list(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    # Every answer carries the envelope of another client's request: num_pages 0 and
    # next_page_uri "null" on full pages. Only a short page may end the list.
    sim.generate(40, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=2))
    sim.envelope_race = 10_000
    cfg = config_for(sim, page_size=10)
    result = await Harness(cfg).pass_()
    assert result.ok and result.verified == 40
    assert_archive_matches(sim, cfg)


async def test_a_raced_total_is_asked_again_not_taken_for_deleted_rows(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(40, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=2))
    cfg = config_for(sim, page_size=10)
    h = Harness(cfg)
    state = {"n": 0}

    def race_second_page(page: int) -> None:
        state["n"] += 1
        if page == 1 and state["n"] == 2:
            sim.envelope_race = 1  # page 1 says total 3: a drop that never happened

    sim.on_list = race_second_page
    result = await h.pass_()
    assert result.ok and result.scan.complete and result.verified == 40


async def test_the_repeated_autumn_hour_is_read_whole(
    config_for: Callable[..., Config],
) -> None:
    # Europe/Berlin falls back at 01:00Z on 2026-10-25: wall times 02:00-02:59 happen twice,
    # and the server orders by wall time, so instants go back by an hour inside the list.
    fall_back = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    async with RestcommSimulator(seed=3, tz=ZoneInfo("Europe/Berlin")) as sim:
        clock = [(fall_back - timedelta(minutes=30)).timestamp()]
        cfg = config_for(sim, page_size=10, start_time=(fall_back - timedelta(days=1)).isoformat())
        h = Harness(cfg, clock=lambda: clock[0])
        add_at(sim, fall_back - timedelta(hours=2), 3)
        assert (await h.pass_()).ok
        t = fall_back - timedelta(minutes=30)
        while t < fall_back + timedelta(minutes=50):  # 00:30Z..01:50Z, both sides of the change
            add_at(sim, t)
            t += timedelta(seconds=40)
        clock[0] = (fall_back + timedelta(minutes=51)).timestamp()
        result = await h.pass_()
        assert result.ok, result.summary()
        assert_archive_matches(sim, cfg)


async def test_a_zone_change_between_passes_never_asks_for_a_day_not_begun(
    config_for: Callable[..., Config],
) -> None:
    clock = [NOW.timestamp()]
    async with RestcommSimulator(seed=4, tz=timezone(timedelta(hours=-10))) as sim:
        sim.clock = lambda: clock[0]
        cfg = config_for(sim, page_size=10)
        h = Harness(cfg, clock=lambda: clock[0])
        add_at(sim, NOW - timedelta(minutes=20), 5)
        assert (await h.pass_()).ok
        sim.tz = timezone(timedelta(hours=14))  # the server is moved to the other end of the day
        for step in range(3):
            clock[0] += 600
            add_at(sim, datetime.fromtimestamp(clock[0] - 30, UTC), 4)
            result = await h.pass_()
            assert result.ok, (step, result.summary())
        assert_archive_matches(sim, cfg)
        # no StartTime later than the server's own date, in any zone it has had
        latest = datetime.fromtimestamp(clock[0], UTC) - timedelta(hours=14)
        assert max(start_dates(sim)) <= latest.date()


async def test_an_empty_answer_teaches_nothing_and_moves_nothing(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    cfg = config_for(sim, page_size=10)
    clock = [NOW.timestamp()]
    h = Harness(cfg, clock=lambda: clock[0])
    assert (await h.pass_()).ok  # nothing listed yet
    assert await h.watermark() is None
    clock[0] += 120
    add_at(sim, NOW + timedelta(seconds=60), 3)
    result = await h.pass_()
    assert result.ok and result.verified == 3


async def test_a_clock_stepped_back_pulls_the_watermark_back(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    # The platform and the archiver share the host's clock. It runs an hour ahead, the
    # recordings of that hour carry future stamps, then NTP steps it back.
    ahead = timedelta(hours=1)
    clock = [(NOW + ahead).timestamp()]
    sim.clock = lambda: clock[0]
    cfg = config_for(sim, page_size=5)
    h = Harness(cfg, clock=lambda: clock[0])
    add_at(sim, NOW + ahead - timedelta(minutes=1), 4)
    assert (await h.pass_()).ok
    assert await h.watermark() == NOW + ahead - timedelta(minutes=1)
    clock[0] = (NOW + timedelta(minutes=2)).timestamp()  # stepped back
    fresh = add_at(sim, NOW + timedelta(minutes=1), 15)
    with capture_logs() as logs:
        result = await h.pass_()
    assert result.ok and result.verified == len(fresh), result.summary()
    assert_archive_matches(sim, cfg)
    pulled = [e for e in logs if e["event"] == "watermark.pulled_back"]
    assert pulled and pulled[0]["ahead_s"] > 3000
    # the future-stamped recordings still listed count as "now", never later
    assert await h.watermark() == NOW + timedelta(minutes=2)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "body": b"<html>500</html>", "content_type": "text/html"},
        {"status": 200, "body": b'{"page": 2, "recor', "content_type": "application/json"},
    ],
    ids=["always-500", "always-invalid-json"],
)
async def test_a_page_that_keeps_failing_leaves_the_scan_incomplete_and_the_rest_archived(
    sim: RestcommSimulator, config_for: Callable[..., Config], fault: dict[str, object]
) -> None:
    sim.generate(50, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=2))
    sim.inject(path=r"Recordings\.json", query={"Page": "2"}, times=None, **fault)  # type: ignore[arg-type]
    cfg = config_for(sim, page_size=10)
    h = Harness(cfg)
    with capture_logs() as logs:
        result = await h.pass_()
    assert not result.scan.complete and not result.ok
    assert "list page 2" in result.scan.reason
    assert result.verified == 20  # pages 0 and 1, transferred in the same pass
    assert await h.watermark() is None  # not moved past the page it could not read
    assert any(e["event"] == "scan.page_failed" for e in logs)
    sim.clear_faults()
    result = await h.pass_()
    assert result.ok and result.verified == 30
    assert_archive_matches(sim, cfg)


async def test_a_deletion_while_paging_still_restarts_the_listing(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    recs = sim.generate(40, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=2))
    cfg = config_for(sim, page_size=10)
    done = {"n": 0}

    def delete_some(page: int) -> None:
        if page == 2 and not done["n"]:
            done["n"] = 1
            for rec in recs[-3:]:  # newest three, on page 0: later pages shift up
                del sim.recordings[rec.sid]

    sim.on_list = delete_some
    with capture_logs() as logs:
        result = await Harness(cfg).pass_()
    assert any(e["event"] == "scan.restarted" for e in logs)
    assert set(archived_files(cfg)) == set(sim.recordings)  # none skipped by the shift
    # the three listed, then deleted at the source, are not lost silently: they wait
    assert result.outstanding is not None and result.outstanding.waiting == 3
    assert not result.ok


async def test_status_and_summary_say_the_listing_was_incomplete(
    sim: RestcommSimulator, config_for: Callable[..., Config], tmp_path: Path
) -> None:
    sim.generate(25, start=NOW - timedelta(hours=2), spacing=timedelta(minutes=2))
    sim.inject(path=r"Recordings\.json", query={"Page": "1"}, status=503, times=None)
    cfg = config_for(sim, page_size=10)
    await Harness(cfg).pass_()
    from archiver.cli import status_facts

    facts = await status_facts(cfg)
    last = facts["last_pass"]
    assert last["scan_complete"] is False and "list page 1" in last["scan_problem"]
    assert json.dumps(facts)  # serializable for --json


async def test_an_incomplete_scheduled_reconcile_is_not_counted_as_done(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    from archiver.daemon import Daemon

    sim.generate(25, start=NOW - timedelta(days=2), spacing=timedelta(hours=1))
    sim.inject(path=r"Recordings\.json", query={"Page": "1"}, status=500, times=None)
    cfg = config_for(sim, page_size=10)
    async with Harness(cfg).syncer() as syncer:
        daemon = Daemon(syncer, poll_interval=60, max_backoff=60)
        with capture_logs() as logs:
            await daemon.maybe_reconcile(asyncio.Event())
        assert await syncer.ledger.get_meta("last_reconcile_at") is None
        assert any(e["event"] == "reconcile.incomplete" for e in logs)
        sim.clear_faults()
        await daemon.maybe_reconcile(asyncio.Event())
        assert await syncer.ledger.get_meta("last_reconcile_at") == str(NOW.timestamp())
