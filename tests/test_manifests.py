"""Daily audit manifests (archiver/audit.py): each closed day of the journal is copied into
the archive, byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from archiver.config import Config, journal_path
from archiver.simulator import RestcommSimulator
from tests.support.archive import events
from tests.support.constants import DAY, NOW
from tests.support.harness import Harness


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
