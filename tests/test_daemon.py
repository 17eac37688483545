"""The daemon's schedule (archiver/daemon.py): a reconcile pass once per
``reconcile_interval``, counted from the last one the ledger remembers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from archiver.config import Config
from archiver.simulator import RestcommSimulator
from tests.support.archive import archive_copy
from tests.support.constants import NOW
from tests.support.harness import Harness


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
