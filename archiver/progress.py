"""Progress of a ``sync`` pass: a bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO

import structlog

from archiver.ledger import Row
from archiver.sync import PassResult, Syncer

log = structlog.get_logger("archiver.progress")

DEFAULT_LOG_EVERY = 10.0  # seconds between progress lines off a terminal
DEFAULT_BAR_EVERY = 0.2  # seconds between redraws on a terminal
BAR_WIDTH = 24


class Progress:
    def __init__(
        self, syncer: Syncer, stream: TextIO | None = None, every: float | None = None
    ) -> None:
        self.syncer = syncer
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = (
            every if every is not None else (DEFAULT_BAR_EVERY if self.tty else DEFAULT_LOG_EVERY)
        )
        self.started = time.monotonic()
        self._last = 0.0
        syncer.on_progress = self.update

    def line(self, result: PassResult) -> str:
        done = result.verified + result.failed
        total = max(self.syncer.due_total, done)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        eta = timedelta(seconds=int((total - done) / rate)) if rate > 0 else None
        filled = int(BAR_WIDTH * done / total) if total else BAR_WIDTH
        return (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} recordings, "
            f"{result.bytes / 1e6:.1f} MB, {rate:.1f}/s, {result.bytes / elapsed / 1e6:.1f} MB/s, "
            f"ETA {eta if eta is not None else '-'}, {result.failed} failed"
        )

    def update(self, result: PassResult, _row: Row | None) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line(result))
            self.stream.flush()
        else:
            done = result.verified + result.failed
            log.info(
                "pass.progress",
                done=done,
                total=max(self.syncer.due_total, done),
                bytes=result.bytes,
                failed=result.failed,
                rate_per_s=round(done / max(now - self.started, 1e-6), 1),
            )

    def finish(self, result: PassResult | None) -> None:
        if self.tty and result is not None and self.syncer.due_total:
            self.stream.write("\r" + self.line(result) + "\n")
            self.stream.flush()
