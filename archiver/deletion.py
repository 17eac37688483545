"""Deletion: a source copy is deleted only once its archived copy checked again and matched.

Runs after the listing of the pass is complete (deleting while paging through offsets would
shift later pages and skip recordings), and only when ``delete.enabled``. Right before each
DELETE the archived audio is verified again and its sidecar read back; a copy that fails
either is never deleted: the audio is archived again, the sidecar restored from the ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import structlog

from archiver.accounts import Accounts
from archiver.audit import Journal
from archiver.config import DeleteConfig
from archiver.copies import put_sidecar, sidecar
from archiver.errors import STOPS_PASS, AccountUnavailable, ArchiverError
from archiver.hooks import NO_HOOKS, Hooks
from archiver.ledger import ArchivedRow, Ledger, Row
from archiver.part import PassPart
from archiver.report import PassResult
from archiver.retry import retrying
from archiver.storage import Storage
from archiver.storage.base import check_sidecar

log = structlog.get_logger("archiver.sync")


class Deletions(PassPart):
    """Deletes verified source copies, and keeps archived copies whole (sidecar repair)."""

    def __init__(
        self,
        cfg: DeleteConfig,
        accounts: Accounts,
        storage: Storage,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        journal: Journal | None,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        super().__init__(accounts, storage, ledger, clock=clock, journal=journal, hooks=hooks)
        self.cfg = cfg

    async def delete_verified(self, result: PassResult, stopping: asyncio.Event) -> None:
        """Delete the source copies whose archive is verified and old enough, re-checked
        right before each DELETE; at most ``max_per_pass``."""
        if not self.cfg.enabled or self.cfg.max_per_pass == 0:
            return
        if self.journal is not None:
            await self.journal.sync()  # the evidence of verification is durable first
        cutoff = self.clock() - self.cfg.min_age.total_seconds()
        for row in await self.ledger.deletable(cutoff, self.cfg.max_per_pass):
            if stopping.is_set():
                break
            if result.unavailable(row.account_sid):
                continue  # its account cannot be reached this pass
            copy = row.archived()
            if await self._copy_whole(copy, result):
                try:
                    await self._delete(copy, result)
                except AccountUnavailable as exc:
                    self.account_down(exc, result)

    async def _copy_whole(self, row: ArchivedRow, result: PassResult) -> bool:
        """Verify ``row``'s audio and sidecar again; False (journaled, counted, and the copy
        queued for mending) when either fails."""
        try:
            verify = partial(self.storage.verify, row.archive_key, row.size, row.sha256)
            await retrying("recheck", verify, sid=row.sid)
        except STOPS_PASS:
            raise
        except ArchiverError as exc:
            reason = f"archive re-check failed: {type(exc).__name__}: {exc}"
            self._skipped(row, reason, result)
            # the copy is gone or altered while the source still has it: archive it again
            await self.ledger.mark_failed(
                row.sid,
                reason,
                now=self.clock(),
                permanent=False,
                next_attempt_at=None,
                count_attempt=False,
            )
            return False
        try:
            await retrying("recheck_sidecar", partial(self.check_sidecar, row), sid=row.sid)
        except STOPS_PASS:
            raise
        except ArchiverError as exc:
            # the sidecar is part of the copy: restore it now, delete once it checks again
            await retrying("sidecar", partial(self.restore_sidecar, row, str(exc)), sid=row.sid)
            self._skipped(row, f"sidecar re-check failed: {exc}; rewritten from the ledger", result)
            return False
        return True

    def _skipped(self, row: ArchivedRow, reason: str, result: PassResult) -> None:
        self._audit("delete-skipped", sid=row.sid, reason=reason)
        log.error("delete.skipped", sid=row.sid, reason=reason)
        result.delete_skipped += 1
        self.hooks.deletion("skipped")

    async def _delete(self, row: ArchivedRow, result: PassResult) -> None:
        if self.cfg.dry_run:
            self._audit("would-delete", sid=row.sid, key=row.archive_key)
            log.info("delete.dry_run", sid=row.sid, key=row.archive_key)
            result.would_delete += 1
            self.hooks.deletion("dry_run")
            return
        source = self.source_for(row.recording.account_sid)
        existed = await retrying("delete", partial(source.delete, row.sid), sid=row.sid)
        self._audit("deleted", sid=row.sid, key=row.archive_key, already_gone=not existed)
        await self.ledger.mark_deleted(row.sid, self.clock())
        result.deleted += 1
        self.hooks.deletion("deleted" if existed else "already_gone")
        log.info("recording.deleted", sid=row.sid, already_gone=not existed)

    # --------------------------------------------------------------- repairs

    async def check_sidecar(self, row: Row | ArchivedRow) -> None:
        copy = row if isinstance(row, ArchivedRow) else row.archived()
        await check_sidecar(self.storage, copy.archive_key, copy.sid, copy.size, copy.sha256)

    async def queue_repair(self, row: Row, problem: str) -> bool:
        """``row``'s archived audio is missing or altered: archive it again on the next pass
        (journaled). False when the source no longer has it (deleted): then the row is marked
        lost, failed for good with the reason (journaled ``lost``), so ``status`` and the exit
        code say so until an operator acts."""
        if await self.ledger.mark_for_repair(row.sid, problem, self.clock()):
            self._audit("repair-needed", sid=row.sid, reason=problem)
            return True
        if await self.ledger.mark_lost(row.sid, problem, self.clock()):
            self._audit("lost", sid=row.sid, reason=problem)
            log.error("recording.lost", sid=row.sid, reason=problem)
        return False

    def record_tampering(self, row: Row, problem: str) -> None:
        """``row``'s copy is there but altered under the archive's Object Lock: journaled as
        evidence (``tamper-evidence``), logged as an error; never archived over."""
        self._audit("tamper-evidence", sid=row.sid, key=row.archive_key, reason=problem)
        log.error("recording.tampered", sid=row.sid, key=row.archive_key, reason=problem)

    async def restore_sidecar(self, row: Row | ArchivedRow, problem: str) -> None:
        """Write ``row``'s sidecar again from the ledger (its first ``archived_at`` kept),
        journaled with what was wrong with it."""
        copy = row if isinstance(row, ArchivedRow) else row.archived()
        archived_at = copy.archived_at if copy.archived_at is not None else self.clock()
        data = sidecar(copy.recording, copy.archive_key, copy.size, copy.sha256, archived_at)
        await put_sidecar(self.storage, copy.archive_key, data)
        self._audit(
            "sidecar-restored", sid=copy.sid, key=f"{copy.archive_key}.json", reason=problem
        )
