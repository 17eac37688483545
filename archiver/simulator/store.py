"""What the simulated platform holds: accounts, recordings, and what was deleted.

Wire-neutral: nothing here knows a URL, a date format or a page envelope. The query methods
behave like the platform's SQL (``ORDER BY`` with no tiebreak, ``WHERE`` on a DATETIME column
holding server-local wall time, ``LIMIT``/``OFFSET``), which Restcomm's wire format pages
over; :meth:`RecordingStore.newest_first` is the stable order Twilio's cursors walk. Accounts
may own sub-accounts; SIDs are spelled in the platform's style (``SID_STYLES``).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from archiver.simulator import bodies

_MUTATIONS = [0]  # bumped on every SimRecording attribute assignment
_NAIVE_EPOCH = datetime(1970, 1, 1)


@dataclass
class SimRecording:
    """One recording held by the simulator; its body is generated on the fly."""

    sid: str
    account_sid: str
    call_sid: str | None
    date_created: datetime
    duration: float
    ext: str = "wav"
    size: int = 16_044
    seed: int = 0
    file_uri_host: str = "http://internal.invalid:8080"  # the host the platform names
    date_updated: datetime | None = None
    # what Twilio's resource says besides (Restcomm shows none of it)
    status: str = "completed"
    channels: int = 1
    source: str = "RecordVerb"
    conference_sid: str | None = None
    encryption_details: dict[str, str] | None = None
    error_code: int | None = None
    _sha_cache: dict[tuple[str, int, int, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        # Lets the store cache its sorted listing and still notice tests that edit a
        # recording in place (e.g. rec.date_created = ...).
        _MUTATIONS[0] += 1
        object.__setattr__(self, name, value)

    @property
    def content_type(self) -> str:
        return "video/mp4" if self.ext == "mp4" else "audio/x-wav"

    def header(self) -> bytes:
        return bodies.header(self.ext, self.size)

    def iter_body(self, chunk_size: int = bodies.BLOCK) -> Iterator[bytes]:
        """Yield the body in pieces of at most ``chunk_size`` bytes (see :mod:`.bodies`)."""
        return bodies.iter_body(self.sid, self.seed, self.size, self.ext, chunk_size)

    def body(self) -> bytes:
        return b"".join(self.iter_body(bodies.BLOCK))

    def rendition(self, ext: str, channels: int, size: int) -> bodies.Body:
        """Another form of this recording's media (an mp3, a mono mix-down), ``size`` bytes."""
        return bodies.Body(self.sid, self.seed, size, ext, channels)

    def sha256(self) -> str:
        key = (self.sid, self.seed, self.size, self.ext)
        cached = self._sha_cache.get(key)
        if cached is None:
            digest = hashlib.sha256()
            for chunk in self.iter_body(bodies.BLOCK):
                digest.update(chunk)
            cached = digest.hexdigest()
            self._sha_cache.clear()
            self._sha_cache[key] = cached
        return cached


ACCOUNT_STATUSES = ("active", "suspended", "closed")


@dataclass
class Account:
    """An account and the token that authenticates it; a sub-account names its owner."""

    sid: str
    auth_token: str
    friendly_name: str = ""
    status: str = "active"  # one of ACCOUNT_STATUSES
    owner_sid: str | None = None  # None: a main account (its own owner)
    date_created: datetime = datetime(2015, 1, 1, tzinfo=UTC)


# how the platform spells a new SID: Restcomm and Twilio "RE" + 32 hex digits (Restcomm's
# call SIDs are "ID…-CA…", Twilio's "CA…"); SignalWire a UUID whatever the resource
SID_STYLES = ("restcomm", "twilio", "uuid")


class Row(NamedTuple):
    """A recording as the platform's query sees it."""

    key: Any  # the ORDER BY value; rows with equal keys tie
    second: int  # date_created as server-local wall-time seconds (a DATETIME value)
    recording: SimRecording


SortBy = tuple[str, bool]  # (field, ascending); fields: DateCreated, Duration, CallSid


@dataclass
class Where:
    """A ``WHERE`` clause: wall-time bounds in naive seconds (inclusive), a call SID pattern."""

    start: int | None = None
    end: int | None = None
    call_like: re.Pattern[str] | None = None

    @property
    def everything(self) -> bool:
        return self.start is None and self.end is None and self.call_like is None

    def admits(self, row: Row) -> bool:
        if self.start is not None and row.second < self.start:
            return False
        if self.end is not None and row.second > self.end:
            return False
        if self.call_like is None:
            return True
        call_sid = row.recording.call_sid
        return call_sid is not None and self.call_like.fullmatch(call_sid) is not None


class RecordingStore:
    """Accounts and recordings, created, queried and deleted."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        tz: tzinfo,
        seed: int = 0,
        shuffle_ties: bool = True,
        sid_style: str = "restcomm",
    ) -> None:
        if sid_style not in SID_STYLES:
            raise ValueError(f"unknown sid_style {sid_style!r}")
        self.sid_style = sid_style
        self.account_sid = account_sid  # the main account, the one recordings are made for
        self.accounts = {account_sid: Account(account_sid, auth_token)}
        self.tz = tz  # the server's time zone: its DATETIME column holds wall time in it
        self.seed = seed
        # like a real DB without a tiebreak, rows that tie come back in a new order each time
        self.shuffle_ties = shuffle_ties
        self.recordings: dict[str, SimRecording] = {}
        self.deleted: list[str] = []  # SIDs in the order DELETE was answered
        self._sid_rng = random.Random(f"sid:{seed}")
        self._tie_rng = random.Random(f"ties:{seed}")
        self._sort_cache: dict[tuple[str, SortBy | None], tuple[tuple[Any, ...], list[Row]]] = {}
        self._stable_cache: dict[str, tuple[tuple[Any, ...], list[SimRecording]]] = {}

    @property
    def account(self) -> Account:
        return self.accounts[self.account_sid]

    # ---------------------------------------------------------------- making recordings

    def make_sid(self, prefix: str = "RE") -> str:
        """A new SID: ``prefix`` and 32 hex digits, or a UUID in the ``uuid`` style."""
        if self.sid_style == "uuid":
            return str(uuid.UUID(int=self._sid_rng.getrandbits(128), version=4))
        return f"{prefix}{self._sid_rng.getrandbits(128):032x}"

    def _make_call_sid(self) -> str:
        if self.sid_style != "restcomm":
            return self.make_sid("CA")
        return f"ID{self._sid_rng.getrandbits(128):032x}-CA{self._sid_rng.getrandbits(128):032x}"

    def add_account(
        self,
        *,
        owner_sid: str | None = None,
        friendly_name: str = "",
        status: str = "active",
        auth_token: str | None = None,
        sid: str | None = None,
    ) -> Account:
        """A new account; with ``owner_sid``, a sub-account of that one."""
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"unknown account status {status!r}")
        if owner_sid is not None and owner_sid not in self.accounts:
            raise KeyError(owner_sid)
        sid = sid or self.make_sid("AC")
        token = auth_token or f"{self._sid_rng.getrandbits(128):032x}"
        created = datetime(2015, 1, 1, tzinfo=UTC) + timedelta(days=len(self.accounts))
        account = Account(sid, token, friendly_name or sid, status, owner_sid, created)
        self.accounts[sid] = account
        return account

    def reaches(self, caller_sid: str, account_sid: str) -> bool:
        """An account's credentials reach it and its sub-accounts (and theirs)."""
        seen = self.accounts.get(account_sid)
        while seen is not None:
            if seen.sid == caller_sid:
                return True
            seen = self.accounts.get(seen.owner_sid) if seen.owner_sid else None
        return False

    def add(self, rec: SimRecording) -> SimRecording:
        self.recordings[rec.sid] = rec
        return rec

    def generate(
        self,
        n: int,
        *,
        start: datetime,
        spacing: timedelta = timedelta(seconds=7),
        size: int = 16_044,
        same_second_every: int = 1,
        ext_mp4_every: int = 0,
        account_sid: str | None = None,
        channels: int = 1,
    ) -> list[SimRecording]:
        """Add ``n`` recordings from ``start`` onwards, ``spacing`` apart.

        ``same_second_every=k`` gives k consecutive recordings the same ``date_created``;
        ``ext_mp4_every=k`` makes every k-th recording (k-1, 2k-1, ...) an mp4; ``account_sid``
        (default: the main account) owns them; ``channels=2`` makes them dual-channel.
        """
        owner = account_sid or self.account_sid
        if owner not in self.accounts:
            raise KeyError(owner)
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        group = max(same_second_every, 1)
        data_len = max(size - 44, 0)
        duration = round(data_len / 16000, 5) if data_len else 0.5
        out: list[SimRecording] = []
        for i in range(n):
            rec = SimRecording(
                sid=self.make_sid(),
                account_sid=owner,
                call_sid=self._make_call_sid(),
                date_created=(start + spacing * (i // group)).astimezone(UTC),
                duration=duration or 0.5,
                ext="mp4" if ext_mp4_every > 0 and (i + 1) % ext_mp4_every == 0 else "wav",
                size=size,
                seed=self.seed,
                channels=channels,
                source="DialVerb" if channels == 2 else "RecordVerb",
            )
            out.append(self.add(rec))
        return out

    # ---------------------------------------------------------------- deleting

    def delete(self, rec: SimRecording, *, keep: bool = False) -> None:
        """Record the deletion of ``rec``; with ``keep`` the recording stays (a lying server)."""
        if not keep:
            del self.recordings[rec.sid]
        self.deleted.append(rec.sid)

    # ---------------------------------------------------------------- querying

    def of_call(self, call_sid: str) -> list[SimRecording]:
        """The recordings of one call, newest first."""
        recs = (r for r in self.recordings.values() if r.call_sid == call_sid)
        return sorted(recs, key=lambda r: r.date_created, reverse=True)

    def select(
        self, account_sid: str, sort_by: SortBy | None, where: Where | None = None
    ) -> list[Row]:
        """``SELECT ... WHERE account_sid = ? AND where ORDER BY sort_by``, no tiebreak."""
        rows = self._sorted(account_sid, sort_by)
        if where is None or where.everything:
            return rows
        return [row for row in rows if where.admits(row)]

    def page(self, rows: list[Row], offset: int, limit: int) -> list[SimRecording]:
        """``LIMIT limit OFFSET offset`` over ``rows``. With ``shuffle_ties`` the rows that tie
        on the sort key are shuffled afresh for every request (only the tie groups that touch
        the window need to be, which keeps big listings cheap)."""
        end = min(offset + limit, len(rows))
        if offset >= end:
            return []
        if not self.shuffle_ties:
            return [row.recording for row in rows[offset:end]]
        lo, hi = offset, end
        while lo > 0 and rows[lo - 1].key == rows[offset].key:
            lo -= 1
        while hi < len(rows) and rows[hi].key == rows[end - 1].key:
            hi += 1
        return self._shuffle_ties(rows[lo:hi])[offset - lo : end - lo]

    def _shuffle_ties(self, rows: list[Row]) -> list[SimRecording]:
        out: list[SimRecording] = []
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j].key == rows[i].key:
                j += 1
            run = [row.recording for row in rows[i:j]]
            if len(run) > 1:
                self._tie_rng.shuffle(run)
            out.extend(run)
            i = j
        return out

    def newest_first(self, account_sid: str) -> list[SimRecording]:
        """The account's recordings by ``date_created`` descending, ties by SID descending
        (a stable order, as Twilio's is); cached until the recordings change."""
        fingerprint = self._fingerprint(account_sid, ("", False))
        cached = self._stable_cache.get(account_sid)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        recs = [r for r in self.recordings.values() if r.account_sid == account_sid]
        recs.sort(key=lambda r: (r.date_created, r.sid), reverse=True)
        self._stable_cache[account_sid] = (fingerprint, recs)
        return recs

    def _fingerprint(self, account_sid: str, sort_by: SortBy | None) -> tuple[Any, ...]:
        """What the cached orders depend on: it changes whenever a recording does."""
        recs = self.recordings
        return (
            sort_by,
            self.tz,
            account_sid,
            len(recs),
            _MUTATIONS[0],
            hash(tuple(recs)),
            hash(tuple(map(id, recs.values()))),
        )

    def _sorted(self, account_sid: str, sort_by: SortBy | None) -> list[Row]:
        """The account's rows in ``ORDER BY`` order, ties in insertion order; cached until
        the recordings change."""
        recs = self.recordings
        fingerprint = self._fingerprint(account_sid, sort_by)
        cached = self._sort_cache.get((account_sid, sort_by))
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        # a DATETIME column holds the server-local wall time: it orders and filters by that
        # (in the repeated autumn hour, instants go back inside the newest-first order)
        base = [
            (self.wall(r.date_created), r) for r in recs.values() if r.account_sid == account_sid
        ]
        rows = _order_by(base, sort_by)
        self._sort_cache[(account_sid, sort_by)] = (fingerprint, rows)
        return rows

    def wall(self, when: datetime) -> int:
        """Seconds of the server-local wall time of ``when`` (naive, as DATETIME stores it)."""
        return naive_seconds(when.astimezone(self.tz).replace(tzinfo=None))


def _order_by(base: list[tuple[int, SimRecording]], sort_by: SortBy | None) -> list[Row]:
    """Sort ``(wall second, recording)`` pairs as the platform's ``ORDER BY`` does."""
    field_name, ascending = sort_by or ("", False)
    if field_name in ("", "DateCreated"):
        base.sort(key=lambda t: t[0], reverse=not ascending)
        return [Row(sec, sec, r) for sec, r in base]
    base.sort(key=lambda t: t[0], reverse=True)  # the secondary order: date_created DESC
    if field_name == "Duration":
        base.sort(key=lambda t: t[1].duration, reverse=not ascending)
        return [Row((r.duration, sec), sec, r) for sec, r in base]
    # CallSid; NULLs sort first ascending
    base.sort(key=lambda t: (t[1].call_sid is not None, t[1].call_sid or ""), reverse=not ascending)
    return [Row((r.call_sid, sec), sec, r) for sec, r in base]


def naive_seconds(wall: datetime) -> int:
    """Seconds since 1970-01-01 of a naive wall time."""
    return math.floor((wall - _NAIVE_EPOCH).total_seconds())


def like(pattern: str) -> re.Pattern[str]:
    """SQL ``LIKE`` as a regex: ``%`` any run, ``_`` any one character."""
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)
