"""State-volume faults are operational errors (exit 3), never config errors, never tracebacks
(issue 13, Trust II): a full or read-only volume, a damaged, empty or foreign ledger file, and a
bug, each through the real CLI on real files and file systems."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.errors import LedgerError
from archiver.ledger import Ledger
from archiver.model import Recording
from archiver.simulator import RestcommSimulator
from tests.support.cli import no_traceback, run_cli
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN
from tests.support.mounts import fill, read_only_bind


def state_config(tmp_path: Path, sim: RestcommSimulator, state: Path) -> Path:
    """A CLI config whose ledger (and journal, lock) live in ``state``."""
    return write_config(tmp_path, sim, ledger={"path": state / "l.sqlite3"})


async def test_an_empty_ledger_file_is_refused_not_taken_as_new(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        ledger = tmp_path / "l.sqlite3"
        ledger.touch()
        for command in ("sync", "status"):
            code, _out, err = await run_cli("--config", str(cfg), command)
            assert code == 3, err
            assert f"the ledger {ledger} is an empty (0-byte) file, not a new ledger" in err
            assert "Restore it from a backup" in err
            no_traceback(err)
        assert ledger.stat().st_size == 0 and not Path(f"{ledger}-wal").exists()
        assert not [r for r in sim.requests if "Recordings" in r.path]  # nothing was fetched


async def test_a_foreign_file_at_ledger_path_is_refused(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        cfg = write_config(tmp_path, sim)
        ledger = tmp_path / "l.sqlite3"
        ledger.write_text("recordings: see the spreadsheet\n")
        code, _out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 3, err
    assert f"the ledger {ledger} is not a SQLite database (it starts with b'recordings: see" in err
    assert ledger.read_text() == "recordings: see the spreadsheet\n"
    no_traceback(err)


async def test_a_damaged_ledger_exits_3_with_recovery_steps(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(40, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err
        ledger = tmp_path / "l.sqlite3"
        assert not Path(f"{ledger}-wal").exists()  # checkpointed on close: pages in the file
        data = bytearray(ledger.read_bytes())
        page = 4096
        assert len(data) >= 4 * page
        for offset in range(2 * page, len(data), 2 * page):  # every other page from the 3rd
            data[offset : offset + page] = bytes([0xA5]) * page
        ledger.write_bytes(bytes(data))
        # status skips the whole-file check on opening; its queries meet the damage
        for command in ("sync", "retry", "status"):
            code, _out, err = await run_cli("--config", str(cfg), command)
            assert code == 3, err
            assert f"the ledger {ledger} is damaged" in err
            assert "restore the ledger from a backup" in err
            no_traceback(err)


async def test_a_read_only_ledger_file_exits_3_naming_it(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err
        sim.generate(2, start=NOW - timedelta(minutes=10))
        ledger = tmp_path / "l.sqlite3"
        if os.geteuid() == 0:  # root writes through any mode: a read-only bind mount instead
            with read_only_bind(ledger):
                code, _out, err = await run_cli("--config", str(cfg), "sync")
        else:
            ledger.chmod(0o400)
            code, _out, err = await run_cli("--config", str(cfg), "sync")
            ledger.chmod(0o600)
    assert code == 3, err
    assert f"ledger {ledger}: " in err and "readonly database" in err
    assert "read-only: check the owner, mode and mount" in err
    no_traceback(err)


async def test_a_full_state_volume_exits_3_and_the_next_pass_recovers(
    tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    state = tmpfs("state", "2m")
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = state_config(tmp_path, sim, state)
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err
        filler = fill(state)
        sim.generate(30, start=NOW - timedelta(minutes=30))
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 3, err
        assert str(state) in err and "full" in err, err
        assert "config" not in err.split("archiver: ", 1)[-1]  # not reported as bad config
        no_traceback(err)
        filler.unlink()
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err
        code, out, err = await run_cli("--config", str(cfg), "status", "--json")
        assert json.loads(out)["states"]["verified"] == 33, err
        code, out, err = await run_cli("--config", str(cfg), "audit", "verify")
        assert code == 0 and "chain intact" in out, out + err


def recordings(n: int, tag: str) -> list[Recording]:
    return [
        Recording(
            f"RE{tag}{i:030d}",
            "AC" + "0" * 32,
            None,
            NOW,
            1.0,
            "wav",
            {"padding": "x" * 2000},
        )
        for i in range(n)
    ]


async def test_a_failed_commit_reports_disk_full_not_a_failed_rollback(
    tmpfs: Callable[..., Path],
) -> None:
    state = tmpfs("state", "4m")
    async with Ledger(state / "l.sqlite3") as ledger:
        await ledger.upsert_listed(recordings(5, "A"), NOW.timestamp())
        filler = fill(state)
        with pytest.raises(LedgerError, match="database or disk is full") as err:
            await ledger.upsert_listed(recordings(300, "B"), NOW.timestamp())
        assert "cannot rollback" not in str(err.value)
        assert f"ledger {state / 'l.sqlite3'}: upsert listed failed" in str(err.value)
        assert not ledger.db.in_transaction
        filler.unlink()
        assert await ledger.upsert_listed(recordings(300, "B"), NOW.timestamp()) == (300, 0, [])
        assert sum((await ledger.counts()).values()) == 305


async def test_an_unexpected_error_is_logged_as_a_bug_and_exits_3(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err
        # a garbled first line, far from the checkpoint at the end: the pass runs, and the
        # daily manifests (which read the journal from the start) meet a line they cannot parse
        journal = tmp_path / "l.sqlite3.audit.jsonl"
        journal.write_bytes(b"garbled\n" + journal.read_bytes().split(b"\n", 1)[1])
        code, _out, err = await run_cli("--config", str(cfg), "--log-format", "json", "sync")
    assert code == 3, err
    lines = err.splitlines()
    assert lines[-1].startswith("archiver: unexpected error in 'sync' (a bug; the log has")
    [bug] = [json.loads(x) for x in lines if '"bug.unexpected_error"' in x]
    assert bug["command"] == "sync" and "Traceback (most recent call last)" in bug["exception"]
    no_traceback(err)
