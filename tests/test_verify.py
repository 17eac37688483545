"""`archiver verify`: every archived copy and sidecar checked against the ledger; a removed or
corrupted copy is listed as drift."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import Config
from archiver.simulator import RestcommSimulator
from tests.support.archive import archive_copy
from tests.support.cli import run_cli
from tests.support.config import cli_config, write_config
from tests.support.constants import NOW
from tests.support.harness import Harness


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


@pytest.mark.parametrize("command", [["verify"], ["verify", "--deep"], ["audit", "verify"]])
async def test_reading_commands_refuse_a_missing_ledger_and_create_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    cfg = write_config(tmp_path)  # a ledger.path where nothing is yet (a typo, a lost volume)
    code, out, err = await run_cli("--config", str(cfg), *command)
    assert code == 2, out + err
    assert f"no ledger at {tmp_path / 'l.sqlite3'} yet" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archiver.toml"]
