"""S3-only behaviour of S3Storage against real servers: moto (lenient) and SeaweedFS (strict).

What moto cannot check (wrong checksums refused, SigV4, retention read back) runs on SeaweedFS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError

from archiver.config import ArchiveConfig, load_config
from archiver.errors import (
    ArchiveConflict,
    ConfigError,
    ObjectNotFound,
    StorageDenied,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)
from archiver.storage import open_storage, s3_settings
from archiver.storage.base import Storage, StoredObject, single_chunk
from archiver.storage.s3 import S3Storage
from archiver.storage.s3_errors import from_client_error
from archiver.storage.s3_probe import CHECKSUM_PROBE_KEY, PROBE_KEY
from tests.support.process import free_port
from tests.support.s3 import PART, S3Proxy, S3Server, open_uploads, s3_config
from tests.support.storage import KEY, META, chunks, payload, read_all

# The real-server fixtures (session-scoped) and the AWS_* isolation (autouse here).

MiB = 2**20
Env = Callable[..., None]
T = TypeVar("T")


@pytest.fixture(params=["moto", "seaweedfs"])
def server(request: pytest.FixtureRequest) -> S3Server:
    return request.getfixturevalue(f"{request.param}_s3")  # type: ignore[no-any-return]


def sha_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def head(server: S3Server, bucket: str, key: str = KEY) -> dict[str, Any]:
    async with server.client() as raw:
        resp: dict[str, Any] = await raw.head_object(
            Bucket=bucket, Key="rec/" + key, ChecksumMode="ENABLED"
        )
    return resp


# -- uploads and integrity ---------------------------------------------------------------------


async def test_single_put_stores_metadata_and_checksum(
    seaweedfs_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(seaweedfs_s3)
    bucket = await seaweedfs_s3.create_bucket()
    data = payload(70_000)
    cfg = ArchiveConfig(
        backend="s3",
        bucket=bucket,
        prefix="rec/",
        endpoint_url=seaweedfs_s3.endpoint_url,
        region=seaweedfs_s3.region,
        addressing_style="path",
        spool_dir=str(tmp_path),
    )
    async with open_storage(cfg) as s3:  # the factory builds it from [archive]
        assert s3.name == "s3"
        assert isinstance(s3, Storage)
        assert s3.describe(KEY) == f"s3://{bucket}/rec/{KEY}"
        await s3.put(KEY, chunks(data), content_type="audio/wav", metadata=META)
    h = await head(seaweedfs_s3, bucket)
    assert h["ContentType"] == "audio/wav"
    assert h["Metadata"] == {**META, "sha256": hashlib.sha256(data).hexdigest()}
    assert h["ChecksumSHA256"] == sha_b64(data)  # the store checked and kept our checksum


@pytest.mark.parametrize("backend", ["moto", "seaweedfs"])
async def test_multipart_above_threshold_with_per_part_checksums(
    request: pytest.FixtureRequest,
    backend: str,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    server: S3Server = request.getfixturevalue(f"{backend}_s3")
    aws_env(server)
    bucket = await server.create_bucket()
    data = payload(2 * PART + 1000)  # 3 parts: 5 MiB, 5 MiB, 1000 bytes
    async with S3Storage(s3_config(server, bucket, tmp_path / "spool")) as s3:
        sent: list[str] = []
        original = s3._client.upload_part

        async def spy(**kw: Any) -> Any:
            sent.append(kw["ChecksumSHA256"])
            return await original(**kw)

        s3._client.upload_part = spy
        got = await s3.put(KEY, chunks(data), content_type="audio/wav", metadata=META)
        parts = [data[i : i + PART] for i in range(0, len(data), PART)]
        assert sent == [sha_b64(p) for p in parts]
        assert await read_all(s3, KEY) == data
        await s3.verify(KEY, len(data), got.sha256, deep=True)
        assert await s3.stat(KEY) == got
    h = await head(server, bucket)
    assert h["ETag"].endswith('-3"')
    assert h["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    if backend == "seaweedfs":  # moto reports multipart checksums in the wrong form
        composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts))
        assert h["ChecksumSHA256"] == base64.b64encode(composite.digest()).decode() + "-3"
    assert list((tmp_path / "spool").iterdir()) == []


def _flip(body: Any) -> bytes:
    corrupted = bytearray(body.read() if hasattr(body, "read") else body)  # a file or bytes
    corrupted[len(corrupted) // 2] ^= 0x01
    return bytes(corrupted)


async def test_corrupted_single_put_refused_by_checksum(
    seaweedfs_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(seaweedfs_s3)
    bucket = await seaweedfs_s3.create_bucket()
    async with S3Storage(s3_config(seaweedfs_s3, bucket, tmp_path)) as s3:
        original = s3._client.put_object

        async def corrupting(**kw: Any) -> Any:
            return await original(**{**kw, "Body": _flip(kw["Body"])})  # after we hashed it

        s3._client.put_object = corrupting
        # refused by the store; transient (corrupted on the way), so the caller sends it again
        with pytest.raises(StorageUnavailable, match="BadDigest") as err:
            await s3.put(KEY, chunks(payload(100_000)), content_type="audio/wav", metadata=META)
        assert err.value.transient
        assert await s3.stat(KEY) is None


async def test_corrupted_part_refused_and_upload_aborted(
    seaweedfs_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(seaweedfs_s3)
    bucket = await seaweedfs_s3.create_bucket()
    spool = tmp_path / "spool"
    async with S3Storage(s3_config(seaweedfs_s3, bucket, spool)) as s3:
        original = s3._client.upload_part

        async def corrupting(**kw: Any) -> Any:
            if kw["PartNumber"] == 2:  # as if the spool file rotted on disk
                kw = {**kw, "Body": _flip(kw["Body"])}
            return await original(**kw)

        s3._client.upload_part = corrupting
        with pytest.raises(StorageUnavailable, match="BadDigest"):
            await s3.put(KEY, chunks(payload(2 * PART + 1)), content_type="audio/wav")
        assert await s3.stat(KEY) is None
    assert await open_uploads(seaweedfs_s3, bucket) == []
    assert list(spool.iterdir()) == []


async def test_a_threshold_below_part_size_sends_a_body_between_them_as_one_part(
    seaweedfs_s3: S3Server, aws_env: Env, tmp_path: Path
) -> None:
    """As aws-cli and boto3 allow: multipart_threshold 5 MiB with 15 MiB parts."""
    aws_env(seaweedfs_s3)
    bucket = await seaweedfs_s3.create_bucket()
    data = payload(2 * PART)  # above the threshold, below one part
    cfg = s3_config(seaweedfs_s3, bucket, tmp_path, multipart_threshold=PART, part_size=3 * PART)
    async with S3Storage(cfg) as s3:
        got = await s3.put(KEY, chunks(data), content_type="audio/wav", metadata=META)
        assert await read_all(s3, KEY) == data
        await s3.verify(KEY, len(data), got.sha256, deep=True)
    assert (await head(seaweedfs_s3, bucket))["ETag"].endswith('-1"')  # one part of its size


async def test_failed_multipart_upload_is_aborted(
    server: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(server)
    bucket = await server.create_bucket()
    spool = tmp_path / "spool"
    async with S3Storage(s3_config(server, bucket, spool)) as s3:
        original = s3._client.upload_part

        async def failing(**kw: Any) -> Any:
            if kw["PartNumber"] == 2:
                error = {"Code": "InternalError", "Message": "boom"}
                raise ClientError(
                    {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}, "UploadPart"
                )
            return await original(**kw)

        s3._client.upload_part = failing
        with pytest.raises(StorageUnavailable, match="InternalError"):
            await s3.put(KEY, chunks(payload(2 * PART + 1)), content_type="audio/wav")
        assert await s3.stat(KEY) is None
    assert await open_uploads(server, bucket) == []
    assert list(spool.iterdir()) == []


async def test_cancelled_multipart_upload_is_aborted(
    server: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(server)
    bucket = await server.create_bucket()
    spool = tmp_path / "spool"
    async with S3Storage(s3_config(server, bucket, spool)) as s3:
        original = s3._client.upload_part
        in_part_two = asyncio.Event()

        async def hanging(**kw: Any) -> Any:
            if kw["PartNumber"] == 2:
                in_part_two.set()
                await asyncio.Event().wait()
            return await original(**kw)

        s3._client.upload_part = hanging
        task = asyncio.create_task(
            s3.put(KEY, chunks(payload(2 * PART + 1)), content_type="audio/wav")
        )
        await asyncio.wait_for(in_part_two.wait(), timeout=30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await s3.stat(KEY) is None
    assert await open_uploads(server, bucket) == []
    assert list(spool.iterdir()) == []


async def test_existing_object_without_sha_is_compared_by_content(
    moto_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(moto_s3)
    bucket = await moto_s3.create_bucket()
    data = payload(4000)
    async with moto_s3.client() as raw:  # written by someone else, no sha256 metadata
        await raw.put_object(Bucket=bucket, Key="rec/" + KEY, Body=data)
    async with S3Storage(s3_config(moto_s3, bucket, tmp_path)) as s3:
        got = await s3.put(KEY, chunks(data), content_type="audio/wav")
        assert got.sha256 == hashlib.sha256(data).hexdigest()
        with pytest.raises(ArchiveConflict, match=got.sha256):  # hashed by reading it back
            await s3.put(KEY, chunks(payload(4000, seed=9)), content_type="audio/wav")
        with pytest.raises(ArchiveConflict, match="unknown"):  # other size: no need to read
            await s3.put(KEY, chunks(payload(10)), content_type="audio/wav")


# -- conditional writes (If-None-Match) --------------------------------------------------------


@contextlib.asynccontextmanager
async def behind_proxy(
    server: S3Server, tmp_path: Path, list_page_size: int = 1000, **proxy: Any
) -> AsyncIterator[tuple[S3Proxy, S3Storage, str]]:
    """S3Storage on a new bucket of ``server``, every request through a recording S3Proxy."""
    bucket = await server.create_bucket()
    async with S3Proxy(server, **proxy) as via:
        cfg = s3_config(
            server,
            bucket,
            tmp_path,
            endpoint_url=via.endpoint_url,
            list_page_size=list_page_size,
        )
        async with S3Storage(cfg) as s3:
            yield via, s3, bucket


async def test_list_asks_for_one_page_at_a_time(
    moto_s3: S3Server, aws_env: Env, tmp_path: Path
) -> None:
    aws_env(moto_s3)
    async with behind_proxy(moto_s3, tmp_path, list_page_size=3) as (proxy, s3, _bucket):
        keys = [f"AC0/2024/05/06/RE{n:04}.wav" for n in range(7)]
        for key in keys:
            await s3.put(key, single_chunk(b"x"), content_type="audio/wav")
        queries: list[str] = []

        async def note(method: str, path: str, query: str) -> None:
            if "list-type=2" in query:
                queries.append(query)

        proxy.before = note
        listing = s3.list("AC0/")
        first = await anext(listing)
        assert first.key == keys[0]
        assert len(queries) == 1  # streamed: the next page is asked for when it is reached
        assert "max-keys=3" in queries[0]
        rest = [obj.key async for obj in listing]
    assert [first.key, *rest] == keys
    assert len(queries) == 3  # 3 + 3 + 1


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "head-first"])
async def test_existing_key_is_never_overwritten_either_way(
    server: S3Server, aws_env: Env, tmp_path: Path, conditional: bool
) -> None:
    """Both ways of refusing an overwrite, on both servers: same bytes no-op, else a conflict."""
    aws_env(server)
    bucket = await server.create_bucket(versioning=True)
    cfg = s3_config(server, bucket, tmp_path, conditional_put=conditional)
    old, new = payload(3000, seed=1), payload(3000, seed=2)
    async with S3Storage(cfg) as s3, server.client() as raw:
        await s3.put(KEY, chunks(old), content_type="audio/wav", metadata=META)
        assert s3.conditional is conditional  # both servers honour If-None-Match
        assert (await s3.put(KEY, chunks(old), content_type="audio/wav")).size == len(old)
        with pytest.raises(ArchiveConflict, match=hashlib.sha256(new).hexdigest()):
            await s3.put(KEY, chunks(new), content_type="audio/wav")
        versions = await raw.list_object_versions(Bucket=bucket, Prefix="rec/" + KEY)
        assert len(versions.get("Versions", [])) == 1  # written once, never again
        assert await read_all(s3, KEY) == old
        probe = await raw.list_objects_v2(Bucket=bucket, Prefix="rec/" + PROBE_KEY)
        assert probe.get("KeyCount", 0) == (1 if conditional else 0)


async def test_reading_only_writes_no_probe_and_puts_at_once_probe_once(
    moto_s3: S3Server, aws_env: Env, tmp_path: Path
) -> None:
    """`archiver verify` may run with read-only credentials: opening the store writes nothing."""
    aws_env(moto_s3)
    async with behind_proxy(moto_s3, tmp_path) as (proxy, s3, _bucket):
        assert await s3.stat(KEY) is None
        assert s3.conditional is None
        assert [s for s in proxy.seen if s.method in ("PUT", "POST")] == []
        keys = [f"{KEY}.{i}" for i in range(8)]
        await asyncio.gather(
            *(s3.put(k, chunks(payload(100)), content_type="audio/wav") for k in keys)
        )
        assert s3.conditional is True
        probes = [s for s in proxy.seen if s.path.endswith("conditional-put-probe")]
        assert len(probes) == 2  # created, then refused: one probe for eight puts


@pytest.mark.parametrize("size", [3000, PART + 1], ids=["single", "multipart"])
async def test_conditional_put_needs_no_existence_check(
    moto_s3: S3Server, aws_env: Env, tmp_path: Path, size: int
) -> None:
    aws_env(moto_s3)
    data = payload(size)
    async with behind_proxy(moto_s3, tmp_path) as (proxy, s3, bucket):
        await s3.put(KEY, chunks(data), content_type="audio/wav", metadata=META)
        assert s3.conditional
        written = proxy.on(KEY)
        multipart = size > PART
        writer = "POST" if multipart else "PUT"  # multipart: the completion carries it
        # a multipart upload also looks first: the probe only tried PutObject
        assert [m for m, _, _ in written if m == "HEAD"] == (["HEAD"] if multipart else [])
        assert written[-1] == (writer, "*", 200)
        proxy.seen.clear()
        await s3.put(KEY, chunks(data), content_type="audio/wav", metadata=META)
        again = proxy.on(KEY)
        if multipart:
            assert again == [("HEAD", None, 200)]  # found first: nothing uploaded again
        else:
            assert again == [("PUT", "*", 412), ("HEAD", None, 200)]  # refused, then looked
        assert await open_uploads(moto_s3, bucket) == []


async def test_a_racing_writer_is_never_overwritten_by_a_multipart_upload(
    moto_s3: S3Server, aws_env: Env, tmp_path: Path
) -> None:
    """Another archiver writes the key between our look and our completion: the store refuses
    the completion (If-None-Match), the upload is aborted, and theirs stays."""
    aws_env(moto_s3)
    theirs, ours = payload(1000, seed=1), payload(PART + 1, seed=2)
    async with (
        behind_proxy(moto_s3, tmp_path) as (proxy, s3, bucket),
        moto_s3.client() as raw,
    ):

        async def race(method: str, path: str, query: str) -> None:
            if method == "POST" and path.endswith(KEY) and "uploadId=" in query:
                await raw.put_object(Bucket=bucket, Key="rec/" + KEY, Body=theirs)

        proxy.before = race
        with pytest.raises(ArchiveConflict):
            await s3.put(KEY, chunks(ours), content_type="audio/wav", metadata=META)
        assert ("POST", "*", 412) in proxy.on(KEY)
        assert await read_all(s3, KEY) == theirs
        assert await open_uploads(moto_s3, bucket) == []  # the refused upload was aborted


async def test_store_ignoring_if_none_match_gets_a_head_before_every_put(
    moto_s3: S3Server, aws_env: Env, tmp_path: Path
) -> None:
    aws_env(moto_s3)
    old, new = payload(2000, seed=1), payload(2000, seed=2)
    async with behind_proxy(moto_s3, tmp_path, strip=("If-None-Match",)) as (proxy, s3, _):
        await s3.put(KEY, chunks(old), content_type="audio/wav", metadata=META)
        assert s3.conditional is False  # the probe saw its second write accepted
        assert [m for m, _, _ in proxy.on(KEY)] == ["HEAD", "PUT"]
        with pytest.raises(ArchiveConflict):
            await s3.put(KEY, chunks(new), content_type="audio/wav", metadata=META)
        assert await read_all(s3, KEY) == old


# -- the checksum probe: a PutObject the store checked is its own verification -----------------


async def test_checksum_probe_finds_out_once_per_open_whether_the_store_checks(
    server: S3Server, aws_env: Env, tmp_path: Path
) -> None:
    """SeaweedFS refuses a body that does not match its ChecksumSHA256, moto takes it: the
    first put of each open probes which (one request), and a single PutObject reports
    read_back only where the store checked it. An enforcing store never keeps the probe; a
    lenient one keeps one object, refused as existing on the next open (no new version)."""
    aws_env(server)
    enforcing = server.name == "seaweedfs"
    bucket = await server.create_bucket(versioning=True)
    async with S3Proxy(server, keep_host=True) as proxy:  # SeaweedFS checks the signed Host
        cfg = s3_config(server, bucket, tmp_path, endpoint_url=proxy.endpoint_url)
        for opening in range(2):
            proxy.seen.clear()
            async with S3Storage(cfg) as s3:
                assert s3.checksums is None  # opening writes nothing
                keys = [f"{KEY}.{opening}.{n}" for n in range(4)]
                got = await asyncio.gather(
                    *(
                        s3.put(k, chunks(payload(1000, seed=n)), content_type="audio/wav")
                        for n, k in enumerate(keys)
                    )
                )
                assert s3.checksums is enforcing
                assert [g.read_back for g in got] == [enforcing] * len(keys)
                probes = [
                    (s.method, s.if_none_match, s.status)
                    for s in proxy.seen
                    if s.path.endswith(CHECKSUM_PROBE_KEY)
                ]
                if enforcing:
                    assert probes == [("PUT", "*", 400)]  # BadDigest
                else:
                    assert probes == [("PUT", "*", 200 if opening == 0 else 412)]
    async with server.client() as raw:
        versions = await raw.list_object_versions(Bucket=bucket, Prefix="rec/" + CHECKSUM_PROBE_KEY)
    assert len(versions.get("Versions", [])) == (0 if enforcing else 1)


@pytest.mark.parametrize("case", ["multipart", "always", "object-lock", "same-bytes"])
async def test_where_a_put_is_not_its_own_verification_on_an_enforcing_store(
    seaweedfs_s3: S3Server, aws_env: Env, tmp_path: Path, case: str
) -> None:
    """SeaweedFS checks our checksums, yet the caller keeps its HeadObject for a multipart
    upload (the probe tried PutObject only), with verify_after_put = "always", with Object
    Lock (only a HeadObject shows the retention applied), and for a put that found the same
    bytes there (what it compared was the store's word)."""
    aws_env(seaweedfs_s3)
    bucket = await seaweedfs_s3.create_bucket(object_lock=case == "object-lock")
    extra: dict[str, Any] = {
        "always": {"verify_after_put": "always"},
        "object-lock": {"object_lock_mode": "GOVERNANCE", "retention_days": 1},
    }.get(case, {})
    size = 2 * PART + 1 if case == "multipart" else 1000
    async with S3Storage(s3_config(seaweedfs_s3, bucket, tmp_path, **extra)) as s3:
        got = await s3.put(KEY, chunks(payload(size)), content_type="audio/wav", metadata=META)
        if case == "same-bytes":
            assert got.read_back and s3.checksums
            got = await s3.put(KEY, chunks(payload(size)), content_type="audio/wav")
        else:
            assert s3.checksums is (False if case in ("always", "object-lock") else None)
        assert not got.read_back
        await s3.verify(KEY, size, got.sha256, deep=True)


def test_verify_after_put_and_the_pool_come_from_the_config() -> None:
    source = {"base_url": "http://127.0.0.1:1/r", "account_sid": "AC1", "auth_token": "t"}

    def load(concurrency: int = 4, **archive: Any) -> ArchiveConfig:
        sections = {"source": {**source, "concurrency": concurrency}, "archive": archive}
        return load_config(None, environ={}, overrides=sections).archive

    assert load().verify_after_put == "auto"
    assert s3_settings(load(bucket="b", verify_after_put="always")).verify_after_put == "always"
    with pytest.raises(ConfigError, match=r"archive\.verify_after_put"):
        load(verify_after_put="sometimes")
    # the pool: 2 x concurrency, at least botocore's 10, or what is set
    assert [load(c).max_pool_connections for c in (1, 5, 16)] == [10, 10, 32]
    assert s3_settings(load(16, bucket="b")).max_pool_connections == 32
    assert load(16, max_pool_connections=7).max_pool_connections == 7
    with pytest.raises(ConfigError, match=r"archive\.max_pool_connections"):
        load(max_pool_connections=-1)
    # an ArchiveConfig built by hand (no load_config) still gets a pool
    assert s3_settings(ArchiveConfig(backend="s3", bucket="b")).max_pool_connections == 10


# -- configuration: SSE, storage class, Object Lock --------------------------------------------


@pytest.mark.parametrize("size", [1000, PART + 1], ids=["single", "multipart"])
async def test_sse_and_storage_class_sent(
    moto_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
    size: int,
) -> None:
    aws_env(moto_s3)
    bucket = await moto_s3.create_bucket()
    cfg = s3_config(moto_s3, bucket, tmp_path, sse="AES256", storage_class="STANDARD_IA")
    async with S3Storage(cfg) as s3:
        await s3.put(KEY, chunks(payload(size)), content_type="audio/wav", metadata=META)
    h = await head(moto_s3, bucket)
    assert h["ServerSideEncryption"] == "AES256"
    assert h["StorageClass"] == "STANDARD_IA"


async def test_object_lock_retention_and_legal_hold(
    seaweedfs_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(seaweedfs_s3)
    bucket = await seaweedfs_s3.create_bucket(object_lock=True)
    cfg = s3_config(
        seaweedfs_s3,
        bucket,
        tmp_path,
        object_lock_mode="GOVERNANCE",
        retention_days=3,
        legal_hold=True,
    )
    created = datetime.now(UTC) - timedelta(days=1, microseconds=123_456)
    meta = {**META, "date-created": created.isoformat()}
    keys = {"single": payload(20_000), "multi": payload(PART + 10)}
    async with S3Storage(cfg) as s3, seaweedfs_s3.client() as raw:
        for name, data in keys.items():
            got = await s3.put(name, chunks(data), content_type="audio/wav", metadata=meta)
            await s3.verify(name, got.size, got.sha256)
            retention = (await raw.get_object_retention(Bucket=bucket, Key="rec/" + name))[
                "Retention"
            ]
            assert retention["Mode"] == "GOVERNANCE"
            until = retention["RetainUntilDate"]
            assert created + timedelta(days=3) <= until <= created + timedelta(days=3, seconds=2)
            hold = await raw.get_object_legal_hold(Bucket=bucket, Key="rec/" + name)
            assert hold["LegalHold"]["Status"] == "ON"
            with pytest.raises(StorageDenied):
                await s3.delete(name)  # the store refuses: locked
            await s3.verify(name, got.size, got.sha256, deep=True)

        # A sidecar (no date-created) is protected from now; an old recording at least a day.
        side = await s3.put("side.json", single_chunk(b"{}"), content_type="application/json")
        await s3.verify("side.json", side.size, side.sha256)
        old_meta = {**META, "date-created": "2020-01-01T00:00:00Z"}
        old = await s3.put("old", single_chunk(b"old"), content_type="audio/wav", metadata=old_meta)
        await s3.verify("old", old.size, old.sha256)
        until = (await raw.get_object_retention(Bucket=bucket, Key="rec/old"))["Retention"]
        assert until["RetainUntilDate"] > datetime.now(UTC) + timedelta(hours=23)

        # Objects written behind our back without the protection we require fail verify().
        data = b"unprotected"
        sha = hashlib.sha256(data).hexdigest()
        now = datetime.now(UTC)
        base = {"Bucket": bucket, "Body": data, "ChecksumAlgorithm": "SHA256"}
        md = {"sha256": sha, "date-created": now.isoformat()}
        await raw.put_object(**base, Key="rec/none", Metadata=md)
        await raw.put_object(
            **base,
            Key="rec/short",
            Metadata=md,
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=now + timedelta(days=1),
            ObjectLockLegalHoldStatus="ON",
        )
        await raw.put_object(
            **base,
            Key="rec/nohold",
            Metadata=md,
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=now + timedelta(days=4),
        )
        for key, problem in [
            ("none", "Object Lock mode is absent"),
            ("short", "retains until"),
            ("nohold", "legal hold"),
        ]:
            with pytest.raises(VerificationFailed, match=problem):
                await s3.verify(key, len(data), sha)


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
async def test_object_lock_required_but_bucket_has_none(
    server: S3Server,
    aws_env: Env,
    tmp_path: Path,
    mode: str,
) -> None:
    aws_env(server)
    bucket = await server.create_bucket()
    cfg = s3_config(server, bucket, tmp_path, object_lock_mode=mode, retention_days=1)
    with pytest.raises(StorageDenied, match=f"bucket {bucket} has no Object Lock configuration"):
        async with S3Storage(cfg):
            pass


# -- opening: bucket, credentials, stale uploads -----------------------------------------------


async def test_stale_multipart_uploads_under_prefix_aborted_on_enter(
    server: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(server)
    bucket = await server.create_bucket()
    async with server.client() as raw:
        for key in ("rec/a/crashed.wav", "rec/b/crashed.wav", "other/keep.wav"):
            await raw.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
    cfg = s3_config(server, bucket, tmp_path)
    if server.name == "seaweedfs":  # real clock: a fresh upload survives the default grace
        async with S3Storage(cfg):
            pass
        assert len(await open_uploads(server, bucket)) == 3
        storage = S3Storage(cfg, stale_upload_age=timedelta(0))
    else:  # moto reports every upload as initiated in 2010
        storage = S3Storage(cfg)
    async with storage:
        pass
    assert await open_uploads(server, bucket) == ["other/keep.wav"]


async def test_wrong_credentials_denied(
    seaweedfs_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    bucket = await seaweedfs_s3.create_bucket()
    aws_env(seaweedfs_s3, secret_key="not-the-secret")
    with pytest.raises(StorageDenied, match="denied; check the AWS credentials"):
        async with S3Storage(s3_config(seaweedfs_s3, bucket, tmp_path)):
            pass


async def test_no_credentials_denied(
    moto_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    with pytest.raises(StorageDenied, match="credentials"):
        async with S3Storage(s3_config(moto_s3, "any-bucket", tmp_path)):
            pass


async def test_missing_bucket_denied(
    server: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(server)
    with pytest.raises(StorageDenied, match="does not exist"):
        async with S3Storage(s3_config(server, "no-such-bucket-here", tmp_path)):
            pass


async def test_unreachable_endpoint_is_transient(aws_env: Env, tmp_path: Path) -> None:
    dead = S3Server("dead", f"http://127.0.0.1:{free_port()}", "k", "s", 0, tmp_path)
    aws_env(dead)
    with pytest.raises(StorageUnavailable) as err:
        async with S3Storage(s3_config(dead, "bucket", tmp_path)):
            pass
    assert err.value.transient


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("SlowDown", 503, StorageUnavailable),
        ("InternalError", 500, StorageUnavailable),
        ("RequestTimeout", 400, StorageUnavailable),
        ("AccessDenied", 403, StorageDenied),
        ("InvalidAccessKeyId", 403, StorageDenied),
        ("SignatureDoesNotMatch", 403, StorageDenied),
        ("NoSuchBucket", 404, StorageDenied),
        ("NoSuchKey", 404, ObjectNotFound),
        ("BadDigest", 400, StorageUnavailable),
        ("InvalidArgument", 400, StorageError),
    ],
)
def test_client_errors_translated(code: str, status: int, kind: type[StorageError]) -> None:
    exc = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )
    got = from_client_error(exc, "PutObject s3://b/k")
    assert type(got) is kind
    assert code in str(got)


# -- memory ------------------------------------------------------------------------------------


async def repeated(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes in 1 MiB blocks, the same object each time: the source costs nothing."""
    block = payload(MiB)
    for _ in range(size // MiB):
        yield block


async def peak_memory(work: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """What ``work`` returns, and the peak of Python allocations while it ran."""
    tracemalloc.start()
    try:
        result = await work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_large_body_streams_in_bounded_memory(
    moto_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    aws_env(moto_s3)
    bucket = await moto_s3.create_bucket()
    size = 200 * MiB

    async with S3Storage(s3_config(moto_s3, bucket, tmp_path / "spool")) as s3:

        async def put_and_verify() -> StoredObject:
            got = await s3.put(KEY, repeated(size), content_type="audio/wav", metadata=META)
            await s3.verify(KEY, size, got.sha256, deep=True)
            return got

        got, peak = await peak_memory(put_and_verify)
        assert got.size == size
        assert peak < 40 * MiB, f"peak {peak / MiB:.0f} MiB for a {size // MiB} MiB body"
        await s3.delete(KEY)  # moto keeps objects in memory


async def test_declared_large_body_is_spooled_from_its_first_byte(
    moto_s3: S3Server,
    aws_env: Env,
    tmp_path: Path,
) -> None:
    # With a high multipart_threshold, an undeclared body is held in memory up to the threshold
    # before it spills; one whose Content-Length says it is above the threshold never is.
    aws_env(moto_s3)
    bucket = await moto_s3.create_bucket()
    size, threshold = 48 * MiB, 32 * MiB
    cfg = s3_config(moto_s3, bucket, tmp_path / "spool", multipart_threshold=threshold)
    peaks = {}
    async with S3Storage(cfg) as s3:
        for hint in (None, size):
            put = partial(
                s3.put, KEY, repeated(size), content_type="audio/wav", metadata=META, size_hint=hint
            )
            got, peaks[hint] = await peak_memory(put)
            assert got.size == size
            await s3.verify(KEY, size, got.sha256)
            await s3.delete(KEY)
    assert peaks[None] >= threshold  # held in memory until it spilled
    assert peaks[size] < 3 * PART, f"peak {peaks[size] / MiB:.0f} MiB with the size declared"
    assert list((tmp_path / "spool").iterdir()) == []
