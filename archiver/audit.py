"""The audit journal: an append-only JSON-lines file whose lines are hash-chained.

Each line is a JSON object with ``seq`` (1, 2, …), ``ts`` (ISO-8601 UTC), ``event`` and its
fields, and ``prev``: the SHA-256 (hex) of the previous line's bytes (``"0" * 64`` for the
first). Editing, removing or reordering any line breaks the chain at the next line; the head
(``seq`` and hash of the last line) is checkpointed in the ledger, so cutting the tail shows too.

Events: ``archived``, ``verified``, ``failed``, ``deleted``, ``delete-skipped`` (with a reason),
``would-delete`` (dry run). Lines are flushed as written and fsynced at checkpoints: before any
deletion and at the end of every pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from archiver.errors import LedgerError

log = structlog.get_logger("archiver.audit")

GENESIS = "0" * 64


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


class Journal:
    """Open with ``async with Journal(path) as journal``; one writer at a time."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.head = Head(0, GENESIS)
        self._fh: BinaryIO | None = None
        self._clock = clock  # the pass's clock: a line's day decides its daily manifest

    async def __aenter__(self) -> Journal:
        await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fh is not None:
            await self.sync()
            self._fh.close()
            self._fh = None

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                self._repair_tail()
                last = last_line(self.path)
                if last:
                    self.head = Head(int(json.loads(last)["seq"]), _line_hash(last))
            self._fh = self.path.open("ab")
        except (OSError, ValueError, KeyError) as exc:
            raise LedgerError(f"cannot open the audit journal {self.path}: {exc}") from exc

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
        """Write one line (flushed, not yet fsynced)."""
        if self._fh is None:
            raise RuntimeError("Journal used outside 'async with'")
        now = datetime.fromtimestamp(self._clock(), UTC)
        doc = {
            "seq": self.head.seq + 1,
            "ts": now.isoformat(),
            "event": event,
            **fields,
            "prev": self.head.sha256,
        }
        raw = json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()
        self._fh.write(raw + b"\n")
        self._fh.flush()
        self.head = Head(doc["seq"], _line_hash(raw))
        return self.head

    async def sync(self) -> Head:
        """fsync: everything appended so far survives a crash."""
        if self._fh is not None:
            await asyncio.to_thread(os.fsync, self._fh.fileno())
        return self.head


def verify_journal(path: Path, checkpoint: Head | None = None) -> tuple[int, str] | None:
    """The first broken line ``(line number, why)``, or None when the chain holds.

    ``checkpoint`` (from the ledger) must be found in the chain: lines cut from the tail or a
    rewritten tail are caught that way.
    """
    prev, expected_seq, seen_checkpoint = GENESIS, 1, checkpoint is None or checkpoint.seq == 0
    number = 0
    for number, raw in iter_lines(path):
        if not raw.endswith(b"\n"):
            return number, "incomplete line (no newline)"
        try:
            doc = json.loads(raw)
        except ValueError:
            return number, "not JSON"
        if not isinstance(doc, dict):
            return number, "not a JSON object"
        if doc.get("prev") != prev:
            return number, "hash chain broken: 'prev' does not match the line before"
        if doc.get("seq") != expected_seq:
            return number, f"sequence broken: expected seq {expected_seq}, got {doc.get('seq')}"
        prev = _line_hash(raw)
        if checkpoint is not None and doc["seq"] == checkpoint.seq:
            if prev != checkpoint.sha256:
                return number, "line differs from the checkpoint recorded in the ledger"
            seen_checkpoint = True
        expected_seq += 1
    if not seen_checkpoint:
        assert checkpoint is not None
        return (
            number + 1,
            f"journal ends before the checkpoint (seq {checkpoint.seq}) in the ledger",
        )
    return None
