"""The one retry policy (tenacity): transient errors only, bounded, observable, switchable.

Only errors marked ``transient`` in :mod:`archiver.errors` are retried, with exponential backoff
and jitter, bounded by both attempts and elapsed time. A ``retry_after`` on the error (from an
HTTP ``Retry-After``) is honoured when it is longer than the backoff. Every scheduled retry is
logged as ``retry.scheduled``. Tests call :func:`set_testing` to make waits zero.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from archiver.errors import ArchiverError
from archiver.hooks import NO_HOOKS, Hooks

log = structlog.get_logger("archiver.retry")
T = TypeVar("T")

DEFAULT_ATTEMPTS = 5
DEFAULT_MAX_DELAY = 120.0  # seconds of retrying one operation, all attempts together
DEFAULT_INITIAL_WAIT = 0.5
DEFAULT_MAX_WAIT = 30.0
MAX_RETRY_AFTER = 300.0  # never sleep longer than this on a server's say-so


@dataclass
class _Testing:
    enabled: bool = False
    attempts: int = DEFAULT_ATTEMPTS


_testing = _Testing()


def set_testing(enabled: bool = True, attempts: int = DEFAULT_ATTEMPTS) -> None:
    """Zero all waits (tests); the attempt bound still applies."""
    _testing.enabled = enabled
    _testing.attempts = attempts


def testing() -> tuple[bool, int]:
    """What :func:`set_testing` set (handed to worker processes)."""
    return _testing.enabled, _testing.attempts


_hooks: list[Hooks] = [NO_HOOKS]


def set_hooks(hooks: Hooks) -> None:
    """Who hears of every scheduled retry (``Hooks.retry_scheduled``): set once at start-up,
    as stamina's ``set_on_retry_hooks``; retries happen too deep in every layer to inject."""
    _hooks[0] = hooks


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ArchiverError) and exc.transient


def _wait(state: RetryCallState) -> float:
    if _testing.enabled:
        return 0.0
    exponential: float = DEFAULT_INITIAL_WAIT * 2.0 ** max(state.attempt_number - 1, 0)
    backoff = min(exponential, DEFAULT_MAX_WAIT) + random.uniform(0, DEFAULT_INITIAL_WAIT)
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after > backoff:
        return min(float(retry_after), MAX_RETRY_AFTER)
    return backoff


def _before_sleep(operation: str, fields: dict[str, Any]) -> Callable[[RetryCallState], None]:
    def hook(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        _hooks[0].retry_scheduled(operation)
        log.warning(
            "retry.scheduled",
            operation=operation,
            attempt=state.attempt_number,
            wait_s=round(wait, 3),
            error=str(exc),
            error_type=type(exc).__name__,
            **fields,
        )

    return hook


async def retrying(
    operation: str,
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = None,
    max_delay: float = DEFAULT_MAX_DELAY,
    **fields: Any,
) -> T:
    """Call ``fn`` until it succeeds, raises a permanent error, or the bounds are reached.

    The last error is re-raised as it was (not wrapped in tenacity's RetryError). The first
    call is made directly: tenacity is only set up once it has failed with a transient error
    (most calls succeed at once, and this runs several times per recording).
    """
    try:
        return await fn()
    except Exception as exc:
        if not is_transient(exc):
            raise
        first: list[BaseException] = [exc]

    async def again() -> T:
        if first:  # tenacity's attempt 1 is the call already made: report its error
            raise first.pop()
        return await fn()

    n = attempts if attempts is not None else _testing.attempts
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(n) | stop_after_delay(max_delay),
        wait=_wait,
        before_sleep=_before_sleep(operation, fields),
        reraise=True,
    ):
        with attempt:
            return await again()
    raise AssertionError("unreachable")  # pragma: no cover
