"""Online backup of the state: the ledger (SQLite's backup API) and the audit journal.

A backup is a new folder ``archiver-backup-<UTC time>`` holding ``ledger.sqlite3``,
``journal.jsonl`` and ``backup.json`` (sizes, SHA-256s, the ledger's journal checkpoint). It is
taken while the daemon runs: the ledger copy is one consistent snapshot, and the journal, which
only grows, is copied after it up to its last complete line, so it holds the snapshot's
checkpoint. A backup whose journal lacks that checkpoint is refused, never written half-true.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archiver import __version__
from archiver.audit import Head, checkpoint_problem
from archiver.errors import JournalError, LedgerError
from archiver.ledger import Ledger
from archiver.modes import DEFAULT_FILE_MODE, fsync_dir, make_dirs, open_new

DEFAULT_COPY_CHUNK = 1024 * 1024
DEFAULT_TAIL_WINDOW = 1024 * 1024


@dataclass(frozen=True)
class Backup:
    folder: Path
    checkpoint: Head | None
    ledger_bytes: int
    journal_bytes: int


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(DEFAULT_COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_complete_lines(src: Path, dst: Path) -> int:
    """Copy ``src`` up to its last newline (a line being appended is left out); fsynced."""
    fd = open_new(dst, os.O_WRONLY, DEFAULT_FILE_MODE)
    copied = 0
    try:
        if src.exists():
            with src.open("rb") as fh:
                end = os.fstat(fh.fileno()).st_size
                while copied < end:
                    chunk = fh.read(min(DEFAULT_COPY_CHUNK, end - copied))
                    if not chunk:
                        break
                    os.write(fd, chunk)
                    copied += len(chunk)
            with dst.open("rb") as fh:  # cut a partial last line (one being appended)
                window = min(copied, DEFAULT_TAIL_WINDOW)  # journal lines are far shorter
                fh.seek(copied - window)
                tail = fh.read(window)
                data_end = copied - window + tail.rfind(b"\n") + 1
            os.ftruncate(fd, data_end)
            copied = data_end
        os.fsync(fd)
    finally:
        os.close(fd)
    return copied


def _write_manifest(folder: Path, doc: dict[str, object]) -> None:
    path = folder / "backup.json"
    fd = open_new(path, os.O_WRONLY, DEFAULT_FILE_MODE)
    try:
        os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


async def take_backup(ledger_path: str, journal: Path, into: Path) -> Backup:
    """Back up the ledger and the journal into a new folder under ``into``."""
    now = datetime.now(UTC)
    folder = into / f"archiver-backup-{now:%Y%m%dT%H%M%S%fZ}"
    try:
        await asyncio.to_thread(make_dirs, into)
        await asyncio.to_thread(folder.mkdir, 0o700)
    except OSError as exc:
        raise LedgerError(f"cannot create the backup folder {folder}: {exc.strerror}") from exc
    ledger_copy = folder / "ledger.sqlite3"
    async with Ledger(ledger_path) as ledger:
        await ledger.backup_to(ledger_copy)
    async with Ledger(ledger_copy) as snapshot:  # opening it checks it (quick_check)
        checkpoint = Head.decode(await snapshot.audit_checkpoint())
    journal_copy = folder / "journal.jsonl"
    try:
        journal_bytes = await asyncio.to_thread(_copy_complete_lines, journal, journal_copy)
    except OSError as exc:
        raise JournalError(f"cannot copy the journal {journal}: {exc.strerror}") from exc
    if checkpoint is not None and checkpoint.seq > 0:
        problem = await asyncio.to_thread(checkpoint_problem, journal_copy, checkpoint)
        if problem is not None:
            raise JournalError(
                f"backup {folder} refused: the journal {journal} does not hold the ledger's "
                f"checkpoint (seq {checkpoint.seq}): {problem}; run 'archiver audit verify'"
            )
    ledger_bytes = ledger_copy.stat().st_size
    doc: dict[str, object] = {
        "created_at": now.isoformat(),
        "archiver": __version__,
        "ledger": {
            "from": str(ledger_path),
            "bytes": ledger_bytes,
            "sha256": await asyncio.to_thread(_sha256, ledger_copy),
        },
        "journal": {
            "from": str(journal),
            "bytes": journal_bytes,
            "sha256": await asyncio.to_thread(_sha256, journal_copy),
        },
        "checkpoint": checkpoint.encode() if checkpoint else None,
    }
    await asyncio.to_thread(_write_manifest, folder, doc)
    await asyncio.to_thread(fsync_dir, folder)
    return Backup(folder, checkpoint, ledger_bytes, journal_bytes)
