"""S3 archive: verified, idempotent, optionally Object-Locked uploads through aiobotocore.

A put reads the whole body first, hashing it as it arrives, because the whole-body SHA-256 must
be known before the first byte is sent (it goes into the object's metadata, and it decides
whether the key already holds these bytes). Memory stays bounded:

* bodies up to ``multipart_threshold`` are buffered in memory and sent in one PutObject with
  ``ChecksumSHA256``, so the store refuses a body corrupted on the way;
* larger bodies (or bodies whose Content-Length, given as ``size_hint``, says they will be
  larger: those go to the file from their first byte) are spooled, in writes of about 1 MiB, to
  a temp file in ``spool_dir`` (removed in a ``finally``,
  cancellation included) and sent as a multipart upload, one part in memory at a time, each part
  with the ``ChecksumSHA256`` computed while the body streamed in (not re-read from disk, so a
  corrupted spool is caught by the store too). A failed or cancelled upload is aborted.

Incomplete multipart uploads (:meth:`S3Storage.sweep`, on open and at the end of every pass):
ListMultipartUploads shows no owner we could tell apart, so each process keeps a small
registry, ``archiver-s3-uploads-<pid>.json`` in the spool folder, of the keys it sent a
CreateMultipartUpload for, written before the request. A sweep aborts every upload under
``prefix`` that no live process of ours owns: those of keys a dead process registered (at any
age: a restart ten seconds after a crash cleans up), those of our own keys whose
CreateMultipartUpload answer may have been lost (the call failed, or botocore retried it: an
earlier attempt may have created an upload nobody knows the id of), and, from owners we cannot
know (another host, an older archiver), those initiated more than ``stale_upload_age`` (one
minute) ago. Our uploads in flight and the keys a live local archiver registered are never
touched. Aborting another writer's upload is safe anyway: its CompleteMultipartUpload fails
and the put is retried, never leaving a partial object.

Retries: botocore's own retries are kept small (standard mode, 3 attempts, per request) and the
whole operation is retried by :mod:`archiver.retry` on :class:`StorageUnavailable`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import aiohttp
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from archiver.errors import (
    ObjectLocked,
    ObjectNotFound,
    StorageDenied,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)
from archiver.modes import open_new, pid_alive
from archiver.storage.base import (
    Canary,
    Sidecar,
    StoredObject,
    check_key,
    compare,
    digest,
    single_chunk,
)
from archiver.storage.rules import (
    dead_writers,
    remove_leftover,
    same_or_conflict,
    temp_name,
    writer_pid,
)

log = structlog.get_logger("archiver.storage.s3")
T = TypeVar("T")

DEFAULT_READ_CHUNK = 1024 * 1024
DEFAULT_STALE_UPLOAD_AGE = timedelta(minutes=1)
DEFAULT_MIN_RETENTION = timedelta(days=1)  # floor for a retain-until date already in the past
DEFAULT_CLOCK_SLACK = timedelta(minutes=5)  # our clock vs the store's, for retention checks
DEFAULT_LIST_PAGE = 1000  # keys per ListObjectsV2 request (the S3 maximum)
DEFAULT_ABORT_TIMEOUT = 30.0  # seconds __aexit__ waits for aborts still running
MAX_PARTS = 10_000  # the S3 limit on parts in one multipart upload
SPOOL_PREFIX = "archiver-s3-"
UPLOADS_PREFIX = "archiver-s3-uploads-"  # then "<pid>.json": the keys a process uploads
SPOOL_WRITE = 1024 * 1024  # spooled bodies reach the file in writes of about this size
SHA_META = "sha256"
PROBE_KEY = ".archiver/conditional-put-probe"
PROBE_BODY = b"archiver: probe for conditional writes (If-None-Match); safe to delete\n"
DATE_META = "date-created"

_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchVersion"}
_DENIED = {
    "AccessDenied",
    "Forbidden",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
    "RequestTimeTooSkewed",
    "NoSuchBucket",
    "InvalidBucketName",
    "PermanentRedirect",
}
_MISMATCH = {"InvalidDigest", "InvalidChecksum"}
# the body arrived but did not match the checksum sent with it: corrupted on the way, so
# sending it again (from our spool or buffer, which the checksum was computed over) can work
_CORRUPTED = {"BadDigest", "XAmzContentSHA256Mismatch"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "NoSuchUpload",  # our upload was aborted under us (e.g. by a restarting instance): redo it
    "ConditionalRequestConflict",  # a concurrent conditional write to the key (AWS, 409)
}


def _from_client_error(exc: ClientError, what: str) -> StorageError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    detail = f"{what}: {code or status} {error.get('Message', '')}".rstrip()
    if code == "NoSuchBucket":
        return StorageDenied(f"{detail} (the bucket does not exist; check archive.bucket)")
    if code in _NOT_FOUND or (status == 404 and not code):
        return ObjectNotFound(detail)
    if code in _DENIED or status == 403:
        return StorageDenied(f"{detail} (check the credentials and the bucket policy)")
    if code in _MISMATCH:
        return VerificationFailed(f"{detail} (the store refused the body: checksum mismatch)")
    if code in _CORRUPTED:
        return StorageUnavailable(
            f"{detail} (the store refused the body: it did not match its checksum, so it was "
            "corrupted on the way; sent again)"
        )
    if code in _TRANSIENT or status >= 500 or status == 429:
        return StorageUnavailable(detail)
    return StorageError(detail)


def _refused_existing(exc: StorageError) -> bool:
    """A conditional write (``If-None-Match: *``) refused because the key already exists."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False
    code = str(cause.response.get("Error", {}).get("Code", ""))
    status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "PreconditionFailed" or status == 412


@contextlib.contextmanager
def _boundary(what: str) -> Iterator[None]:
    """Translate botocore, aiobotocore and aiohttp errors into our own, naming ``what``."""
    try:
        yield
    except ClientError as exc:
        raise _from_client_error(exc, what) from exc
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
        raise StorageDenied(f"{what}: no usable AWS credentials ({exc})") from exc
    except (FlexibleChecksumError, ChecksumError) as exc:
        raise VerificationFailed(f"{what}: checksum mismatch ({exc})") from exc
    except (
        HTTPClientError,
        BotoConnectionError,
        IncompleteReadError,
        aiohttp.ClientError,
        TimeoutError,
        ConnectionError,  # the builtin: a reset socket that no layer wrapped
    ) as exc:
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {exc}") from exc


def _spool_error(exc: OSError, spool_dir: str) -> StorageError:
    where = spool_dir or tempfile.gettempdir()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageDenied(f"spooling to {where}: disk full; free space or set archive.spool_dir")
    return StorageDenied(f"spooling to {where}: {exc.strerror or exc}; check archive.spool_dir")


def _b64_to_hex(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


def _parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ceil_second(dt: datetime) -> datetime:
    # Stores keep whole seconds; rounding up keeps the stored date >= the one we computed.
    return dt if dt.microsecond == 0 else dt.replace(microsecond=0) + timedelta(seconds=1)


def _single_put_sha(head: Mapping[str, Any]) -> str:
    """The hex SHA-256 of the whole object when the store computed it (single PUT), else ""."""
    value = head.get("ChecksumSHA256")
    etag = str(head.get("ETag", "")).strip('"')
    multipart = head.get("ChecksumType") == "COMPOSITE" or "-" in etag
    if not value or multipart or "-" in value:
        return ""  # a multipart checksum is over the parts, not the bytes
    return _b64_to_hex(value)


class _Spool:
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
                raise _spool_error(exc, self.spool_dir) from exc
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
            raise _spool_error(exc, self.spool_dir) from exc

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    def _open(self) -> BinaryIO:
        path = Path(self.spool_dir or tempfile.gettempdir()) / temp_name(SPOOL_PREFIX, ".part")
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
                raise _spool_error(exc, self.spool_dir) from exc
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


@dataclass(frozen=True)
class S3Settings:
    """What an S3Storage is built from (the factory fills it from ``[archive]``)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str = ""  # "" = AWS
    region: str = "us-east-1"
    addressing_style: str = "auto"
    storage_class: str = "STANDARD"
    sse: str = ""
    kms_key_id: str = ""
    object_lock_mode: str = ""  # "" = no Object Lock required
    retention_days: int = 0
    legal_hold: bool = False
    multipart_threshold: int = 64 * 2**20
    part_size: int = 16 * 2**20
    spool_dir: str = ""  # "" = the system temp folder
    conditional_put: bool = True  # If-None-Match: * where the store honours it (probed)
    list_page_size: int = DEFAULT_LIST_PAGE


class S3Storage:
    """Archive into an S3 bucket (AWS or any S3-compatible store)."""

    name = "s3"

    def __init__(
        self,
        settings: S3Settings,
        *,
        stale_upload_age: timedelta = DEFAULT_STALE_UPLOAD_AGE,
    ) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.stale_upload_age = stale_upload_age
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._aborts: set[asyncio.Task[None]] = set()
        # multipart uploads: ids in flight per full key, and the keys a CreateMultipartUpload
        # was sent for (True: its answer may have been lost), mirrored in the registry file
        self._live: dict[str, set[str]] = {}
        self._pending: dict[str, bool] = {}
        # One thread for every spool read and write: parts of 16 MiB allocated in several
        # threads left one freed part resident per thread (the C allocator keeps a heap per
        # thread), so peak memory varied by a part or more from run to run.
        self._io: ThreadPoolExecutor | None = None
        # Whether new objects are written with If-None-Match: * (found out by the first put
        # that needs to know, so read-only commands such as `verify` write nothing)
        self.conditional: bool | None = None if settings.conditional_put else False
        self._probing: asyncio.Lock | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> S3Storage:
        started = datetime.now(UTC)
        stack = contextlib.AsyncExitStack()
        config = AioConfig(
            region_name=self.settings.region or None,
            s3={"addressing_style": self.settings.addressing_style},
            # Few botocore retries on purpose: archiver.retry retries whole operations on
            # StorageUnavailable, and stacking both would multiply attempts.
            retries={"mode": "standard", "max_attempts": 3},
        )
        try:
            with _boundary(f"opening {self.describe()}"):
                # Credentials come only from the standard AWS chain (env, files, IMDS, ...).
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3", endpoint_url=self.settings.endpoint_url or None, config=config
                    )
                )
            await self._check_bucket()
            if self.settings.object_lock_mode:
                await self._check_object_lock()
            await self._sweep_uploads(started)
            await asyncio.to_thread(self._sweep_spool)
        except BaseException:
            await stack.aclose()
            self._client = None
            raise
        self._stack = stack
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archiver-spool")
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._aborts:
                await asyncio.wait(self._aborts, timeout=DEFAULT_ABORT_TIMEOUT)
        finally:
            stack, self._stack = self._stack, None
            self._client = None
            io, self._io = self._io, None
            if io is not None:
                io.shutdown(wait=False)
            if stack is not None:
                await stack.aclose()

    async def _check_bucket(self) -> None:
        try:
            with _boundary(f"HeadBucket {self.bucket} at {self._endpoint()}"):
                await self._client.head_bucket(Bucket=self.bucket)
        except StorageError as exc:
            cause = exc.__cause__
            status = (
                cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if isinstance(cause, ClientError)
                else None
            )
            if status == 404:
                raise StorageDenied(
                    f"bucket {self.bucket!r} does not exist at {self._endpoint()}; "
                    "create it or fix archive.bucket"
                ) from cause
            if status in (401, 403):
                raise StorageDenied(
                    f"access to bucket {self.bucket!r} at {self._endpoint()} denied; check the "
                    "AWS credentials (AWS_ACCESS_KEY_ID, profile or role) and the bucket policy"
                ) from cause
            raise

    async def _check_object_lock(self) -> None:
        if not await self._object_lock_enabled():
            raise StorageDenied(
                f"bucket {self.bucket} has no Object Lock configuration but "
                f"archive.object_lock_mode = {self.settings.object_lock_mode!r}; "
                "refusing to write unprotected copies"
            )

    async def _object_lock_enabled(self) -> bool:
        try:
            with _boundary(f"GetObjectLockConfiguration {self.bucket}"):
                resp = await self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ObjectNotFound:  # ObjectLockConfigurationNotFoundError is a 404
            return False
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError):
                code = str(cause.response.get("Error", {}).get("Code", ""))
                status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                # Not configured (ObjectLockConfigurationNotFoundError) or not implemented.
                if "ObjectLock" in code or code == "NotImplemented" or status == 501:
                    return False
            raise
        return bool(resp.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    async def canary_retention(self) -> datetime | None:
        """The shortest retention a canary (``check``) can get here: none in a bucket without
        Object Lock; else an explicit GOVERNANCE retain-until one day ahead, which takes the
        place of a default retention (possibly COMPLIANCE for years) and of archive's own."""
        if not await self._object_lock_enabled():
            return None
        return _ceil_second(datetime.now(UTC) + DEFAULT_MIN_RETENTION)

    async def put_canary(self, key: str, data: bytes) -> Canary:
        """In a bucket with Object Lock the canary gets an explicit GOVERNANCE retention of a
        day, not the bucket's default (maybe COMPLIANCE for years) nor archive's own."""
        until = await self.canary_retention()
        sha = hashlib.sha256(data).hexdigest()
        if until is None:
            await self.put(key, single_chunk(data), content_type="text/plain")
            await self.verify(key, len(data), sha, deep=True)
        else:
            await self._put_locked_canary(key, data, until)
            # not verify(): the canary's retention is not the one archive requires
            compare(key, await digest(self, key), len(data), sha, self.describe(key))
        note = (
            "overwrites refused by the store (If-None-Match honoured)"
            if await self.conditional_writes()
            else "overwrites refused by a HeadObject before each put "
            "(conditional writes off or not honoured by this store)"
        )
        return Canary(until, (note,))

    async def delete_canary(self, key: str) -> None:
        await self.delete(key, bypass_governance=True)

    async def _put_locked_canary(self, key: str, data: bytes, retain_until: datetime) -> None:
        """Store ``data`` at ``key`` under GOVERNANCE retention until ``retain_until``."""
        sha = hashlib.sha256(data)
        with _boundary(f"PutObject {self.describe(key)} (canary)"):
            await self._client.put_object(
                Bucket=self.bucket,
                Key=self._full(key),
                Body=data,
                ContentType="text/plain",
                Metadata={SHA_META: sha.hexdigest()},
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(sha.digest()).decode(),
                ObjectLockMode="GOVERNANCE",
                ObjectLockRetainUntilDate=retain_until,
            )

    async def conditional_writes(self) -> bool:
        """Whether new objects go up with If-None-Match (probed once, by the first caller)."""
        return await self._conditional_writes()

    async def _conditional_writes(self) -> bool:
        if self.conditional is None:
            if self._probing is None:
                self._probing = asyncio.Lock()
            async with self._probing:  # the first puts of a pass arrive together: probe once
                if self.conditional is None:
                    self.conditional = await self._probe_conditional()
        return self.conditional

    async def _probe_conditional(self) -> bool:
        """Does the store refuse ``If-None-Match: *`` on a key that exists? One small object.

        Two accepted writes in a row mean the header is ignored (some S3-compatible stores):
        then every put looks first. A probe that fails for another reason falls back the same
        way, with a warning: the slower path is the safe one.
        """
        full = self.prefix + PROBE_KEY
        for _ in range(2):
            try:
                with _boundary(f"PutObject {self.describe(PROBE_KEY)} (conditional write probe)"):
                    await self._client.put_object(
                        Bucket=self.bucket,
                        Key=full,
                        Body=PROBE_BODY,
                        ContentType="text/plain",
                        ChecksumAlgorithm="SHA256",
                        IfNoneMatch="*",
                    )
            except StorageError as exc:
                if _refused_existing(exc):
                    log.info("storage.conditional_put", honoured=True)
                    return True
                reason = f"probe failed: {exc}"
                log.warning("storage.conditional_put", honoured=False, reason=reason)
                return False
        log.warning(
            "storage.conditional_put",
            honoured=False,
            reason="the store ignores If-None-Match; a HeadObject precedes every put",
        )
        return False

    async def sweep(self) -> int:
        """Abort the multipart uploads no live process of ours owns (see the module docstring);
        the number aborted. Never raises: a failed sweep only costs storage until the next."""
        try:
            return await self._sweep_uploads(datetime.now(UTC))
        except StorageError as exc:
            log.warning("storage.sweep_failed", error=str(exc))
            return 0

    def _registry(self, pid: int | None = None) -> Path:
        folder = Path(self.settings.spool_dir or tempfile.gettempdir())
        return folder / f"{UPLOADS_PREFIX}{pid or os.getpid()}.json"

    def _save_registry(self) -> None:
        """Write our registry (a few hundred bytes, once or twice per multipart upload: in the
        event loop, so no cancellation can skip it), or remove it when nothing is pending."""
        path = self._registry()
        if not self._pending:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        doc = {
            "pid": os.getpid(),
            "endpoint": self.settings.endpoint_url,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "keys": self._pending,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(doc).encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise _spool_error(exc, self.settings.spool_dir) from exc

    def _others(self) -> tuple[dict[str, bool], set[str], list[Path]]:
        """From the registries of other processes on this store's bucket: the keys of dead
        ones, those of live ones, and the dead ones' files."""
        dead: dict[str, bool] = {}
        live: set[str] = set()
        files: list[Path] = []
        folder = self._registry().parent
        with contextlib.suppress(OSError):
            for path in folder.glob(f"{UPLOADS_PREFIX}*.json"):
                pid = writer_pid(path.name, UPLOADS_PREFIX)
                if not pid or pid == os.getpid():
                    continue
                try:
                    doc = json.loads(path.read_text())
                    same = (doc["endpoint"], doc["bucket"], doc["prefix"]) == (
                        self.settings.endpoint_url,
                        self.bucket,
                        self.prefix,
                    )
                    keys = dict(doc["keys"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if not same:
                    continue
                if pid_alive(pid):
                    live.update(keys)
                else:
                    dead.update(keys)
                    files.append(path)
        return dead, live, files

    async def _sweep_uploads(self, now: datetime) -> int:
        dead, live, dead_files = await asyncio.to_thread(self._others)
        suspects = {key for key, lost in self._pending.items() if lost}
        cutoff = now - self.stale_upload_age
        doomed: list[tuple[str, str, str]] = []
        with _boundary(f"ListMultipartUploads {self.describe()}"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    if upload_id in self._live.get(key, ()) or key in live:
                        continue  # in flight here, or registered by a live archiver
                    initiated = upload.get("Initiated")
                    if key in dead:
                        doomed.append((key, upload_id, "its process died"))
                    elif key in suspects:
                        doomed.append((key, upload_id, "its CreateMultipartUpload answer was lost"))
                    elif isinstance(initiated, datetime) and initiated < cutoff:
                        doomed.append((key, upload_id, "stale"))
        aborted = 0
        for key, upload_id, why in doomed:
            with contextlib.suppress(StorageError):  # logged by _abort; only costs storage
                await self._abort(key, upload_id)
                aborted += 1
                log.info("storage.stale_upload_aborted", key=key, upload_id=upload_id, why=why)
        for path in dead_files:
            with contextlib.suppress(OSError):
                path.unlink()
        for key in suspects:
            if not self._live.get(key):
                del self._pending[key]
        if suspects:
            self._save_registry()
        return aborted

    def _sweep_spool(self) -> None:
        folder = Path(self.settings.spool_dir or tempfile.gettempdir())
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _spool_error(exc, self.settings.spool_dir) from exc
        for leftover, _ in dead_writers(folder, SPOOL_PREFIX, ".part"):
            remove_leftover(leftover, "storage.spool_removed", leftover.name)

    # -- names -----------------------------------------------------------------------------------

    def _endpoint(self) -> str:
        return self.settings.endpoint_url or f"AWS S3 ({self.settings.region})"

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    # -- put -------------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        replace: bool = False,
        sidecar: Sidecar | None = None,  # written by the caller: a separate object on S3
        size_hint: int | None = None,
    ) -> StoredObject:
        full = self._full(key)
        spool = _Spool(
            self.settings.multipart_threshold,
            self.settings.part_size,
            self.settings.spool_dir,
            size_hint,
            self._io,
        )
        # With replace (sidecars) whatever is there gives way, so it is not looked at first:
        # one request less per recording. Same bytes again make a version with the same bytes
        # in a versioned bucket; that only happens when a put is repeated after a crash.
        # Where the store honours If-None-Match the write itself refuses an existing key, and
        # only a refused write looks at what is there. Otherwise the existence check runs
        # while the body streams in: one round trip hidden.
        conditional = not replace and await self._conditional_writes()
        looking = None if replace or conditional else asyncio.ensure_future(self._head(full))
        try:
            async for chunk in body:
                await spool.write(chunk)
            sha = await spool.finish()
            stored = StoredObject(key, spool.size, sha)
            existing = None if looking is None else await looking
            if existing is None and conditional and spool.spooled:
                # The probe tried PutObject only; a store may honour If-None-Match there and
                # not on CompleteMultipartUpload. One HEAD is nothing next to a multipart body.
                existing = await self._head(full)
            if existing is None:
                args = self._put_args(full, content_type, metadata or {}, sha)
                try:
                    await self._write(key, full, spool, args, conditional)
                    return stored
                except StorageError as exc:
                    if not (conditional and _refused_existing(exc)):
                        raise
                existing = await self._head(full)
                if existing is None:  # there a moment ago: deleted meanwhile, so try again
                    raise StorageUnavailable(
                        f"{self.describe(key)}: the store refused to overwrite it, then no "
                        "longer showed it"
                    )
            same_or_conflict(
                self.describe(key), await self._held(key, existing, stored.size), stored
            )
            # Same bytes already archived: a no-op, no new version.
            log.debug("storage.put_skipped", key=full, reason="same bytes")
            return stored
        finally:
            spool.close()
            if looking is not None and not looking.done():
                looking.cancel()  # the body failed first
                await asyncio.wait([looking])
            if looking is not None and not looking.cancelled():
                looking.exception()  # retrieved: the error already raised matters more

    async def _write(
        self, key: str, full: str, spool: _Spool, args: dict[str, Any], conditional: bool
    ) -> None:
        condition = {"IfNoneMatch": "*"} if conditional else {}
        if spool.spooled:
            # the condition is checked when the upload completes: the object appears only then
            await self._put_multipart(full, spool, args, condition)
            return
        with _boundary(f"PutObject {self.describe(key)}"):
            await self._client.put_object(
                **args,
                **condition,
                Body=spool.buffer,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=spool.digest_b64,
            )

    def _put_args(
        self, full: str, content_type: str, metadata: Mapping[str, str], sha: str
    ) -> dict[str, Any]:
        meta = {k: v for k, v in metadata.items() if k.lower() != SHA_META}
        meta[SHA_META] = sha
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "ContentType": content_type,
            "Metadata": meta,
        }
        # STANDARD is S3's default; leaving it out spares stores that reject the header.
        if self.settings.storage_class and self.settings.storage_class != "STANDARD":
            args["StorageClass"] = self.settings.storage_class
        if self.settings.sse:
            args["ServerSideEncryption"] = self.settings.sse
            if self.settings.kms_key_id:
                args["SSEKMSKeyId"] = self.settings.kms_key_id
        if self.settings.object_lock_mode:
            args["ObjectLockMode"] = self.settings.object_lock_mode
            args["ObjectLockRetainUntilDate"] = self._retain_until(meta.get(DATE_META))
            if self.settings.legal_hold:
                args["ObjectLockLegalHoldStatus"] = "ON"
        return args

    def _retain_until(self, date_created: str | None) -> datetime:
        now = datetime.now(UTC)
        base = _parse_date(date_created) or now
        # A recording older than its retention period is still written protected for a day:
        # S3 refuses a retain-until date in the past.
        until = max(
            base + timedelta(days=self.settings.retention_days), now + DEFAULT_MIN_RETENTION
        )
        return _ceil_second(until)

    async def _put_multipart(
        self, full: str, spool: _Spool, args: dict[str, Any], condition: dict[str, str]
    ) -> None:
        parts_needed = math.ceil(spool.size / spool.part_size)
        if parts_needed > MAX_PARTS:
            raise StorageError(
                f"{self.bucket}/{full}: {spool.size} bytes need {parts_needed} parts of "
                f"{spool.part_size} bytes (S3 allows {MAX_PARTS}); raise archive.part_size"
            )
        what = f"multipart upload of s3://{self.bucket}/{full}"
        # registered before the request: if its answer is lost, a sweep still knows the key
        self._pending.setdefault(full, False)
        self._save_registry()
        try:
            with _boundary(f"CreateMultipartUpload {what}"):
                resp = await self._client.create_multipart_upload(
                    **args, ChecksumAlgorithm="SHA256"
                )
        except BaseException:
            self._pending[full] = True  # it may exist anyway: the next sweep looks
            self._save_registry()
            raise
        if resp.get("ResponseMetadata", {}).get("RetryAttempts", 0):
            self._pending[full] = True  # botocore retried: an earlier attempt may have created one
            self._save_registry()
        upload_id: str = resp["UploadId"]
        self._live.setdefault(full, set()).add(upload_id)
        try:
            await self._upload_parts(full, spool, upload_id, parts_needed, what, condition)
        finally:
            self._live[full].discard(upload_id)
            if not self._live[full]:
                del self._live[full]
                if self._pending.get(full) is False:  # no other upload can exist for it
                    del self._pending[full]
                    self._save_registry()

    async def _upload_parts(
        self,
        full: str,
        spool: _Spool,
        upload_id: str,
        parts_needed: int,
        what: str,
        condition: dict[str, str],
    ) -> None:
        try:
            parts: list[dict[str, Any]] = []
            for number in range(1, parts_needed + 1):
                try:
                    data = await spool.run(spool.read_part, number)
                except OSError as exc:
                    raise _spool_error(exc, spool.spool_dir) from exc
                checksum = spool.part_sums[number - 1]
                with _boundary(f"UploadPart {number}/{parts_needed} of {what}"):
                    part = await self._client.upload_part(
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=checksum,
                    )
                del data
                parts.append(
                    {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": checksum}
                )
            with _boundary(f"CompleteMultipartUpload {what}"):
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
        except BaseException:
            # Shielded: the abort still runs if we are cancelled again while awaiting it.
            task = asyncio.create_task(self._abort(full, upload_id))
            self._aborts.add(task)
            task.add_done_callback(self._aborts.discard)
            with contextlib.suppress(StorageError):  # logged; the first error matters more
                await asyncio.shield(task)
            raise

    async def _abort(self, full: str, upload_id: str) -> None:
        try:
            with _boundary(f"AbortMultipartUpload s3://{self.bucket}/{full}"):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id
                )
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError) and exc.__cause__.response.get(
                "Error", {}
            ).get("Code") in ("NoSuchUpload", "404"):
                return  # already completed or aborted
            log.warning("storage.abort_failed", key=full, upload_id=upload_id, error=str(exc))
            raise

    # -- reading ---------------------------------------------------------------------------------

    async def _head(self, full: str) -> dict[str, Any] | None:
        try:
            with _boundary(f"HeadObject s3://{self.bucket}/{full}"):
                resp: dict[str, Any] = await self._client.head_object(
                    Bucket=self.bucket, Key=full, ChecksumMode="ENABLED"
                )
        except ObjectNotFound:
            return None
        return resp

    def _stored(self, key: str, head: Mapping[str, Any]) -> StoredObject:
        sha = head.get("Metadata", {}).get(SHA_META, "") or _single_put_sha(head)
        return StoredObject(key, int(head.get("ContentLength", 0)), sha)

    async def _held(self, key: str, head: Mapping[str, Any], size: int) -> StoredObject:
        """What ``key`` holds; hashed by reading it back when the store has no SHA-256 for it."""
        have = self._stored(key, head)
        if have.size == size and not have.sha256:
            # Written by someone else without a checksum we can read: hash the bytes.
            have = await digest(self, key)
        return have

    async def stat(self, key: str) -> StoredObject | None:
        head = await self._head(self._full(key))
        return None if head is None else self._stored(key, head)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        full = self._full(key)
        what = f"GetObject {self.describe(key)}"
        with _boundary(what):
            resp = await self._client.get_object(Bucket=self.bucket, Key=full)
        stream = resp["Body"]
        try:
            while True:
                with _boundary(what):
                    chunk: bytes = await stream.read(DEFAULT_READ_CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            stream.close()

    async def verify(self, key: str, size: int, sha256: str, *, deep: bool = False) -> None:
        where = self.describe(key)
        head = await self._head(self._full(key))
        if head is None:
            raise VerificationFailed(f"{where}: archived copy is missing")
        have = int(head.get("ContentLength", -1))
        if have != size:
            raise VerificationFailed(f"{where}: archived copy has {have} bytes, expected {size}")
        # Every SHA-256 the store holds must match, and there must be one. Never the ETag.
        sums = {
            "the store's ChecksumSHA256": _single_put_sha(head),
            "the sha256 metadata": head.get("Metadata", {}).get(SHA_META, ""),
        }
        if not any(sums.values()):
            raise VerificationFailed(f"{where}: archived copy has no SHA-256 to check")
        for source, value in sums.items():
            if value and value != sha256:
                raise VerificationFailed(
                    f"{where}: archived copy has sha256 {value} ({source}), expected {sha256}"
                )
        if self.settings.object_lock_mode:
            self._verify_lock(where, head)
        if deep:
            compare(key, await digest(self, key), size, sha256, where)

    def _verify_lock(self, where: str, head: Mapping[str, Any]) -> None:
        mode = head.get("ObjectLockMode")
        if mode != self.settings.object_lock_mode:
            raise VerificationFailed(
                f"{where}: Object Lock mode is {mode or 'absent'}, "
                f"expected {self.settings.object_lock_mode}"
            )
        retention = timedelta(days=self.settings.retention_days)
        created = _parse_date(head.get("Metadata", {}).get(DATE_META))
        if created is not None:
            required = (created + retention).replace(microsecond=0)
        else:  # a sidecar: protected from about when it was written
            modified = head.get("LastModified") or datetime.now(UTC)
            required = modified + retention - DEFAULT_CLOCK_SLACK
        until = head.get("ObjectLockRetainUntilDate")
        if not isinstance(until, datetime) or until < required:
            raise VerificationFailed(
                f"{where}: Object Lock retains until {until or 'never'}, "
                f"expected at least {required.isoformat()}"
            )
        if self.settings.legal_hold and head.get("ObjectLockLegalHoldStatus") != "ON":
            raise VerificationFailed(f"{where}: legal hold is not ON")

    # -- delete ----------------------------------------------------------------------------------

    async def delete(self, key: str, *, bypass_governance: bool = False) -> None:
        """Remove the object's current version (canaries, tests); a locked one is refused
        with ObjectLocked. ``bypass_governance`` asks to lift GOVERNANCE retention (it needs
        s3:BypassGovernanceRetention); COMPLIANCE and a legal hold cannot be lifted."""
        full = self._full(key)
        head = await self._head(full)
        if head is None:
            raise ObjectNotFound(f"{self.describe(key)}: not found")
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if head.get("VersionId"):
            # Delete the version itself, not just hide it behind a delete marker, so Object
            # Lock is actually enforced on it.
            args["VersionId"] = head["VersionId"]
        lock = _lock_of(head)
        if bypass_governance and head.get("ObjectLockMode") == "GOVERNANCE":
            args["BypassGovernanceRetention"] = True
        try:
            with _boundary(f"DeleteObject {self.describe(key)}"):
                await self._client.delete_object(**args)
        except StorageDenied as exc:
            if not lock:
                raise
            extra = (
                "; lifting GOVERNANCE early needs s3:BypassGovernanceRetention"
                if args.get("BypassGovernanceRetention")
                else ""
            )
            raise ObjectLocked(
                f"{self.describe(key)} is under Object Lock ({lock}): the store refuses to "
                f"delete it before then{extra}"
            ) from exc


def _lock_of(head: Mapping[str, Any]) -> str:
    """The Object Lock protecting an object now, in words ("" when none)."""
    parts = []
    until = head.get("ObjectLockRetainUntilDate")
    if isinstance(until, datetime) and until > datetime.now(UTC):
        parts.append(f"{head.get('ObjectLockMode') or 'retention'} until {until.isoformat()}")
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        parts.append("legal hold ON")
    return ", ".join(parts)
