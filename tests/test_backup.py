"""Online backup of the ledger and the journal, beside a running daemon, and a restore from it."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from datetime import timedelta
from pathlib import Path

from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli, start_cli, wait_verified
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN


def only_backup(root: Path) -> Path:
    folders = list(root.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("archiver-backup-")
    return folders[0]


async def test_a_backup_beside_the_daemon_restores_to_a_working_state(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(5, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        proc = await start_cli("--config", str(cfg), "run", stdout=asyncio.subprocess.DEVNULL)
        try:
            await wait_verified(cfg, 5)
            code, out, err = await run_cli("--config", str(cfg), "backup", "--to", str(backups))
            assert code == 0, err  # no lock needed: the daemon keeps running
            assert proc.returncode is None
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 30)
        folder = only_backup(backups)
        assert f"backup       {folder}" in out
        manifest = json.loads((folder / "backup.json").read_text())
        assert manifest["checkpoint"] and manifest["journal"]["bytes"] > 0
        for name in ("ledger.sqlite3", "journal.jsonl", "backup.json"):
            assert (folder / name).stat().st_mode & 0o777 == 0o600, name
        assert folder.stat().st_mode & 0o777 == 0o700
        # the state volume is lost; restore from the backup as docs/operating.md says
        for lost in tmp_path.glob("l.sqlite3*"):
            lost.unlink()
        shutil.copy2(folder / "ledger.sqlite3", tmp_path / "l.sqlite3")
        shutil.copy2(folder / "journal.jsonl", tmp_path / "l.sqlite3.audit.jsonl")
        code, out, err = await run_cli("--config", str(cfg), "audit", "verify")
        assert code == 0 and "chain intact" in out, out + err
        sim.generate(2, start=NOW - timedelta(minutes=5))
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err
        assert "archived 2" in out
        code, out, _ = await run_cli("--config", str(cfg), "status", "--json")
        assert json.loads(out)["states"]["verified"] == 7


async def test_a_backup_whose_journal_lost_the_checkpoint_is_refused(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        await run_cli("--config", str(cfg), "sync")
    journal = tmp_path / "l.sqlite3.audit.jsonl"
    journal.write_bytes(b"".join(journal.read_bytes().splitlines(keepends=True)[:2]))  # cut
    code, _out, err = await run_cli("--config", str(cfg), "backup", "--to", str(tmp_path / "b"))
    assert code == 3 and "does not hold the ledger's checkpoint" in err, err
    assert "Traceback" not in err
