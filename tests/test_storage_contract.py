"""The storage contract (archiver.storage.base), one suite run against every backend.

``local`` writes under tmp_path; ``s3-moto`` and ``s3-seaweedfs`` talk to real servers started
once per session (tests/s3.py), each test in a fresh versioned bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import (
    ArchiveConflict,
    ObjectNotFound,
    StorageError,
    VerificationFailed,
)
from archiver.storage.base import Storage, StoredObject, digest, single_chunk
from archiver.storage.local import LocalStorage
from archiver.storage.s3 import S3Storage
from tests.support.s3 import PART, S3Server, s3_config
from tests.support.storage import KEY, META, chunks, payload, read_all


@dataclass
class Backend:
    """A storage under test plus back doors to inspect and tamper with what it stored."""

    storage: Storage
    # Replace the bytes at key behind the storage's back (S3: optionally forging sha256 metadata)
    overwrite: Callable[[str, bytes, str | None], Awaitable[None]]
    # Something that changes whenever the object at key is written again
    fingerprint: Callable[[str], Awaitable[Any]]
    # Temp files and in-progress multipart uploads a put left behind
    leftovers: Callable[[], Awaitable[list[str]]]


@pytest.fixture(params=["local", "s3-moto", "s3-seaweedfs"])
def backend_kind(request: pytest.FixtureRequest) -> tuple[str, S3Server | None]:
    if request.param == "local":
        return "local", None
    server = request.getfixturevalue("moto_s3" if request.param == "s3-moto" else "seaweedfs_s3")
    return request.param, server


@pytest.fixture
async def backend(
    backend_kind: tuple[str, S3Server | None],
    tmp_path: Path,
    aws_env: Callable[..., None],
) -> AsyncIterator[Backend]:
    _, server = backend_kind
    if server is None:
        root = tmp_path / "archive"
        async with LocalStorage(root) as local:
            yield _local_backend(local, root)
        return
    aws_env(server)
    bucket = await server.create_bucket(versioning=True)
    spool = tmp_path / "spool"
    async with S3Storage(s3_config(server, bucket, spool)) as s3, server.client() as raw:
        yield _s3_backend(s3, raw, bucket, spool)


def _local_backend(storage: LocalStorage, root: Path) -> Backend:
    async def overwrite(key: str, data: bytes, forged_sha: str | None) -> None:
        (root / key).write_bytes(data)

    async def fingerprint(key: str) -> Any:
        st = (root / key).stat()
        return (st.st_ino, st.st_mtime_ns)

    async def leftovers() -> list[str]:
        # temp files live in the destination folders now; the folders list is not a leftover
        found = [p for p in root.rglob("*.part*") if p.is_file()]
        return sorted(str(p.relative_to(root)) for p in found)

    return Backend(storage, overwrite, fingerprint, leftovers)


def _s3_backend(storage: S3Storage, raw: Any, bucket: str, spool: Path) -> Backend:
    prefix = storage.prefix

    async def overwrite(key: str, data: bytes, forged_sha: str | None) -> None:
        metadata = {"sha256": forged_sha} if forged_sha else {}
        await raw.put_object(Bucket=bucket, Key=prefix + key, Body=data, Metadata=metadata)

    async def fingerprint(key: str) -> Any:
        resp = await raw.list_object_versions(Bucket=bucket, Prefix=prefix + key)
        return sorted(
            (v["VersionId"], v["LastModified"])
            for v in resp.get("Versions", [])
            if v["Key"] == prefix + key
        )

    async def leftovers() -> list[str]:
        files = sorted(p.name for p in spool.iterdir()) if spool.exists() else []
        resp = await raw.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return files + [f"upload:{u['Key']}" for u in resp.get("Uploads", [])]

    return Backend(storage, overwrite, fingerprint, leftovers)


def stored(data: bytes, key: str = KEY) -> StoredObject:
    return StoredObject(key, len(data), hashlib.sha256(data).hexdigest())


async def put(storage: Storage, data: bytes, key: str = KEY, **kw: Any) -> StoredObject:
    return await storage.put(key, chunks(data), content_type="audio/wav", metadata=META, **kw)


# -- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 100_000, 2 * PART + 123], ids=["empty", "small", "multipart"])
async def test_put_then_stat_verify_read(backend: Backend, size: int) -> None:
    data = payload(size)
    got = await put(backend.storage, data)
    assert got == stored(data)
    assert await backend.storage.stat(KEY) == stored(data)
    await backend.storage.verify(KEY, len(data), got.sha256)
    await backend.storage.verify(KEY, len(data), got.sha256, deep=True)
    assert await read_all(backend.storage, KEY) == data
    assert await digest(backend.storage, KEY) == stored(data)
    assert await backend.leftovers() == []
    assert KEY in backend.storage.describe(KEY)


async def test_same_bytes_again_is_a_noop(backend: Backend) -> None:
    data = payload(300_000)
    first = await put(backend.storage, data)
    before = await backend.fingerprint(KEY)
    again = await put(backend.storage, data)
    assert again == first
    assert await backend.fingerprint(KEY) == before  # not written a second time


async def test_different_bytes_raise_conflict_naming_both_checksums(backend: Backend) -> None:
    old, new = payload(1000, seed=1), payload(1000, seed=2)
    await put(backend.storage, old)
    with pytest.raises(ArchiveConflict) as err:
        await put(backend.storage, new)
    assert stored(old).sha256 in str(err.value)
    assert stored(new).sha256 in str(err.value)
    assert await backend.storage.stat(KEY) == stored(old)
    assert await read_all(backend.storage, KEY) == old


async def test_replace_overwrites(backend: Backend) -> None:
    old, new = payload(1000, seed=1), payload(2000, seed=2)
    await put(backend.storage, old)
    assert await put(backend.storage, new, replace=True) == stored(new)
    assert await backend.storage.stat(KEY) == stored(new)
    assert await read_all(backend.storage, KEY) == new
    await backend.storage.verify(KEY, len(new), stored(new).sha256, deep=True)


# -- failures leave nothing --------------------------------------------------------------------


class BodyBroke(Exception):
    pass


@pytest.mark.parametrize("size", [100_000, PART + 300_000], ids=["buffered", "spooled"])
async def test_body_failing_midway_leaves_nothing(backend: Backend, size: int) -> None:
    async def broken() -> AsyncIterator[bytes]:
        async for chunk in chunks(payload(size)):
            yield chunk
        raise BodyBroke("source connection dropped")

    with pytest.raises(BodyBroke):
        await backend.storage.put(KEY, broken(), content_type="audio/wav", metadata=META)
    assert await backend.storage.stat(KEY) is None
    assert await backend.leftovers() == []


@pytest.mark.parametrize("size", [100_000, PART + 300_000], ids=["buffered", "spooled"])
async def test_cancelled_put_leaves_nothing(backend: Backend, size: int) -> None:
    sent = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in chunks(payload(size)):
            yield chunk
        sent.set()
        await asyncio.Event().wait()  # the source hangs; the put is cancelled here
        yield b"never"

    task = asyncio.create_task(
        backend.storage.put(KEY, stalls(), content_type="audio/wav", metadata=META)
    )
    await asyncio.wait_for(sent.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await backend.storage.stat(KEY) is None
    assert await backend.leftovers() == []


# -- missing and hostile keys ------------------------------------------------------------------


async def test_missing_key(backend: Backend) -> None:
    assert await backend.storage.stat("AC0/none.wav") is None
    with pytest.raises(ObjectNotFound):
        await read_all(backend.storage, "AC0/none.wav")
    with pytest.raises(VerificationFailed):
        await backend.storage.verify("AC0/none.wav", 1, "0" * 64)
    with pytest.raises(ObjectNotFound):
        await backend.storage.delete("AC0/none.wav")


HOSTILE_KEYS = ["../x", "/abs", "a/../b", "a//b", "", "./a", "a/.hidden/../b", "a\\..\\b"]


async def test_hostile_keys_refused(backend: Backend) -> None:
    for key in HOSTILE_KEYS:
        with pytest.raises(StorageError, match="archive key"):
            await backend.storage.put(key, single_chunk(b"x"), content_type="audio/wav")
        with pytest.raises(StorageError, match="archive key"):
            await backend.storage.stat(key)
        with pytest.raises(StorageError, match="archive key"):
            await read_all(backend.storage, key)
        with pytest.raises(StorageError, match="archive key"):
            await backend.storage.verify(key, 1, "0" * 64)
        with pytest.raises(StorageError, match="archive key"):
            await backend.storage.delete(key)
    assert await backend.leftovers() == []


# -- verification ------------------------------------------------------------------------------


async def test_verify_detects_a_changed_object(backend: Backend) -> None:
    data = payload(50_000)
    got = await put(backend.storage, data)
    tampered = bytearray(data)
    tampered[1234] ^= 0xFF
    await backend.overwrite(KEY, bytes(tampered), None)
    with pytest.raises(VerificationFailed):
        await backend.storage.verify(KEY, got.size, got.sha256)


async def test_deep_verify_detects_a_changed_object_with_forged_checksum(backend: Backend) -> None:
    data = payload(50_000)
    got = await put(backend.storage, data)
    tampered = bytearray(data)
    tampered[-1] ^= 0xFF
    await backend.overwrite(KEY, bytes(tampered), got.sha256)  # metadata still claims the old sha
    with pytest.raises(VerificationFailed):
        await backend.storage.verify(KEY, got.size, got.sha256, deep=True)


async def test_verify_refuses_wrong_expectations(backend: Backend) -> None:
    data = payload(10_000)
    got = await put(backend.storage, data)
    with pytest.raises(VerificationFailed, match="bytes"):
        await backend.storage.verify(KEY, got.size + 1, got.sha256)
    with pytest.raises(VerificationFailed, match="sha256"):
        await backend.storage.verify(KEY, got.size, "0" * 64)


async def test_delete_removes_the_object(backend: Backend) -> None:
    await put(backend.storage, b"canary")
    await backend.storage.delete(KEY)
    assert await backend.storage.stat(KEY) is None


def test_no_environment_leaks() -> None:
    assert not any(k in os.environ for k in ("AWS_CA_BUNDLE", "AWS_PROFILE"))
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
