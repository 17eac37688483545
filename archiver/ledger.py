"""The ledger: one SQLite row per recording, and the watermark, durable across crashes.

States::

    discovered ──► archived ──► verified ──► deleted (issue: verified deletion)
         │            │
         └──► failed ◄┘   (retryable until max_attempts; permanent ones never retried)

A row is written when a recording is first listed, before anything else happens to it, so work
survives restarts without relying on the listing again. The watermark is the newest
``date_created`` whose listing is durably here; it only moves forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import os
import secrets
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from archiver.errors import LedgerError
from archiver.model import Account, InvalidItem, Recording
from archiver.modes import DEFAULT_FILE_MODE, make_dirs, open_new, pid_alive

STATES = ("discovered", "archived", "verified", "failed", "deleted")
LOST_PREFIX = "lost: "  # last_error of a deleted recording whose archived copy is gone
REPAIR_PREFIX = "repair: "  # last_error of a row whose archived copy must be made again
SCHEMA_VERSION = 4
SQLITE_HEADER = b"SQLite format 3\x00"
# meta keys, each read and written only through its accessor below
META_WATERMARK = "watermark"  # schema 3's one watermark: moved to its account's row (4)
META_ACCOUNTS_REFRESHED_AT = "accounts_refreshed_at"
META_AUDIT_HEAD = "audit_head"
META_MANIFEST_OFFSET = "audit_manifest_offset"
META_LAST_PASS = "last_pass"
META_LAST_PASS_AT = "last_pass_at"
META_LAST_RECONCILE_AT = "last_reconcile_at"
T = TypeVar("T")

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE recordings (
        sid             TEXT PRIMARY KEY,
        account_sid     TEXT,
        call_sid        TEXT,
        date_created    TEXT,             -- ISO-8601 UTC
        created_epoch   REAL,             -- for ordering and lag
        duration        REAL,
        ext             TEXT,
        source          TEXT NOT NULL,    -- the item exactly as listed (JSON)
        state           TEXT NOT NULL CHECK (state IN
                            ('discovered','archived','verified','failed','deleted')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        permanent       INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        next_attempt_at REAL,
        size            INTEGER,
        sha256          TEXT,
        archive_key     TEXT,
        discovered_at   REAL NOT NULL,
        archived_at     REAL,
        verified_at     REAL,
        deleted_at      REAL,
        updated_at      REAL NOT NULL
    );
    CREATE INDEX recordings_work ON recordings (state, next_attempt_at);
    CREATE INDEX recordings_created ON recordings (created_epoch);
    """,
    2: """
    CREATE INDEX recordings_deletable ON recordings (state, verified_at);
    """,
    # size joins the index so `status` counts and sums a million rows from the index alone
    3: """
    DROP INDEX recordings_deletable;
    CREATE INDEX recordings_deletable ON recordings (state, verified_at, size);
    """,
    # one row per account archived: its own watermark and how its last listing went. A
    # ledger of one account (every one written before) gives that account the watermark;
    # invalid items, listed without an account before, are its too.
    4: """
    CREATE TABLE accounts (
        sid             TEXT PRIMARY KEY,
        watermark       TEXT,             -- ISO-8601 UTC, NULL: list from start_time
        status          TEXT,             -- the platform's word when last listed
        friendly_name   TEXT,
        origin          TEXT NOT NULL DEFAULT 'configured',  -- or 'discovered'
        first_seen      REAL,
        last_seen       REAL,             -- last named by the config or the accounts list
        listed_at       REAL,             -- its last listing's end
        scan_complete   INTEGER,          -- 1: that listing was complete
        problem         TEXT,             -- why it could not be listed or fetched, if so
        problem_at      REAL
    );
    INSERT INTO accounts (sid, watermark)
        SELECT (SELECT account_sid FROM recordings WHERE account_sid IS NOT NULL LIMIT 1),
               (SELECT value FROM meta WHERE key = 'watermark')
        WHERE (SELECT COUNT(DISTINCT account_sid) FROM recordings) = 1;
    UPDATE recordings SET account_sid = (SELECT sid FROM accounts LIMIT 1)
        WHERE account_sid IS NULL AND (SELECT COUNT(*) FROM accounts) = 1;
    DELETE FROM meta WHERE key = 'watermark' AND (SELECT COUNT(*) FROM accounts) = 1;
    CREATE INDEX recordings_account ON recordings (account_sid, state);
    """,
}


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True)
class Row:
    sid: str
    account_sid: str | None
    call_sid: str | None
    date_created: datetime | None
    duration: float | None
    ext: str | None
    source: dict[str, Any]
    state: str
    attempts: int
    permanent: bool
    last_error: str | None
    size: int | None
    sha256: str | None
    archive_key: str | None
    updated_at: float
    archived_at: float | None = None

    def recording(self) -> Recording:
        """The recording as listed; LedgerError for a row of an invalid item."""
        if not (self.account_sid and self.date_created and self.ext):
            raise LedgerError(f"ledger row {self.sid} ({self.state}) is not a valid recording")
        return Recording(
            self.sid,
            self.account_sid,
            self.call_sid,
            self.date_created,
            self.duration or 0.0,
            self.ext,
            self.source,
        )

    def archived(self) -> ArchivedRow:
        """The row of an archived copy, every field of it present; LedgerError if not."""
        if self.archive_key is None or self.size is None or self.sha256 is None:
            raise LedgerError(
                f"ledger row {self.sid} is {self.state} but lacks its archive key, size or "
                "SHA-256: the ledger is damaged (archiver verify --repair)"
            )
        return ArchivedRow(
            self.sid, self.archive_key, self.size, self.sha256, self.archived_at, self.recording()
        )


@dataclass(frozen=True)
class ArchivedRow:
    """A ledger row whose recording has an archived copy (archived, verified or deleted)."""

    sid: str
    archive_key: str
    size: int
    sha256: str
    archived_at: float | None
    recording: Recording


@dataclass(frozen=True)
class VerifiedCopy:
    """A copy just verified, for :meth:`Ledger.commit_verified`. ``fresh``: stored by this
    transfer (else archived before, and only verified now)."""

    sid: str
    key: str
    size: int
    sha256: str
    archived_at: float
    fresh: bool


@dataclass(frozen=True)
class RebuiltRow:
    """An archived copy found in the archive (its sidecar), for :meth:`Ledger.insert_rebuilt`."""

    recording: Recording
    key: str
    size: int
    sha256: str
    archived_at: float


@dataclass(frozen=True)
class Outstanding:
    """Recordings not done yet. ``waiting`` are failed ones that will be tried again (the
    soonest at ``next_try_at``); ``permanent`` failed for good and need an operator."""

    untried: int  # discovered, never transferred
    unverified: int  # archived, not yet read back
    waiting: int
    next_try_at: float | None
    permanent: int

    @property
    def total(self) -> int:
        return self.untried + self.unverified + self.waiting + self.permanent

    def as_dict(self) -> dict[str, object]:
        return {
            "untried": self.untried,
            "unverified": self.unverified,
            "failed_waiting": self.waiting,
            "next_try_at": iso(self.next_try_at),
            "failed_permanent": self.permanent,
        }


@dataclass(frozen=True)
class AccountState:
    """One account as the ledger knows it: its row and its recordings by state."""

    sid: str  # "" for recordings listed without an account (none since schema 4)
    status: str | None = None
    friendly_name: str = ""
    origin: str | None = None
    watermark: datetime | None = None
    listed_at: float | None = None
    scan_complete: bool | None = None
    problem: str | None = None
    problem_at: float | None = None
    last_seen: float | None = None
    states: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "sid": self.sid,
            "status": self.status,
            "friendly_name": self.friendly_name,
            "origin": self.origin,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "listed_at": iso(self.listed_at),
            "scan_complete": self.scan_complete,
            "problem": self.problem,
            "problem_at": iso(self.problem_at),
            "states": self.states,
        }


_ROW_COLUMNS = (
    "sid, account_sid, call_sid, date_created, duration, ext, source, state, attempts, "
    "permanent, last_error, size, sha256, archive_key, updated_at, archived_at"
)


def _row(r: Sequence[Any]) -> Row:
    return Row(
        sid=r[0],
        account_sid=r[1],
        call_sid=r[2],
        date_created=datetime.fromisoformat(r[3]) if r[3] else None,
        duration=r[4],
        ext=r[5],
        source=json.loads(r[6]),
        state=r[7],
        attempts=r[8],
        permanent=bool(r[9]),
        last_error=r[10],
        size=r[11],
        sha256=r[12],
        archive_key=r[13],
        updated_at=r[14],
        archived_at=r[15],
    )


class Ledger:
    """Open with ``async with Ledger(path) as ledger``.

    ``check``: read the whole file once on opening (``PRAGMA quick_check``), so a damaged
    ledger is refused before anything is written to it. It costs about a second per million
    rows, so a command that only reads (``status``) skips it: a damaged page it reads is still
    reported as a damaged ledger, by the query that meets it."""

    def __init__(self, path: str | Path, *, check: bool = True) -> None:
        self.path = Path(path)
        self.check = check
        self._db: aiosqlite.Connection | None = None
        # one explicit transaction at a time on the one connection: tasks of a pass (the
        # accounts listed at once, the group commit) take turns
        self._tx = asyncio.Lock()

    async def __aenter__(self) -> Ledger:
        try:
            if str(self.path) != ":memory:":
                await asyncio.to_thread(self._prepare)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            # every commit reaches the disk before it returns: what the ledger says happened
            # survives a power cut (transfers commit in groups, so this is paid per batch)
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            if self.check:
                await self._quick_check()
            await self._migrate()
        except LedgerError:
            await self._close()
            raise
        except sqlite3.DatabaseError as exc:
            await self._close()
            if isinstance(exc, sqlite3.OperationalError):  # the volume, not the file's content
                raise self._error("opening", exc) from exc
            raise LedgerError(self._damaged(str(exc))) from exc
        except (sqlite3.Error, OSError) as exc:
            await self._close()
            raise LedgerError(
                f"cannot open the ledger at {self.path}: {exc} "
                "(check ledger.path, its folder's permissions, and that it is a SQLite file)"
            ) from exc
        except BaseException:  # a newer schema, a cancellation: never leak the connection
            await self._close()
            raise
        return self

    def _prepare(self) -> None:
        """A missing ledger is created (private); an empty or foreign file is refused: taking
        it as a new ledger would forget every recording archived or deleted so far."""
        make_dirs(self.path.parent)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._create()
            return
        if not stat.S_ISREG(st.st_mode):
            raise LedgerError(f"the ledger {self.path} is not a regular file; fix ledger.path")
        if st.st_size == 0:
            raise LedgerError(
                f"the ledger {self.path} is an empty (0-byte) file, not a new ledger: its "
                "contents are lost. Restore it from a backup; archiver will not start over on it "
                "(that would re-download everything and forget deleted recordings)"
            )
        with self.path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
        if header != SQLITE_HEADER:
            raise LedgerError(
                f"the ledger {self.path} is not a SQLite database (it starts with {header!r}); "
                "fix ledger.path, or restore the ledger from a backup"
            )

    def _create(self) -> None:
        """Make a new, empty ledger (mode 0600) under a temp name and link it into place: the
        path never holds a 0-byte file, which would be refused on the next open."""
        # unique per call: connections of one process may create the same ledger at once
        tmp = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{secrets.token_hex(4)}")
        for leftover in self.path.parent.glob(f".{self.path.name}.new-*"):
            pid = leftover.name.rsplit(".new-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):  # a creator that died midway
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        os.close(open_new(tmp, os.O_WRONLY, DEFAULT_FILE_MODE))
        try:
            db = sqlite3.connect(tmp)
            try:
                db.execute("PRAGMA journal_mode=WAL")  # writes the header: no longer 0 bytes
            finally:
                db.close()
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.link(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    async def _quick_check(self) -> None:
        async with self.db.execute("PRAGMA quick_check") as cur:
            rows = await cur.fetchall()
        problems = [str(r[0]) for r in rows]
        if problems != ["ok"]:
            raise LedgerError(self._damaged("; ".join(problems[:5])))

    def _damaged(self, problem: str) -> str:
        return (
            f"the ledger {self.path} is damaged ({problem}). Stop every archiver using it, keep "
            "a copy of the damaged file (and its -wal file), and restore the ledger from a "
            "backup; then run 'archiver audit verify'"
        )

    def _error(self, what: str, exc: sqlite3.Error) -> LedgerError:
        """A failed SQLite call as a LedgerError naming the file, the cause and the fix."""
        text = str(exc)
        lower = text.lower()
        full = False
        with contextlib.suppress(OSError):  # SQLite reports ENOSPC on -shm/-wal as an I/O error
            full = os.statvfs(self.path.parent).f_bavail == 0
        if "full" in lower or full:
            hint = "the state volume holding it is full: free space there (or raise its quota)"
        elif "readonly" in lower or "read-only" in lower:
            hint = "the file or its volume is read-only: check the owner, mode and mount"
        elif "locked" in lower or "busy" in lower:
            hint = "another process holds the database: is a second archiver using this file?"
        elif "malformed" in lower or "not a database" in lower:
            return LedgerError(self._damaged(text))
        elif "i/o" in lower or "unable to open" in lower:
            hint = "check the state volume (mount, permissions, I/O errors in the kernel log)"
        else:
            hint = "check the state volume"
        return LedgerError(f"ledger {self.path}: {what} failed: {text}; {hint}")

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("Ledger used outside 'async with'")
        return self._db

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger at {self.path} has schema {version}, newer than this archiver "
                f"({SCHEMA_VERSION}); upgrade archiver"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                # read again under the write lock: a second connection opening a new ledger at
                # the same moment (a `status` beside the first `sync`) may have migrated it
                async with self.db.execute("PRAGMA user_version") as cur:
                    row = await cur.fetchone()
                if (int(row[0]) if row else 0) < target:
                    for statement in _MIGRATIONS[target].split(";"):
                        if statement.strip():
                            await self.db.execute(statement)
                    await self.db.execute(f"PRAGMA user_version={target}")
                await self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                raise

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any error; one at a time."""
        async with self._tx:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # a failed COMMIT ends it: ROLLBACK would mask it
                    await self.db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ meta

    async def get_meta(self, key: str) -> str | None:
        async with self.db.execute("SELECT value FROM meta WHERE key=?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    async def set_metas(self, values: dict[str, str]) -> None:
        """Set several meta keys in one transaction: all or none survive a crash."""
        async with self._transaction():
            for key, value in values.items():
                await self.set_meta(key, value)

    # Every meta key has its accessor here; nothing outside the ledger names a key.

    async def oldest_watermark(self) -> datetime | None:
        """The watermark of the account furthest behind (the one a lag alert is about), of
        the accounts still archived (a closed or suspended one's stays where it stopped)."""
        async with self.db.execute(
            "SELECT MIN(watermark) FROM accounts WHERE watermark IS NOT NULL "
            "AND (status IS NULL OR status = 'active')"
        ) as cur:
            row = await cur.fetchone()
        return datetime.fromisoformat(row[0]) if row is not None and row[0] else None

    async def watermark(self, account: str) -> datetime | None:
        """The newest ``date_created`` listed completely for ``account`` (None: never)."""
        async with self.db.execute("SELECT watermark FROM accounts WHERE sid=?", (account,)) as cur:
            row = await cur.fetchone()
        value = row[0] if row is not None else None
        return datetime.fromisoformat(value) if value else None

    async def adopt_watermark(self, account: str) -> bool:
        """Give ``account`` the one watermark a schema-3 ledger kept for its account, when the
        migration could not tell whose it was (no valid recording listed yet). True if so."""
        legacy = await self.get_meta(META_WATERMARK)
        if legacy is None or await self.watermark(account) is not None:
            return False
        async with self._transaction():
            await self._ensure_account(account)
            await self.db.execute("UPDATE accounts SET watermark=? WHERE sid=?", (legacy, account))
            await self.db.execute("DELETE FROM meta WHERE key=?", (META_WATERMARK,))
        return True

    async def _ensure_account(self, account: str, now: float | None = None) -> None:
        await self.db.execute(
            "INSERT INTO accounts (sid, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT(sid) DO NOTHING",
            (account, now, now),
        )

    async def audit_checkpoint(self) -> str | None:
        """The journal head the ledger last saw durable (``audit.Head`` encoded)."""
        return await self.get_meta(META_AUDIT_HEAD)

    async def set_audit_checkpoint(self, head: str) -> None:
        await self.set_meta(META_AUDIT_HEAD, head)

    async def manifest_offset(self) -> int:
        """The journal's byte offset up to which daily manifests are in the archive."""
        return int(await self.get_meta(META_MANIFEST_OFFSET) or 0)

    async def set_manifest_offset(self, offset: int) -> None:
        await self.set_meta(META_MANIFEST_OFFSET, str(offset))

    async def restart_audit(self, head: str, manifest_offset: int) -> None:
        """A recorded chain break: the new checkpoint and manifest offset, both or neither."""
        await self.set_metas({META_AUDIT_HEAD: head, META_MANIFEST_OFFSET: str(manifest_offset)})

    async def last_pass(self) -> tuple[dict[str, Any] | None, float | None]:
        """The summary of the last pass and when it finished (None, None before the first)."""
        raw, at = await self.get_meta(META_LAST_PASS), await self.get_meta(META_LAST_PASS_AT)
        summary = json.loads(raw) if raw else None
        return (summary if isinstance(summary, dict) else None), (float(at) if at else None)

    async def record_pass(
        self,
        summary: dict[str, object],
        finished_at: float,
        accounts: dict[str, tuple[bool, str | None]] | None = None,
    ) -> None:
        """The pass's summary, and how each account's part of it went (its listing complete,
        the problem that kept it from being listed or fetched): one transaction, one fsync."""
        async with self._transaction():
            await self.set_meta(META_LAST_PASS, json.dumps(summary))
            await self.set_meta(META_LAST_PASS_AT, str(finished_at))
            if accounts:
                await self._record_accounts(accounts, finished_at)

    async def last_reconcile_at(self) -> float:
        return float(await self.get_meta(META_LAST_RECONCILE_AT) or 0)

    async def set_last_reconcile_at(self, when: float) -> None:
        await self.set_meta(META_LAST_RECONCILE_AT, str(when))

    async def advance_watermark(self, account: str, to: datetime) -> datetime:
        """Move ``account``'s watermark to ``to`` if that is forward; return it as it is now."""
        current = await self.watermark(account)
        if current is None or to > current:
            await self._set_watermark(account, to)
            return to
        return current

    async def pull_back_watermark(self, account: str, to: datetime) -> datetime:
        """Move ``account``'s watermark back to ``to`` (a clock that stepped back left it in
        the future). The only way it moves backwards; listing again from earlier is harmless."""
        await self._set_watermark(account, to)
        return to

    async def _set_watermark(self, account: str, to: datetime) -> None:
        await self.db.execute(
            "INSERT INTO accounts (sid, watermark) VALUES (?, ?) "
            "ON CONFLICT(sid) DO UPDATE SET watermark=excluded.watermark",
            (account, to.astimezone(UTC).isoformat()),
        )

    # ------------------------------------------------------------ accounts

    async def accounts_refreshed_at(self) -> float:
        """When the accounts list was last read (0: never)."""
        return float(await self.get_meta(META_ACCOUNTS_REFRESHED_AT) or 0)

    async def note_accounts(
        self, accounts: Sequence[Account], origin: str, now: float, *, refreshed: bool
    ) -> None:
        """Record the accounts a pass archives (from the config or the accounts list) with
        their status; with ``refreshed``, the accounts list was read at ``now``."""
        values: list[tuple[object, ...]]
        if origin == "configured":  # named by the config: its status is the platform's to say
            upsert = (
                "INSERT INTO accounts (sid, origin, first_seen, last_seen) VALUES (?,?,?,?) "
                "ON CONFLICT(sid) DO UPDATE SET last_seen=excluded.last_seen, "
                "first_seen=COALESCE(accounts.first_seen, excluded.first_seen)"
            )
            values = [(a.sid, origin, now, now) for a in accounts]
        else:
            upsert = (
                "INSERT INTO accounts (sid, status, friendly_name, origin, first_seen, "
                "last_seen) VALUES (?,?,?,?,?,?) ON CONFLICT(sid) DO UPDATE SET "
                "status=excluded.status, "
                "friendly_name=COALESCE(NULLIF(excluded.friendly_name, ''), "
                "accounts.friendly_name), "
                "origin=excluded.origin, last_seen=excluded.last_seen, "
                "first_seen=COALESCE(accounts.first_seen, excluded.first_seen)"
            )
            values = [(a.sid, a.status, a.friendly_name, origin, now, now) for a in accounts]
        async with self._transaction():
            await self.db.executemany(upsert, values)
            if refreshed:
                await self.set_meta(META_ACCOUNTS_REFRESHED_AT, str(now))

    async def known_accounts(self, origin: str | None = None) -> list[Account]:
        """Every account the ledger has a row for (of ``origin`` only), as last listed."""
        async with self.db.execute(
            "SELECT sid, status, friendly_name FROM accounts "
            "WHERE ? IS NULL OR origin = ? ORDER BY sid",
            (origin, origin),
        ) as cur:
            return [Account(r[0], r[1] or "unknown", r[2] or "") for r in await cur.fetchall()]

    async def _record_accounts(
        self, outcomes: dict[str, tuple[bool, str | None]], now: float
    ) -> None:
        await self.db.executemany(
            "INSERT INTO accounts (sid, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT(sid) DO NOTHING",
            [(sid, now, now) for sid in outcomes],
        )
        await self.db.executemany(
            "UPDATE accounts SET listed_at=?, scan_complete=?, problem=?, "
            "problem_at=CASE WHEN ? IS NULL THEN problem_at ELSE ? END WHERE sid=?",
            [
                (now, int(complete), problem, problem, now, sid)
                for sid, (complete, problem) in outcomes.items()
            ],
        )

    async def _only_account(self) -> str | None:
        """The one account the ledger knows, if it knows one and no recording belongs to any
        other (two index seeks: never a scan of the recordings)."""
        async with self.db.execute("SELECT sid FROM accounts LIMIT 2") as cur:
            known = [str(r[0]) for r in await cur.fetchall()]
        if len(known) != 1:
            return None
        async with self.db.execute(
            "SELECT 1 FROM recordings WHERE account_sid > ? OR account_sid < ? LIMIT 1",
            (known[0], known[0]),
        ) as cur:
            other = await cur.fetchone()
        return None if other is not None else known[0]

    async def account_states(self, totals: dict[str, int] | None = None) -> list[AccountState]:
        """Every account's row and its recordings by state (for ``status`` and metrics).

        With ``totals`` (:meth:`counts`, already read), one account known and no recording of
        another, those are its counts: the per-account count of a million rows is spared
        where it says nothing more."""
        only = await self._only_account() if totals is not None else None
        counts: dict[str, dict[str, int]] = {}
        if totals is not None and only is not None:
            counts[only] = dict(totals)
        else:
            async with self.db.execute(
                "SELECT account_sid, state, COUNT(*) FROM recordings GROUP BY account_sid, state"
            ) as cur:
                for sid, state, n in await cur.fetchall():
                    counts.setdefault(sid or "", dict.fromkeys(STATES, 0))[str(state)] = int(n)
        async with self.db.execute(
            "SELECT sid, status, friendly_name, origin, watermark, listed_at, scan_complete, "
            "problem, problem_at, last_seen FROM accounts ORDER BY sid"
        ) as cur:
            rows = await cur.fetchall()
        out = [
            AccountState(
                sid=r[0],
                status=r[1],
                friendly_name=r[2] or "",
                origin=r[3],
                watermark=datetime.fromisoformat(r[4]) if r[4] else None,
                listed_at=r[5],
                scan_complete=None if r[6] is None else bool(r[6]),
                problem=r[7],
                problem_at=r[8],
                last_seen=r[9],
                states=counts.pop(r[0], dict.fromkeys(STATES, 0)),
            )
            for r in rows
        ]
        for sid, states in sorted(counts.items()):  # recordings of an account with no row
            out.append(AccountState(sid=sid, states=states))
        return out

    # ------------------------------------------------------------ recordings

    async def upsert_listed(
        self, items: Iterable[Recording | InvalidItem], now: float, account: str | None = None
    ) -> tuple[int, int, list[str]]:
        """Record listed items in one transaction. Re-seeing one is harmless.

        A recording marked ``deleted`` that the source lists again (its DELETE answered 200 but
        did not take) is ``verified`` again, so it is deleted again: the ledger never says
        "deleted" for a recording the source still has.

        Returns (new recordings, new invalid items, SIDs listed again after their deletion).
        """
        new = invalid = 0
        listed: list[str] = []
        relisted: list[str] = []
        async with self._transaction():
            for item in items:
                if isinstance(item, Recording):
                    listed.append(item.sid)
                    cur = await self.db.execute(
                        "INSERT INTO recordings (sid, account_sid, call_sid, date_created, "
                        "created_epoch, duration, ext, source, state, discovered_at, updated_at) "
                        "VALUES (?,?,?,?,?,?,?,?,'discovered',?,?) ON CONFLICT(sid) DO NOTHING",
                        (
                            item.sid,
                            item.account_sid,
                            item.call_sid,
                            item.date_created.isoformat(),
                            item.date_created.timestamp(),
                            item.duration,
                            item.ext,
                            json.dumps(item.source, sort_keys=False),
                            now,
                            now,
                        ),
                    )
                    new += cur.rowcount
                elif item.sid is not None:
                    cur = await self.db.execute(
                        "INSERT INTO recordings (sid, account_sid, source, state, permanent, "
                        "last_error, attempts, discovered_at, updated_at) "
                        "VALUES (?,?,?,'failed',1,?,0,?,?) ON CONFLICT(sid) DO NOTHING",
                        (
                            item.sid,
                            account,  # the account whose listing named it
                            json.dumps(item.source),
                            f"invalid: {item.reason}",
                            now,
                            now,
                        ),
                    )
                    invalid += cur.rowcount
            if listed:  # one statement for the page, not one per item: a re-scan's hot path
                marks = ",".join("?" * len(listed))
                async with self.db.execute(
                    "UPDATE recordings SET state='verified', deleted_at=NULL, updated_at=? "
                    f"WHERE state='deleted' AND sid IN ({marks}) RETURNING sid",
                    (now, *listed),
                ) as cur:
                    relisted = [str(r[0]) for r in await cur.fetchall()]
        return new, invalid, relisted

    async def insert_rebuilt(self, rows: Sequence[RebuiltRow], now: float) -> int:
        """Rows for copies found in the archive, ``archived`` (to be verified again), in one
        transaction; a SID already in the ledger is left as it is. Returns how many were new."""
        values = [
            (
                r.recording.sid,
                r.recording.account_sid,
                r.recording.call_sid,
                r.recording.date_created.isoformat(),
                r.recording.date_created.timestamp(),
                r.recording.duration,
                r.recording.ext,
                json.dumps(r.recording.source),
                r.size,
                r.sha256,
                r.key,
                now,
                r.archived_at,
                now,
            )
            for r in rows
        ]
        before = self.db.total_changes
        async with self._transaction():
            await self.db.executemany(
                "INSERT INTO recordings (sid, account_sid, call_sid, date_created, "
                "created_epoch, duration, ext, source, state, size, sha256, archive_key, "
                "discovered_at, archived_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,'archived',?,?,?,?,?,?) ON CONFLICT(sid) DO NOTHING",
                values,
            )
        return self.db.total_changes - before

    async def get(self, sid: str) -> Row | None:
        async with self.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM recordings WHERE sid=?", (sid,)
        ) as cur:
            r = await cur.fetchone()
        return None if r is None else _row(r)

    # The two kinds of due work are separate queries so each uses the state index: on a ledger
    # of millions of verified rows, finding the few due ones must not scan them all.
    _DUE_NEW = "state IN ('discovered','archived')"
    _DUE_RETRY = (
        "state='failed' AND permanent=0 AND attempts < :max_attempts "
        "AND (next_attempt_at IS NULL OR next_attempt_at <= :now)"
    )

    async def due(
        self,
        now: float,
        max_attempts: int,
        limit: int = 1000,
        after: tuple[float, str] | None = None,
        account: str | None = None,
    ) -> list[Row]:
        """Rows with work to do: new, archived-not-verified, and retryable failures now due;
        of ``account`` only, when given.

        Ordered by (created_epoch, sid); ``after`` continues from the last row of a batch.
        """
        epoch, sid = after if after is not None else (float("-inf"), "")
        cursor = "(created_epoch > :epoch OR (created_epoch = :epoch AND sid > :sid))"
        if account is not None:
            cursor += " AND account_sid = :account"
        query = (
            f"SELECT * FROM (SELECT {_ROW_COLUMNS}, created_epoch FROM recordings "
            f"WHERE {self._DUE_NEW} AND {cursor} "
            f"UNION ALL SELECT {_ROW_COLUMNS}, created_epoch FROM recordings "
            f"WHERE {self._DUE_RETRY} AND {cursor}) ORDER BY created_epoch, sid LIMIT :limit"
        )
        params = {
            "max_attempts": max_attempts,
            "now": now,
            "epoch": epoch,
            "sid": sid,
            "limit": limit,
            "account": account,
        }
        async with self.db.execute(query, params) as cur:
            return [_row(r) for r in await cur.fetchall()]

    async def accounts_due(self, now: float, max_attempts: int) -> list[str]:
        """The accounts that have rows due now (:meth:`due`), in SID order."""
        query = (
            f"SELECT account_sid FROM recordings WHERE {self._DUE_NEW} UNION "
            f"SELECT account_sid FROM recordings WHERE {self._DUE_RETRY}"
        )
        async with self.db.execute(query, {"max_attempts": max_attempts, "now": now}) as cur:
            return sorted(str(r[0]) for r in await cur.fetchall() if r[0] is not None)

    async def count_due(self, now: float, max_attempts: int) -> int:
        query = (
            f"SELECT (SELECT COUNT(*) FROM recordings WHERE {self._DUE_NEW}) + "
            f"(SELECT COUNT(*) FROM recordings WHERE {self._DUE_RETRY})"
        )
        async with self.db.execute(query, {"max_attempts": max_attempts, "now": now}) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def mark_archived(
        self, sid: str, *, key: str, size: int, sha256: str, now: float
    ) -> None:
        await self.db.execute(
            "UPDATE recordings SET state='archived', archive_key=?, size=?, sha256=?, "
            "archived_at=?, updated_at=? WHERE sid=?",
            (key, size, sha256, now, now, sid),
        )

    async def mark_verified(self, sid: str, now: float) -> None:
        await self.db.execute(
            "UPDATE recordings SET state='verified', verified_at=?, last_error=NULL, "
            "next_attempt_at=NULL, updated_at=? WHERE sid=? AND state='archived'",
            (now, now, sid),
        )

    async def mark_archived_verified(
        self, sid: str, *, key: str, size: int, sha256: str, now: float
    ) -> None:
        """Archived and verified in one step (the backend re-read the copy as it stored it)."""
        await self.db.execute(
            "UPDATE recordings SET state='verified', archive_key=?, size=?, sha256=?, "
            "archived_at=?, verified_at=?, last_error=NULL, next_attempt_at=NULL, updated_at=? "
            "WHERE sid=? AND state IN ('discovered','failed','archived')",
            (key, size, sha256, now, now, now, sid),
        )

    async def commit_verified(self, copies: Sequence[VerifiedCopy], now: float) -> None:
        """Mark a batch of copies verified in one durable transaction (group commit)."""
        fresh = [
            (c.key, c.size, c.sha256, c.archived_at, now, now, c.sid) for c in copies if c.fresh
        ]
        resumed = [(now, now, c.sid) for c in copies if not c.fresh]
        async with self._transaction():
            if fresh:
                await self.db.executemany(
                    "UPDATE recordings SET state='verified', archive_key=?, size=?, sha256=?, "
                    "archived_at=?, verified_at=?, last_error=NULL, next_attempt_at=NULL, "
                    "updated_at=? WHERE sid=? AND state IN ('discovered','failed','archived')",
                    fresh,
                )
            if resumed:
                await self.db.executemany(
                    "UPDATE recordings SET state='verified', verified_at=?, last_error=NULL, "
                    "next_attempt_at=NULL, updated_at=? WHERE sid=? AND state='archived'",
                    resumed,
                )

    async def mark_failed(
        self,
        sid: str,
        error: str,
        *,
        now: float,
        permanent: bool,
        next_attempt_at: float | None,
        count_attempt: bool = True,
    ) -> None:
        await self.db.execute(
            "UPDATE recordings SET state='failed', last_error=?, permanent=?, "
            "attempts=attempts+?, next_attempt_at=?, updated_at=? WHERE sid=?",
            (error[:2000], int(permanent), int(count_attempt), next_attempt_at, now, sid),
        )

    async def mark_deleted(self, sid: str, now: float) -> None:
        await self.db.execute(
            "UPDATE recordings SET state='deleted', deleted_at=?, updated_at=? "
            "WHERE sid=? AND state='verified'",
            (now, now, sid),
        )

    async def deletable(self, verified_before: float, limit: int) -> list[Row]:
        """Verified rows old enough to delete from the source, oldest verification first."""
        async with self.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM recordings WHERE state='verified' AND verified_at <= ? "
            "ORDER BY verified_at LIMIT ?",
            (verified_before, limit),
        ) as cur:
            return [_row(r) for r in await cur.fetchall()]

    async def archived_rows(self, after_sid: str = "", limit: int = 1000) -> list[Row]:
        """Rows whose archived copy should exist (verified or deleted), in SID order."""
        async with self.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM recordings WHERE state IN ('verified','deleted') "
            "AND sid > ? ORDER BY sid LIMIT ?",
            (after_sid, limit),
        ) as cur:
            return [_row(r) for r in await cur.fetchall()]

    async def retry_failed(self, sids: Iterable[str] | None, now: float) -> int:
        """Make failed rows due again (operator action): attempts reset."""
        query = (
            "UPDATE recordings SET state='discovered', attempts=0, permanent=0, "
            "next_attempt_at=NULL, updated_at=? WHERE state='failed' AND date_created IS NOT NULL"
        )
        if sids is None:
            cur = await self.db.execute(query, (now,))
            return cur.rowcount
        total = 0
        for sid in sids:
            cur = await self.db.execute(query + " AND sid=?", (now, sid))
            total += cur.rowcount
        return total

    # ---------------------------------------------------------------- status

    async def outstanding(self, now: float, max_attempts: int) -> Outstanding:
        """What is not done yet: the facts behind the exit code and ``status``."""
        query = (
            "SELECT "
            "(SELECT COUNT(*) FROM recordings WHERE state='discovered'), "
            "(SELECT COUNT(*) FROM recordings WHERE state='archived'), "
            "(SELECT COUNT(*) FROM recordings WHERE state='failed' AND permanent=0 "
            " AND attempts < :max_attempts), "
            "(SELECT MIN(COALESCE(next_attempt_at, 0)) FROM recordings WHERE state='failed' "
            " AND permanent=0 AND attempts < :max_attempts), "
            "(SELECT COUNT(*) FROM recordings WHERE state='failed' AND (permanent=1 "
            " OR attempts >= :max_attempts))"
        )
        async with self.db.execute(query, {"max_attempts": max_attempts}) as cur:
            row = await cur.fetchone()
        assert row is not None
        next_try = None if row[3] is None else max(float(row[3]), now)
        return Outstanding(int(row[0]), int(row[1]), int(row[2]), next_try, int(row[4]))

    async def mark_for_repair(self, sid: str, problem: str, now: float) -> bool:
        """A verified copy found missing or altered: due again at once, uncounted, so the next
        pass archives it again from the source (never over different bytes). False when the
        row is not verified (a deleted one cannot be fetched again)."""
        cur = await self.db.execute(
            "UPDATE recordings SET state='failed', permanent=0, next_attempt_at=NULL, "
            "last_error=?, updated_at=? WHERE sid=? AND state='verified'",
            (f"{REPAIR_PREFIX}{problem}"[:2000], now, sid),
        )
        return bool(cur.rowcount)

    async def mark_lost(self, sid: str, problem: str, now: float) -> bool:
        """A deleted recording whose archived copy is missing or altered: it exists nowhere
        intact. Failed for good (exit 1 until an operator acts), the reason kept; its
        ``deleted_at`` stays. False when the row is not deleted."""
        cur = await self.db.execute(
            "UPDATE recordings SET state='failed', permanent=1, next_attempt_at=NULL, "
            "last_error=?, updated_at=? WHERE sid=? AND state='deleted'",
            (f"{LOST_PREFIX}{problem}"[:2000], now, sid),
        )
        return bool(cur.rowcount)

    async def count_repairs(self) -> int:
        """Failed rows waiting for their archived copy to be made again (``mark_for_repair``)."""
        async with self.db.execute(
            "SELECT COUNT(*) FROM recordings WHERE state='failed' AND last_error LIKE ?",
            (REPAIR_PREFIX + "%",),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def backup_to(self, path: Path) -> None:
        """A consistent copy of the ledger at ``path`` (new, private), taken online with
        SQLite's backup API: a running daemon goes on writing meanwhile."""
        os.close(open_new(path, os.O_WRONLY, DEFAULT_FILE_MODE))
        target = await aiosqlite.connect(path)
        try:
            await self.db.backup(target)
        finally:
            await target.close()

    async def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        async with self.db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state") as cur:
            for state, n in await cur.fetchall():
                counts[str(state)] = int(n)
        return counts

    async def failures(self, limit: int = 10) -> list[Row]:
        async with self.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM recordings WHERE state='failed' "
            "ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        ) as cur:
            return [_row(r) for r in await cur.fetchall()]

    async def newest_archived(self) -> datetime | None:
        async with self.db.execute(
            # newest first along the created_epoch index, stopping at the first archived row
            # (`+state`: not the state index, which would visit every archived row)
            "SELECT created_epoch FROM recordings WHERE +state IN ('verified','deleted') "
            "ORDER BY created_epoch DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        return datetime.fromtimestamp(float(row[0]), UTC)

    async def archived_totals(self) -> tuple[int, int]:
        async with self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM recordings "
            "WHERE state IN ('verified','deleted')"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def _translated(what: str, method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(method)
    async def call(self: Ledger, *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    return call


# Every query and write, present and future, reports SQLite's errors (disk full, I/O, locked,
# read-only, damaged) as a LedgerError with the file and the cause: wrapped once, here.
for _name, _method in list(vars(Ledger).items()):
    if not _name.startswith("_") and inspect.iscoroutinefunction(_method):
        setattr(Ledger, _name, _translated(_name.replace("_", " "), _method))
