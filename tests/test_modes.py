"""Private by default (issue 13, Trust II): what archiver creates is 0600/0700 whatever the
umask, the archive's modes are configurable for group read, and a token file readable by
others is refused, by its group warned about."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.errors import ConfigError
from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli, start_cli, wait_verified
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def open_umask() -> None:
    os.umask(0)  # the child's own umask: the worst a careless service manager could set


def state_config(tmp_path: Path, sim: RestcommSimulator, **archive: str) -> Path:
    """Ledger and journal in folders archiver must create itself."""
    return write_config(
        tmp_path,
        sim,
        ledger={"path": tmp_path / "state" / "db" / "l.sqlite3"},
        archive={"path": tmp_path / "archive" / "recordings", **archive},
    )


def archive_modes(root: Path) -> tuple[set[int], set[int]]:
    files = {mode(p) for p in root.rglob("*") if p.is_file()}
    dirs = {mode(p) for p in root.rglob("*") if p.is_dir()}
    return files, dirs


async def test_everything_created_is_private_whatever_the_umask(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(6, start=NOW - timedelta(hours=1))
        cfg = state_config(tmp_path, sim)
        proc = await start_cli("--config", str(cfg), "run", preexec_fn=open_umask)
        try:
            await wait_verified(cfg, 6)
            state = tmp_path / "state" / "db"
            # the ledger's -wal and -shm exist while the daemon has it open
            for name in ("l.sqlite3", "l.sqlite3-wal", "l.sqlite3-shm", "l.sqlite3.lock"):
                assert mode(state / name) == 0o600, name
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
    assert mode(state / "l.sqlite3.audit.jsonl") == 0o600
    assert mode(state) == mode(tmp_path / "state") == 0o700
    root = tmp_path / "archive" / "recordings"
    files, dirs = archive_modes(root)
    assert len(list(root.rglob("*.wav"))) == 6 and len(list(root.rglob("*.wav.json"))) == 6
    assert files == {0o600} and dirs == {0o700}
    assert mode(tmp_path / "archive") == 0o700  # created by archiver too


async def test_the_archive_can_be_opened_to_a_group_the_state_cannot(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = state_config(tmp_path, sim, file_mode="0640", dir_mode="0750")
        proc = await start_cli("--config", str(cfg), "sync", preexec_fn=open_umask)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    files, dirs = archive_modes(tmp_path / "archive" / "recordings")
    assert files == {0o640} and dirs == {0o750}
    state = tmp_path / "state" / "db"
    assert {mode(p) for p in state.iterdir()} == {0o600}


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("file_mode", "0666", "never execute or write to others"),
        ("file_mode", "0400", "must give the owner rw"),
        ("file_mode", "0700", "never execute"),
        ("file_mode", "rw-r-----", "expected an octal mode like '0600'"),
        ("dir_mode", "0600", "must give the owner rwx"),
        ("dir_mode", "0777", "write to others"),
    ],
)
def test_bad_modes_name_the_key(tmp_path: Path, key: str, value: str, why: str) -> None:
    cfg = write_config(tmp_path, archive={key: value})
    with pytest.raises(ConfigError, match=why) as info:
        load_config(cfg, environ={})
    assert info.value.key == f"archive.{key}"


def test_a_token_file_readable_by_everyone_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    token.chmod(0o644)
    cfg = write_config(tmp_path, auth_token=None, auth_token_file=token)
    with pytest.raises(ConfigError, match=f"chmod 600 {token}") as info:
        load_config(cfg, environ={})
    assert info.value.key == "source.auth_token_file" and "mode 0644" in str(info.value)
    assert "from-file" not in str(info.value)
    token.chmod(0o600)
    assert load_config(cfg, environ={}).source.auth_token == "from-file"


async def test_a_token_file_readable_by_its_group_is_used_with_a_warning(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        token = tmp_path / "token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o640)
        cfg = write_config(tmp_path, sim, auth_token=None, auth_token_file=token)
        code, _out, err = await run_cli("--config", str(cfg), "--log-format", "json", "check")
    assert code == 0, err
    [warning] = [json.loads(x) for x in err.splitlines() if "config.secret_file_readable" in x]
    assert warning["path"] == str(token) and warning["fix"] == f"chmod 600 {token}"
    assert TOKEN not in err
