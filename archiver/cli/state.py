"""The commands that keep the state: backup, ledger rebuild, retry."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import structlog

from archiver.audit import (
    Journal,
)
from archiver.backup import take_backup
from archiver.cli.codes import EXIT_FAILURES, EXIT_OK
from archiver.config import (
    Config,
    journal_path,
)
from archiver.errors import ConfigError
from archiver.ledger import Ledger
from archiver.rebuild import rebuild_ledger
from archiver.storage import open_storage

log = structlog.get_logger("archiver.cli")


async def cmd_backup(cfg: Config, to: str) -> int:
    if not Path(cfg.ledger.path).exists():
        raise ConfigError("ledger.path", f"no ledger at {cfg.ledger.path} to back up")
    done = await take_backup(cfg.ledger.path, Path(journal_path(cfg)), Path(to))
    seq = done.checkpoint.seq if done.checkpoint else 0
    print(
        f"backup       {done.folder}: ledger {done.ledger_bytes / 1e6:.1f} MB, journal "
        f"{done.journal_bytes / 1e6:.1f} MB (holds the ledger's checkpoint, seq {seq})"
    )
    return EXIT_OK


async def cmd_ledger_rebuild(cfg: Config) -> int:
    path = Path(cfg.ledger.path)
    if path.exists():
        raise ConfigError(
            "ledger.path",
            f"{path} exists: 'ledger rebuild' writes a new ledger and never touches one that is "
            f"there. If it is damaged, move it aside first (mv {path} {path}.damaged) or restore "
            "a backup (README 'Backup and restore')",
        )
    async with (
        Ledger(path) as ledger,
        Journal(journal_path(cfg)) as journal,
        open_storage(cfg.archive) as storage,
    ):
        result = await rebuild_ledger(storage, ledger, time.time)
        journal.append(
            "ledger-rebuilt",
            rows=result.rows,
            without_sidecar=result.orphans,
            unusable=result.unusable,
            archive=storage.describe(),
        )
        await ledger.set_audit_checkpoint((await journal.sync()).encode())
    print(
        f"rebuilt      {path}: {result.rows} rows from sidecars in {storage.describe()}, "
        f"{result.orphans} without a sidecar, {result.unusable} unusable"
    )
    for key, why in result.problems:
        print(f"  skipped    {key}: {why}")
    if len(result.problems) < result.orphans + result.unusable:
        print(f"  ... and {result.orphans + result.unusable - len(result.problems)} more (the log)")
    print(
        "next         'archiver sync' verifies every copy again and archives from the source "
        "whatever the archive lacks (status shows them 'archived' until then)"
    )
    return EXIT_OK if result.orphans + result.unusable == 0 else EXIT_FAILURES


async def cmd_retry(cfg: Config, sids: list[str]) -> int:
    code = EXIT_OK
    async with Ledger(cfg.ledger.path) as ledger:
        for sid in sids:
            row = await ledger.get(sid)
            if row is None:
                print(f"unknown      {sid}: the ledger has no such recording", file=sys.stderr)
                code = EXIT_FAILURES
            elif row.state != "failed":
                print(f"not failed   {sid}: it is {row.state}; nothing to retry")
        n = await ledger.retry_failed(sids or None, time.time())
    print(f"{n} failed recording(s) will be retried on the next pass")
    return code
