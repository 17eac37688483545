"""Local-disk archive: atomic, durable writes under one folder.

A put streams into a hidden temp file (``.archiver-<pid>-<n>.part``) in the destination's own
folder, so the rename is atomic and never crosses a file system even where a year or day folder
is a mount point; it fsyncs the file, renames it into place and fsyncs the folder. Each process
notes the folders it puts temp files in, once, in ``<path>/.archiver-tmp/<pid>.folders``; the
temp files of dead processes are swept from those folders when a storage opens and at the end of
every pass (:meth:`LocalStorage.sweep`), so a SIGKILL leaves nothing behind for long.

Faults: a full disk (ENOSPC, EDQUOT, EFBIG) stops the pass (StorageDenied); a folder that
refuses us (EACCES, EPERM, EROFS) fails only the recordings bound for it, with the folder named.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import structlog

from archiver.errors import ObjectNotFound, StorageDenied, StorageError, VerificationFailed
from archiver.modes import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, fsync_dir, make_dirs, open_new
from archiver.storage.base import (
    Canary,
    Digest,
    Sidecar,
    StoredObject,
    check_key,
    check_prefix,
    compare,
    is_key,
    single_chunk,
)
from archiver.storage.rules import dead_writers, remove_leftover, same_or_conflict, temp_name

log = structlog.get_logger("archiver.storage.local")
T = TypeVar("T")

TMP_DIR = ".archiver-tmp"
DEFAULT_READ_CHUNK = 1024 * 1024
DEFAULT_BUFFER = 1024 * 1024  # shorter bodies: one thread hop; longer: written in batches of this
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
TMP_PREFIX = ".archiver-"  # then "<pid>-": temp files in the destination folders
FOLDERS_SUFFIX = ".folders"


def _translate(exc: OSError, what: str, *, per_folder: bool = False) -> StorageError:
    """An OSError as our own error. ``per_folder``: a refusal concerns one destination folder
    (one recording), not the whole archive, so it must not stop the pass."""
    if exc.errno in _FULL:
        return StorageDenied(f"{what}: disk full or file size limit reached ({exc.strerror})")
    if exc.errno in _DENIED:
        where = f" in {Path(exc.filename).parent}" if per_folder and exc.filename else ""
        message = f"{what}: {exc.strerror}{where} (check the folder's owner and mode)"
        return StorageError(message) if per_folder else StorageDenied(message)
    if exc.errno == errno.EXDEV:
        return StorageError(f"{what}: {exc.strerror} (a rename across file systems)")
    if exc.errno == errno.ENOENT:
        return ObjectNotFound(f"{what}: not found")
    return StorageError(f"{what}: {exc.strerror or exc}")


def _make_dirs(path: Path, mode: int) -> None:
    """Create ``path`` and any missing parents (``mode``), each made durable in its parent."""
    for folder in make_dirs(path, mode):
        fsync_dir(folder.parent)


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
    _write_fd(open_new(path, os.O_WRONLY, mode), data)


def _write_fd(fd: int, data: bytes) -> None:
    """Write ``data`` to the new file ``fd``, fsync and close it: os-level calls only."""
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
        if h is not None:
            h.update(chunk)


def _digest_fields(path: Path) -> dict[str, Any]:
    size, sha = _hash_file(path)
    return {"size": size, "sha256": sha}


def _scan(folder: Path, start: str) -> list[tuple[str, int | None]]:
    """The entries of ``folder`` that can be keys (never temp files: their names start with a
    dot) and start with ``start``, in key order: (name, size), size None for a folder."""
    found: list[tuple[str, int | None]] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith(start) or not is_key(entry.name):
                continue
            try:
                if entry.is_dir():
                    found.append((entry.name, None))
                elif entry.is_file():
                    found.append((entry.name, entry.stat().st_size))
            except FileNotFoundError:
                continue  # removed meanwhile
    # a folder's keys continue with "/": sorted so, the order is S3's (byte order of keys)
    found.sort(key=lambda e: e[0] + "/" if e[1] is None else e[0])
    return found


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
    protection = ""  # a file system keeps no copy immutable
    # the rename, the sidecar and one folder fsync for both, then the re-read: one thread hop
    put_writes_sidecar = True
    put_verifies = True  # every put re-reads what it stored

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
        self._folders: set[Path] = set()  # where this process has put temp files (noted)
        self._noting = threading.Lock()  # puts note folders from worker threads

    async def __aenter__(self) -> LocalStorage:
        await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        # every temp file of ours is gone (removed on failure, renamed on success)
        with contextlib.suppress(OSError):
            (self.tmp / f"{os.getpid()}{FOLDERS_SUFFIX}").unlink()
        self._folders.clear()

    def _open(self) -> None:
        try:
            make_dirs(self.tmp, self.dir_mode)
            probe = self.tmp / f"{os.getpid()}-probe.part"
            os.close(open_new(probe, os.O_WRONLY, self.file_mode))
            probe.unlink()
        except OSError as exc:
            raise _translate(exc, f"archive folder {self.root}") from exc
        self._sweep()

    async def sweep(self) -> int:
        """Remove the temp files dead processes left; the number removed."""
        return await asyncio.to_thread(self._sweep)

    def _sweep(self) -> int:
        removed = 0
        # in .archiver-tmp: "<pid>.folders" lists, and temp files of the layout before
        for entry, pid in dead_writers(self.tmp, ""):
            if entry.name.endswith(FOLDERS_SUFFIX):
                try:
                    removed += self._sweep_folders(entry, pid)
                except OSError:
                    continue  # unreadable now: kept for the next sweep
            remove_leftover(entry, "storage.temp_removed", entry.name)
        return removed

    def _sweep_folders(self, listing: Path, pid: int) -> int:
        removed = 0
        for line in listing.read_text(errors="replace").splitlines():
            folder = self.root / line
            if not line or ".." in Path(line).parts:
                continue
            with contextlib.suppress(OSError):
                for leftover in folder.glob(f"{TMP_PREFIX}{pid}-*.part*"):
                    removed += remove_leftover(leftover, "storage.temp_removed", str(leftover))
        return removed

    def _note(self, folder: Path) -> None:
        """Record, once per process, that temp files go to ``folder`` (for a later sweep)."""
        if folder in self._folders:
            return
        with self._noting:
            if folder in self._folders:
                return
            line = (str(folder.relative_to(self.root)) + "\n").encode()
            listing = self.tmp / f"{os.getpid()}{FOLDERS_SUFFIX}"
            fd = os.open(listing, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            self._folders.add(folder)

    def _new_temp(self, tmp: Path) -> int:
        """Create the temp file ``tmp`` (its folder too, when missing); the descriptor."""
        self._note(tmp.parent)
        try:
            return open_new(tmp, os.O_WRONLY, self.file_mode)
        except FileNotFoundError:
            _make_dirs(tmp.parent, self.dir_mode)
            return open_new(tmp, os.O_WRONLY, self.file_mode)

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
        digest: Digest | None = None,
    ) -> StoredObject:
        final = self._final(key)
        # in the destination's own folder: the rename never crosses a file system
        tmp = final.with_name(temp_name(TMP_PREFIX, ".part"))
        chunks: list[bytes] = []  # not yet written
        buffered = 0
        # with the download's own digest the bytes are hashed once more only by the read-back,
        # which proves the file against it
        h = hashlib.sha256() if digest is None else None
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
                        fh = os.fdopen(self._new_temp(tmp), "wb")
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
                            self._write_whole, chunks, tmp, final, key, replace, sidecar, digest
                        )
                    )
                else:
                    _write(fh, h, chunks)  # the tail: less than one batch
                    if h is not None:
                        size, sha = size + buffered, h.hexdigest()
                    else:
                        assert digest is not None  # h is None only when a digest was given
                        size, sha = digest()
                    stored = StoredObject(key, size, sha)
                    handed_off = True
                    job = asyncio.ensure_future(
                        asyncio.to_thread(self._finish, fh, tmp, final, stored, replace, sidecar)
                    )
                return await _settled(job)
            except OSError as exc:
                raise _translate(exc, f"writing {final}", per_folder=True) from exc
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
        digest: Digest | None = None,
    ) -> StoredObject:
        data = b"".join(chunks)
        size, sha = (
            digest() if digest is not None else (len(data), hashlib.sha256(data).hexdigest())
        )
        stored = StoredObject(key, size, sha)
        with _removed_on_failure(tmp):
            fd = self._new_temp(tmp)
            _write_fd(fd, data)
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
            existing = self._read_back(final)
            if (existing.size, existing.sha256) != (stored.size, stored.sha256):
                # before calling it a conflict, know what this put really holds (a digest
                # given by the caller is checked, never trusted, here too)
                stored = replace_fields(stored, **_digest_fields(tmp))
            same_or_conflict(str(final), existing, stored)
            read_back = True  # same bytes already archived: a no-op, and just re-read
            tmp.unlink()
        else:
            _move(tmp, final, self.dir_mode)
        if sidecar is not None:
            side_tmp = tmp.with_name(tmp.name + ".json")
            with _removed_on_failure(side_tmp):
                _write_new(side_tmp, sidecar(stored), self.file_mode)
                os.replace(side_tmp, final.with_name(final.name + ".json"))
        fsync_dir(final.parent)
        if not read_back:
            try:
                compare(stored.key, self._read_back(final), stored.size, stored.sha256, str(final))
            except VerificationFailed:
                # what was just put in place is not the body: never leave it to pass as a copy
                # (the next attempt would find it there and call the body a conflict)
                for written in (final, final.with_name(final.name + ".json")):
                    if written == final or sidecar is not None:
                        written.unlink(missing_ok=True)
                fsync_dir(final.parent)
                raise
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

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """Walks the folders with os.scandir, one folder read at a time in a worker thread."""
        folder, _, start = check_prefix(prefix).rpartition("/")
        async for obj in self._walk(folder, start):
            yield obj

    async def _walk(self, folder: str, start: str = "") -> AsyncIterator[StoredObject]:
        """The keys in ``folder`` ("" for the root) and below whose name in ``folder`` starts
        with ``start``, in key order."""
        path = self.root / folder
        try:
            entries = await asyncio.to_thread(_scan, path, start)
        except (FileNotFoundError, NotADirectoryError):
            return  # no such folder: no keys under it
        except OSError as exc:
            raise _translate(exc, f"listing {path}") from exc
        for name, size in entries:
            key = f"{folder}/{name}" if folder else name
            if size is None:
                async for obj in self._walk(key):
                    yield obj
            else:
                yield StoredObject(key, size, "")  # a SHA-256 would mean reading the file

    async def verify(self, key: str, size: int, sha256: str, *, deep: bool = False) -> None:
        # Local has no stored checksum: every verification re-reads the file.
        compare(key, await self.stat(key), size, sha256, str(self.root / key))

    async def put_canary(self, key: str, data: bytes) -> Canary:
        """A plain put, read back: a local file has no retention to choose."""
        stored = await self.put(key, single_chunk(data), content_type="text/plain")
        await self.verify(key, stored.size, stored.sha256, deep=True)
        return Canary()

    async def delete_canary(self, key: str) -> None:
        await self.delete(key)
        if "/" in key:  # and the folder it needed, when now empty
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.rmdir, self.root / key.rsplit("/", 1)[0])

    async def delete(self, key: str) -> None:
        path = self._final(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            raise ObjectNotFound(f"{path}: not found") from None
        except OSError as exc:
            raise _translate(exc, f"deleting {path}") from exc
