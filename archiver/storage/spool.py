"""A put's body on its way to the store: hashed as it arrives (the whole body, and each part of
``part_size`` for a multipart upload), held in memory up to ``threshold``, and beyond that
spooled, in writes of about 1 MiB, to a temp file in ``spool_dir`` named with the writer's PID
(:func:`archiver.storage.rules.temp_name`), so :func:`sweep_spool` removes those of dead
processes. A body whose declared length (``expect``) is above the threshold goes to the file
from its first byte. The file is removed by :meth:`Spool.close`, in a ``finally``, cancellation
included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from archiver.errors import StorageDenied, StorageError
from archiver.modes import open_new
from archiver.storage.rules import dead_writers, remove_leftover, temp_name

T = TypeVar("T")

SPOOL_PREFIX = "archiver-s3-"  # then "<pid>-": a spool file
SPOOL_WRITE = 1024 * 1024  # spooled bodies reach the file in writes of about this size


def spool_folder(spool_dir: str) -> Path:
    """Where spool files go: ``spool_dir``, or the system temp folder when it is ""."""
    return Path(spool_dir or tempfile.gettempdir())


def spool_error(exc: OSError, spool_dir: str) -> StorageError:
    where = spool_dir or tempfile.gettempdir()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageDenied(f"spooling to {where}: disk full; free space or set archive.spool_dir")
    return StorageDenied(f"spooling to {where}: {exc.strerror or exc}; check archive.spool_dir")


class Spool:
    """One put's body: hashed as it arrives, in memory up to the threshold, then in a file."""

    def __init__(
        self,
        threshold: int,
        part_size: int,
        spool_dir: str,
        expect: int | None = None,
        io: Executor | None = None,
    ) -> None:
        self.io = io  # the thread for spool file I/O (None: asyncio's default pool)
        self.threshold = threshold
        self.part_size = part_size
        self.spool_dir = spool_dir
        # A body declared larger than the threshold goes to the file from its first byte:
        # buffering up to the threshold first would hold that much in memory for nothing.
        self.to_file = expect is not None and expect > threshold
        self.buffer = bytearray()  # the whole body (in memory), or what is not yet in the file
        self.path: Path | None = None
        self.file: BinaryIO | None = None
        self.size = 0
        self._sha = hashlib.sha256()
        self._part = hashlib.sha256()
        self._part_fill = 0
        self.part_sums: list[str] = []  # base64 SHA-256 of each full part, then of the last

    @property
    def spooled(self) -> bool:
        return self.path is not None

    async def write(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self.size += len(chunk)
        self._hash_parts(chunk)
        if self.file is None and (self.to_file or len(self.buffer) + len(chunk) > self.threshold):
            try:
                # Opened here, not in a thread: a cancelled threaded open would leak the handle.
                self.file = self._open()
            except OSError as exc:
                raise spool_error(exc, self.spool_dir) from exc
        self.buffer += chunk
        if self.file is not None and len(self.buffer) >= SPOOL_WRITE:
            await self._flush_buffer()

    async def _flush_buffer(self) -> None:
        """Write what is buffered to the spool file, in a thread (one hop per SPOOL_WRITE)."""
        assert self.file is not None
        data, self.buffer = self.buffer, bytearray()
        try:
            await self.run(self.file.write, data)
        except OSError as exc:
            raise spool_error(exc, self.spool_dir) from exc

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    def _open(self) -> BinaryIO:
        path = spool_folder(self.spool_dir) / temp_name(SPOOL_PREFIX, ".part")
        fd = open_new(path, os.O_RDWR, 0o600)
        self.path = path
        return os.fdopen(fd, "w+b")

    def _hash_parts(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            take = min(len(view), self.part_size - self._part_fill)
            self._part.update(view[:take])
            self._part_fill += take
            view = view[take:]
            if self._part_fill == self.part_size:
                self.part_sums.append(base64.b64encode(self._part.digest()).decode())
                self._part = hashlib.sha256()
                self._part_fill = 0

    async def finish(self) -> str:
        """Close the body; the hex SHA-256 of all of it."""
        if self._part_fill:
            self.part_sums.append(base64.b64encode(self._part.digest()).decode())
        if self.file is not None:
            await self._flush_buffer()
            try:
                await self.run(self.file.flush)
            except OSError as exc:
                raise spool_error(exc, self.spool_dir) from exc
        return self._sha.hexdigest()

    @property
    def digest_b64(self) -> str:
        return base64.b64encode(self._sha.digest()).decode()

    def read_part(self, number: int) -> bytes:
        """Part ``number`` (1-based) from the spool file; runs in a worker thread."""
        assert self.file is not None
        self.file.seek((number - 1) * self.part_size)
        return self.file.read(self.part_size)

    def close(self) -> None:
        """Drop the buffer and remove the spool file. Synchronous: safe in any ``finally``."""
        self.buffer = bytearray()
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.path = None


def sweep_spool(spool_dir: str) -> None:
    """Create the spool folder if missing; remove the spool files of dead processes."""
    folder = spool_folder(spool_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise spool_error(exc, spool_dir) from exc
    for leftover, _ in dead_writers(folder, SPOOL_PREFIX, ".part"):
        remove_leftover(leftover, "storage.spool_removed", leftover.name)
