"""What the core tells whoever watches it, through one object it is given.

The pass, the daemon, the source client and the retry policy call these methods where things
happen; they import no metrics library. ``Hooks`` itself does nothing: tests and one-shot
commands use it as is, and :class:`archiver.metrics.PrometheusHooks` turns every call into a
Prometheus sample. (The pattern of stamina's instrumentation hooks, injected instead of
global counters bumped across modules.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archiver.ledger import Ledger
    from archiver.sync import PassResult


class Hooks:
    """Observation points; every one a no-op here. Subclass and override what you need."""

    def page_listed(self, items: int, new: int) -> None:
        """A page of the listing is in the ledger: ``items`` on it, ``new`` never seen before."""

    def source_request(self, status: int | str) -> None:
        """An answer from the source (its HTTP status), or ``"error"`` for none."""

    def retry_scheduled(self, operation: str) -> None:
        """``operation`` failed transiently and will be tried again."""

    def transfer_started(self) -> None: ...

    def transfer_ended(self) -> None: ...

    def recording_verified(self, size: int) -> None:
        """A recording's copy is archived and verified (``size`` bytes)."""

    def recording_failed(self, error_type: str) -> None:
        """A recording's transfer failed (charged to it), by the error's type."""

    def deletion(self, outcome: str) -> None:
        """A deletion step ended: deleted, already_gone, dry_run or skipped."""

    def pass_failed(self) -> None:
        """A daemon pass ended with an error (nothing listed, or an outage)."""

    def pass_finished(self, result: PassResult, wall_time: float) -> None:
        """A daemon pass ran to its end (with or without failed recordings)."""

    def pass_took(self, seconds: float) -> None:
        """How long a daemon pass took, whatever its outcome."""

    async def after_pass(self, ledger: Ledger, now: float, max_attempts: int) -> None:
        """After every daemon pass: describe the ledger (its counts, the watermark...)."""

    def journal_size(self, size: int) -> None:
        """The audit journal's size in bytes, after every daemon pass."""


class BothHooks(Hooks):
    """Two watchers as one (the metrics and the progress display): every call goes to both,
    ``first`` first. ``tests/test_progress.py`` checks that every hook is forwarded."""

    def __init__(self, first: Hooks, second: Hooks) -> None:
        self.first = first
        self.second = second

    def page_listed(self, items: int, new: int) -> None:
        self.first.page_listed(items, new)
        self.second.page_listed(items, new)

    def source_request(self, status: int | str) -> None:
        self.first.source_request(status)
        self.second.source_request(status)

    def retry_scheduled(self, operation: str) -> None:
        self.first.retry_scheduled(operation)
        self.second.retry_scheduled(operation)

    def transfer_started(self) -> None:
        self.first.transfer_started()
        self.second.transfer_started()

    def transfer_ended(self) -> None:
        self.first.transfer_ended()
        self.second.transfer_ended()

    def recording_verified(self, size: int) -> None:
        self.first.recording_verified(size)
        self.second.recording_verified(size)

    def recording_failed(self, error_type: str) -> None:
        self.first.recording_failed(error_type)
        self.second.recording_failed(error_type)

    def deletion(self, outcome: str) -> None:
        self.first.deletion(outcome)
        self.second.deletion(outcome)

    def pass_failed(self) -> None:
        self.first.pass_failed()
        self.second.pass_failed()

    def pass_finished(self, result: PassResult, wall_time: float) -> None:
        self.first.pass_finished(result, wall_time)
        self.second.pass_finished(result, wall_time)

    def pass_took(self, seconds: float) -> None:
        self.first.pass_took(seconds)
        self.second.pass_took(seconds)

    async def after_pass(self, ledger: Ledger, now: float, max_attempts: int) -> None:
        await self.first.after_pass(ledger, now, max_attempts)
        await self.second.after_pass(ledger, now, max_attempts)

    def journal_size(self, size: int) -> None:
        self.first.journal_size(size)
        self.second.journal_size(size)


def both(first: Hooks, second: Hooks | None) -> Hooks:
    """``first`` and ``second`` as one watcher (``first`` alone when there is no second)."""
    return first if second is None else BothHooks(first, second)


NO_HOOKS = Hooks()
