"""Progress of a ``sync`` pass: a live display on a terminal, periodic log lines elsewhere.

On a terminal (rich's live display, redrawn in place) the pass shows two lines: the listing
(pages read, recordings found, how many new) while the ledger fills, then the transfer
(recordings done of those due, bytes, rate and ETA over the transfer alone, failures so far).
Warnings and errors print above the display (:func:`archiver.logs.above_display`), never
through it; INFO lines (``recording.verified``...) are left out there unless the level is
debug, as the display counts them.

Off a terminal (journald, a pipe, a container) there is no display: ``scan.progress`` and
``pass.progress`` events every ``DEFAULT_LOG_EVERY`` seconds say the same things.

The progress watches through :class:`archiver.hooks.Hooks` (``page_listed`` for the listing,
``transfer_started`` for the start of the transfer) and the Syncer's ``on_progress``.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

import structlog
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bars
from rich.text import Text

from archiver import logs
from archiver.hooks import Hooks
from archiver.ledger import Row
from archiver.sync import PassResult, Syncer

log = structlog.get_logger("archiver.progress")

DEFAULT_LOG_EVERY = 10.0  # seconds between progress lines off a terminal
DEFAULT_REFRESH_PER_SECOND = 4  # redraws of the live display
DEFAULT_BAR_WIDTH = 16


class Progress(Hooks):
    """Watches one ``sync`` pass. Use as a context manager around the pass; pass it to the
    Syncer's hooks (it is a :class:`Hooks`), then :meth:`attach` it to the Syncer."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every: float | None = None,
        enabled: bool = True,
        console: Console | None = None,
    ) -> None:
        self.console = console or Console(file=stream or sys.stderr, highlight=False)
        self.enabled = enabled
        self.live = enabled and self.console.is_interactive
        self.every = DEFAULT_LOG_EVERY if every is None else every
        self.syncer: Syncer | None = None
        self.pages = self.found = self.new = 0
        self.transfer_began: float | None = None
        self._last_line = {"scan": 0.0, "pass": 0.0}  # when each kind of line was last logged
        self._listing = Bars(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._transfer = Bars(
            TextColumn("transfer"),
            BarColumn(bar_width=DEFAULT_BAR_WIDTH),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}  ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._display = Live(
            Group(self._listing, self._transfer),
            console=self.console,
            refresh_per_second=DEFAULT_REFRESH_PER_SECOND,
            transient=False,
        )
        self._list_task: TaskID | None = None
        self._transfer_task: TaskID | None = None
        self._quiet_logs = logs.above_display(self._print_above)

    def attach(self, syncer: Syncer) -> Progress:
        self.syncer = syncer
        syncer.on_progress = self.update
        return self

    # ------------------------------------------------------------- the display's life

    def __enter__(self) -> Progress:
        if self.live:
            self._list_task = self._listing.add_task(self._listing_text())
            self._display.start()
            self._quiet_logs.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live:
            self._end_listing()
            self._display.refresh()
            self._display.stop()
            self._quiet_logs.__exit__(exc_type, exc, tb)

    def _print_above(self, line: str) -> None:
        self.console.print(Text.from_ansi(line), soft_wrap=True)

    # ------------------------------------------------------------------ the listing

    def _listing_text(self, done: bool = False) -> str:
        verb = "listed " if done else "listing"
        return f"{verb}  {self.pages} pages read, {self.found} recordings found, {self.new} new"

    def page_listed(self, items: int, new: int) -> None:
        self.pages += 1
        self.found += items
        self.new += new
        if self._list_task is not None:
            self._listing.update(self._list_task, description=self._listing_text())
        elif self.enabled and not self.live and self._due("scan"):
            log.info("scan.progress", pages=self.pages, found=self.found, new=self.new)

    def _end_listing(self) -> None:
        if self._list_task is not None and not self._listing.finished:
            self._listing.update(
                self._list_task, description=self._listing_text(done=True), total=1, completed=1
            )
            self._listing.stop_task(self._list_task)

    # ----------------------------------------------------------------- the transfer

    def transfer_started(self) -> None:
        if self.transfer_began is not None:
            return
        self.transfer_began = time.monotonic()  # rate and ETA count the transfer alone
        self._end_listing()
        if self.live:
            self._transfer_task = self._transfer.add_task(
                "transfer", total=self._total(0), detail=self._detail(PassResult())
            )

    def _total(self, done: int) -> int:
        due = self.syncer.due_total if self.syncer is not None else 0
        return max(due, done)

    def _elapsed(self) -> float:
        began = self.transfer_began if self.transfer_began is not None else time.monotonic()
        return max(time.monotonic() - began, 1e-6)

    def _detail(self, result: PassResult) -> str:
        done = result.verified + result.failed
        elapsed = self._elapsed()
        return (
            f"recordings  {result.bytes / 1e6:.1f} MB  {result.bytes / elapsed / 1e6:.1f} MB/s "
            f"{done / elapsed:.1f}/s  {result.failed} failed"
        )

    def _due(self, kind: str) -> bool:
        now = time.monotonic()
        if now - self._last_line[kind] < self.every:
            return False
        self._last_line[kind] = now
        return True

    def update(self, result: PassResult, _row: Row | None) -> None:
        done = result.verified + result.failed
        if self._transfer_task is not None:
            self._transfer.update(
                self._transfer_task,
                completed=done,
                total=self._total(done),
                detail=self._detail(result),
            )
        elif self.enabled and not self.live and self._due("pass"):
            log.info(
                "pass.progress",
                done=done,
                total=self._total(done),
                bytes=result.bytes,
                failed=result.failed,
                rate_per_s=round(done / self._elapsed(), 1),
            )
