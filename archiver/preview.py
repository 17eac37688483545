"""A dry run of ``sync``: what a pass would archive and delete, found without writing anything.

The listing is the real one (the same rules, the same pages from the source), but it fills a
throwaway copy of the ledger in a private temp folder, taken with SQLite's backup API from a
read-only connection; the copy is deleted afterwards. Nothing else is opened: not the journal,
not the archive (opening a backend sweeps a dead writer's leftovers), no media is fetched and
nothing is deleted. The real ledger file is never opened for writing:

* when no ``-wal`` file is beside it (no connection has it open), it is read as ``immutable``,
  which creates no ``-wal``/``-shm`` either; if one appears meanwhile (a writer started), or the
  file changed, the copy is taken again through the writer's WAL;
* when a ``-wal`` is there (the daemon runs), it is read ``mode=ro`` through that WAL: one
  consistent snapshot, as ``archiver backup`` takes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from archiver.accounts import Accounts
from archiver.config import Config, parse_timezone
from archiver.errors import AccountUnavailable, LedgerError
from archiver.hooks import NO_HOOKS, Hooks
from archiver.ledger import SQLITE_HEADER, Ledger, Outstanding, Row
from archiver.listing import ScanResult, lister_for, zone_slack
from archiver.report import AccountPass, PassResult
from archiver.source import Source
from archiver.sync import listing_since

DEFAULT_SAMPLE = 10  # recordings named in each list of the report
DEFAULT_DUE_BATCH = 500


@dataclass
class Preview:
    """What a ``sync`` now would do, and what it would leave (the exit code's facts)."""

    since: datetime
    scan: ScanResult
    outstanding: Outstanding
    would_archive: int = 0
    known_bytes: int = 0  # of the recordings to archive whose size the ledger knows
    unknown_size: int = 0  # the others (new ones: their size is known once downloaded)
    would_delete: int = 0
    delete_note: str = ""
    to_archive: list[Row] = field(default_factory=list)  # the first DEFAULT_SAMPLE
    to_delete: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """``sync``'s rule for exit 0, applied to the ledger as the listing leaves it: nothing
        failed, waiting, untried or unverified, and a complete listing."""
        return self.scan.complete and self.scan.invalid == 0 and self.outstanding.total == 0


def _snapshot(path: Path, into: Path) -> None:
    """A consistent copy of the ledger at ``path`` into ``into``, writing nothing beside it."""
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        before = os.stat(path)
        _backup(f"{path.resolve().as_uri()}?immutable=1", into)
        after = os.stat(path)
        if not wal.exists() and (before.st_mtime_ns, before.st_size) == (
            after.st_mtime_ns,
            after.st_size,
        ):
            return
        into.unlink()  # a writer opened it meanwhile: read through its WAL instead
    _backup(f"{path.resolve().as_uri()}?mode=ro", into)


def _backup(uri: str, into: Path) -> None:
    source = sqlite3.connect(uri, uri=True)
    try:
        target = sqlite3.connect(into)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _check_file(path: Path) -> None:
    """The checks a writer makes on opening: an empty or foreign file is no ledger."""
    with path.open("rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        what = "an empty (0-byte) file" if not header else f"not a SQLite database ({header!r})"
        raise LedgerError(f"the ledger {path} is {what}; fix ledger.path or restore a backup")


def _take(real: Path, copy: Path) -> None:
    if real.exists():  # else the copy starts empty, as a first sync's ledger would
        _check_file(real)
        _snapshot(real, copy)


@asynccontextmanager
async def ledger_copy(path: str) -> AsyncIterator[Ledger]:
    """A throwaway copy of the ledger at ``path`` (an empty one when there is none yet),
    open, in a private temp folder removed on the way out."""
    with tempfile.TemporaryDirectory(prefix="archiver-dry-run-") as tmp:
        copy = Path(tmp) / "ledger.sqlite3"
        try:
            await asyncio.to_thread(_take, Path(path), copy)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"cannot read the ledger {path} for a dry run: {exc}") from exc
        async with Ledger(copy) as ledger:
            yield ledger


async def preview(
    cfg: Config,
    source: Source,
    ledger: Ledger,
    *,
    clock: Callable[[], float],
    hooks: Hooks = NO_HOOKS,
) -> Preview:
    """List into ``ledger`` (a throwaway copy) as a pass would; report what it would do."""
    now = datetime.fromtimestamp(clock(), UTC)
    slack = zone_slack(
        parse_timezone(cfg.source.server_timezone, "source.server_timezone"), now.year
    )
    accounts = Accounts(cfg.source, source, ledger, clock=clock)
    listed = PassResult()
    sids = await accounts.resolve()
    starts: list[datetime] = []
    for sid in sids:  # one after another: a preview is not in a hurry
        view = accounts.client(sid)
        start = await listing_since(cfg.source, ledger, now, sid)
        starts.append(start)
        lister = lister_for(view)(
            view,
            ledger,
            page_size=cfg.source.page_size,
            zone_slack=slack,
            clock=clock,
            journal=None,
            hooks=hooks,
        )
        part = listed.accounts.setdefault(sid, AccountPass())
        try:
            part.scan = await lister.scan(start)
        except AccountUnavailable as exc:
            if len(sids) == 1:
                raise
            part.problem = str(exc)
            part.scan = ScanResult(complete=False, reason=str(exc), unreachable=True)
    listed.merge_scans()
    since, scan = min(starts), listed.scan
    max_attempts = cfg.source.max_attempts
    found = Preview(since, scan, await ledger.outstanding(clock(), max_attempts))
    after: tuple[float, str] | None = None
    while rows := await ledger.due(clock(), max_attempts, DEFAULT_DUE_BATCH, after):
        for row in rows:
            found.would_archive += 1
            if row.size is None:
                found.unknown_size += 1
            else:
                found.known_bytes += row.size
            if len(found.to_archive) < DEFAULT_SAMPLE:
                found.to_archive.append(row)
        last = rows[-1]
        assert last.date_created is not None  # due rows are never invalid items
        after = (last.date_created.timestamp(), last.sid)
    _deletions(cfg, found, await _deletable(cfg, ledger, clock()))
    return found


async def _deletable(cfg: Config, ledger: Ledger, now: float) -> list[Row]:
    if not cfg.delete.enabled or cfg.delete.max_per_pass == 0:
        return []
    return await ledger.deletable(now - cfg.delete.min_age.total_seconds(), cfg.delete.max_per_pass)


def _deletions(cfg: Config, found: Preview, rows: list[Row]) -> None:
    found.would_delete = len(rows)
    found.to_delete = rows[:DEFAULT_SAMPLE]
    d = cfg.delete
    if not d.enabled:
        found.delete_note = "deletion is disabled ([delete] enabled = false)"
    elif d.max_per_pass == 0:
        found.delete_note = "deletion is off ([delete] max_per_pass = 0)"
    else:
        notes = ["each after its archived copy checks again"]
        if d.dry_run:
            notes.append("[delete] dry_run: a sync would journal would-delete, not delete")
        if d.min_age.total_seconds() == 0 and found.would_archive:
            left = max(d.max_per_pass - len(rows), 0)
            notes.append(f"and up to {min(left, found.would_archive)} archived in the pass itself")
        found.delete_note = "; ".join(notes)
