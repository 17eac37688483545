"""``archiver sync --dry-run``: the real listing into a throwaway ledger copy; it reports what a
sync would archive and delete, and writes nothing (ledger, journal, archive, lock: byte for
byte the same), fetches no media and deletes nothing."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the ledger, its journal and lock, the archive), by path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _media_or_delete(sim: RestcommSimulator, since: int) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in sim.requests[since:]
        if r.method != "GET" or r.path.endswith((".wav", ".mp4"))
    ]


async def test_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(12, start=NOW - timedelta(hours=3))
        plain = write_config(tmp_path, sim, name="plain.toml")
        deleting = write_config(
            tmp_path, sim, name="deleting.toml", delete={"enabled": True, "min_age": "0s"}
        )
        code, _out, err = await run_cli("--config", str(plain), "sync")
        assert code == 0, err
        sim.generate(5, start=NOW - timedelta(minutes=30))
        before, asked = _files(tmp_path), len(sim.requests)

        code, out, err = await run_cli("--config", str(deleting), "sync", "--dry-run")

        assert code == 1, out + err  # 5 not yet archived: a sync would have work to do
        assert out.startswith(
            "dry run      would archive 5 (sizes known once downloaded), would delete 12, "
            "listing complete\n"
        ), out
        assert out.count("  would archive RE") == 5 and "... and 2 more" in out
        assert "would delete 12" in out and "each after its archived copy checks again" in out
        assert _files(tmp_path) == before  # ledger, journal, lock, archive: byte for byte
        assert sim.requests[asked:], "the dry run listed nothing"
        assert _media_or_delete(sim, asked) == []  # listing only: no media, no DELETE
        assert sim.deleted == []

        # what it predicted is what a sync then does
        code, out, err = await run_cli("--config", str(plain), "sync")
        assert code == 0, err
        assert "listed 17 (new 5, invalid 0), archived 5, verified 5" in out
        code, out, err = await run_cli("--config", str(plain), "sync", "--dry-run")
    assert code == 0, out + err  # nothing would be left to do
    assert out.startswith("dry run      would archive 0 (0.0 MB), would delete 0, listing complete")
    assert "deletion is disabled" in out


async def test_dry_run_beside_a_writer_reads_through_its_wal(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(4, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err
        ledger = tmp_path / "l.sqlite3"
        writer = sqlite3.connect(ledger)  # as a running daemon holds it: a -wal beside it
        try:
            writer.execute("PRAGMA wal_autocheckpoint=0")
            writer.execute("UPDATE recordings SET state='discovered' WHERE rowid=1")
            writer.commit()  # in the WAL only, not yet in the main file
            assert (tmp_path / "l.sqlite3-wal").stat().st_size > 0
            main = ledger.read_bytes()
            code, out, err = await run_cli("--config", str(cfg), "sync", "--dry-run")
            assert ledger.read_bytes() == main
        finally:
            writer.close()
    assert code == 1, out + err
    assert out.startswith("dry run      would archive 1 ("), out  # the WAL's change was seen


async def test_dry_run_without_a_source_exits_3_and_creates_no_ledger(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    code, out, err = await run_cli("--config", str(cfg), "sync", "--dry-run")
    assert code == 3, out + err
    assert "listing incomplete" in out
    assert not (tmp_path / "l.sqlite3").exists() and not (tmp_path / "archive").exists()
