"""Reconcile: a pass over a window behind the watermark finds what arrived late, and never
moves the watermark."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from archiver.config import Config
from archiver.simulator import RestcommSimulator, TwilioSimulator
from tests.support.archive import archive_copy
from tests.support.constants import NOW
from tests.support.harness import Harness


async def test_reconcile_finds_what_arrived_before_the_watermark(
    any_sim: RestcommSimulator | TwilioSimulator, config_for: Callable[..., Config]
) -> None:
    sim = any_sim  # every platform
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
