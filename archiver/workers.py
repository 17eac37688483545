"""More than one core (``source.workers = N``): recordings copied by N worker processes.

This process keeps everything else of a pass: the listing, the ledger, the journal, the group
commit and what is counted, so there is still one writer of each. A worker
(:mod:`archiver.worker`, started as ``python -m archiver.worker``) opens its own source client
and archive and runs the same :class:`archiver.copier.Copier` as one process does: it is sent a
recording and its key, and answers with what it stored (size, SHA-256, read back, sidecar
written) or the error, rebuilt here as the same class, so a failure is charged (or counted as
an outage) exactly as in one process. It writes to the archive only, never to the ledger or the
journal: a copy it made counts once this process has committed it, as always.

What a death costs, whoever dies:

* **A worker** (SIGKILL, out of memory): its recordings in flight are given to a fresh worker
  once (``worker.lost``, then ``worker.retried``); a recording whose second worker dies too is
  charged :class:`~archiver.errors.WorkerLost` and tried again later like any failure. What the
  dead worker left in the archive is what a killed single process leaves: temp files named with
  its PID (swept), or a finished copy that the next put finds and re-reads (never a second one).
* **This process**: the workers' stdin closes; they stop at once (they ignore SIGINT and
  SIGTERM, so Ctrl-C or ``systemctl stop`` lets this process end the pass as it always does).
  Nothing they did was counted, so the next start does it again, finding identical copies.
* **A worker that cannot start** (a broken install, the archive refused): the pass stops with
  :class:`~archiver.errors.WorkersFailed` or the archive's own error (exit 3).

Messages are length-prefixed pickles on the worker's stdin and stdout, between two processes
of the same install; the token rides in the first one, never on the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import struct
import sys
from typing import Any

import structlog

import archiver
from archiver import errors, logs, retry
from archiver.config import Config
from archiver.errors import ArchiverError, WorkerLost, WorkersFailed
from archiver.hooks import NO_HOOKS, Hooks
from archiver.model import Recording
from archiver.storage import StoredObject

log = structlog.get_logger("archiver.workers")

START_TIMEOUT = 60.0  # seconds for a worker to import, open its archive and say it is ready
STOP_TIMEOUT = 10.0  # seconds for a worker to end once its stdin is closed
# hooks a worker may call here (what its source client and retries observe)
FORWARDED_HOOKS = frozenset({"source_request", "retry_scheduled"})
_HEADER = struct.Struct(">I")
# a worker imports this very install, wherever this process imported it from
_HOME = os.path.dirname(os.path.dirname(os.path.abspath(archiver.__file__)))


# ---------------------------------------------------------------------------- the wire


def frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at the end of the stream (the other side is gone)."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


def encode_error(exc: BaseException) -> tuple[str, str, dict[str, Any]]:
    """An exception as plain data: its class name, message and simple attributes."""
    simple = (str, int, float, bool, type(None))
    attrs = {k: v for k, v in vars(exc).items() if isinstance(v, simple)}
    return type(exc).__name__, str(exc), attrs


def decode_error(name: str, message: str, attrs: dict[str, Any], pid: int) -> Exception:
    """The exception :func:`encode_error` described: the same archiver error class, with its
    attributes (``throttled``, ``account_sid``...); anything unexpected as a RuntimeError."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, ArchiverError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        exc.__dict__.update(attrs)
        return exc
    if name == "ValueError":
        return ValueError(message)
    return RuntimeError(f"{name} in worker process {pid}: {message}")


def how_it_ended(returncode: int | None) -> str:
    if returncode is None:
        return "its pipe closed"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


# ------------------------------------------------------------------------- the pool


class _Lost(Exception):
    def __init__(self, pid: int, how: str) -> None:
        super().__init__(f"worker process {pid} died ({how})")
        self.pid = pid
        self.how = how


class _Worker:
    """One worker process, the jobs it was given and not yet answered."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.jobs: dict[int, asyncio.Future[Any]] = {}
        self.alive = True
        self.reader: asyncio.Task[None] | None = None

    def send(self, message: object) -> None:
        stdin = self.proc.stdin
        if not self.alive or stdin is None or stdin.is_closing():
            raise _Lost(self.pid, "its pipe closed")
        stdin.write(frame(message))

    async def call(self, job_id: int, message: tuple[Any, ...]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.jobs[job_id] = future
        try:
            self.send(message)
            assert self.proc.stdin is not None
            try:
                await self.proc.stdin.drain()
            except (ConnectionError, BrokenPipeError) as exc:
                raise _Lost(self.pid, "its pipe closed") from exc
            try:
                return await future
            except asyncio.CancelledError:
                if self.alive:  # the pass stopped: the worker drops it too
                    with contextlib.suppress(_Lost):
                        self.send(("cancel", job_id))
                raise
        finally:
            self.jobs.pop(job_id, None)


class WorkerPool:
    """``source.workers`` processes that copy recordings; :class:`archiver.copier.Copies`.

    Workers start on the first copy (a command that copies nothing starts none) and are
    started again when one dies. Each has ``concurrency / workers`` download slots (rounded
    up) and its share of ``max_requests_per_second``; a recording goes to the worker with
    the fewest in hand.
    """

    def __init__(self, cfg: Config, hooks: Hooks = NO_HOOKS) -> None:
        self.cfg = cfg
        self.hooks = hooks
        self.size = cfg.source.workers
        self._workers: list[_Worker | None] = [None] * self.size
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._closing = False
        self._token: str | None = None  # a token reloaded since the config was read

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pids(self) -> list[int]:
        """The PIDs of the workers running now."""
        return [w.pid for w in self._workers if w is not None and w.alive]

    @property
    def in_hand(self) -> dict[int, int]:
        """Recordings each running worker holds now, by PID."""
        return {w.pid: len(w.jobs) for w in self._workers if w is not None and w.alive}

    async def copy(self, rec: Recording, key: str, archived_at: float) -> StoredObject:
        done: StoredObject = await self._run("copy", rec, key, archived_at)
        return done

    async def complete(self, rec: Recording, copy: StoredObject, archived_at: float) -> None:
        await self._run("complete", rec, copy, archived_at)

    def set_token(self, token: str) -> None:
        """A reloaded token (SIGHUP): sent to every worker, and to those started later."""
        self._token = token
        for worker in self._workers:
            if worker is not None and worker.alive:
                # one being replaced is started again with the token
                with contextlib.suppress(_Lost):
                    worker.send(("token", token))

    async def _run(self, kind: str, rec: Recording, arg: object, archived_at: float) -> Any:
        for attempt in (1, 2):
            worker = await self._pick()
            job_id = next(self._ids)
            try:
                return await worker.call(job_id, (kind, job_id, rec, arg, archived_at))
            except _Lost as lost:
                if attempt == 2:
                    raise WorkerLost(
                        f"{lost} while copying it, and so did the worker it was given to "
                        "before; it is tried again later"
                    ) from None
                log.warning("worker.retried", sid=rec.sid, worker=lost.pid, how=lost.how)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pick(self) -> _Worker:
        """The live worker with the fewest jobs; dead or unstarted ones started first."""
        async with self._lock:
            if self._closing:
                raise WorkersFailed("the worker processes are stopping")
            for i, worker in enumerate(self._workers):
                if worker is None or not worker.alive:
                    self._workers[i] = await self._start()
            live = [w for w in self._workers if w is not None]
            return min(live, key=lambda w: len(w.jobs))

    async def _start(self) -> _Worker:
        src = self.cfg.source
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_HOME, env.get("PYTHONPATH")) if p)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "archiver.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise WorkersFailed(f"cannot start a worker process ({sys.executable}): {exc}") from exc
        worker = _Worker(proc)
        assert proc.stdin is not None and proc.stdout is not None
        testing = retry.testing()
        init = {
            "config": self.cfg,
            "token": self._token,
            "share": -(-src.concurrency // self.size),  # download slots, rounded up
            "rate": src.max_requests_per_second / self.size,
            "log_level": logs.level(),
            "retry_testing": testing,
        }
        try:
            worker.send(("init", init))
            await proc.stdin.drain()
            answer = await asyncio.wait_for(self._until_ready(worker), START_TIMEOUT)
        except (TimeoutError, _Lost, ConnectionError) as exc:
            await _stop(proc, kill=True)
            raise WorkersFailed(
                f"worker process {proc.pid} did not start ({how_it_ended(proc.returncode)}"
                f"{'' if not isinstance(exc, TimeoutError) else f', {START_TIMEOUT:.0f}s'}); "
                "its error, if any, is in the lines above"
            ) from None
        if answer[0] == "failed":  # it could not open the source or the archive: that error
            await _stop(proc, kill=False)
            name, message, attrs = answer[1]
            raise decode_error(name, message, attrs, proc.pid)
        worker.reader = asyncio.create_task(self._read(worker), name=f"worker-{proc.pid}")
        log.info("worker.started", worker=proc.pid, slots=init["share"])
        return worker

    async def _until_ready(self, worker: _Worker) -> tuple[Any, ...]:
        assert worker.proc.stdout is not None
        while True:
            message = await read_frame(worker.proc.stdout)
            if message is None:
                await worker.proc.wait()
                raise _Lost(worker.pid, how_it_ended(worker.proc.returncode))
            if message[0] in ("ready", "failed"):
                return tuple(message)
            self._handle(worker, message)

    async def _read(self, worker: _Worker) -> None:
        """Answers, hooks and log lines from ``worker``, until its stdout ends; then every job
        it held fails as lost (and is given to another)."""
        assert worker.proc.stdout is not None
        try:
            while (message := await read_frame(worker.proc.stdout)) is not None:
                self._handle(worker, message)
        except (pickle.UnpicklingError, ValueError, EOFError) as exc:  # never from our worker
            log.error("worker.garbled", worker=worker.pid, error=str(exc))
            worker.proc.kill()
        worker.alive = False
        await worker.proc.wait()
        how = how_it_ended(worker.proc.returncode)
        for future in worker.jobs.values():
            if not future.done():
                future.set_exception(_Lost(worker.pid, how))
        if not self._closing:
            log.error("worker.lost", worker=worker.pid, how=how, in_flight=len(worker.jobs))

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "done":
            future = worker.jobs.get(message[1])
            if future is not None and not future.done():
                future.set_result(message[2])
        elif kind == "error":
            future = worker.jobs.get(message[1])
            if future is not None and not future.done():
                _, _, name, text, attrs = message
                future.set_exception(decode_error(name, text, attrs, worker.pid))
        elif kind == "hook" and message[1] in FORWARDED_HOOKS:
            getattr(self.hooks, message[1])(*message[2])
        elif kind == "log":
            relog(worker.pid, message[1], message[2])

    async def close(self) -> None:
        """Close every worker's stdin and wait for it to end (killed if it does not)."""
        self._closing = True
        workers = [w for w in self._workers if w is not None]
        for worker in workers:
            if worker.proc.stdin is not None and not worker.proc.stdin.is_closing():
                worker.proc.stdin.close()
        for worker in workers:
            await _stop(worker.proc, kill=False)
            if worker.reader is not None:
                await worker.reader
        self._workers = [None] * self.size


def relog(pid: int, level: str, fields: dict[str, Any]) -> None:
    """A worker's log line, logged here (masked, above the display, in this process's
    format) with the worker's PID."""
    event = str(fields.pop("event", "worker.log"))
    for key in ("level", "timestamp", "worker"):
        fields.pop(key, None)
    method = getattr(log, level, None)
    if not callable(method):
        method = log.info
    method(event, worker=pid, **fields)


async def _stop(proc: asyncio.subprocess.Process, *, kill: bool) -> None:
    if proc.returncode is None and kill:
        proc.kill()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
