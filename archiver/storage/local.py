"""Local-disk archive: atomic, durable writes under one folder.

A put streams into a temp file under ``<path>/.archiver-tmp/`` (same file system, so the rename
is atomic), fsyncs it, renames it into place and fsyncs the folder. Temp files of dead processes
are swept when the storage opens, so a SIGKILL leaves nothing behind for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import structlog

from archiver.errors import (
    ArchiveConflict,
    ObjectNotFound,
    StorageDenied,
    StorageError,
)
from archiver.modes import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, make_dirs, open_new
from archiver.storage.base import Sidecar, StoredObject, check_key, compare, pid_alive

log = structlog.get_logger("archiver.storage.local")
T = TypeVar("T")

TMP_DIR = ".archiver-tmp"
DEFAULT_READ_CHUNK = 1024 * 1024
DEFAULT_BUFFER = 1024 * 1024  # shorter bodies: one thread hop; longer: written in batches of this
# temp names: pid first (the sweep reads it), then a per-process token and a counter, which
# spares an os.urandom call per put
_TMP_TOKEN = secrets.token_hex(4)
_tmp_serial = itertools.count()
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _translate(exc: OSError, what: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageDenied(f"{what}: disk full or file size limit reached ({exc.strerror})")
    if exc.errno in _DENIED:
        return StorageDenied(f"{what}: {exc.strerror} (check the folder's owner and mode)")
    if exc.errno == errno.ENOENT:
        return ObjectNotFound(f"{what}: not found")
    return StorageError(f"{what}: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path, mode: int) -> None:
    """Create ``path`` and any missing parents (``mode``), each made durable in its parent."""
    for folder in make_dirs(path, mode):
        _fsync_dir(folder.parent)


def _move(src: Path, dst: Path, dir_mode: int) -> None:
    """Rename ``src`` to ``dst``, creating ``dst``'s folder only when it is missing (the rename
    says so): no mkdir, which locks the parent folder, on every put."""
    try:
        os.replace(src, dst)
    except FileNotFoundError:
        _make_dirs(dst.parent, dir_mode)
        os.replace(src, dst)


def _hash_file(path: Path) -> tuple[int, str]:
    # os-level calls, not open(): no buffer object, isatty probe or seek. In a worker thread
    # every system call hands the GIL back and forth, so fewer calls is less waiting.
    h = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, DEFAULT_READ_CHUNK):
            h.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return size, h.hexdigest()


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (it must not exist) with ``mode``, write ``data`` and fsync it."""
    fd = open_new(path, os.O_WRONLY, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Remove ``path`` (a temp file, if it was created) when the block fails; re-raise."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def _write(fh: BinaryIO, h: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        fh.write(chunk)
        h.update(chunk)


async def _settled(job: asyncio.Future[T]) -> T:
    """Await a thread's work; if cancelled meanwhile, let it finish first (a thread cannot be
    stopped, and its file handle and temp file must not be closed or removed under it)."""
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await job
        raise


class LocalStorage:
    """Archive into a folder on local disk."""

    name = "local"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        file_mode: int = DEFAULT_FILE_MODE,
        dir_mode: int = DEFAULT_DIR_MODE,
    ) -> None:
        self.root = Path(path)
        self.tmp = self.root / TMP_DIR
        self.file_mode = file_mode  # recordings, sidecars, manifests: private unless configured
        self.dir_mode = dir_mode

    async def __aenter__(self) -> LocalStorage:
        await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def _open(self) -> None:
        try:
            make_dirs(self.tmp, self.dir_mode)
            probe = self.tmp / f"{os.getpid()}-probe.part"
            os.close(open_new(probe, os.O_WRONLY, self.file_mode))
            probe.unlink()
        except OSError as exc:
            raise _translate(exc, f"archive folder {self.root}") from exc
        for leftover in self.tmp.iterdir():
            pid_text = leftover.name.split("-", 1)[0]
            pid = int(pid_text) if pid_text.isdigit() else 0
            if pid == os.getpid() or not pid_alive(pid):
                with contextlib.suppress(OSError):
                    leftover.unlink()
                    log.info("storage.temp_removed", file=leftover.name)

    def describe(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def _final(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(
        self,
        key: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        replace: bool = False,
        sidecar: Sidecar | None = None,
        size_hint: int | None = None,  # not needed: short bodies are written in one step anyway
    ) -> StoredObject:
        final = self._final(key)
        tmp = self.tmp / f"{os.getpid()}-{_TMP_TOKEN}{next(_tmp_serial)}.part"
        chunks: list[bytes] = []  # not yet written
        buffered = 0
        h = hashlib.sha256()
        size = 0
        fh: BinaryIO | None = None
        writing: asyncio.Future[None] | None = None  # the batch being written by a thread
        handed_off = False  # once the finishing thread runs, it owns fh and tmp
        try:
            try:
                async for chunk in body:
                    chunks.append(chunk)
                    buffered += len(chunk)
                    if buffered < DEFAULT_BUFFER:
                        continue
                    if fh is None:
                        # a long recording: stream it through a temp file. Opened here, not in
                        # a thread: a cancellation during a threaded open would leak the handle.
                        fh = os.fdopen(open_new(tmp, os.O_WRONLY, self.file_mode), "wb")
                    if writing is not None:
                        await _settled(writing)  # one batch in flight: memory stays bounded
                    # write and hash in a thread while the next batch downloads: the event
                    # loop, which also receives and hashes the download, is the bottleneck
                    writing = asyncio.ensure_future(asyncio.to_thread(_write, fh, h, chunks))
                    size += buffered
                    chunks, buffered = [], 0
                if writing is not None:
                    await _settled(writing)
                if fh is None:
                    # short: create, write, hash, fsync and commit in one thread hop; the
                    # event loop never waits on the file system (a create can block behind
                    # another thread's fsync on the same journal)
                    handed_off = True
                    job = asyncio.ensure_future(
                        asyncio.to_thread(
                            self._write_whole, chunks, tmp, final, key, replace, sidecar
                        )
                    )
                else:
                    _write(fh, h, chunks)  # the tail: less than one batch
                    stored = StoredObject(key, size + buffered, h.hexdigest())
                    handed_off = True
                    job = asyncio.ensure_future(
                        asyncio.to_thread(self._finish, fh, tmp, final, stored, replace, sidecar)
                    )
                return await _settled(job)
            except OSError as exc:
                raise _translate(exc, f"writing {final}") from exc
        finally:
            if not handed_off:
                if writing is not None and not writing.done():
                    with contextlib.suppress(Exception):  # the body failed mid-batch
                        await _settled(writing)
                if fh is not None:
                    with contextlib.suppress(OSError):
                        fh.close()
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def _write_whole(
        self,
        chunks: list[bytes],
        tmp: Path,
        final: Path,
        key: str,
        replace: bool,
        sidecar: Sidecar | None,
    ) -> StoredObject:
        data = b"".join(chunks)
        stored = StoredObject(key, len(data), hashlib.sha256(data).hexdigest())
        with _removed_on_failure(tmp):
            _write_new(tmp, data, self.file_mode)
            return self._commit(tmp, final, stored, replace, sidecar)

    def _finish(
        self,
        fh: BinaryIO,
        tmp: Path,
        final: Path,
        stored: StoredObject,
        replace: bool,
        sidecar: Sidecar | None,
    ) -> StoredObject:
        with _removed_on_failure(tmp):
            try:
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fh.close()
            return self._commit(tmp, final, stored, replace, sidecar)

    def _commit(
        self,
        tmp: Path,
        final: Path,
        stored: StoredObject,
        replace: bool,
        sidecar: Sidecar | None = None,
    ) -> StoredObject:
        """Rename into place (or find the same bytes there), store the sidecar, fsync the folder
        once for both, and read the audio back: one thread hop for the whole durable step.
        ``tmp`` is gone (renamed into place) when this returns."""
        read_back = False
        if not replace and final.exists():
            size, sha = _hash_file(final)
            if (size, sha) != (stored.size, stored.sha256):
                raise ArchiveConflict(
                    f"{final} already holds different bytes (sha256 {sha}, {size} bytes); "
                    f"refusing to overwrite with sha256 {stored.sha256}, {stored.size} bytes"
                )
            read_back = True  # same bytes already archived: a no-op, and just re-read
            tmp.unlink()
        else:
            _move(tmp, final, self.dir_mode)
        if sidecar is not None:
            side_tmp = tmp.with_name(tmp.name + ".json")
            with _removed_on_failure(side_tmp):
                _write_new(side_tmp, sidecar(stored), self.file_mode)
                os.replace(side_tmp, final.with_name(final.name + ".json"))
        _fsync_dir(final.parent)
        if not read_back:
            compare(stored.key, self._read_back(final), stored.size, stored.sha256, str(final))
        return replace_fields(stored, read_back=True, sidecar_written=sidecar is not None)

    @staticmethod
    def _read_back(path: Path) -> StoredObject:
        size, sha = _hash_file(path)
        return StoredObject(str(path), size, sha)

    async def stat(self, key: str) -> StoredObject | None:
        path = self._final(key)
        try:
            size, sha = await asyncio.to_thread(_hash_file, path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _translate(exc, f"reading {path}") from exc
        return StoredObject(key, size, sha)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self._final(key)
        try:
            fh = path.open("rb")  # see put(): no threaded open
        except OSError as exc:
            raise _translate(exc, f"reading {path}") from exc
        try:
            while chunk := await asyncio.to_thread(fh.read, DEFAULT_READ_CHUNK):
                yield chunk
        finally:
            fh.close()

    async def verify(self, key: str, size: int, sha256: str, *, deep: bool = False) -> None:
        # Local has no stored checksum: every verification re-reads the file.
        compare(key, await self.stat(key), size, sha256, str(self.root / key))

    async def delete(self, key: str) -> None:
        path = self._final(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            raise ObjectNotFound(f"{path}: not found") from None
        except OSError as exc:
            raise _translate(exc, f"deleting {path}") from exc
