"""One sync pass: list from the watermark, record, transfer, verify.

The pass receives everything it talks to (client, storage, ledger, clock) from its caller.

Listing (``scan``) works with the server as it is: newest first by its *local wall time*,
offset-paged, no tiebreak inside one second, an envelope that may describe another request.
It is complete by construction, trusting neither the envelope nor the clocks:

* ``since`` is ``min(watermark, now) - lookback``: a watermark left in the future by a clock
  that stepped back is pulled back to now (and logged), so new recordings are not below it;
* ``StartTime`` is a date early enough for any zone the server has or changes to, and never
  later than the server's own date (its ``Date`` header);
* the list ends only on a page shorter than asked for (or empty, or the 400 past the end);
* paging stops only at a recording older than ``since`` by more than the zone's offset can
  change (``DEFAULT_ZONE_SLACK``, 0 for a configured fixed-offset zone): in the repeated
  autumn hour, instants go back by an hour inside the newest-first order;
* a page that keeps failing ends the listing *incomplete* (the watermark stays, the page is
  named), and the recordings already listed are still transferred in the same pass.

It upserts every page into the ledger as it arrives. Two more hazards are handled:

* a group of recordings sharing one second that straddles a page boundary can come back in a
  different order on each page request, so a member can be skipped. Every such group is
  re-read with one request whose page covers the whole group plus a sentinel on each side;
* rows deleted while paging shift later pages up and skip rows. A drop in ``total`` restarts
  the listing; if it keeps happening the scan is marked incomplete.

The watermark advances to the newest listed ``date_created`` (never past now, never backwards)
only after the whole listing is in the ledger and only when the scan was complete.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path

import structlog

from archiver import metrics
from archiver.audit import Journal
from archiver.config import Config, parse_timezone
from archiver.errors import (
    ArchiveConflict,
    ArchiverError,
    InvalidRecording,
    LedgerError,
    MediaNotReady,
    MediaUnavailable,
    SourceAuthError,
    SourceError,
    SourceUnavailable,
    StorageDenied,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)
from archiver.ledger import Ledger, Outstanding, Row
from archiver.restcomm import (
    InvalidItem,
    Page,
    Recording,
    RestcommClient,
    end_date_for,
    start_date_for,
)
from archiver.retry import retrying
from archiver.storage import Storage, StoredObject, check_key
from archiver.storage.base import check_sidecar, single_chunk

log = structlog.get_logger("archiver.sync")

Clock = Callable[[], float]

DEFAULT_SCAN_RESTARTS = 3
DEFAULT_GROUP_TRIES = 4
DEFAULT_RETRY_BASE = 60.0  # seconds before the first retry of a failed recording
DEFAULT_RETRY_CAP = 6 * 3600.0
DEFAULT_DUE_BATCH = 500
DEFAULT_TRANSFER_ATTEMPTS = 3  # immediate tries of one transfer before it is left for later
# how far a zone's UTC offset can move (daylight saving: 1 h, 2 h in a few zones)
DEFAULT_ZONE_SLACK = timedelta(hours=2)


def zone_slack(server_tz: tzinfo | None, year: int) -> timedelta:
    """How much older than ``since`` the listing must read before it stops: 0 when the
    server's zone is configured and keeps one offset all year, else DEFAULT_ZONE_SLACK."""
    if server_tz is None:
        return DEFAULT_ZONE_SLACK
    winter, summer = datetime(year, 1, 15, tzinfo=UTC), datetime(year, 7, 15, tzinfo=UTC)
    if server_tz.utcoffset(winter.astimezone(server_tz)) == server_tz.utcoffset(
        summer.astimezone(server_tz)
    ):
        return timedelta(0)
    return DEFAULT_ZONE_SLACK


FATAL = (SourceAuthError, StorageDenied, LedgerError)
# consecutive recordings failing with an error that may be everyone's (5xx, throttling, no
# connection) before the pass calls it an outage: it stops, and charges none of them
DEFAULT_OUTAGE_STREAK = 3
SHARED = (SourceUnavailable, MediaUnavailable, StorageUnavailable)


@dataclass
class ScanResult:
    listed: int = 0  # items on the listing's pages (a recording shifted across pages counts twice)
    reread: int = 0  # items on pages that re-read a same-second group (seen already, mostly)
    new: int = 0
    invalid: int = 0
    pages: int = 0
    relisted: int = 0  # listed again after a DELETE that answered 200
    newest: datetime | None = None
    complete: bool = True
    reason: str = ""
    unreachable: bool = False  # not even the first page could be listed


@dataclass
class PassResult:
    started_at: float = 0.0
    finished_at: float = 0.0
    scan: ScanResult = field(default_factory=ScanResult)
    archived: int = 0
    verified: int = 0
    failed: int = 0
    bytes: int = 0
    watermark: datetime | None = None
    stopped_early: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    deleted: int = 0
    would_delete: int = 0
    delete_skipped: int = 0
    # what is left to do once the pass ended (the whole ledger, not only this pass's work)
    outstanding: Outstanding | None = None

    @property
    def ok(self) -> bool:
        """True only when nothing is failed, waiting or untried, the listing was complete and
        the pass ran to its end: the one condition for exit code 0."""
        return (
            self.failed == 0
            and self.scan.invalid == 0
            and self.scan.complete
            and not self.stopped_early
            and self.outstanding is not None
            and self.outstanding.total == 0
        )

    def summary(self) -> dict[str, object]:
        left = self.outstanding.as_dict() if self.outstanding is not None else None
        return {
            "listed": self.scan.listed,
            "reread": self.scan.reread,
            "new": self.scan.new,
            "invalid": self.scan.invalid,
            "pages": self.scan.pages,
            "relisted": self.scan.relisted,
            "scan_complete": self.scan.complete,
            "scan_problem": self.scan.reason or None,
            "outstanding": left,
            "archived": self.archived,
            "verified": self.verified,
            "failed": self.failed,
            "bytes": self.bytes,
            "deleted": self.deleted,
            "would_delete": self.would_delete,
            "delete_skipped": self.delete_skipped,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "duration_s": round(self.finished_at - self.started_at, 3),
            "stopped_early": self.stopped_early,
        }


def render_key(template: str, rec: Recording) -> str:
    key = template.format(
        account_sid=rec.account_sid,
        sid=rec.sid,
        call_sid=rec.call_sid or "none",
        date_created=rec.date_created.astimezone(UTC),
        ext=rec.ext,
    )
    return check_key(key)


def sidecar(rec: Recording, key: str, size: int, sha256: str, archived_at: float) -> bytes:
    doc = {
        "sid": rec.sid,
        "account_sid": rec.account_sid,
        "call_sid": rec.call_sid,
        "date_created": rec.date_created.astimezone(UTC).isoformat(),
        "duration": rec.duration,
        "ext": rec.ext,
        "size": size,
        "sha256": sha256,
        "archive_key": key,
        "archived_at": datetime.fromtimestamp(archived_at, UTC).isoformat(),
        "source": rec.source,
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def object_metadata(rec: Recording) -> dict[str, str]:
    return {
        "sid": rec.sid,
        "call-sid": rec.call_sid or "",
        "account-sid": rec.account_sid,
        "date-created": rec.date_created.astimezone(UTC).isoformat(),
        "duration": repr(rec.duration),
    }


def retry_delay(attempts: int) -> float:
    return float(min(DEFAULT_RETRY_BASE * 2 ** max(attempts - 1, 0), DEFAULT_RETRY_CAP))


class _Runs:
    """Finds runs of recordings sharing one ``date_created`` that straddle a page boundary.

    Fed page by page; keeps O(1) state per straddling run, never the listing itself, so a
    first pass over years of backlog does not grow memory with the number of recordings.
    """

    def __init__(self, size: int, since: datetime) -> None:
        self.size = size
        self.since = since
        self.t: datetime | None = None
        self.lo = 0  # position of the last recording before the current run
        self.start = 0  # position where the current run started
        self.last = -1  # position of the last recording seen
        self.straddles = False
        self.pending: list[tuple[datetime, int, int | None]] = []

    def feed(self, page_no: int, items: list[Recording | InvalidItem]) -> None:
        base = page_no * self.size
        for i, item in enumerate(items):
            if not isinstance(item, Recording):
                continue
            pos = base + i
            if item.date_created != self.t:
                self._close(pos)
                self.t, self.lo, self.start, self.straddles = (
                    item.date_created,
                    max(self.last, 0),
                    pos,
                    False,
                )
            elif pos // self.size != self.start // self.size:
                self.straddles = True
            self.last = pos

    def _close(self, hi: int | None) -> None:
        if self.t is not None and self.straddles and self.t >= self.since:
            self.pending.append((self.t, self.lo, hi))

    def finish(self) -> list[tuple[datetime, int, int | None]]:
        self._close(None)
        self.t = None
        return self.pending


def _covering_page(lo: int, hi: int) -> tuple[int, int]:
    """(page, size) of one offset page whose range [page*size, page*size+size) holds [lo, hi]."""
    size = hi - lo + 1
    while True:
        page = lo // size
        if page * size + size - 1 >= hi:
            return page, size
        size += 1


class _SourceSlot:
    """One download slot, held from the request until the body's last byte has arrived."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def __aenter__(self) -> _SourceSlot:
        await self._slots.acquire()
        self._held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    async def released_at_end(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in body:
            yield chunk
        self.release()  # the source is done with; what is left is the archive's work


class Syncer:
    """Runs passes. Holds no state between passes beyond what the ledger holds."""

    def __init__(
        self,
        cfg: Config,
        client: RestcommClient,
        storage: Storage,
        ledger: Ledger,
        *,
        clock: Clock = time.time,
        journal: Journal | None = None,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.storage = storage
        self.ledger = ledger
        self.clock = clock
        self.due_total = 0  # recordings this pass set out to transfer (for progress)
        self.journal = journal
        self._end_date: date | None = None
        self.zone_slack = zone_slack(
            parse_timezone(cfg.source.server_timezone, "source.server_timezone"),
            self.now().year,
        )
        # download slots: every slot is given back when its transfer ends, pass or no pass
        self._source = asyncio.Semaphore(cfg.source.concurrency)
        self.on_progress: Callable[[PassResult, Row | None], None] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # ------------------------------------------------------------------ scan

    async def since(self) -> datetime:
        """Where this pass lists from: the watermark less the lookback, never later than now
        less the lookback (a watermark in the future is pulled back to now first)."""
        src = self.cfg.source
        now = self.now()
        watermark = await self.ledger.watermark()
        if watermark is not None and watermark > now:
            # the clock stepped back (NTP) after the watermark was set by a clock running ahead
            log.warning(
                "watermark.pulled_back",
                watermark=watermark.isoformat(),
                now=now.isoformat(),
                ahead_s=round((watermark - now).total_seconds()),
            )
            watermark = await self.ledger.pull_back_watermark(now)
        if watermark is None:
            return min(src.start_time, now - src.lookback)
        return max(min(watermark, now) - src.lookback, src.start_time)

    async def _page(self, page: int, size: int, start: date | None) -> Page:
        end = self._end_date
        return await retrying(
            "list_page", lambda: self.client.list_page(page, size, start, end), page=page
        )

    async def scan(self, since: datetime, until: datetime | None = None) -> ScanResult:
        """List everything created at or after ``since`` (and up to ``until``) into the ledger.

        Never raises for a page that keeps failing (but for rejected credentials): the result
        is then incomplete, with the page named in ``reason``.
        """
        result = ScanResult()
        try:
            await self._scan(since, until, result)
        except SourceAuthError:
            raise
        except SourceError as exc:
            result.complete = False
            result.unreachable = result.pages == 0
            result.reason = f"listing stopped: {type(exc).__name__}: {exc}"
            log.error("scan.page_failed", error=str(exc), error_type=type(exc).__name__)
        return result

    async def _scan(self, since: datetime, until: datetime | None, result: ScanResult) -> None:
        self._end_date = None if until is None else end_date_for(until)
        size = self.cfg.source.page_size
        stop_before = since - self.zone_slack  # older than this on a page: every later is too
        start = start_date_for(since, self.client.server_now)
        restart = 0
        capped_once = False
        while True:
            runs = _Runs(size, since)
            first_total: int | None = None
            page_no = 0
            shrank = False
            while True:
                page = await self._page(page_no, size, start)
                result.pages += 1
                if (
                    page_no == 0
                    and not capped_once
                    and start > (capped := start_date_for(since, self.client.server_now))
                ):
                    # the server's date (its Date header) is behind ours: ask from its date
                    log.warning("scan.server_clock_behind", start=str(capped), asked=str(start))
                    start, capped_once = capped, True
                    continue
                if first_total is None:
                    first_total = page.total
                elif page.total < first_total:
                    # a shared envelope can carry another request's total: ask again first
                    page = await self._page(page_no, size, start)
                    result.pages += 1
                    shrank = page.total < first_total
                await self._record(page.items, result)
                runs.feed(page_no, page.items)
                if shrank or page.last:
                    break
                if any(
                    isinstance(x, Recording) and x.date_created < stop_before for x in page.items
                ):
                    break  # newest first, by wall time: every later page is older still
                page_no += 1
            if shrank and restart < DEFAULT_SCAN_RESTARTS:
                log.warning("scan.restarted", reason="rows deleted while paging", restart=restart)
                restart += 1
                continue
            if shrank:
                result.complete = False
                result.reason = "rows kept disappearing while paging"
            for t, lo, hi in runs.finish():
                # a group that ran to the end of the list ends by the last position seen
                hi_or_end = hi if hi is not None else runs.last + 1
                if not await self._read_group(t, lo, hi_or_end, hi is None, start, result):
                    result.complete = False
                    result.reason = f"could not read all recordings created at {t.isoformat()}"
                    log.warning("scan.group_unresolved", date_created=t.isoformat())
            return

    async def _record(
        self, items: list[Recording | InvalidItem], result: ScanResult, *, reread: bool = False
    ) -> None:
        new, invalid, relisted = await self.ledger.upsert_listed(items, self.clock())
        result.new += new
        result.invalid += invalid
        result.relisted += len(relisted)
        for sid in relisted:
            # its DELETE answered 200, yet the source lists it: verified again, deleted again
            self._audit("relisted", sid=sid, reason="listed again after its deletion")
            log.warning("recording.relisted", sid=sid)
        if reread:
            result.reread += len(items)
        else:
            result.listed += len(items)
        cap = self.now()
        for item in items:
            if isinstance(item, Recording):
                created = min(item.date_created, cap)  # a clock ahead of ours cannot skip work
                if result.newest is None or created > result.newest:
                    result.newest = created
            elif item.sid is None:
                log.error("listing.item_unusable", reason=item.reason)
                result.invalid += 1
        if invalid:
            for item in items:
                if isinstance(item, InvalidItem) and item.sid is not None:
                    log.error("recording.invalid", sid=item.sid, reason=item.reason)

    async def _read_group(
        self,
        t: datetime,
        lo: int,
        top: int,
        to_end: bool,
        start: date | None,
        result: ScanResult,
    ) -> bool:
        """Read every recording created at ``t`` with one page covering positions lo..top.

        ``lo`` holds the last recording newer than ``t`` (or is 0), ``top`` the first one
        older, or (``to_end``: the group ran to the end of the list) the first position past
        the end, so that the page comes back short. The page must show a newer recording
        before the group and an older one after it (or the list's ends), or it is tried again
        wider: rows inserted meanwhile shift positions.
        """
        for attempt in range(DEFAULT_GROUP_TRIES):
            margin = 0 if attempt == 0 else (top - lo + 1) * attempt
            page_no, size = _covering_page(max(lo - margin, 0), top + margin)
            page = await self._page(page_no, size, start)
            result.pages += 1
            await self._record(page.items, result, reread=True)
            stamps = [x.date_created for x in page.items if isinstance(x, Recording)]
            idx = [i for i, s in enumerate(stamps) if s == t]
            if not idx:
                continue
            head_ok = page_no == 0 or any(s > t for s in stamps[: idx[0]])
            tail_ok = (page.last and to_end) or any(s < t for s in stamps[idx[-1] :])
            if head_ok and tail_ok:
                log.debug("scan.group_read", date_created=t.isoformat(), members=len(idx))
                return True
        return False

    # ------------------------------------------------------------- transfer

    async def archive_one(self, row: Row, result: PassResult) -> None:
        log_ = log.bind(sid=row.sid)
        rec = row.recording()
        key = render_key(self.cfg.archive.key_template, rec)
        now = self.clock()

        def sidecar_for(stored: StoredObject) -> bytes:
            return sidecar(rec, key, stored.size, stored.sha256, now)

        stored: StoredObject | None = None
        if row.state == "archived" and row.size is not None and row.sha256 is not None:
            size, sha = row.size, row.sha256  # archived before a restart: verify only
        else:

            async def transfer() -> StoredObject:
                async with (
                    _SourceSlot(self._source) as slot,
                    self.client.media(rec.sid, rec.ext) as body,
                ):
                    ctype = "video/mp4" if rec.ext == "mp4" else "audio/x-wav"
                    done = await self.storage.put(
                        key,
                        slot.released_at_end(body),
                        content_type=ctype,
                        metadata=object_metadata(rec),
                        sidecar=sidecar_for,
                        size_hint=body.content_length,
                    )
                if (done.size, done.sha256) != (body.size, body.sha256):
                    raise VerificationFailed(
                        f"stored {done.size} bytes sha256 {done.sha256}, downloaded "
                        f"{body.size} bytes sha256 {body.sha256}"
                    )
                return done

            stored = await retrying(
                "transfer", transfer, attempts=DEFAULT_TRANSFER_ATTEMPTS, sid=rec.sid
            )
            size, sha = stored.size, stored.sha256
            self._audit("archived", sid=rec.sid, key=key, size=size, sha256=sha)
            result.archived += 1
            result.bytes += size
            log_.info("recording.archived", key=key, size=size, sha256=sha)
        if stored is not None and stored.read_back and stored.sidecar_written:
            # the backend re-read the copy and wrote the sidecar in its durable step
            self._audit("verified", sid=rec.sid, key=key, size=size, sha256=sha)
            await self.ledger.mark_archived_verified(
                rec.sid, key=key, size=size, sha256=sha, now=self.clock()
            )
        else:
            if stored is not None:
                await self.ledger.mark_archived(
                    rec.sid, key=key, size=size, sha256=sha, now=self.clock()
                )
            # The read-back and the sidecar are independent requests on a remote store: made
            # together, a recording waits for one round trip instead of two. The row becomes
            # verified only when both succeeded.
            steps: list[Awaitable[object]] = []
            if stored is None or not stored.read_back:
                steps.append(
                    retrying("verify", lambda: self.storage.verify(key, size, sha), sid=rec.sid)
                )
            if stored is None or not stored.sidecar_written:
                sidecar_bytes = sidecar(rec, key, size, sha, now)
                steps.append(
                    retrying("sidecar", partial(self._put_sidecar, key, sidecar_bytes), sid=rec.sid)
                )
            await _together(steps)
            self._audit("verified", sid=rec.sid, key=key, size=size, sha256=sha)
            await self.ledger.mark_verified(rec.sid, self.clock())
        result.verified += 1
        metrics.ARCHIVED_RECORDINGS.inc()
        metrics.ARCHIVED_BYTES.inc(size)
        log_.info("recording.verified", key=key, size=size)

    async def _attempt(self, row: Row, result: PassResult, outage: _Outage) -> None:
        metrics.IN_FLIGHT.inc()
        try:
            await self.archive_one(row, result)
        except FATAL:
            raise
        except SHARED as exc:  # everyone's fault or this recording's: the next ones tell
            await outage.failed(row, exc)
        except (ArchiverError, ValueError) as exc:
            await self._fail(row, exc, result)
        else:
            await outage.succeeded()
        finally:
            metrics.IN_FLIGHT.dec()
            if self.on_progress is not None:
                self.on_progress(result, row)

    async def _fail(self, row: Row, exc: Exception, result: PassResult) -> None:
        now = self.clock()
        src = self.cfg.source
        attempts = row.attempts + 1
        reason = f"{type(exc).__name__}: {exc}"
        count = True
        permanent = isinstance(exc, ArchiveConflict | InvalidRecording | ValueError)
        if isinstance(exc, MediaNotReady):
            discovered_for = now - (row.date_created.timestamp() if row.date_created else now)
            if discovered_for < src.media_grace.total_seconds():
                count = False  # the platform may still be writing it: not an attempt yet
                attempts = row.attempts
        if count and attempts >= src.max_attempts:
            permanent = True
        delay = retry_delay(max(attempts, 1))
        if not count:
            delay = min(delay, src.media_grace.total_seconds() / 4 or delay)
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
        metrics.FAILURES.labels(type(exc).__name__).inc()
        (log.error if permanent else log.warning)(
            "recording.failed",
            sid=row.sid,
            reason=reason,
            attempts=attempts,
            permanent=permanent,
            retry_in_s=None if permanent else round(delay),
        )

    async def transfer_due(self, result: PassResult, stopping: asyncio.Event) -> None:
        """Archive every row that is due now: ``concurrency`` downloads at a time.

        A recording gives its download slot back as soon as its body is in, so the next
        download starts while the archive makes the previous one durable; at most twice
        ``concurrency`` recordings are in flight, each holding no more than its backend buffers
        (1 MiB on local disk; up to ``multipart_threshold`` on S3).
        """
        limit = asyncio.Semaphore(2 * self.cfg.source.concurrency)
        self.due_total = await self.ledger.count_due(self.clock(), self.cfg.source.max_attempts)
        after: tuple[float, str] | None = None  # a cursor, so memory does not grow with work
        outage = _Outage(self, result)

        async def one(row: Row) -> None:
            try:
                if not stopping.is_set() and outage.error is None:
                    await self._attempt(row, result, outage)
            finally:
                limit.release()

        async with asyncio.TaskGroup() as tg:
            while not stopping.is_set() and outage.error is None:
                rows = await self.ledger.due(
                    self.clock(), self.cfg.source.max_attempts, DEFAULT_DUE_BATCH, after
                )
                if not rows:
                    break
                for row in rows:
                    assert row.date_created is not None  # due rows are never invalid items
                    after = (row.date_created.timestamp(), row.sid)
                    await limit.acquire()
                    if stopping.is_set() or outage.error is not None:
                        limit.release()
                        break
                    tg.create_task(one(row))
        await outage.settle()

    # ---------------------------------------------------------------- delete

    def _audit(self, event: str, **fields: object) -> None:
        if self.journal is not None:
            self.journal.append(event, **fields)

    async def delete_verified(self, result: PassResult, stopping: asyncio.Event) -> None:
        """Delete source copies whose archive is verified, re-checked right before each DELETE.

        Runs after the listing of the pass is complete: deleting while paging through offsets
        would shift later pages and skip recordings.
        """
        d = self.cfg.delete
        if not d.enabled or d.max_per_pass == 0:
            return
        if self.journal is not None:
            await self.journal.sync()  # the evidence of verification is durable first
        cutoff = self.clock() - d.min_age.total_seconds()
        for row in await self.ledger.deletable(cutoff, d.max_per_pass):
            if stopping.is_set():
                break
            log_ = log.bind(sid=row.sid)
            assert row.archive_key and row.size is not None and row.sha256
            try:
                await retrying(
                    "recheck",
                    lambda r=row: self.storage.verify(  # type: ignore[misc]
                        r.archive_key, r.size, r.sha256
                    ),
                    sid=row.sid,
                )
            except FATAL:
                raise
            except ArchiverError as exc:
                reason = f"archive re-check failed: {type(exc).__name__}: {exc}"
                self._audit("delete-skipped", sid=row.sid, reason=reason)
                log_.error("delete.skipped", reason=reason)
                result.delete_skipped += 1
                metrics.DELETIONS.labels("skipped").inc()
                # the copy is gone or altered while the source still has it: archive it again
                await self.ledger.mark_failed(
                    row.sid,
                    reason,
                    now=self.clock(),
                    permanent=False,
                    next_attempt_at=None,
                    count_attempt=False,
                )
                continue
            try:
                await retrying("recheck_sidecar", partial(self.check_sidecar, row), sid=row.sid)
            except FATAL:
                raise
            except ArchiverError as exc:
                # the sidecar is part of the copy: restore it now, delete once it checks again
                await retrying("sidecar", partial(self.restore_sidecar, row, str(exc)), sid=row.sid)
                reason = f"sidecar re-check failed: {exc}; rewritten from the ledger"
                self._audit("delete-skipped", sid=row.sid, reason=reason)
                log_.error("delete.skipped", reason=reason)
                result.delete_skipped += 1
                metrics.DELETIONS.labels("skipped").inc()
                continue
            if d.dry_run:
                self._audit("would-delete", sid=row.sid, key=row.archive_key)
                log_.info("delete.dry_run", key=row.archive_key)
                result.would_delete += 1
                metrics.DELETIONS.labels("dry_run").inc()
                continue
            existed = await retrying("delete", lambda r=row: self.client.delete(r.sid), sid=row.sid)  # type: ignore[misc]
            self._audit("deleted", sid=row.sid, key=row.archive_key, already_gone=not existed)
            await self.ledger.mark_deleted(row.sid, self.clock())
            result.deleted += 1
            metrics.DELETIONS.labels("deleted" if existed else "already_gone").inc()
            log_.info("recording.deleted", already_gone=not existed)

    async def check_sidecar(self, row: Row) -> None:
        assert row.archive_key and row.size is not None and row.sha256
        await check_sidecar(self.storage, row.archive_key, row.sid, row.size, row.sha256)

    async def queue_repair(self, row: Row, problem: str) -> bool:
        """``row``'s archived audio is missing or altered: archive it again on the next pass
        (journaled). False when the source no longer has it (deleted)."""
        if not await self.ledger.mark_for_repair(row.sid, problem, self.clock()):
            return False
        self._audit("repair-needed", sid=row.sid, reason=problem)
        return True

    async def restore_sidecar(self, row: Row, problem: str) -> None:
        """Write ``row``'s sidecar again from the ledger (its first ``archived_at`` kept),
        journaled with what was wrong with it."""
        assert row.archive_key and row.size is not None and row.sha256
        data = sidecar(
            row.recording(),
            row.archive_key,
            row.size,
            row.sha256,
            row.archived_at if row.archived_at is not None else self.clock(),
        )
        await self._put_sidecar(row.archive_key, data)
        self._audit("sidecar-restored", sid=row.sid, key=f"{row.archive_key}.json", reason=problem)

    async def _put_sidecar(self, key: str, data: bytes) -> None:
        """The sidecar of ``key``; replaced if there (it describes, it is not the evidence)."""
        await self.storage.put(
            key + ".json", single_chunk(data), content_type="application/json", replace=True
        )

    # -------------------------------------------------------------- manifests

    async def write_manifests(self) -> int:
        """Copy every closed UTC day of the journal into the archive, once."""
        if self.journal is None or not self.cfg.audit.manifests:
            return 0
        await self.journal.sync()
        offset = int(await self.ledger.get_meta("audit_manifest_offset") or 0)
        today = self.now().date().isoformat()
        days, next_offset = await asyncio.to_thread(closed_days, self.journal.path, offset, today)
        for day, data in days:
            key = f"audit/{day[:4]}/{day[5:7]}/{day[8:10]}.jsonl"
            await retrying(
                "manifest",
                lambda k=key, b=data, dd=day: self.storage.put(  # type: ignore[misc]
                    k,
                    single_chunk(b),
                    content_type="application/x-ndjson",
                    metadata={"date-created": f"{dd}T23:59:59+00:00"},
                ),
            )
            log.info("audit.manifest_written", day=day, key=key, bytes=len(data))
        if next_offset != offset:
            await self.ledger.set_meta("audit_manifest_offset", str(next_offset))
        return len(days)

    # ----------------------------------------------------------------- pass

    async def run_pass(
        self,
        stopping: asyncio.Event | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> PassResult:
        """One pass. With ``since`` (a reconcile) the watermark is neither used nor moved."""
        stopping = stopping or asyncio.Event()
        result = PassResult(started_at=self.clock())
        reconcile = since is not None
        since = since if since is not None else await self.since()
        log.info("pass.started", since=since.isoformat(), reconcile=reconcile)
        try:
            result.scan = await self.scan(since, until)
            if reconcile:
                result.watermark = await self.ledger.watermark()
            elif result.scan.complete and result.scan.newest is not None:
                result.watermark = await self.ledger.advance_watermark(result.scan.newest)
            else:
                result.watermark = await self.ledger.watermark()
                if not result.scan.complete:
                    log.warning("scan.incomplete", reason=result.scan.reason)
            await self.transfer_due(result, stopping)
            await self.delete_verified(result, stopping)
            await self.write_manifests()
            await self.storage.sweep()  # what a crashed writer left, not only at start-up
        except* FATAL as group:
            raise group.exceptions[0] from None
        except* StorageError as group:
            raise group.exceptions[0] from None
        finally:
            if self.journal is not None:
                head = await self.journal.sync()
                await self.ledger.set_meta("audit_head", head.encode())
        result.stopped_early = stopping.is_set()
        result.outstanding = await self.ledger.outstanding(
            self.clock(), self.cfg.source.max_attempts
        )
        result.finished_at = self.clock()
        await self.ledger.set_meta("last_pass", json.dumps(result.summary()))
        await self.ledger.set_meta("last_pass_at", str(result.finished_at))
        log.info("pass.finished", **result.summary())
        return result


class _Outage:
    """Tells a recording's own fault from everyone's.

    A recording that fails with an error that may be shared (5xx, throttling, no connection)
    is charged only once a later recording succeeds: then the fault was its own. When
    ``DEFAULT_OUTAGE_STREAK`` of them fail in a row, the source or the archive is down for
    everyone: the pass stops taking work and none of them is charged (their rows keep their
    state, so nothing is lost and the attempt budget is not spent on an outage).
    """

    def __init__(self, syncer: Syncer, result: PassResult) -> None:
        self._syncer = syncer
        self._result = result
        self._pending: list[tuple[Row, ArchiverError]] = []
        self.error: ArchiverError | None = None

    async def failed(self, row: Row, exc: ArchiverError) -> None:
        self._pending.append((row, exc))
        if self.error is None and len(self._pending) >= DEFAULT_OUTAGE_STREAK:
            self.error = exc
            log.error(
                "pass.outage",
                error=str(exc),
                error_type=type(exc).__name__,
                failed_in_a_row=len(self._pending),
            )

    async def succeeded(self) -> None:
        if self.error is None:
            await self._charge()

    async def settle(self) -> None:
        """At the end of the transfers: charge what failed unless it was an outage, which
        then stops the pass (exit 3) with the last error."""
        if self.error is None:
            await self._charge()
            return
        kind = StorageUnavailable if isinstance(self.error, StorageError) else SourceUnavailable
        where = "the archive" if kind is StorageUnavailable else "the source"
        raise kind(
            f"{where} failed for {len(self._pending)} recordings in a row, so the pass stopped "
            f"and charged none of them: {self.error}"
        )

    async def _charge(self) -> None:
        pending, self._pending = self._pending, []
        for row, exc in pending:
            await self._syncer._fail(row, exc, self._result)


async def _together(steps: list[Awaitable[object]]) -> None:
    """Run ``steps`` at once and wait for every one; then raise a failure, if any: one that
    stops the pass first, else the first in order."""
    failures = [
        outcome
        for outcome in await asyncio.gather(*steps, return_exceptions=True)
        if isinstance(outcome, BaseException)
    ]
    if failures:
        raise next((f for f in failures if isinstance(f, FATAL)), failures[0])


def closed_days(path: Path, offset: int, today: str) -> tuple[list[tuple[str, bytes]], int]:
    """Journal lines from byte ``offset`` grouped by UTC day, for days before ``today``."""
    days: list[tuple[str, bytes]] = []
    current, buf, pos, consumed = "", bytearray(), offset, offset
    with path.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            day = json.loads(raw).get("ts", "")[:10]
            if day >= today:
                break
            if day != current and buf:
                days.append((current, bytes(buf)))
                buf = bytearray()
                consumed = pos
            current = day
            buf += raw
            pos += len(raw)
    if buf:
        days.append((current, bytes(buf)))
        consumed = pos
    return days, consumed


def lag_seconds(newest: datetime | None, now: datetime) -> float | None:
    return None if newest is None else max((now - newest) / timedelta(seconds=1), 0.0)
