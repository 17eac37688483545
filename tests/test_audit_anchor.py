"""An audit trail anchored outside the file (issue 13, Trust II): the ledger's checkpoint must
still be in the journal; a cut, deleted or rewritten journal is refused until an operator
records the break, and `audit verify` accepts only breaks so recorded."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.audit import (
    Head,
    Journal,
    checkpoint_problem,
    reverse_lines,
)
from archiver.cli import main
from archiver.config import Config, journal_path
from archiver.ledger import Ledger
from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli
from tests.support.config import cli_config
from tests.support.constants import NOW


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real CLI: in a thread for the audit commands, a child process for passes (they
    install signal handlers, which only a main thread may)."""
    if "audit" not in args:
        return await run_cli(*args)
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def checkpoint_of(cfg: Config) -> Head:
    async with Ledger(cfg.ledger.path) as ledger:
        head = Head.decode(await ledger.get_meta("audit_head"))
    assert head is not None
    return head


@pytest.fixture
async def synced(
    sim: RestcommSimulator, config_for: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> tuple[Config, Path, Path]:
    """A config whose first sync archived 4 recordings (8 journal lines)."""
    sim.generate(4, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    conf = cli_config(cfg, sim)
    code, _out, err = await cli(capsys, "--config", str(conf), "sync")
    assert code == 0, err
    return cfg, conf, Path(journal_path(cfg))


async def test_a_deleted_journal_is_refused_until_the_break_is_recorded(
    synced: tuple[Config, Path, Path], sim: RestcommSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, conf, journal = synced
    head = await checkpoint_of(cfg)
    assert head.seq == 8
    journal.unlink()
    sim.generate(2, start=NOW - timedelta(minutes=30))
    for command in (["sync"], ["reconcile", "--since", "2026-11-20"]):
        code, _out, err = await cli(capsys, "--config", str(conf), *command)
        assert code == 3, err
        assert f"the audit journal {journal} no longer holds the ledger's checkpoint" in err
        assert "seq 8" in err and "the file does not exist" in err
        assert "archiver audit recover" in err and "Traceback" not in err
        assert not journal.exists()  # never started anew behind the operator's back
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 1 and "MISSING" in out and "seq 8" in out

    code, out, err = await cli(
        capsys, "--config", str(conf), "audit", "recover", "--reason", "state disk replaced"
    )
    assert code == 0, err
    assert "recorded a chain break at seq 9: the file did not exist" in out
    first = json.loads(journal.read_bytes().splitlines()[0])
    assert first["event"] == "chain-break" and first["reason"] == "state disk replaced"
    assert first["checkpoint"] == head.encode() and first["prev"] == head.sha256
    assert first["seq"] == 9 and first["found"] == "the file did not exist"

    code, out, err = await cli(capsys, "--config", str(conf), "sync")
    assert code == 0 and "archived 2" in out, err
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 0, out
    assert "recorded chain break at line 1" in out and "state disk replaced" in out
    assert "chain intact (ledger checkpoint seq 13, 2 segments)" in out
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "recover", "--reason", "x")
    assert code == 0 and "nothing to recover" in out
    assert journal.read_bytes().count(b"chain-break") == 1


async def test_a_cut_journal_is_refused_and_recovery_appends_to_what_is_left(
    synced: tuple[Config, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, conf, journal = synced
    head = await checkpoint_of(cfg)
    lines = journal.read_bytes().splitlines(keepends=True)
    kept = b"".join(lines[:5])
    journal.write_bytes(kept)
    code, _out, err = await cli(capsys, "--config", str(conf), "sync")
    assert code == 3 and "seq 8" in err and "it ends at seq 5" in err, err
    assert journal.read_bytes() == kept  # refused, untouched
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 1 and "journal ends before the checkpoint (seq 8)" in out

    code, out, err = await cli(
        capsys, "--config", str(conf), "audit", "recover", "--reason", "restored an old backup"
    )
    assert code == 0 and "recorded a chain break at seq 9" in out, err
    data = journal.read_bytes()
    assert data.startswith(kept)  # the lines that survived stay where they were
    brk = json.loads(data.splitlines()[5])
    assert brk["follows"] == f"5:{line_sha(lines[4])}"
    assert brk["checkpoint"] == head.encode()
    code, out, err = await cli(capsys, "--config", str(conf), "sync")
    assert code == 0, err
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 0 and "recorded chain break at line 6" in out and "2 segments" in out


def line_sha(raw: bytes) -> str:
    return hashlib.sha256(raw.rstrip(b"\n")).hexdigest()


async def test_a_rewritten_journal_is_kept_aside_and_a_new_segment_started(
    synced: tuple[Config, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _cfg, conf, journal = synced
    lines = journal.read_bytes().splitlines(keepends=True)
    forged = lines[-1].replace(b'"seq":8,', b'"seq":8,"x":1,')
    assert forged != lines[-1]
    journal.write_bytes(b"".join([*lines[:-1], forged]))  # the checkpoint line itself
    code, _out, err = await cli(capsys, "--config", str(conf), "sync")
    assert code == 3 and "its line with seq 8 has sha256" in err and "rewritten" in err, err

    # an older line rewritten, the checkpoint intact: archiving goes on, verify still sees it
    edited = lines[2].replace(b'"seq":3,', b'"seq":3,"x":1,')
    assert edited != lines[2]
    damaged = b"".join([*lines[:2], edited, *lines[3:]])
    journal.write_bytes(damaged)
    code, _out, err = await cli(capsys, "--config", str(conf), "sync")
    assert code == 0, err
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 1 and "BROKEN at line 4" in out
    before = journal.read_bytes()

    code, out, err = await cli(
        capsys, "--config", str(conf), "audit", "recover", "--reason", "line 3 edited; ticket 42"
    )
    assert code == 0, err
    [aside] = journal.parent.glob(f"{journal.name}.damaged-*")
    assert aside.read_bytes() == before  # the evidence, untouched
    assert f"kept, untouched, at {aside}" in out
    brk = json.loads(journal.read_bytes())
    assert brk["moved_to"] == str(aside) and "line 4: hash chain broken" in brk["found"]
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 0 and "2 segments" in out


async def test_verify_reports_a_break_nobody_recorded_even_next_to_a_forged_one(
    synced: tuple[Config, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, conf, journal = synced
    head = await checkpoint_of(cfg)
    lines = journal.read_bytes().splitlines(keepends=True)
    # a chain-break line that claims to follow something other than the lines before it
    fake = {
        "seq": 9,
        "ts": NOW.isoformat(),
        "event": "chain-break",
        "reason": "cover-up",
        "checkpoint": head.encode(),
        "found": "nothing",
        "follows": "3:" + "0" * 64,
        "prev": head.sha256,
    }
    journal.write_bytes(b"".join([*lines[:4], json.dumps(fake).encode() + b"\n"]))
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 1 and "BROKEN at line 5: hash chain broken" in out


async def test_lines_after_the_checkpoint_from_a_crashed_pass_are_accepted(
    synced: tuple[Config, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _cfg, conf, journal = synced
    # a pass that journaled and died before its checkpoint reached the ledger, mid-line
    async with Journal(journal) as j:
        j.append("archived", sid="RE-crash", size=1)
        j.append("verified", sid="RE-crash", size=1)
    with journal.open("ab") as fh:
        fh.write(b'{"seq":11,"ts":"')
    code, _out, err = await cli(capsys, "--config", str(conf), "sync")
    assert code == 0, err
    code, out, _err = await cli(capsys, "--config", str(conf), "audit", "verify")
    assert code == 0 and "chain intact (ledger checkpoint seq 10)" in out


def test_the_checkpoint_is_found_reading_backwards_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    lines = [json.dumps({"seq": n, "pad": "x" * (n * 7 % 50)}).encode() + b"\n" for n in range(60)]
    # seq 55 twice: a forward scan meets the first (a different line), backwards the second
    early = json.dumps({"seq": 55, "pad": "early"}).encode() + b"\n"
    path.write_bytes(early + b"".join(lines))
    checkpoint = Head(55, line_sha(lines[55]))
    for block in (1, 7, 64, 65536):
        assert checkpoint_problem(path, checkpoint, block) is None
        got = list(reverse_lines(path, block))
        assert got == [*reversed(lines), early]
    # an unreadable line after the checkpoint: the scan from the start takes over
    path.write_bytes(b"".join(lines[:56]) + b"garbage\n" + b"".join(lines[56:]))
    assert checkpoint_problem(path, checkpoint, 64) is None
    path.write_bytes(b"".join(lines[:50]))
    assert checkpoint_problem(path, checkpoint) == (
        "it ends at seq 49: lines were cut from its end, or it was replaced"
    )
    path.write_bytes(b"")
    assert checkpoint_problem(path, checkpoint) == "it holds no complete line"
