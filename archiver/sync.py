"""One sync pass: list from the watermark, transfer what is due, delete what is verified.

The pass receives everything it talks to (source, storage, ledger, journal, clock, hooks)
from its caller, and is told in this order (each part its own module):

1. :mod:`archiver.listing` lists everything created since the watermark (less the lookback)
   into the ledger, complete by construction;
2. the watermark advances to the newest listed ``date_created`` (never past now, never
   backwards), only when the listing was complete and is durably in the ledger;
3. :mod:`archiver.transfer` archives and verifies every due recording;
4. :mod:`archiver.deletion` deletes source copies whose archive checks again (when enabled);
5. :func:`archiver.audit.write_manifests` copies closed days of the journal into the archive;
6. the journal is made durable and its head checkpointed in the ledger, and what is left
   (``outstanding``) decides the exit code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from archiver.accounts import Accounts
from archiver.audit import Journal, write_manifests
from archiver.config import Config, SourceConfig, parse_timezone
from archiver.copier import Copies
from archiver.deletion import Deletions
from archiver.errors import STOPS_PASS, AccountUnavailable, StorageError
from archiver.hooks import NO_HOOKS, Hooks
from archiver.ledger import Ledger, Row
from archiver.listing import ScanResult, lister_for, zone_slack
from archiver.report import AccountPass, PassResult
from archiver.source import Source
from archiver.storage import Storage
from archiver.transfer import Transfers

__all__ = ["PassResult", "ScanResult", "Syncer", "lag_seconds", "listing_since"]

log = structlog.get_logger("archiver.sync")

Clock = Callable[[], float]
DEFAULT_LIST_CONCURRENCY = 4  # accounts listed at once (each pages on its own)


class Syncer:
    """Runs passes. Holds no state between passes beyond what the ledger holds."""

    def __init__(
        self,
        cfg: Config,
        client: Source,
        storage: Storage,
        ledger: Ledger,
        *,
        clock: Clock = time.time,
        journal: Journal | None = None,
        hooks: Hooks = NO_HOOKS,
        copier: Copies | None = None,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.storage = storage
        self.ledger = ledger
        self.clock = clock
        self.journal = journal
        self.hooks = hooks
        self.zone_slack = zone_slack(
            parse_timezone(cfg.source.server_timezone, "source.server_timezone"),
            self.now().year,
        )
        self.accounts = Accounts(cfg.source, client, ledger, clock=clock)
        self.transfers = Transfers(
            cfg.source,
            cfg.archive.key_template,
            self.accounts,
            storage,
            ledger,
            clock=clock,
            journal=journal,
            hooks=hooks,
            copier=copier,  # None: copied in this process
        )
        self.deletions = Deletions(
            cfg.delete, self.accounts, storage, ledger, clock=clock, journal=journal, hooks=hooks
        )
        # the repair entry points of `verify --repair`
        self.queue_repair = self.deletions.queue_repair
        self.restore_sidecar = self.deletions.restore_sidecar

    def set_token(self, token: str) -> bool:
        """Use ``token`` from now on (a reloaded secret), here and in any worker; True when it
        changed."""
        changed = self.client.set_token(token)
        self.transfers.copier.set_token(token)
        return changed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    @property
    def on_progress(self) -> Callable[[PassResult, Row | None], None] | None:
        return self.transfers.on_progress

    @on_progress.setter
    def on_progress(self, hook: Callable[[PassResult, Row | None], None] | None) -> None:
        self.transfers.on_progress = hook

    @property
    def due_total(self) -> int:
        """Recordings this pass set out to transfer (for progress)."""
        return self.transfers.due_total

    async def since(self, account: str | None = None) -> datetime:
        """Where this pass lists ``account`` from (:func:`listing_since`)."""
        sid = account or self.client.account_sid
        return await listing_since(self.cfg.source, self.ledger, self.now(), sid)

    async def scan(
        self, since: datetime, until: datetime | None = None, account: str | None = None
    ) -> ScanResult:
        source = self.accounts.client(account)
        lister = lister_for(source)(
            source,
            self.ledger,
            page_size=self.cfg.source.page_size,
            zone_slack=self.zone_slack,
            clock=self.clock,
            journal=self.journal,
            hooks=self.hooks,
        )
        return await lister.scan(since, until)

    async def run_pass(
        self,
        stopping: asyncio.Event | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> PassResult:
        """One pass. With ``since`` (a reconcile) the watermarks are neither used nor moved."""
        stopping = stopping or asyncio.Event()
        result = PassResult(started_at=self.clock())
        try:
            accounts = await self.accounts.resolve()
            result.accounts_problem = self.accounts.refresh_problem
            await self._list(accounts, result, since, until, stopping)
            await self.transfers.transfer_due(result, stopping)
            await self.deletions.delete_verified(result, stopping)
            await self.write_manifests()
            await self.storage.sweep()  # what a crashed writer left, not only at start-up
        except* STOPS_PASS as group:
            raise _first(group) from None
        except* StorageError as group:
            raise _first(group) from None
        finally:
            if self.journal is not None:
                head = await self.journal.sync()
                await self.ledger.set_audit_checkpoint(head.encode())
        result.stopped_early = stopping.is_set()
        result.outstanding = await self.ledger.outstanding(
            self.clock(), self.cfg.source.max_attempts
        )
        result.finished_at = self.clock()
        await self.ledger.record_pass(
            result.summary(),
            result.finished_at,
            {sid: (p.scan.complete, p.problem) for sid, p in result.accounts.items()},
        )
        log.info("pass.finished", **result.summary())
        return result

    async def _list(
        self,
        accounts: list[str],
        result: PassResult,
        since: datetime | None,
        until: datetime | None,
        stopping: asyncio.Event,
    ) -> None:
        """List every account into the ledger, a few at a time; each moves its own watermark.
        An account that cannot be reached is its own problem unless it is the only one."""
        reconcile = since is not None
        slots = asyncio.Semaphore(DEFAULT_LIST_CONCURRENCY)
        unavailable: list[AccountUnavailable] = []
        if len(accounts) > 1:
            log.info("pass.started", accounts=len(accounts), reconcile=reconcile)

        async def one(sid: str) -> None:
            async with slots:
                part = result.accounts.setdefault(sid, AccountPass())
                if stopping.is_set():
                    part.scan.complete, part.scan.reason = False, "the pass was stopped"
                    return
                start = since if since is not None else await self.since(sid)
                if len(accounts) > 1:  # one line per account per pass: debug, not info
                    log.debug("account.listing", account=sid, since=start.isoformat())
                else:
                    log.info("pass.started", since=start.isoformat(), reconcile=reconcile)
                try:
                    part.scan = await self.scan(start, until, sid)
                except AccountUnavailable as exc:
                    unavailable.append(exc)
                    part.scan = ScanResult(complete=False, reason=str(exc), unreachable=True)
                    result.account_failed(sid, str(exc))
                    log.error("account.unavailable", account=sid, error=str(exc))
                    return
                part.watermark = await self._watermark_after(sid, part.scan, reconcile)

        async with asyncio.TaskGroup() as tg:
            for sid in accounts:
                tg.create_task(one(sid))
        if unavailable and len(unavailable) == len(accounts):
            raise unavailable[0]  # not one account reachable: the source is down for us
        result.merge_scans()

    async def _watermark_after(
        self, account: str, scan: ScanResult, reconcile: bool
    ) -> datetime | None:
        """Advance ``account``'s watermark to its newest listed recording, only after a
        complete listing of a regular pass; the watermark as it stands after the listing."""
        if not reconcile and scan.complete and scan.newest is not None:
            return await self.ledger.advance_watermark(account, scan.newest)
        if not scan.complete:
            log.warning("scan.incomplete", reason=scan.reason, account=account)
        return await self.ledger.watermark(account)

    async def write_manifests(self) -> int:
        """Copy every closed UTC day of the journal into the archive, once."""
        if self.journal is None or not self.cfg.audit.manifests:
            return 0
        today = self.now().date().isoformat()
        return await write_manifests(self.journal, self.ledger, self.storage, today)


async def listing_since(src: SourceConfig, ledger: Ledger, now: datetime, account: str) -> datetime:
    """Where a pass lists ``account`` from: its watermark less the lookback, never later than
    now less the lookback (a watermark in the future is pulled back to now first)."""
    watermark = await ledger.watermark(account)
    if watermark is not None and watermark > now:
        # the clock stepped back (NTP) after the watermark was set by a clock running ahead
        log.warning(
            "watermark.pulled_back",
            account=account,
            watermark=watermark.isoformat(),
            now=now.isoformat(),
            ahead_s=round((watermark - now).total_seconds()),
        )
        watermark = await ledger.pull_back_watermark(account, now)
    if watermark is None:
        return min(src.start_time, now - src.lookback)
    return max(min(watermark, now) - src.lookback, src.start_time)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a (nested) group: tasks of tasks raise groups of groups."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def lag_seconds(newest: datetime | None, now: datetime) -> float | None:
    return None if newest is None else max((now - newest) / timedelta(seconds=1), 0.0)
