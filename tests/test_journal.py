"""The audit journal (archiver/audit.py): a hash chain that shows an edited, removed or
reordered line, reopened from its last line alone, checked by `archiver audit verify`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from archiver.audit import Head, Journal, last_line, verify_journal
from archiver.cli import main
from archiver.config import Config, journal_path
from archiver.ledger import Ledger
from archiver.simulator import RestcommSimulator
from tests.support.config import cli_config
from tests.support.constants import NOW
from tests.support.harness import Harness


async def test_journal_chain_detects_edits_removals_and_reorders(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(4, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    await Harness(cfg).pass_()
    path = Path(journal_path(cfg))
    async with Ledger(cfg.ledger.path) as ledger:
        head = Head.decode(await ledger.get_meta("audit_head"))
    assert head is not None and head.seq == 8  # archived + verified for each
    assert verify_journal(path, head) is None
    good = path.read_bytes()
    lines = good.splitlines(keepends=True)

    def broken(data: bytes) -> tuple[int, str] | None:
        path.write_bytes(data)
        return verify_journal(path, head)

    edited = lines[2].replace(b'"size":16044', b'"size":16045')
    assert edited != lines[2]
    assert broken(b"".join([*lines[:2], edited, *lines[3:]]))[0] == 4  # type: ignore[index]
    assert broken(b"".join([*lines[:3], *lines[4:]]))[0] == 4  # type: ignore[index]
    assert broken(b"".join([*lines[:3], lines[4], lines[3], *lines[5:]]))[0] == 4  # type: ignore[index]
    result = broken(b"".join(lines[:-1]))  # the tail cut off: only the checkpoint shows it
    assert result is not None and "checkpoint" in result[1]
    path.write_bytes(good)
    config_file = cli_config(cfg, sim)
    assert await asyncio.to_thread(main, ["--config", str(config_file), "audit", "verify"]) == 0
    path.write_bytes(b"".join([*lines[:2], edited, *lines[3:]]))
    assert await asyncio.to_thread(main, ["--config", str(config_file), "audit", "verify"]) == 1


def test_last_line_reads_backwards_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "j"
    for lines in ([], [b"a" * 20], [b"x", b"y" * 30, b"z" * 3], [b"p" * 9, b"q" * 7]):
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        for block in (1, 2, 7, 8, 64, 65536):
            assert last_line(path, block) == (lines[-1] + b"\n" if lines else b"")


async def test_journal_reopens_from_its_last_line_alone(tmp_path: Path) -> None:
    # Opening reads only the last line, so a journal of years opens as fast as a new one; a
    # damaged older line does not stop archiving, and `audit verify` still finds it.
    path = tmp_path / "audit.jsonl"
    async with Journal(path) as journal:
        for n in range(5):
            journal.append("archived", sid=f"RE{n}", size=n)
        head = journal.head
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([b"not json\n", *lines[1:]]))
    async with Journal(path) as journal:
        assert journal.head == head
        after = journal.append("verified", sid="RE4")
    assert after.seq == 6
    assert json.loads(path.read_bytes().splitlines()[-1])["prev"] == head.sha256
    path.write_bytes(b"".join([*lines, path.read_bytes().splitlines(keepends=True)[-1]]))
    assert verify_journal(path, after) is None  # the chain, with line 1 restored, holds
    path.write_bytes(b"".join([b"not json\n", *path.read_bytes().splitlines(True)[1:]]))
    assert verify_journal(path, after) == (1, "not JSON")
