"""Property: for random arrival schedules, page sizes, crash points, server zones (with daylight
saving changes inside the run), host clock steps and envelope races, once the passes settle,
every recording is archived exactly once with its SHA-256, and the watermark never went back
except to the clock (pulled back after a step), and never ahead of the clock."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import tempfile
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.simulator import RestcommSimulator, SimRecording
from tests.support.config import make_config
from tests.support.constants import NOW
from tests.support.harness import Harness

# (age in seconds when it appears, recordings sharing that second); ages stay inside lookback
batch = st.lists(st.tuples(st.integers(0, 600), st.integers(1, 5)), max_size=6)
# per step: arrivals, a crash after N requests, a step of the host clock (NTP; seconds, shared
# by the platform and the archiver), and how many list answers carry another request's envelope
step = st.tuples(
    batch,
    st.one_of(st.none(), st.integers(1, 40)),
    st.sampled_from([0, 0, 0, -3600, -600, 900]),
    st.integers(0, 3),
)
schedule = st.lists(step, min_size=1, max_size=5)
# the server's zone, and the instant the run starts: around a daylight-saving change
zones: list[tuple[tzinfo, datetime]] = [
    (timezone(timedelta(hours=9)), NOW),
    (ZoneInfo("Europe/Berlin"), datetime(2026, 10, 25, 0, 40, tzinfo=UTC)),  # falls back 01:00Z
    (ZoneInfo("America/New_York"), datetime(2026, 11, 1, 5, 40, tzinfo=UTC)),  # back 06:00Z
    (ZoneInfo("Europe/Berlin"), datetime(2026, 3, 29, 0, 40, tzinfo=UTC)),  # forward 01:00Z
]
Step = tuple[list[tuple[int, int]], int | None, int, int]


async def _crashing_pass(h: Harness, sim: RestcommSimulator, crash_after: int | None) -> None:
    task = asyncio.ensure_future(h.pass_())
    if crash_after is None:
        await task
        return
    start = len(sim.requests)
    # polling a request counter is the point here: crash after the Nth request
    while not task.done() and len(sim.requests) - start < crash_after:  # noqa: ASYNC110
        await asyncio.sleep(0)
    task.cancel()  # like a kill: whatever is in memory is gone, the ledger keeps what it had
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _scenario(page_size: int, zone: tuple[tzinfo, datetime], steps: list[Step]) -> None:
    tz, start = zone
    with tempfile.TemporaryDirectory() as tmp:
        async with RestcommSimulator(seed=page_size, tz=tz) as sim:
            now = start
            clock_now = [now.timestamp()]
            sim.clock = lambda: clock_now[0]  # one host clock for the platform and for us
            cfg = make_config(
                sim,
                Path(tmp),
                page_size=page_size,
                lookback="15m",
                concurrency=3,
                start_time=(start - timedelta(days=1)).isoformat(),
            )
            h = Harness(cfg, clock=lambda: clock_now[0])
            watermarks: list[tuple[datetime, datetime]] = []  # (watermark, clock) after a pass
            for arrivals, crash_after, clock_step, races in steps:
                now += timedelta(minutes=5, seconds=clock_step)
                clock_now[0] = now.timestamp()
                sim.envelope_race = races
                for age, count in arrivals:
                    created = (now - timedelta(seconds=age)).replace(microsecond=0)
                    for _ in range(count):
                        sim.add(
                            SimRecording(
                                sid=sim.make_sid(),
                                account_sid=sim.account_sid,
                                call_sid=None,
                                date_created=created,
                                duration=1.0,
                                size=2000,
                            )
                        )
                await _crashing_pass(h, sim, crash_after)
                wm = await h.watermark()
                if wm is not None:
                    watermarks.append((wm, now))
            for _ in range(2):  # settle: no more arrivals, no crashes
                now += timedelta(minutes=5)
                clock_now[0] = now.timestamp()
                await h.pass_()
                wm = await h.watermark()
                if wm is not None:
                    watermarks.append((wm, now))

            for (before, _), (after, clock) in itertools.pairwise(watermarks):
                assert after >= before or after <= clock, "the watermark went back, not to now"
            assert all(wm <= clock for wm, clock in watermarks), "a watermark ahead of the clock"
            root = Path(cfg.archive.path)
            files = [p for p in root.rglob("*.wav") if ".archiver-tmp" not in p.parts]
            by_sid = {p.stem: p for p in files}
            assert len(files) == len(by_sid), "a recording archived twice"
            assert set(by_sid) == set(sim.recordings), (
                f"missed {len(set(sim.recordings) - set(by_sid))} of {len(sim.recordings)}"
            )
            for sid, path in by_sid.items():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == sim.recordings[sid].sha256()
            rows = await h.ledger_rows()
            assert {r[0] for r in rows.values()} <= {"verified"}
            assert not list((root / ".archiver-tmp").iterdir())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_size=st.integers(1, 6), zone=st.sampled_from(zones), steps=schedule)
def test_nothing_missed_nothing_twice(
    page_size: int, zone: tuple[tzinfo, datetime], steps: list[Step]
) -> None:
    asyncio.run(_scenario(page_size, zone, steps))
