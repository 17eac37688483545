"""structlog, configured once by the CLI: JSON off a terminal, readable on one, secrets masked.

While a live display is on the screen (:func:`above_display`, the ``sync`` progress), lines go
through the display's own printer, which puts them above it instead of through it, and the
INFO lines the display already shows (per recording, ``recording.verified``...; the pass's
own, ``pass.finished``...) are left out unless the level is debug: the display counts them,
and the summary follows. Other INFO lines (a reloaded config, a manifest written), warnings
and errors print above it. Off a terminal there is no display and every line is logged.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

_secrets: set[str] = set()
MASK = "***"


class _Screen:
    """Where log lines go: the stream, or above a live display while one is shown."""

    def __init__(self) -> None:
        self.level = "info"
        self.above: Callable[[str], None] | None = None


_screen = _Screen()


class _LineLogger:
    """structlog's PrintLogger, but each line goes above a live display when there is one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        above = _screen.above
        if above is not None:
            above(message)
            return
        self._stream.write(message + "\n")
        self._stream.flush()

    log = debug = info = warn = warning = msg
    err = error = critical = exception = fatal = failure = msg


# INFO events the live display already shows (as counts, or in the summary that follows)
SHOWN_BY_DISPLAY = frozenset(
    {"pass.started", "pass.finished", "pass.progress", "scan.progress", "daemon.started"}
)


def _hidden_under_display(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _screen.above is None or _screen.level == "debug":
        return event_dict
    level = event_dict.get("level")
    counted = "sid" in event_dict or event_dict.get("event") in SHOWN_BY_DISPLAY
    if level == "debug" or (level == "info" and counted):
        raise structlog.DropEvent  # the display counts what they say
    return event_dict


@contextmanager
def above_display(write: Callable[[str], None]) -> Iterator[None]:
    """While in it, log lines are handed to ``write`` (which prints them above a live display)
    and INFO lines are left out, unless the level is debug."""
    _screen.above = write
    try:
        yield
    finally:
        _screen.above = None


def level() -> str:
    """The level configured (``info``, ``debug``...), for processes started from this one."""
    return _screen.level


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it would appear in a log line."""
    if value and len(value) >= 4:
        _secrets.add(value)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(v) for v in value)
    return value


def mask_secrets(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if isinstance(value, int | float | bool | type(None)):
            continue
        # anything else may stringify to something holding a secret (an exception, a URL)
        event_dict[key] = _mask(
            value if isinstance(value, str | dict | list | tuple) else str(value)
        )
    return event_dict


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    _screen.level = level.lower()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _hidden_under_display,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *_args: _LineLogger(out),
        cache_logger_on_first_use=False,
    )
