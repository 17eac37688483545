"""The writer lock: one process at a time writes the ledger, the journal and the archive.

Two writers side by side (a cron ``sync`` next to the daemon, a manual ``reconcile``) would
download everything twice and fork the audit journal's hash chain for good. Every command that
writes takes ``<ledger.path>.lock`` with ``flock(LOCK_EX | LOCK_NB)`` and holds it for the
process's life. The kernel drops the lock when the process dies, however it dies (SIGKILL, OOM,
power), so there is never a stale lock to clear by hand: the file itself may stay. After locking,
the holder writes its PID and command into the file, so a second writer can name it. Read-only
commands (``status``, ``audit verify``, ``verify``) take no lock: SQLite's WAL lets them read
while the daemon writes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import structlog

from archiver.errors import LedgerError, LockHeld
from archiver.modes import make_dirs, open_private

log = structlog.get_logger("archiver.lock")

DEFAULT_HOLDER_BYTES = 4096  # more than any holder record; a longer file is not ours to trust


def lock_path(ledger_path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(ledger_path)}.lock")


class WriterLock:
    """``with WriterLock(ledger_path, "sync"):`` or ``acquire()``/``release()``."""

    def __init__(
        self,
        ledger_path: str | os.PathLike[str],
        command: str,
        argv: Sequence[str] = (),
    ) -> None:
        self.path = lock_path(ledger_path)
        self.command = command
        self.argv = list(argv)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        try:
            make_dirs(self.path.parent)
            # O_CLOEXEC: a child process must not inherit the lock and outlive us holding it
            fd = open_private(self.path, os.O_RDWR)
        except OSError as exc:
            raise LedgerError(
                f"cannot open the writer lock {self.path}: {exc.strerror or exc} "
                "(check the ledger folder's owner, mode and free space)"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(
                    f"{self.path} is held by another archiver: {holder}; only one process "
                    "may write this ledger, journal and archive at a time. Wait for it to "
                    "finish, or stop it (next to a running daemon, a scheduled 'sync' is not "
                    "needed: the daemon already runs a pass every poll_interval)"
                ) from None
            raise LedgerError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        self._fd = fd
        self._record()

    def _record(self) -> None:
        assert self._fd is not None
        doc = {
            "pid": os.getpid(),
            "command": self.command,
            "argv": self.argv,
            "since": datetime.fromtimestamp(time.time(), UTC).isoformat(),
        }
        data = (json.dumps(doc) + "\n").encode()
        try:
            # written over the old record, then cut: no new block needed on a full volume
            # when the file already held a record, so the lock still says who holds it
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError as exc:  # the flock is what excludes; the record only names us
            log.warning("lock.holder_unrecorded", path=str(self.path), error=str(exc))

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # the record stays: it is read only while someone holds the lock (who rewrote it),
            # and its block lets the next holder record itself even on a full volume
            os.close(fd)  # releases the flock

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """The holder's PID and command as the lock file records them, for the message."""
    try:
        raw = os.pread(fd, DEFAULT_HOLDER_BYTES, 0)
        doc = json.loads(raw)
        pid, command = int(doc["pid"]), str(doc["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return "PID unknown (it has not recorded itself yet, or the file is not ours)"
    argv = " ".join(doc.get("argv") or []) if isinstance(doc.get("argv"), list) else ""
    since = doc.get("since", "?")
    return f"PID {pid}, command {command!r}" + (f" ({argv})" if argv else "") + f", since {since}"
