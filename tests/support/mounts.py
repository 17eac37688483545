"""Small real file systems for fault tests: a tmpfs of a given size mounted under tmp_path.

Mounting needs root (CI runs the suite as root); elsewhere the tests that need it are skipped
with that reason. Mounts are undone by path, lazily, so a test that fails midway leaves none.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT_ONLY = "needs root to mount a small tmpfs (CI runs the suite as root)"
DEFAULT_FILL_CHUNK = 64 * 1024


class Tmpfs:
    """``Tmpfs(tmp_path).mount("state", "1m")``: a new folder under tmp_path with a tmpfs of
    that size on it; :meth:`unmount_all` undoes every mount (the ``tmpfs`` fixture calls it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted: list[Path] = []

    def mount(self, name: str, size: str = "1m", at: Path | None = None) -> Path:
        if os.geteuid() != 0:
            pytest.skip(ROOT_ONLY)
        folder = at if at is not None else self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
            check=True,
        )
        self.mounted.append(folder)
        return folder

    def unmount_all(self) -> None:
        for folder in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(folder)], check=False)
        self.mounted.clear()


def fill(folder: Path) -> Path:
    """Write a filler file into ``folder`` until its file system says ENOSPC."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = b"\0" * DEFAULT_FILL_CHUNK
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]  # fill the last bytes too
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    return filler


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


@contextlib.contextmanager
def read_only_bind(path: Path) -> Iterator[None]:
    """``path`` (a file or folder) read-only through a bind mount over itself, even for root."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
