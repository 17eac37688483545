"""S3 archive: verified, idempotent, optionally Object-Locked uploads through aiobotocore.

A put reads the whole body first, hashing it as it arrives, because the whole-body SHA-256 must
be known before the first byte is sent (it goes into the object's metadata, and it decides
whether the key already holds these bytes). Memory stays bounded:

* bodies up to ``multipart_threshold`` are buffered in memory and sent in one PutObject with
  ``ChecksumSHA256``, so the store refuses a body corrupted on the way; where the store is
  known to refuse a wrong checksum (probed once, :mod:`~archiver.storage.s3_probe`), such a
  PutObject is its own verification and the put says so (``read_back``): no HeadObject has to
  follow it;
* larger bodies (or bodies whose Content-Length, given as ``size_hint``, says they will be
  larger: those go to the file from their first byte) are spooled (:mod:`~archiver.storage.spool`)
  to a temp file in ``spool_dir`` and sent as a multipart upload, one part in memory at a time,
  each part with the ``ChecksumSHA256`` computed while the body streamed in (not re-read from
  disk, so a corrupted spool is caught by the store too). A failed or cancelled upload is
  aborted. The caller verifies it with a HeadObject: the probe tried PutObject only, and one
  request is nothing next to a multipart body.

The parts, each its own module: :mod:`~archiver.storage.spool` (the body on its way),
:mod:`~archiver.storage.s3_errors` (the one translation boundary),
:mod:`~archiver.storage.s3_probe` (whether the store honours If-None-Match and whether it checks
our checksums),
:mod:`~archiver.storage.s3_lock` (Object Lock) and :mod:`~archiver.storage.s3_uploads` (which
incomplete multipart uploads :meth:`S3Storage.sweep`, on open and at the end of every pass,
aborts: those no live process of ours owns). Aborting another writer's upload is safe anyway:
its CompleteMultipartUpload fails and the put is retried, never leaving a partial object.

Retries: botocore's own retries are kept small (standard mode, 3 attempts, per request: one
failed part is sent again, not the whole upload) and the whole operation is retried by
:mod:`archiver.retry` on :class:`StorageUnavailable`.

One client per open storage (one per process: the CLI opens one), its connection pool
(``max_pool_connections``) sized by the factory to the transfers in flight, so no request waits
for a connection or opens a new one; connections are kept alive between requests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import math
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from archiver.errors import (
    ObjectLocked,
    ObjectNotFound,
    StorageDenied,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)
from archiver.storage.base import (
    Canary,
    Digest,
    Sidecar,
    StoredObject,
    check_key,
    check_prefix,
    compare,
    digest,
    is_key,
    single_chunk,
)
from archiver.storage.rules import same_or_conflict
from archiver.storage.s3_errors import boundary, error_code, refused_existing
from archiver.storage.s3_lock import DATE_META, ObjectLock, canary_retention, lock_of
from archiver.storage.s3_probe import (
    CHECKSUM_PROBE_BODY,
    CHECKSUM_PROBE_KEY,
    CHECKSUM_PROBE_WRONG,
    PROBE_BODY,
    PROBE_KEY,
    ChecksumEnforcement,
    ConditionalWrites,
)
from archiver.storage.s3_uploads import UploadRegistry
from archiver.storage.spool import Spool, spool_error, sweep_spool

log = structlog.get_logger("archiver.storage.s3")

DEFAULT_READ_CHUNK = 1024 * 1024
DEFAULT_STALE_UPLOAD_AGE = timedelta(minutes=1)
DEFAULT_LIST_PAGE = 1000  # keys per ListObjectsV2 request (the S3 maximum)
DEFAULT_ABORT_TIMEOUT = 30.0  # seconds __aexit__ waits for aborts still running
MAX_PARTS = 10_000  # the S3 limit on parts in one multipart upload
DEFAULT_POOL_CONNECTIONS = 10  # botocore's own default; the factory sizes it to the concurrency
SHA_META = "sha256"


def _b64_to_hex(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


def _single_put_sha(head: Mapping[str, Any]) -> str:
    """The hex SHA-256 of the whole object when the store computed it (single PUT), else ""."""
    value = head.get("ChecksumSHA256")
    etag = str(head.get("ETag", "")).strip('"')
    multipart = head.get("ChecksumType") == "COMPOSITE" or "-" in etag
    if not value or multipart or "-" in value:
        return ""  # a multipart checksum is over the parts, not the bytes
    return _b64_to_hex(value)


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
    # "auto": no HeadObject after a PutObject the store checked against our SHA-256 (probed);
    # "always": a HeadObject after every put
    verify_after_put: str = "auto"
    max_pool_connections: int = DEFAULT_POOL_CONNECTIONS
    list_page_size: int = DEFAULT_LIST_PAGE


class S3Storage:
    """Archive into an S3 bucket (AWS or any S3-compatible store)."""

    name = "s3"
    # a sidecar is a separate object here: the caller writes it
    put_writes_sidecar = False

    @property
    def protection(self) -> str:
        """The Object Lock mode every copy is stored under ("" when none is required)."""
        return self.settings.object_lock_mode

    # a single PutObject into a store that checks our checksum proves the copy (read_back);
    # any other put leaves the HeadObject to the caller
    put_verifies = True

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
        self.lock = ObjectLock(
            settings.object_lock_mode, settings.retention_days, settings.legal_hold
        )
        self._uploads = UploadRegistry(
            settings.spool_dir, settings.endpoint_url, settings.bucket, settings.prefix
        )
        # One thread for every spool read and write: parts of 16 MiB allocated in several
        # threads left one freed part resident per thread (the C allocator keeps a heap per
        # thread), so peak memory varied by a part or more from run to run.
        self._io: ThreadPoolExecutor | None = None
        self._conditional = ConditionalWrites(settings.conditional_put)
        # Object Lock: only a HeadObject shows the retention the store applied
        self._checksums = ChecksumEnforcement(
            settings.verify_after_put == "auto" and not settings.object_lock_mode
        )

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
            # every transfer in flight has a connection: none waits for one or opens a new one
            max_pool_connections=self.settings.max_pool_connections,
        )
        try:
            with boundary(f"opening {self.describe()}"):
                # Credentials come only from the standard AWS chain (env, files, IMDS, ...).
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3", endpoint_url=self.settings.endpoint_url or None, config=config
                    )
                )
            await self._check_bucket()
            await self.lock.check_bucket(self._client, self.bucket)
            await self._sweep_uploads(started)
            await asyncio.to_thread(sweep_spool, self.settings.spool_dir)
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
            with boundary(f"HeadBucket {self.bucket} at {self._endpoint()}"):
                await self._client.head_bucket(Bucket=self.bucket)
        except StorageError as exc:
            cause = exc.__cause__
            _, status = error_code(exc)
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

    async def put_canary(self, key: str, data: bytes) -> Canary:
        """In a bucket with Object Lock the canary gets an explicit GOVERNANCE retention of a
        day, not the bucket's default (maybe COMPLIANCE for years) nor archive's own."""
        until = await canary_retention(self._client, self.bucket)
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
        checked = (
            "each PutObject checked by the store against our SHA-256: no HeadObject after it"
            if await self.checksums_enforced()
            else "each put verified by a HeadObject after it (the store accepts a wrong "
            "checksum, or verify_after_put = always, or Object Lock is required)"
        )
        return Canary(until, (note, checked))

    async def delete_canary(self, key: str) -> None:
        await self.delete(key, bypass_governance=True)

    async def _put_locked_canary(self, key: str, data: bytes, retain_until: datetime) -> None:
        """Store ``data`` at ``key`` under GOVERNANCE retention until ``retain_until``."""
        sha = hashlib.sha256(data)
        with boundary(f"PutObject {self.describe(key)} (canary)"):
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

    @property
    def conditional(self) -> bool | None:
        """Whether new objects go up with If-None-Match: * (None: not probed yet)."""
        return self._conditional.honoured

    async def conditional_writes(self) -> bool:
        """Whether new objects go up with If-None-Match (probed once, by the first caller)."""
        return await self._conditional(self._put_probe)

    async def _put_probe(self) -> None:
        with boundary(f"PutObject {self.describe(PROBE_KEY)} (conditional write probe)"):
            await self._client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + PROBE_KEY,
                Body=PROBE_BODY,
                ContentType="text/plain",
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
            )

    @property
    def checksums(self) -> bool | None:
        """Whether a PutObject is its own verification (None: not probed yet)."""
        return self._checksums.enforced

    async def checksums_enforced(self) -> bool:
        """Whether the store refuses a PutObject whose ChecksumSHA256 does not match its body
        (probed once, by the first caller; False without probing where it would not be used)."""
        return await self._checksums(self._put_checksum_probe)

    async def _put_checksum_probe(self) -> None:
        wrong = base64.b64encode(hashlib.sha256(CHECKSUM_PROBE_WRONG).digest()).decode()
        with boundary(f"PutObject {self.describe(CHECKSUM_PROBE_KEY)} (checksum probe)"):
            await self._client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + CHECKSUM_PROBE_KEY,
                Body=CHECKSUM_PROBE_BODY,
                ContentType="text/plain",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=wrong,
                IfNoneMatch="*",
            )

    async def sweep(self) -> int:
        """Abort the multipart uploads no live process of ours owns (see the module docstring);
        the number aborted. Never raises: a failed sweep only costs storage until the next."""
        try:
            return await self._sweep_uploads(datetime.now(UTC))
        except StorageError as exc:
            log.warning("storage.sweep_failed", error=str(exc))
            return 0

    async def _sweep_uploads(self, now: datetime) -> int:
        plan = await self._uploads.plan(now - self.stale_upload_age)
        doomed: list[tuple[str, str, str]] = []
        with boundary(f"ListMultipartUploads {self.describe()}"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    if why := plan.why_abort(key, upload_id, upload.get("Initiated")):
                        doomed.append((key, upload_id, why))
        aborted = 0
        for key, upload_id, why in doomed:
            with contextlib.suppress(StorageError):  # logged by _abort; only costs storage
                await self._abort(key, upload_id)
                aborted += 1
                log.info("storage.stale_upload_aborted", key=key, upload_id=upload_id, why=why)
        self._uploads.swept(plan)
        return aborted

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
        digest: Digest | None = None,  # unused: the spool hashes for the PUT's checksum
    ) -> StoredObject:
        full = self._full(key)
        spool = Spool(
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
        conditional = not replace and await self.conditional_writes()
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
                except StorageError as exc:
                    if not (conditional and refused_existing(exc)):
                        raise
                else:
                    # a single PutObject the store took with our ChecksumSHA256, where it
                    # refuses a wrong one: the store checked the bytes against our SHA-256
                    proven = not spool.spooled and await self.checksums_enforced()
                    return StoredObject(key, stored.size, sha, read_back=proven)
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
        self, key: str, full: str, spool: Spool, args: dict[str, Any], conditional: bool
    ) -> None:
        condition = {"IfNoneMatch": "*"} if conditional else {}
        if spool.spooled:
            # the condition is checked when the upload completes: the object appears only then
            await self._put_multipart(full, spool, args, condition)
            return
        # a file object, not raw bytes: aiohttp sends a large bytes body in one write that can
        # hold the event loop (and says so with a ResourceWarning); the buffer is released as
        # it is copied, so the body is in memory once
        body, spool.buffer = io.BytesIO(spool.buffer), bytearray()
        with boundary(f"PutObject {self.describe(key)}"):
            await self._client.put_object(
                **args,
                **condition,
                Body=body,
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
        args.update(self.lock.put_args(meta.get(DATE_META)))
        return args

    async def _put_multipart(
        self, full: str, spool: Spool, args: dict[str, Any], condition: dict[str, str]
    ) -> None:
        parts_needed = math.ceil(spool.size / spool.part_size)
        if parts_needed > MAX_PARTS:
            raise StorageError(
                f"{self.bucket}/{full}: {spool.size} bytes need {parts_needed} parts of "
                f"{spool.part_size} bytes (S3 allows {MAX_PARTS}); raise archive.part_size"
            )
        what = f"multipart upload of s3://{self.bucket}/{full}"
        self._uploads.creating(full)
        try:
            with boundary(f"CreateMultipartUpload {what}"):
                resp = await self._client.create_multipart_upload(
                    **args, ChecksumAlgorithm="SHA256"
                )
        except BaseException:
            self._uploads.maybe_lost(full)  # it may exist anyway: the next sweep looks
            raise
        if resp.get("ResponseMetadata", {}).get("RetryAttempts", 0):
            self._uploads.maybe_lost(full)  # botocore retried: an earlier attempt may have too
        upload_id: str = resp["UploadId"]
        self._uploads.started(full, upload_id)
        try:
            await self._upload_parts(full, spool, upload_id, parts_needed, what, condition)
        finally:
            self._uploads.finished(full, upload_id)

    async def _upload_parts(
        self,
        full: str,
        spool: Spool,
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
                    raise spool_error(exc, spool.spool_dir) from exc
                checksum = spool.part_sums[number - 1]
                with boundary(f"UploadPart {number}/{parts_needed} of {what}"):
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
            with boundary(f"CompleteMultipartUpload {what}"):
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
            with boundary(f"AbortMultipartUpload s3://{self.bucket}/{full}"):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id
                )
        except StorageError as exc:
            if error_code(exc)[0] in ("NoSuchUpload", "404"):
                return  # already completed or aborted
            log.warning("storage.abort_failed", key=full, upload_id=upload_id, error=str(exc))
            raise

    # -- reading ---------------------------------------------------------------------------------

    async def _head(self, full: str) -> dict[str, Any] | None:
        try:
            with boundary(f"HeadObject s3://{self.bucket}/{full}"):
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
        with boundary(what):
            resp = await self._client.get_object(Bucket=self.bucket, Key=full)
        stream = resp["Body"]
        try:
            while True:
                with boundary(what):
                    chunk: bytes = await stream.read(DEFAULT_READ_CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            stream.close()

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """ListObjectsV2, one page of ``list_page_size`` keys at a time."""
        what = f"ListObjectsV2 {self.describe(check_prefix(prefix))}"
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.settings.list_page_size},
        ).__aiter__()
        while True:
            with boundary(what):
                page = await anext(pages, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                if is_key(key):  # not our probe object, nor a name no key can have
                    yield StoredObject(key, int(item["Size"]), "")  # the listing has no SHA-256

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
        self.lock.verify(where, head)
        if deep:
            compare(key, await digest(self, key), size, sha256, where)

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
        lock = lock_of(head)
        if bypass_governance and head.get("ObjectLockMode") == "GOVERNANCE":
            args["BypassGovernanceRetention"] = True
        try:
            with boundary(f"DeleteObject {self.describe(key)}"):
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
