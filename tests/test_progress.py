"""Progress of a sync pass: a bar on a terminal, log lines off one."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

from structlog.testing import capture_logs

from archiver.config import Config
from archiver.progress import Progress
from archiver.simulator import RestcommSimulator
from tests.support.constants import NOW
from tests.support.harness import Harness


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def _pass(cfg: Config, stream: io.StringIO) -> None:
    async with Harness(cfg).syncer() as syncer:
        progress = Progress(syncer, stream, every=0)
        result = await syncer.run_pass()
        progress.finish(result)


async def test_bar_on_a_terminal(sim: RestcommSimulator, config_for: Callable[..., Config]) -> None:
    sim.generate(8, start=NOW - timedelta(hours=1), size=100_000)
    screen = Terminal()
    await _pass(config_for(sim), screen)
    frames = screen.getvalue().split("\r")
    assert "1/8 recordings" in frames[1]
    assert frames[-1].startswith("[########################] 8/8 recordings, 0.8 MB")
    assert "ETA" in frames[-1] and "0 failed" in frames[-1]


async def test_log_lines_off_a_terminal(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    with capture_logs() as logs:
        await _pass(config_for(sim), io.StringIO())
    lines = [e for e in logs if e["event"] == "pass.progress"]
    assert [e["done"] for e in lines] == [1, 2, 3] and lines[-1]["total"] == 3
