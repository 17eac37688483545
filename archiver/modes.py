"""File modes: everything archiver creates is private unless configured otherwise.

Call recordings, their sidecars, the ledger and the journal are personal data. Files are created
0600 and folders 0700 whatever the process umask: the mode is passed to ``open``/``mkdir`` and
then set again with ``fchmod``/``chmod``, because both calls only ever take bits away (the umask)
and ``os.umask`` is process-wide (a thread creating a file meanwhile would get the other mode).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DEFAULT_FILE_MODE = 0o600
DEFAULT_DIR_MODE = 0o700


def parse_mode(text: str) -> int:
    """``"0640"`` or ``"640"`` → 0o640; ValueError for anything else."""
    value = text.strip()
    if not value or len(value) > 4 or any(c not in "01234567" for c in value):
        raise ValueError(f"expected an octal mode like '0600', got {text!r}")
    return int(value, 8)


def open_new(path: Path, flags: int, mode: int = DEFAULT_FILE_MODE) -> int:
    """Create ``path`` (O_EXCL) with exactly ``mode``; returns the descriptor."""
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # open() applied the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: Path, flags: int, mode: int = DEFAULT_FILE_MODE) -> int:
    """Open ``path``, creating it with exactly ``mode`` if it is missing (an existing file
    keeps the mode it has: the operator may have chosen it)."""
    try:
        return open_new(path, flags, mode)
    except FileExistsError:
        return os.open(path, flags | os.O_CLOEXEC)


def make_dirs(path: Path, mode: int = DEFAULT_DIR_MODE) -> list[Path]:
    """Create ``path`` and missing parents with exactly ``mode``; returns those created."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    created: list[Path] = []
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another thread or process was first
            folder.mkdir(mode)
            os.chmod(folder, mode)  # mkdir applied the umask
            created.append(folder)
    return created


def pid_alive(pid: int) -> bool:
    """Whether a process exists: temp files and spools of dead ones may be swept."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (a create, a rename) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
