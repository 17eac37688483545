"""Progress of a sync pass: a bar on a terminal, log lines off one."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

from structlog.testing import capture_logs

from archiver.audit import Journal
from archiver.config import Config, journal_path
from archiver.ledger import Ledger
from archiver.progress import Progress
from archiver.restcomm import RestcommClient
from archiver.simulator import RestcommSimulator
from archiver.storage.local import LocalStorage
from archiver.sync import Syncer
from tests.conftest import NOW


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def _pass(cfg: Config, sim: RestcommSimulator, stream: io.StringIO) -> None:
    async with (
        Ledger(cfg.ledger.path) as ledger,
        RestcommClient(sim.base_url, sim.account_sid, sim.auth_token) as client,
        LocalStorage(cfg.archive.path) as storage,
        Journal(journal_path(cfg)) as journal,
    ):
        syncer = Syncer(
            cfg, client, storage, ledger, clock=lambda: NOW.timestamp(), journal=journal
        )
        progress = Progress(syncer, stream, every=0)
        result = await syncer.run_pass()
        progress.finish(result)


async def test_bar_on_a_terminal(sim: RestcommSimulator, config_for: Callable[..., Config]) -> None:
    sim.generate(8, start=NOW - timedelta(hours=1), size=100_000)
    screen = Terminal()
    await _pass(config_for(sim), sim, screen)
    frames = screen.getvalue().split("\r")
    assert "1/8 recordings" in frames[1]
    assert frames[-1].startswith("[########################] 8/8 recordings, 0.8 MB")
    assert "ETA" in frames[-1] and "0 failed" in frames[-1]


async def test_log_lines_off_a_terminal(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    with capture_logs() as logs:
        await _pass(config_for(sim), sim, io.StringIO())
    lines = [e for e in logs if e["event"] == "pass.progress"]
    assert [e["done"] for e in lines] == [1, 2, 3] and lines[-1]["total"] == 3
