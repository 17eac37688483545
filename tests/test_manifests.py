"""Daily audit manifests (archiver/audit.py): each closed day of the journal is copied into
the archive, byte for byte."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from archiver.audit import Head
from archiver.config import Config, journal_path
from archiver.ledger import Ledger
from archiver.simulator import RestcommSimulator
from tests.support.archive import events
from tests.support.cli import run_cli
from tests.support.config import cli_config
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


async def first_day_copied(sim: RestcommSimulator, cfg: Config) -> Config:
    """A pass on NOW's day, then one three days later: that first day is closed and copied."""
    sim.generate(3, start=NOW - timedelta(hours=1))
    h = Harness(cfg)
    await h.pass_()
    h.clock = lambda: NOW.timestamp() + 3 * DAY
    await h.pass_()
    return cfg


def forge(journal: Path) -> Head:
    """Rewrite the journal's first line and chain every later one again, as someone with the
    state volume could: a consistent chain that tells another story."""
    lines = journal.read_bytes().splitlines()
    docs = [json.loads(raw) for raw in lines]
    docs[0]["sid"] = "RE" + "f" * 32
    out: list[bytes] = []
    for i, doc in enumerate(docs):
        if i:
            doc["prev"] = hashlib.sha256(out[-1]).hexdigest()
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    journal.write_bytes(b"\n".join(out) + b"\n")
    return Head(docs[-1]["seq"], hashlib.sha256(out[-1]).hexdigest())


async def test_audit_verify_finds_a_consistently_rewritten_journal_by_its_manifests(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    cfg = await first_day_copied(sim, config_for(sim))
    conf = cli_config(cfg, sim)
    code, out, err = await run_cli("--config", str(conf), "audit", "verify")
    assert code == 0, out + err
    assert "chain intact" in out and "1 day(s) match the archive's copies, 0 differ" in out
    head = forge(Path(journal_path(cfg)))
    async with Ledger(cfg.ledger.path) as ledger:
        await ledger.set_audit_checkpoint(head.encode())  # the forger updates the ledger too
    code, out, err = await run_cli("--config", str(conf), "audit", "verify")
    assert code == 1, out + err
    assert "chain intact" in out  # the chain alone cannot tell
    day = events(cfg)[0]["ts"]
    assert isinstance(day, str)
    assert f"manifest {day[:10]}: DIFFERS" in out and "0 day(s) match" in out, out
    code, out, err = await run_cli("--config", str(conf), "audit", "verify", "--journal-only")
    assert code == 0 and "manifests" not in out, out + err


async def test_audit_verify_reports_a_manifest_missing_from_the_archive(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    cfg = await first_day_copied(sim, config_for(sim))
    (manifest,) = (Path(cfg.archive.path) / "audit").rglob("*.jsonl")
    manifest.unlink()
    code, out, err = await run_cli("--config", str(cli_config(cfg, sim)), "audit", "verify")
    assert code == 1, out + err
    assert "MISSING from the archive" in out and "1 missing" in out, out
