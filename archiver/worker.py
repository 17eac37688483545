"""A worker process of :class:`archiver.workers.WorkerPool` (``python -m archiver.worker``).

It reads its config from the first message on stdin, opens its own source client and
archive, tells its parent it is ready, then copies each recording it is sent with the same
:class:`archiver.copier.Copier` a single process uses, answering with what it stored or the
error. Its log lines and the hooks its source client calls go to the parent, which logs them
and counts them. It never opens the ledger or the journal.

It ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group; ``systemctl stop``
the whole service): its parent decides when it ends, by closing its stdin, and it ends at
once when that happens, whatever it was doing, as when its parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import MutableMapping
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any, BinaryIO

import structlog

from archiver import logs, retry
from archiver.config import Config
from archiver.copier import Copier
from archiver.errors import ArchiverError
from archiver.hooks import Hooks
from archiver.source import Source, open_source
from archiver.storage import open_storage
from archiver.workers import encode_error, frame, read_frame

log = structlog.get_logger("archiver.worker")


class _Parent:
    """The pipe to the parent: whole frames, written from the event loop's thread only (a
    log line from a file-system thread is handed over to it)."""

    def __init__(self, out: BinaryIO, loop: asyncio.AbstractEventLoop) -> None:
        self._out = out
        self._loop = loop
        self._thread = threading.get_ident()
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        data = frame(message)
        if threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self._write, data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        with self._lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, OSError):
                os._exit(0)  # the parent is gone: nothing of ours counts any more


class _ForwardedHooks(Hooks):
    def __init__(self, parent: _Parent) -> None:
        self._parent = parent

    def source_request(self, status: int | str) -> None:
        self._parent.send(("hook", "source_request", (status,)))

    def retry_scheduled(self, operation: str) -> None:
        self._parent.send(("hook", "retry_scheduled", (operation,)))


def _forward_logs(parent: _Parent, level: str) -> None:
    """Every log line of this process goes to the parent as its fields."""

    def forward(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        fields = {
            k: v if isinstance(v, str | int | float | bool | type(None)) else str(v)
            for k, v in event.items()
        }
        parent.send(("log", str(fields.pop("level", "info")), fields))
        raise structlog.DropEvent

    import logging

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            logs.mask_secrets,
            forward,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=False,
    )


async def _serve(out: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    parent = _Parent(out, loop)
    first = await read_frame(reader)
    if first is None or first[0] != "init":
        os._exit(2)
    init: dict[str, Any] = first[1]
    cfg: Config = init["config"]
    _forward_logs(parent, init["log_level"])
    retry.set_testing(*init["retry_testing"])
    hooks = _ForwardedHooks(parent)
    retry.set_hooks(hooks)
    src = replace(
        cfg.source,
        concurrency=init["share"],
        max_requests_per_second=init["rate"],
        auth_token=init["token"] or cfg.source.auth_token,
    )
    logs.register_secret(src.auth_token)
    stack = AsyncExitStack()
    try:
        client: Source = await stack.enter_async_context(open_source(src, hooks))
        storage = await stack.enter_async_context(open_storage(cfg.archive))
    except Exception as exc:  # the parent reports it as its own (the same error class)
        parent.send(("failed", encode_error(exc)))
        await _close(stack)
        os._exit(0)

    def source_for(account_sid: str | None) -> Source:
        if account_sid is None or account_sid == client.account_sid:
            return client
        view = views.get(account_sid)
        if view is None:
            view = views[account_sid] = client.for_account(account_sid)
        return view

    views: dict[str, Source] = {}
    copier = Copier(source_for, storage, init["share"])
    jobs: dict[int, asyncio.Task[None]] = {}

    async def job(kind: str, job_id: int, rec: Any, arg: Any, archived_at: float) -> None:
        try:
            if kind == "copy":
                parent.send(("done", job_id, await copier.copy(rec, arg, archived_at)))
            else:
                await copier.complete(rec, arg, archived_at)
                parent.send(("done", job_id, None))
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            if not isinstance(exc, ArchiverError | ValueError):
                log.exception("worker.unexpected_error", sid=getattr(rec, "sid", None))
            parent.send(("error", job_id, *encode_error(exc)))
        finally:
            jobs.pop(job_id, None)

    parent.send(("ready", os.getpid()))
    while (message := await read_frame(reader)) is not None:
        kind = message[0]
        if kind in ("copy", "complete"):
            jobs[message[1]] = asyncio.create_task(job(*message))
        elif kind == "cancel":
            task = jobs.get(message[1])
            if task is not None:
                task.cancel()
        elif kind == "token":
            client.set_token(message[1])
    # stdin closed: the parent ended us, or died. Nothing we do now would be counted.
    for task in list(jobs.values()):
        task.cancel()
    await _close(stack)
    os._exit(0)  # not waiting for a file-system thread that may hang: the parent decides


async def _close(stack: AsyncExitStack) -> None:
    with contextlib.suppress(Exception):  # best effort: the process ends either way
        await asyncio.wait_for(stack.aclose(), 5)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # frames go to the real stdout; anything else printed goes to stderr, never into the pipe
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        asyncio.run(_serve(out))
    except BaseException as exc:  # no traceback for the operator: one line, and the parent
        print(f"archiver worker {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        os._exit(70)
    os._exit(0)


if __name__ == "__main__":
    main()
