"""The audit journal: an append-only JSON-lines file whose lines are hash-chained.

Each line is a JSON object with ``seq`` (1, 2, …), ``ts`` (ISO-8601 UTC), ``event`` and its
fields, and ``prev``: the SHA-256 (hex) of the previous line's bytes (``"0" * 64`` for the
first). Editing, removing or reordering any line breaks the chain at the next line; the head
(``seq`` and hash of the last line) is checkpointed in the ledger, so cutting the tail shows too.

Events: ``archived``, ``verified``, ``failed``, ``deleted``, ``delete-skipped`` (with a reason),
``would-delete`` (dry run), ``chain-break`` (see below). Lines are written as they happen and
fsynced at checkpoints: before any deletion and at the end of every pass.

Anchoring: opening the journal for writing with the ledger's checkpoint requires the line with
the checkpoint's ``seq`` to be there and to hash to the checkpoint's SHA-256 (read backwards
from the end, where it usually is). A cut, deleted or rewritten journal is refused with
:class:`JournalError`, never healed by starting a new chain. ``archiver audit recover`` is the
operator's way on (:func:`recover_journal`): it starts a new chain segment whose first line is a
``chain-break`` event naming the previous ``checkpoint``, what was ``found``, the ``reason``
given, and ``follows`` (the head of the lines before it in this file). That line's ``seq`` and
``prev`` continue from the checkpoint, not from the line before it; :func:`scan_journal` accepts
such a join only at a ``chain-break`` line whose ``follows`` matches, and reports every join.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from archiver.errors import JournalError
from archiver.ledger import Ledger
from archiver.modes import DEFAULT_FILE_MODE, make_dirs, open_private
from archiver.retry import retrying
from archiver.storage import Storage
from archiver.storage.base import single_chunk

log = structlog.get_logger("archiver.audit")

GENESIS = "0" * 64
CHAIN_BREAK = "chain-break"
DEFAULT_BLOCK = 65536


@dataclass(frozen=True)
class Head:
    seq: int
    sha256: str

    def encode(self) -> str:
        return f"{self.seq}:{self.sha256}"

    @classmethod
    def decode(cls, text: str | None) -> Head | None:
        if not text:
            return None
        seq, _, sha = text.partition(":")
        return cls(int(seq), sha)


ORIGIN = Head(0, GENESIS)  # the head before the first line


def _line_hash(raw: bytes) -> str:
    return hashlib.sha256(raw.rstrip(b"\n")).hexdigest()


def last_line(path: Path, block: int = 65536) -> bytes:
    """The last complete line of ``path`` (b"" when empty), read backwards from the end: opening
    a journal of years costs the same as opening a new one (``audit verify`` reads it all)."""
    with path.open("rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        tail = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            tail = fh.read(step) + tail
            cut = tail.rfind(b"\n", 0, len(tail) - 1)  # the newline before the last line
            if cut >= 0:
                return tail[cut + 1 :]
        return tail


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def reverse_lines(path: Path, block: int = DEFAULT_BLOCK) -> Iterator[bytes]:
    """The complete lines of ``path``, last first (an unfinished last line is skipped)."""
    with path.open("rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        pending = b""  # read, not yet yielded; ends with a newline once `started`
        started = False
        while pos > 0:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            pending = fh.read(step) + pending
            if not started:
                end = pending.rfind(b"\n")
                if end < 0:
                    continue  # still inside an unfinished last line
                pending, started = pending[: end + 1], True
            while (cut := pending.rfind(b"\n", 0, len(pending) - 1)) >= 0:
                yield pending[cut + 1 :]
                pending = pending[: cut + 1]
        if started and pending:
            yield pending  # the first line


def _seq(raw: bytes) -> int:
    doc = json.loads(raw)
    seq = doc["seq"] if isinstance(doc, dict) else None
    if not isinstance(seq, int):
        raise ValueError("no integer seq")
    return seq


def checkpoint_problem(path: Path, checkpoint: Head, block: int = DEFAULT_BLOCK) -> str | None:
    """What is wrong with ``path`` as the journal whose checkpoint is ``checkpoint`` (None:
    the line with its seq is there and hashes to it). Reads backwards from the end, where the
    checkpoint usually is; an unreadable line on the way falls back to a scan from the start."""
    if not path.exists():
        return "the file does not exist"
    last: int | None = None
    for raw in reverse_lines(path, block):
        try:
            seq = _seq(raw)
        except (ValueError, KeyError):
            return _scan_for_checkpoint(path, checkpoint)
        if last is None:
            last = seq
        if seq > checkpoint.seq:
            continue
        if seq == checkpoint.seq:
            got = _line_hash(raw)
            if got == checkpoint.sha256:
                return None
            return f"its line with seq {seq} has sha256 {got}: the line was rewritten"
        break
    if last is None:
        return "it holds no complete line"
    if last < checkpoint.seq:
        return f"it ends at seq {last}: lines were cut from its end, or it was replaced"
    return f"it has no line with seq {checkpoint.seq} (its last line is seq {last})"


def _scan_for_checkpoint(path: Path, checkpoint: Head) -> str | None:
    last: int | None = None
    for _number, raw in iter_lines(path):
        if not raw.endswith(b"\n"):
            break
        try:
            seq = _seq(raw)
        except (ValueError, KeyError):
            continue
        last = seq
        if seq == checkpoint.seq:
            got = _line_hash(raw)
            if got == checkpoint.sha256:
                return None
            return f"its line with seq {seq} has sha256 {got}: the line was rewritten"
    if last is None:
        return "it holds no readable line"
    return f"it has no line with seq {checkpoint.seq} (its last readable line is seq {last})"


class Journal:
    """Open with ``async with Journal(path) as journal``; one writer at a time.

    With ``checkpoint`` (the ledger's ``audit_head``) opening refuses a journal that no longer
    holds it (:class:`JournalError`, see the module docstring).
    """

    def __init__(
        self,
        path: str | Path,
        clock: Callable[[], float] = time.time,
        *,
        checkpoint: Head | None = None,
        file_mode: int = DEFAULT_FILE_MODE,
    ) -> None:
        self.path = Path(path)
        self.head = Head(0, GENESIS)
        self.checkpoint = checkpoint
        self.file_mode = file_mode
        self._fd: int | None = None
        self._failed: str | None = None  # once a write failed, the file's tail is unknown
        self._clock = clock  # the pass's clock: a line's day decides its daily manifest

    async def __aenter__(self) -> Journal:
        await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            try:
                if self._failed is None:
                    await self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> None:
        try:
            make_dirs(self.path.parent)
            if self.checkpoint is not None and self.checkpoint.seq > 0:
                problem = checkpoint_problem(self.path, self.checkpoint)
                if problem is not None:
                    raise JournalError(anchor_message(self.path, self.checkpoint, problem))
            if self.path.exists():
                self._repair_tail()
                last = last_line(self.path)
                if last:
                    self.head = Head(int(json.loads(last)["seq"]), _line_hash(last))
            self._fd = open_private(self.path, os.O_WRONLY | os.O_APPEND, self.file_mode)
        except (OSError, ValueError, KeyError) as exc:
            raise JournalError(
                f"cannot open the audit journal {self.path}: {exc} (check the state folder's "
                "owner, mode and free space)"
            ) from exc

    def _repair_tail(self) -> None:
        """A crash mid-append can leave a last line without its newline: drop it."""
        with self.path.open("rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            data_start = max(size - 65536, 0)
            fh.seek(data_start)
            tail = fh.read()
            cut = data_start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
            fh.truncate(cut)
            log.warning("audit.partial_line_removed", bytes=size - cut)

    def append(self, event: str, **fields: Any) -> Head:
        """Write one line (in the file, not yet fsynced)."""
        if self._fd is None:
            raise RuntimeError("Journal used outside 'async with'")
        if self._failed is not None:
            raise JournalError(self._failed)
        now = datetime.fromtimestamp(self._clock(), UTC)
        doc = {
            "seq": self.head.seq + 1,
            "ts": now.isoformat(),
            "event": event,
            **fields,
            "prev": self.head.sha256,
        }
        raw = json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()
        try:
            # unbuffered: a failed write leaves nothing queued to land later, out of order
            view = memoryview(raw + b"\n")
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._failed = (
                f"cannot append to the audit journal {self.path}: {exc.strerror or exc} "
                "(free space on the state volume, or check it for I/O errors)"
            )
            raise JournalError(self._failed) from exc
        self.head = Head(doc["seq"], _line_hash(raw))
        return self.head

    async def sync(self) -> Head:
        """fsync: everything appended so far survives a crash."""
        if self._fd is not None:
            try:
                await asyncio.to_thread(os.fsync, self._fd)
            except OSError as exc:
                self._failed = f"cannot fsync the audit journal {self.path}: {exc.strerror}"
                raise JournalError(self._failed) from exc
        return self.head


def anchor_message(path: Path, checkpoint: Head, problem: str) -> str:
    return (
        f"the audit journal {path} no longer holds the ledger's checkpoint (seq "
        f"{checkpoint.seq}, sha256 {checkpoint.sha256}): {problem}. Refusing to start a new "
        "chain silently. Put the journal back from a backup (closed days are also in the "
        "archive as audit/YYYY/MM/DD.jsonl), or record the break and go on: "
        "archiver audit recover --reason '...'"
    )


@dataclass
class JournalReport:
    """What :func:`scan_journal` found."""

    lines: int = 0
    head: Head = ORIGIN  # of the last line read
    broken: tuple[int, str] | None = None  # the first unrecorded break: (line, why)
    cut: bool = False  # the one fault: the file ends before the checkpoint
    breaks: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # chain-break lines


def _joins(doc: dict[str, Any], before: Head) -> bool:
    """Whether a chain-break line starts a segment right here: it continues from the
    checkpoint it names and says it follows the lines before it in this file."""
    try:
        anchor = Head.decode(doc.get("checkpoint")) or ORIGIN
    except (ValueError, AttributeError):
        return False
    return (
        doc.get("prev") == anchor.sha256
        and doc.get("seq") == anchor.seq + 1
        and doc.get("follows") == before.encode()
    )


def scan_journal(path: Path, checkpoint: Head | None = None) -> JournalReport:
    """Read the whole journal: the first broken line, and every recorded chain-break.

    ``checkpoint`` (from the ledger) must be found in the chain: lines cut from the tail or a
    rewritten tail are caught that way.
    """
    report = JournalReport()
    prev, expected_seq, seen_checkpoint = GENESIS, 1, checkpoint is None or checkpoint.seq == 0
    number = 0
    for number, raw in iter_lines(path):
        if not raw.endswith(b"\n"):
            report.broken = (number, "incomplete line (no newline)")
            return report
        try:
            doc = json.loads(raw)
        except ValueError:
            report.broken = (number, "not JSON")
            return report
        if not isinstance(doc, dict):
            report.broken = (number, "not a JSON object")
            return report
        chained = doc.get("prev") == prev and doc.get("seq") == expected_seq
        if doc.get("event") == CHAIN_BREAK and (chained or _joins(doc, report.head)):
            report.breaks.append((number, doc))
        elif doc.get("prev") != prev:
            report.broken = (number, "hash chain broken: 'prev' does not match the line before")
            return report
        elif doc.get("seq") != expected_seq:
            report.broken = (
                number,
                f"sequence broken: expected seq {expected_seq}, got {doc.get('seq')}",
            )
            return report
        prev = _line_hash(raw)
        report.head, report.lines = Head(doc["seq"], prev), number
        if checkpoint is not None and doc["seq"] == checkpoint.seq:
            if prev != checkpoint.sha256:
                report.broken = (number, "line differs from the checkpoint recorded in the ledger")
                return report
            seen_checkpoint = True
        expected_seq = doc["seq"] + 1
    if not seen_checkpoint:
        assert checkpoint is not None
        report.broken = (
            number + 1,
            f"journal ends before the checkpoint (seq {checkpoint.seq}) in the ledger",
        )
        report.cut = True
    return report


def verify_journal(path: Path, checkpoint: Head | None = None) -> tuple[int, str] | None:
    """The first broken line ``(line number, why)``, or None when the chain holds."""
    return scan_journal(path, checkpoint).broken


@dataclass(frozen=True)
class Recovery:
    head: Head  # of the chain-break line: the ledger's new checkpoint
    found: str
    moved_to: Path | None  # where a damaged journal was kept, untouched
    kept_bytes: int  # bytes of the old journal still at the start of the file


def recover_journal(
    path: Path,
    checkpoint: Head | None,
    reason: str,
    now: datetime,
    file_mode: int = DEFAULT_FILE_MODE,
) -> Recovery | None:
    """Start a new chain segment with a ``chain-break`` line (None: the journal is intact).

    A journal cut short keeps its lines and gets the break appended; a missing one is started
    anew; a rewritten or garbled one is kept aside, untouched, as
    ``<name>.damaged-<UTC time>`` (named in the break line with its SHA-256) and a new file is
    started: appending to it would leave its unrecorded break in the chain for good.
    """
    moved: Path | None = None
    moved_sha: str | None = None
    follows, kept = ORIGIN, 0
    if not path.exists():
        found = "the file did not exist"
    else:
        report = scan_journal(path, checkpoint)
        if report.broken is None:
            return None
        line, why = report.broken
        if report.cut:
            found = f"it ended at seq {report.head.seq} (line {report.lines}): {why}"
            follows, kept = report.head, path.stat().st_size
        else:
            found = f"line {line}: {why}"
            moved = path.with_name(f"{path.name}.damaged-{now.strftime('%Y%m%dT%H%M%SZ')}")
            moved_sha = hashlib.sha256(path.read_bytes()).hexdigest()
            os.link(path, moved)  # never over an existing file, unlike rename
            path.unlink()
    anchor = checkpoint or ORIGIN
    doc: dict[str, Any] = {
        "seq": anchor.seq + 1,
        "ts": now.isoformat(),
        "event": CHAIN_BREAK,
        "reason": reason,
        "checkpoint": checkpoint.encode() if checkpoint else None,
        "found": found,
        "follows": follows.encode(),
    }
    if moved is not None:
        doc["moved_to"] = str(moved)
        doc["moved_sha256"] = moved_sha
    doc["prev"] = anchor.sha256
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()
    make_dirs(path.parent)
    fd = open_private(path, os.O_WRONLY | os.O_APPEND, file_mode)
    try:
        view = memoryview(raw + b"\n")
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the new file, or the damaged one moved aside, survives a crash
    finally:
        os.close(dir_fd)
    log.warning("audit.chain_break_recorded", path=str(path), found=found, reason=reason)
    return Recovery(Head(doc["seq"], _line_hash(raw)), found, moved, kept)


# ------------------------------------------------------------------ daily manifests


async def write_manifests(journal: Journal, ledger: Ledger, storage: Storage, today: str) -> int:
    """Copy every closed UTC day (before ``today``) of the journal into the archive, once:
    ``audit/YYYY/MM/DD.jsonl``, kept with the recordings (and under the same Object Lock)."""
    await journal.sync()
    offset = await ledger.manifest_offset()
    days, next_offset = await asyncio.to_thread(closed_days, journal.path, offset, today)
    for day, data in days:
        key = manifest_key(day)
        put = partial(
            storage.put,
            key,
            single_chunk(data),
            content_type="application/x-ndjson",
            metadata={"date-created": f"{day}T23:59:59+00:00"},
        )
        await retrying("manifest", put)
        log.info("audit.manifest_written", day=day, key=key, bytes=len(data))
    if next_offset != offset:
        await ledger.set_manifest_offset(next_offset)
    return len(days)


def manifest_key(day: str) -> str:
    """Where the manifest of ``day`` (YYYY-MM-DD) is kept in the archive."""
    return f"audit/{day[:4]}/{day[5:7]}/{day[8:10]}.jsonl"


def journal_days(path: Path, upto: int) -> list[tuple[str, int, str]]:
    """(day, bytes, SHA-256) of each run of the journal's lines before byte ``upto`` that share
    a UTC day: what :func:`write_manifests` copied into the archive, hashed as it streams by."""
    days: list[tuple[str, int, str]] = []
    current, size, h, pos = "", 0, hashlib.sha256(), 0
    with path.open("rb") as fh:
        for raw in fh:
            if pos + len(raw) > upto or not raw.endswith(b"\n"):
                break
            day = json.loads(raw).get("ts", "")[:10]
            if day != current and size:
                days.append((current, size, h.hexdigest()))
                size, h = 0, hashlib.sha256()
            current = day
            h.update(raw)
            size += len(raw)
            pos += len(raw)
    if size:
        days.append((current, size, h.hexdigest()))
    return days


@dataclass
class ManifestCheck:
    """What :func:`check_manifests` found: days whose archived manifest matches the journal,
    differs from it (the local journal or the archive was altered), or is missing."""

    matched: int = 0
    differ: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


async def check_manifests(path: Path, upto: int, storage: Storage) -> ManifestCheck:
    """Compare every day of the journal copied into the archive (before byte ``upto``, the
    ledger's manifest offset) with the manifest there. A journal rewritten with a consistent
    chain (and checkpoint) passes :func:`scan_journal`, but not this: the archive's copy is
    kept apart, under the archive's own protection (Object Lock)."""
    found = ManifestCheck()
    for day, size, sha256 in await asyncio.to_thread(journal_days, path, upto):
        key = manifest_key(day)
        stored = await retrying("manifest_check", partial(storage.stat, key))
        if stored is None:
            found.missing.append(day)
        elif (stored.size, stored.sha256) != (size, sha256):
            found.differ.append(
                (
                    day,
                    f"the archive's {storage.describe(key)} has {stored.size} bytes sha256 "
                    f"{stored.sha256[:16]}…, the journal's lines {size} bytes sha256 "
                    f"{sha256[:16]}…",
                )
            )
        else:
            found.matched += 1
    return found


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
