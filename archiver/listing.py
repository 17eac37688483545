"""Listing: every recording created since a point, into the ledger, complete by construction.

The source is taken as it is: newest first by its *local wall time*, offset-paged, no
tiebreak inside one second, an envelope that may describe another request. Neither the
envelope nor the clocks are trusted:

* ``StartTime`` is a date early enough for any zone the server has or changes to, and never
  later than the server's own date (its ``Date`` header);
* the list ends only on a page shorter than asked for (or empty, or the 400 past the end);
* paging stops only at a recording older than ``since`` by more than the zone's offset can
  change (``DEFAULT_ZONE_SLACK``, 0 for a configured fixed-offset zone): in the repeated
  autumn hour, instants go back by an hour inside the newest-first order;
* a page that keeps failing ends the listing *incomplete* (the page is named), and what was
  listed before it stays in the ledger;
* a group of recordings sharing one second that straddles a page boundary can come back in a
  different order on each page request, so a member can be skipped: every such group
  (:func:`straddling_groups`, a pure function of the pages) is re-read with one request whose
  page covers the whole group plus a sentinel on each side;
* rows deleted while paging shift later pages up and skip rows: a drop in ``total`` (asked
  twice, as a shared envelope can carry another request's) restarts the listing; if it keeps
  happening the listing is incomplete.

Every page is upserted into the ledger as it arrives; memory does not grow with the listing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Protocol, runtime_checkable

import structlog

from archiver.audit import Journal
from archiver.errors import SourceAuthError, SourceError
from archiver.hooks import NO_HOOKS, Hooks
from archiver.ledger import Ledger
from archiver.model import Item, Page, Recording
from archiver.retry import retrying
from archiver.source import Source

log = structlog.get_logger("archiver.listing")

DEFAULT_SCAN_RESTARTS = 3
DEFAULT_GROUP_TRIES = 4
# how far a zone's UTC offset can move (daylight saving: 1 h, 2 h in a few zones)
DEFAULT_ZONE_SLACK = timedelta(hours=2)
# Every UTC offset in use lies within -12:00..+14:00; 14 h on either side covers any zone the
# server has, or changes to, whatever the configured or learned one says.
ZONE_MARGIN = timedelta(hours=14)


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


def end_date_for(until: datetime) -> date:
    """The ``EndTime`` date sure to include ``until`` in any zone (the server adds a day)."""
    return (until.astimezone(UTC) + ZONE_MARGIN).date()


def start_date_for(since: datetime, server_now: datetime | None = None) -> date:
    """The ``StartTime`` date sure to include ``since`` in any zone the server may be in.

    It is never later than the server's own date (``server_now``, from its ``Date`` header):
    a clock of ours ahead of the server's must not ask for a day that has not begun there.
    A day too early costs one date, not a page: the scan stops by instant, not by date.
    """
    start = since if server_now is None else min(since, server_now)
    return (start.astimezone(UTC) - ZONE_MARGIN).date()


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


# ------------------------------------------------------------- same-second groups (pure)


@dataclass(frozen=True)
class Group:
    """Recordings created at ``at`` that straddle a page boundary. ``lo`` is the position of
    the last recording newer than them (or 0); ``hi`` the first one older, or None when the
    group ran to the end of what was listed (then ``end`` is the position past the last)."""

    at: datetime
    lo: int
    hi: int | None
    end: int

    @property
    def top(self) -> int:
        return self.hi if self.hi is not None else self.end


class Straddles:
    """Finds same-second groups that straddle a page boundary, fed page by page.

    Keeps O(1) state per straddling group, never the listing itself, so a first pass over
    years of backlog does not grow memory with the number of recordings.
    """

    def __init__(self, size: int, since: datetime) -> None:
        self.size = size
        self.since = since
        self._at: datetime | None = None
        self._lo = 0  # position of the last recording before the current run
        self._start = 0  # position where the current run started
        self._last = -1  # position of the last recording seen
        self._straddles = False
        self._found: list[tuple[datetime, int, int | None]] = []

    def feed(self, page_no: int, items: list[Item]) -> None:
        base = page_no * self.size
        for i, item in enumerate(items):
            if not isinstance(item, Recording):
                continue
            pos = base + i
            if item.date_created != self._at:
                self._close(pos)
                self._at, self._lo, self._start = item.date_created, max(self._last, 0), pos
                self._straddles = False
            elif pos // self.size != self._start // self.size:
                self._straddles = True
            self._last = pos

    def _close(self, hi: int | None) -> None:
        if self._at is not None and self._straddles and self._at >= self.since:
            self._found.append((self._at, self._lo, hi))

    def finish(self) -> list[Group]:
        self._close(None)
        self._at = None
        end = self._last + 1
        return [Group(at, lo, hi, end) for at, lo, hi in self._found]


def straddling_groups(
    pages: Iterable[tuple[int, list[Item]]], size: int, since: datetime
) -> list[Group]:
    """The same-second groups at or after ``since`` that straddle a page boundary of
    ``pages`` (page number, items), listed ``size`` to a page."""
    found = Straddles(size, since)
    for page_no, items in pages:
        found.feed(page_no, items)
    return found.finish()


def covering_page(lo: int, hi: int) -> tuple[int, int]:
    """(page, size) of one offset page whose range [page*size, page*size+size) holds [lo, hi]."""
    size = hi - lo + 1
    while True:
        page = lo // size
        if page * size + size - 1 >= hi:
            return page, size
        size += 1


def group_seen_whole(page: Page, page_no: int, group: Group) -> bool:
    """True when ``page`` shows the whole group: a newer recording (or the list's start)
    before it and an older one (or the list's end) after it."""
    stamps = [x.date_created for x in page.items if isinstance(x, Recording)]
    idx = [i for i, s in enumerate(stamps) if s == group.at]
    if not idx:
        return False
    head_ok = page_no == 0 or any(s > group.at for s in stamps[: idx[0]])
    tail_ok = (page.last and group.hi is None) or any(s < group.at for s in stamps[idx[-1] :])
    return head_ok and tail_ok


# ------------------------------------------------------------------------- the lister


class Lister:
    """Lists one source into the ledger. One instance per pass."""

    def __init__(
        self,
        source: Source,
        ledger: Ledger,
        *,
        page_size: int,
        zone_slack: timedelta,
        clock: Callable[[], float],
        journal: Journal | None = None,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self.source = source
        self.hooks = hooks
        self.ledger = ledger
        self.size = page_size
        self.zone_slack = zone_slack
        self.clock = clock
        self.journal = journal
        self.result = ScanResult()
        self._start: date | None = None
        self._end: date | None = None
        self._capped = False  # StartTime was capped by the server's date once already

    async def scan(self, since: datetime, until: datetime | None = None) -> ScanResult:
        """List everything created at or after ``since`` (and up to ``until``).

        Never raises for a page that keeps failing (but for rejected credentials): the result
        is then incomplete, with the page named in ``reason``.
        """
        self._end = None if until is None else end_date_for(until)
        self._start = start_date_for(since, self.source.server_now)
        try:
            await self._scan(since)
        except SourceAuthError:
            raise
        except SourceError as exc:
            self._incomplete(f"listing stopped: {type(exc).__name__}: {exc}")
            self.result.unreachable = self.result.pages == 0
            log.error("scan.page_failed", error=str(exc), error_type=type(exc).__name__)
        return self.result

    def _incomplete(self, reason: str) -> None:
        self.result.complete = False
        self.result.reason = reason

    async def _scan(self, since: datetime) -> None:
        for restart in range(DEFAULT_SCAN_RESTARTS + 1):
            groups, shrank = await self._read_pages(since)
            if not shrank:
                break
            if restart < DEFAULT_SCAN_RESTARTS:
                log.warning("scan.restarted", reason="rows deleted while paging", restart=restart)
        else:
            self._incomplete("rows kept disappearing while paging")
        for group in groups:
            if not await self._read_group(group):
                self._incomplete(f"could not read all recordings created at {group.at.isoformat()}")
                log.warning("scan.group_unresolved", date_created=group.at.isoformat())

    async def _read_pages(self, since: datetime) -> tuple[list[Group], bool]:
        """Page through the list into the ledger: the straddling groups found, and whether
        rows disappeared while paging (then the listing must start again)."""
        stop_before = since - self.zone_slack  # older than this on a page: every later is too
        found = Straddles(self.size, since)
        first_total: int | None = None
        page_no = 0
        while True:
            page = await self._page(page_no, self.size)
            if page_no == 0 and self._asked_past_server_date(since):
                continue
            shrank = False
            if first_total is None:
                first_total = page.total
            elif page.total < first_total:
                # a shared envelope can carry another request's total: ask again first
                page = await self._page(page_no, self.size)
                shrank = page.total < first_total
            await self._record(page.items)
            found.feed(page_no, page.items)
            if shrank or page.last:
                return found.finish(), shrank
            if any(isinstance(x, Recording) and x.date_created < stop_before for x in page.items):
                return found.finish(), False  # newest first, by wall time: the rest is older
            page_no += 1

    def _asked_past_server_date(self, since: datetime) -> bool:
        """True (once) when the first answer's Date header shows the server's date behind
        ours: the page is asked again from the server's date."""
        capped = start_date_for(since, self.source.server_now)
        assert self._start is not None
        if self._start <= capped or self._capped:
            return False
        log.warning("scan.server_clock_behind", start=str(capped), asked=str(self._start))
        self._start, self._capped = capped, True
        return True

    async def _page(self, page: int, size: int) -> Page:
        start, end = self._start, self._end
        got = await retrying(
            "list_page", lambda: self.source.list_page(page, size, start, end), page=page
        )
        self.result.pages += 1
        return got

    async def _read_group(self, group: Group) -> bool:
        """Read every recording of ``group`` with one page covering it and a sentinel on each
        side; tried again wider, as rows inserted meanwhile shift positions."""
        for attempt in range(DEFAULT_GROUP_TRIES):
            margin = 0 if attempt == 0 else (group.top - group.lo + 1) * attempt
            page_no, size = covering_page(max(group.lo - margin, 0), group.top + margin)
            page = await self._page(page_no, size)
            await self._record(page.items, reread=True)
            if group_seen_whole(page, page_no, group):
                log.debug("scan.group_read", date_created=group.at.isoformat())
                return True
        return False

    async def _record(self, items: list[Item], *, reread: bool = False) -> None:
        result = self.result
        new, invalid, relisted = await self.ledger.upsert_listed(
            items, self.clock(), self.source.account_sid
        )
        result.new += new
        result.invalid += invalid
        result.relisted += len(relisted)
        self.hooks.page_listed(len(items), new)
        for sid in relisted:
            # its DELETE answered 200, yet the source lists it: verified again, deleted again
            if self.journal is not None:
                self.journal.append("relisted", sid=sid, reason="listed again after its deletion")
            log.warning("recording.relisted", sid=sid)
        if reread:
            result.reread += len(items)
        else:
            result.listed += len(items)
        cap = datetime.fromtimestamp(self.clock(), UTC)
        for item in items:
            if isinstance(item, Recording):
                created = min(item.date_created, cap)  # a clock ahead of ours cannot skip work
                if result.newest is None or created > result.newest:
                    result.newest = created
            elif item.sid is None:
                log.error("listing.item_unusable", reason=item.reason)
                result.invalid += 1
            elif invalid:
                log.error("recording.invalid", sid=item.sid, reason=item.reason)


class CursorLister(Lister):
    """Lists a source that pages by cursor (Twilio, SignalWire): each page continues after
    the last recording of the one before, so inserts and deletions while paging shift nothing
    and no same-second group can straddle unseen. The list ends where the source says no page
    follows, or at a recording older than ``since`` by more than the zone slack."""

    async def _scan(self, since: datetime) -> None:
        stop_before = since - self.zone_slack
        cursor: str | None = None
        while True:
            page = await self._cursor_page(cursor)
            await self._record(page.items)
            if page.last or page.cursor is None:
                return
            if any(isinstance(x, Recording) and x.date_created < stop_before for x in page.items):
                return  # newest first: the rest is older
            cursor = page.cursor

    async def _cursor_page(self, cursor: str | None) -> Page:
        source = self.source
        assert isinstance(source, CursorSource)
        start, end, size = self._start, self._end, self.size
        got = await retrying(
            "list_page",
            lambda: source.list_cursor(size, start, end, cursor),
            page=self.result.pages,
        )
        self.result.pages += 1
        return got


@runtime_checkable
class CursorSource(Protocol):
    """A source whose list pages by cursor (``paging = "cursor"``)."""

    async def list_cursor(
        self, page_size: int, start: date | None, end: date | None, cursor: str | None
    ) -> Page: ...


def lister_for(source: Source) -> type[Lister]:
    """The listing strategy the source's paging needs."""
    return CursorLister if source.paging == "cursor" else Lister
