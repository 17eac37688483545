"""The daemon loop: a pass every poll_interval until told to stop; never dies from a failed pass.

Shutdown has two stages: the first SIGTERM/SIGINT stops new work and lets in-flight transfers
finish within ``drain_timeout``; a second signal (or the timeout) cancels them. Cancelled
transfers leave no partial files and the ledger keeps their previous state.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from archiver.errors import ArchiverError, SourceUnavailable
from archiver.server import Health
from archiver.sync import PassResult, Syncer

log = structlog.get_logger("archiver.daemon")
T = TypeVar("T")

DEFAULT_FAILURE_LOG_EVERY = 10  # after the first failure, log every Nth consecutive one
HEARTBEAT = 5.0  # seconds: how often an idle loop reports itself alive


class Daemon:
    def __init__(
        self,
        syncer: Syncer,
        *,
        poll_interval: float,
        max_backoff: float,
        health: Health | None = None,
        on_pass: Callable[[PassResult | None, BaseException | None], None] | None = None,
    ) -> None:
        self.syncer = syncer
        self.hooks = syncer.hooks
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.health = health or Health()
        self.on_pass = on_pass
        self.consecutive_failures = 0
        self.passes = 0
        syncer.on_progress = lambda _result, _row: self.health.progress()

    def backoff(self) -> float:
        return float(
            min(self.poll_interval * 2 ** max(self.consecutive_failures - 1, 0), self.max_backoff)
        )

    async def one_pass(self, stopping: asyncio.Event) -> float:
        """Run one pass, never raising (but for cancellation); returns the delay to the next."""
        started = time.monotonic()
        try:
            result = await self.syncer.run_pass(stopping)
            if result.scan.unreachable:  # not one page listed: back off as for any failure
                raise SourceUnavailable(result.scan.reason)
        except Exception as exc:  # the loop must outlive any failed pass, even a bug in one
            if not isinstance(exc, ArchiverError):
                log.exception("pass.crashed", error_type=type(exc).__name__)
            self.consecutive_failures += 1
            delay = self.backoff()
            self.hooks.pass_failed()
            self.health.pass_failed(f"{type(exc).__name__}: {exc}")
            if (
                self.consecutive_failures == 1
                or self.consecutive_failures % DEFAULT_FAILURE_LOG_EVERY == 0
            ):
                log.error(
                    "pass.failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    consecutive=self.consecutive_failures,
                    next_try_in_s=round(delay, 1),
                )
            if self.on_pass is not None:
                self.on_pass(None, exc)
        else:
            delay = self.poll_interval
            self.hooks.pass_finished(result, time.time())
            self.health.pass_ok()
            if self.consecutive_failures:
                log.info("daemon.recovered", after_failures=self.consecutive_failures)
                self.consecutive_failures = 0
            if self.on_pass is not None:
                self.on_pass(result, None)
        self.hooks.pass_took(time.monotonic() - started)
        with contextlib.suppress(ArchiverError):
            await self.hooks.after_pass(
                self.syncer.ledger, self.syncer.clock(), self.syncer.cfg.source.max_attempts
            )
        if self.syncer.journal is not None:
            # not written yet, or its volume is gone: the pass reports that itself
            with contextlib.suppress(OSError):
                self.hooks.journal_size(self.syncer.journal.path.stat().st_size)
        if not self.consecutive_failures:
            self.passes += 1  # counted once its metrics are published
        return delay

    async def maybe_reconcile(self, stopping: asyncio.Event) -> None:
        """Every reconcile_interval, re-list the last reconcile_window ignoring the watermark."""
        src = self.syncer.cfg.source
        interval = src.reconcile_interval.total_seconds()
        if interval <= 0 or stopping.is_set():
            return
        ledger = self.syncer.ledger
        last = await ledger.last_reconcile_at()
        now = self.syncer.clock()
        if now - last < interval:
            return
        since = max(self.syncer.now() - src.reconcile_window, src.start_time)
        try:
            result = await self.syncer.run_pass(stopping, since=since)
        except ArchiverError as exc:
            log.error("reconcile.failed", error=str(exc), error_type=type(exc).__name__)
            return
        if not result.scan.complete:  # tried again at the next pass, not a day later
            log.error("reconcile.incomplete", reason=result.scan.reason)
            return
        await ledger.set_last_reconcile_at(now)
        log.info("reconcile.finished", since=since.isoformat(), found=result.scan.new)

    async def run(self, stopping: asyncio.Event) -> None:
        log.info("daemon.started", poll_interval_s=self.poll_interval)
        self.health.ledger_open = True
        while not stopping.is_set():
            delay = await self.one_pass(stopping)
            if not self.consecutive_failures:
                await self.maybe_reconcile(stopping)
            deadline = time.monotonic() + delay
            while not stopping.is_set() and (left := deadline - time.monotonic()) > 0:
                self.health.progress()  # waiting between passes is healthy
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=min(left, HEARTBEAT))
        log.info("daemon.stopped", passes=self.passes)


async def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[T]],
    drain_timeout: float,
    on_stop: Callable[[], None] | None = None,
    on_reload: Callable[[], Awaitable[None]] | None = None,
) -> T | None:
    """Run ``main(stopping)``; the first SIGTERM/SIGINT sets ``stopping``, a second one
    cancels. SIGHUP runs ``on_reload`` (operators send it to reload) and never stops anything.

    Returns None when ``main`` had to be cancelled.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    task = asyncio.ensure_future(main(stopping))
    received = 0
    drain: asyncio.TimerHandle | None = None

    def on_signal(name: str) -> None:
        nonlocal received, drain
        received += 1
        if received == 1:
            log.info("daemon.stopping", signal=name, drain_timeout_s=drain_timeout)
            if on_stop is not None:
                on_stop()
            stopping.set()
            drain = loop.call_later(drain_timeout, task.cancel)
        else:
            log.warning("daemon.cancelling", signal=name)
            task.cancel()

    reloads: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        log.info("daemon.reload_requested", signal="SIGHUP")
        if on_reload is None:
            return
        job = asyncio.ensure_future(on_reload())
        reloads.add(job)
        job.add_done_callback(reloads.discard)

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
        installed.append(sig)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    installed.append(signal.SIGHUP)
    try:
        return await task
    except asyncio.CancelledError:
        if received:
            log.warning("daemon.cancelled", reason="drain timeout or second signal")
            return None
        raise
    finally:
        if drain is not None:
            drain.cancel()  # drained in time: the timer must not outlive the run
        for sig in installed:
            loop.remove_signal_handler(sig)
        for job in list(reloads):
            await job
