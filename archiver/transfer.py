"""Transfer: every due recording from the source into the archive, verified, into the ledger.

A recording is streamed from the source straight into the archive (never whole in memory),
its stored size and SHA-256 compared with what was downloaded, its copy verified and its
sidecar written, and only then marked verified. A failure is charged to the recording with a
reason and a next try, unless it looks like everyone's (see :class:`Outage`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import structlog

from archiver.accounts import Accounts
from archiver.audit import Journal
from archiver.commit import GroupCommit
from archiver.config import SourceConfig
from archiver.copier import Copier, Copies
from archiver.copies import render_key
from archiver.errors import (
    MAYBE_SHARED,
    STOPS_PASS,
    AccountUnavailable,
    ArchiveConflict,
    ArchiverError,
    InvalidRecording,
    MediaNotReady,
    SourceUnavailable,
    StorageError,
    StorageUnavailable,
)
from archiver.hooks import NO_HOOKS, Hooks
from archiver.ledger import Ledger, Row, VerifiedCopy
from archiver.part import PassPart
from archiver.report import PassResult
from archiver.storage import Storage, StoredObject

log = structlog.get_logger("archiver.sync")

DEFAULT_RETRY_BASE = 60.0  # seconds before the first retry of a failed recording
DEFAULT_RETRY_CAP = 6 * 3600.0
DEFAULT_DUE_BATCH = 500
# consecutive recordings failing with an error that may be everyone's (5xx, throttling, no
# connection) before the pass calls it an outage: it stops, and charges none of them
DEFAULT_OUTAGE_STREAK = 3


def retry_delay(attempts: int) -> float:
    return float(min(DEFAULT_RETRY_BASE * 2 ** max(attempts - 1, 0), DEFAULT_RETRY_CAP))


class Transfers(PassPart):
    """Archives due recordings. One instance per Syncer; its download slots outlive passes."""

    def __init__(
        self,
        cfg: SourceConfig,
        key_template: str,
        accounts: Accounts,
        storage: Storage,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        journal: Journal | None,
        hooks: Hooks = NO_HOOKS,
        copier: Copies | None = None,
    ) -> None:
        super().__init__(accounts, storage, ledger, clock=clock, journal=journal, hooks=hooks)
        self.cfg = cfg
        self.key_template = key_template
        # who copies: this process (its download slots outlive passes), or a pool of workers
        self.copier = copier or Copier(self.source_for, storage, cfg.concurrency)
        self.on_progress: Callable[[PassResult, Row | None], None] | None = None
        self.due_total = 0  # recordings this pass set out to transfer (for progress)
        self.commits: GroupCommit | None = None  # the writer of the transfer_due running

    # ------------------------------------------------------------------ the batch

    async def transfer_due(self, result: PassResult, stopping: asyncio.Event) -> None:
        """Archive every row that is due now: ``concurrency`` downloads at a time.

        A recording gives its download slot back as soon as its body is in, so the next
        download starts while the archive makes the previous one durable; at most twice
        ``concurrency`` recordings are in flight, each holding no more than its backend buffers
        (1 MiB on local disk; up to ``multipart_threshold`` on S3).
        """
        limit = asyncio.Semaphore(2 * self.cfg.concurrency)
        self.due_total = await self.ledger.count_due(self.clock(), self.cfg.max_attempts)
        outage = Outage(self, result)
        self.commits = GroupCommit(self.ledger, self.journal, clock=self.clock)

        async def one(row: Row) -> None:
            try:
                if not (stopping.is_set() or outage.error or result.unavailable(row.account_sid)):
                    await self._attempt(row, result, outage)
            finally:
                limit.release()

        async with asyncio.TaskGroup() as writer:
            writer.create_task(self.commits.run())
            try:
                async with (
                    asyncio.TaskGroup() as tg,
                    aclosing(self._due_rows(stopping, outage, result)) as due,
                ):
                    async for row in due:
                        await limit.acquire()
                        if stopping.is_set() or outage.error is not None:
                            limit.release()
                            break
                        tg.create_task(one(row))
            finally:
                self.commits.close()  # the writer commits what is queued, then ends
        await outage.settle()

    async def _due_rows(
        self, stopping: asyncio.Event, outage: Outage, result: PassResult
    ) -> AsyncGenerator[Row]:
        """Due rows, oldest first within an account, the accounts taking turns (a backlog in
        one does not starve the rest); read in batches behind a cursor per account, so memory
        does not grow with the backlog. An account found unreachable drops out of the turn."""
        now, tries = self.clock(), self.cfg.max_attempts
        owners = await self.ledger.accounts_due(now, tries)
        outage.owners = set(owners)
        batch = DEFAULT_DUE_BATCH if len(owners) <= 1 else max(DEFAULT_DUE_BATCH // len(owners), 8)
        # a single owner (or none: nothing due) is read without the account filter, as always
        turns: dict[str | None, _Turn] = {
            sid: _Turn() for sid in (owners if len(owners) > 1 else [None])
        }
        while turns and not stopping.is_set() and outage.error is None:
            for sid in list(turns):
                turn = turns[sid]
                if sid is not None and result.unavailable(sid):  # unreachable, or its outage
                    del turns[sid]
                    continue
                if not turn.rows:
                    rows = await self.ledger.due(self.clock(), tries, batch, turn.after, sid)
                    if not rows:
                        del turns[sid]
                        continue
                    last = rows[-1]
                    assert last.date_created is not None  # due rows are never invalid items
                    turn.after = (last.date_created.timestamp(), last.sid)
                    turn.rows.extend(rows)
                yield turn.rows.popleft()
                if stopping.is_set() or outage.error is not None:
                    return

    async def _attempt(self, row: Row, result: PassResult, outage: Outage) -> None:
        self.hooks.transfer_started()
        try:
            await self.archive_one(row, result)
        except AccountUnavailable as exc:  # the account's, not the recording's: uncharged
            self.account_down(exc, result)
        except STOPS_PASS:
            raise
        except MAYBE_SHARED as exc:  # everyone's fault or this recording's: the next ones tell
            await outage.failed(row, exc)
        except (ArchiverError, ValueError) as exc:
            await self.fail(row, exc, result)
        else:
            await outage.succeeded(row)
        finally:
            self.hooks.transfer_ended()
            if self.on_progress is not None:
                self.on_progress(result, row)

    # ------------------------------------------------------------- one recording

    async def archive_one(self, row: Row, result: PassResult) -> None:
        rec = row.recording()
        key = render_key(self.key_template, rec)
        archived_at = self.clock()
        fresh = not (row.state == "archived" and row.size is not None and row.sha256 is not None)
        if fresh:
            copy = await self.copier.copy(rec, key, archived_at)
        else:  # archived before a restart: verify only
            assert row.size is not None and row.sha256 is not None
            copy = StoredObject(key, row.size, row.sha256)
            await self.copier.complete(rec, copy, archived_at)
        # counted only once its journal lines and ledger row are durable (group commit)
        if self.commits is None:
            raise RuntimeError("archive_one runs inside transfer_due, which owns the writer")
        await self.commits.verified(
            VerifiedCopy(rec.sid, key, copy.size, copy.sha256, archived_at, fresh)
        )
        if fresh:
            result.archived += 1
            result.bytes += copy.size
        result.verified += 1
        self.hooks.recording_verified(copy.size)
        log.info("recording.verified", sid=rec.sid, key=key, size=copy.size, sha256=copy.sha256)

    # ------------------------------------------------------------------ failures

    async def fail(self, row: Row, exc: Exception, result: PassResult) -> None:
        """Charge ``exc`` to ``row``: a reason, an attempt, and a next try (or permanent)."""
        now = self.clock()
        attempts = row.attempts + 1
        reason = f"{type(exc).__name__}: {exc}"
        count = True
        permanent = isinstance(exc, ArchiveConflict | InvalidRecording | ValueError)
        grace = self.cfg.media_grace.total_seconds()
        if isinstance(exc, MediaNotReady):
            discovered_for = now - (row.date_created.timestamp() if row.date_created else now)
            if discovered_for < grace:
                count = False  # the platform may still be writing it: not an attempt yet
                attempts = row.attempts
        if count and attempts >= self.cfg.max_attempts:
            permanent = True
        delay = retry_delay(max(attempts, 1))
        if not count:
            delay = min(delay, grace / 4 or delay)
        await self.ledger.mark_failed(
            row.sid,
            reason,
            now=now,
            permanent=permanent,
            next_attempt_at=None if permanent else now + delay,
            count_attempt=count,
        )
        self._audit("failed", sid=row.sid, reason=reason, attempts=attempts, permanent=permanent)
        result.failed += 1
        result.failures.append((row.sid, reason))
        self.hooks.recording_failed(type(exc).__name__)
        (log.error if permanent else log.warning)(
            "recording.failed",
            sid=row.sid,
            reason=reason,
            attempts=attempts,
            permanent=permanent,
            retry_in_s=None if permanent else round(delay),
        )


class Outage:
    """Tells a recording's own fault from everyone's.

    A recording that fails with an error that may be shared (5xx, throttling, no connection)
    is charged only once a later recording succeeds: then the fault was its own. When
    ``DEFAULT_OUTAGE_STREAK`` of them fail in a row, the source or the archive is down for
    everyone: the pass stops taking work and none of them is charged (their rows keep their
    state, so nothing is lost and the attempt budget is not spent on an outage).

    With several accounts, the source's streak is counted per account: an account whose
    recordings keep failing is that account's outage (reported, its work left uncharged for a
    later pass) while the others go on; only when every account with work is down, or the
    archive fails (everyone's, whatever the account), does the pass stop.
    """

    def __init__(self, transfers: Transfers, result: PassResult) -> None:
        self._transfers = transfers
        self._result = result
        self._many = transfers.accounts.many
        self._pending: dict[str | None, list[tuple[Row, ArchiverError]]] = {}
        self._down: set[str | None] = set()
        self.owners: set[str | None] = set()  # the accounts with work this pass
        self.error: ArchiverError | None = None

    def _key(self, row: Row, exc: ArchiverError | None = None) -> str | None:
        if not self._many or isinstance(exc, StorageError):
            return None
        return row.account_sid

    async def failed(self, row: Row, exc: ArchiverError) -> None:
        key = self._key(row, exc)
        pending = self._pending.setdefault(key, [])
        pending.append((row, exc))
        if len(pending) < DEFAULT_OUTAGE_STREAK or key in self._down or self.error is not None:
            return
        if key is not None:  # one account of several
            self._down.add(key)
            problem = f"{len(pending)} recordings in a row failed: {exc}"
            self._result.account_failed(key, problem)
            log.error("account.outage", account=key, error=str(exc), failed_in_a_row=len(pending))
            if self.owners and self.owners <= self._down:
                self.error = exc  # every account with work is down: the source is
            return
        self.error = exc
        log.error(
            "pass.outage",
            error=str(exc),
            error_type=type(exc).__name__,
            failed_in_a_row=len(pending),
        )

    async def succeeded(self, row: Row) -> None:
        if self.error is None:
            await self._charge(self._key(row))
            if self._many:
                await self._charge(None)  # an archive failure before this success was its own

    async def settle(self) -> None:
        """At the end of the transfers: charge what failed unless it was an outage, which
        then stops the pass (exit 3) with the last error."""
        if self.error is None:
            for key in list(self._pending):
                if key not in self._down:
                    await self._charge(key)
            return
        kind = StorageUnavailable if isinstance(self.error, StorageError) else SourceUnavailable
        where = "the archive" if kind is StorageUnavailable else "the source"
        left = sum(len(p) for p in self._pending.values())
        raise kind(
            f"{where} failed for {left} recordings in a row, so the pass stopped "
            f"and charged none of them: {self.error}"
        )

    async def _charge(self, key: str | None) -> None:
        pending = self._pending.pop(key, [])
        for row, exc in pending:
            if getattr(exc, "throttled", False):
                # the platform asked us to slow down (429): nothing failed, so nothing is
                # charged; the recording stays due for the next pass, at a lower concurrency
                self._result.throttled += 1
                log.warning("recording.throttled", sid=row.sid, error=str(exc))
                continue
            await self._transfers.fail(row, exc, self._result)


@dataclass
class _Turn:
    """One account's place in the round of due rows: the batch read, and where it ended."""

    rows: deque[Row] = field(default_factory=deque)
    after: tuple[float, str] | None = None
