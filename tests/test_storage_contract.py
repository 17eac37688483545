"""The storage contract (archiver.storage.base), one suite run against every backend.

``local`` writes under tmp_path; ``s3-moto`` and ``s3-seaweedfs`` talk to real servers started
once per session (tests/s3.py), each test in a fresh versioned bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import (
    ArchiveConflict,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    VerificationFailed,
)
from archiver.storage import local as local_storage
from archiver.storage.base import Canary, Storage, StoredObject, digest, single_chunk
from archiver.storage.local import LocalStorage
from archiver.storage.rules import temp_name
from archiver.storage.s3 import S3Settings, S3Storage
from tests.support.s3 import PART, S3Server, s3_config
from tests.support.storage import KEY, META, chunks, payload, read_all

MiB = 2**20
LIST_PAGE = 4  # S3 lists this many keys per request here: listings in the suite span pages


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
    # While entered, the bytes a put stores differ from those it hashed: changed right after
    # they are stored (local), or on their way to the store after they were hashed (S3). None
    # where there is no way in: the backend does not claim to prove its puts
    corrupting: Callable[[], AbstractContextManager[None]] | None = None
    # Leave, for key, what a writer killed in the middle of its put leaves in the store
    abandoned: Callable[[str], Awaitable[None]] | None = None
    # Whether a new put of this many bytes proves its copy (reports read_back) on this store:
    # local always; S3 for a single PutObject where the store refuses a wrong checksum
    proves: Callable[[int], bool] = lambda size: False


def contract_s3(server: S3Server, bucket: str, spool: Path) -> S3Settings:
    return s3_config(server, bucket, spool, list_page_size=LIST_PAGE)


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
    kind, server = backend_kind
    if server is None:
        root = tmp_path / "archive"
        async with LocalStorage(root) as local:
            yield _local_backend(local, root)
        return
    aws_env(server)
    bucket = await server.create_bucket(versioning=True)
    spool = tmp_path / "spool"
    async with S3Storage(contract_s3(server, bucket, spool)) as s3, server.client() as raw:
        # SeaweedFS refuses a body that does not match its ChecksumSHA256; moto takes it
        yield _s3_backend(s3, raw, bucket, spool, enforcing=kind == "s3-seaweedfs")


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

    @contextmanager
    def corrupting() -> Iterator[None]:
        move = local_storage._move

        def move_then_flip(src: Path, dst: Path, dir_mode: int) -> None:
            move(src, dst, dir_mode)
            data = bytearray(dst.read_bytes() or b"\0")
            data[-1] ^= 0xFF
            dst.write_bytes(bytes(data))

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(local_storage, "_move", move_then_flip)
            yield

    async def abandoned(key: str) -> None:
        folder = (root / key).parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / temp_name(local_storage.TMP_PREFIX, ".part")).write_bytes(b"half")

    return Backend(
        storage, overwrite, fingerprint, leftovers, corrupting, abandoned, proves=lambda _: True
    )


def _flip(body: Any) -> Any:
    """``body`` (a file object or bytes, as S3Storage sends it) with one bit changed."""
    data = bytearray(body.read() if hasattr(body, "read") else body) or bytearray(1)
    data[len(data) // 2] ^= 0x01
    return io.BytesIO(bytes(data)) if hasattr(body, "read") else bytes(data)


def _s3_backend(
    storage: S3Storage, raw: Any, bucket: str, spool: Path, *, enforcing: bool
) -> Backend:
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

    async def abandoned(key: str) -> None:
        await raw.create_multipart_upload(Bucket=bucket, Key=prefix + key)

    @contextmanager
    def corrupting() -> Iterator[None]:
        client = storage._client

        def flipping(send: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def send_flipped(**kw: Any) -> Any:
                if not kw["Key"].startswith(prefix + ".archiver/"):  # not the probes
                    kw = {**kw, "Body": _flip(kw["Body"])}  # after S3Storage hashed it
                return await send(**kw)

            return send_flipped

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(client, "put_object", flipping(client.put_object))
            mp.setattr(client, "upload_part", flipping(client.upload_part))
            yield

    def proves(size: int) -> bool:
        return enforcing and size <= storage.settings.multipart_threshold

    return Backend(storage, overwrite, fingerprint, leftovers, corrupting, abandoned, proves=proves)


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


# -- size_hint: how to store, never what ---------------------------------------------------------


@pytest.mark.parametrize("size", [100_000, 2 * PART + 123], ids=["small", "multipart"])
async def test_a_wrong_size_hint_changes_nothing_stored(backend: Backend, size: int) -> None:
    data = payload(size)
    for n, hint in enumerate([0, 1, size - 1, size, size + 1, 3 * PART]):
        key = f"AC0123/2024/05/06/RE{n:04}.wav"
        got = await put(backend.storage, data, key, size_hint=hint)
        assert got == stored(data, key), f"hint {hint}"
        assert await backend.storage.stat(key) == stored(data, key), f"hint {hint}"
        assert await read_all(backend.storage, key) == data
        await backend.storage.verify(key, len(data), got.sha256, deep=True)
    assert await backend.leftovers() == []


# -- digest: the caller's hash of the body, proven, never trusted ------------------------------


@pytest.mark.parametrize("size", [100_000, 2 * PART + 123], ids=["small", "multipart"])
async def test_a_right_digest_stores_the_body_as_without_it(backend: Backend, size: int) -> None:
    data = payload(size)
    truth = stored(data)
    got = await put(backend.storage, data, digest=lambda: (truth.size, truth.sha256))
    assert got == truth and await backend.storage.stat(KEY) == truth
    assert await backend.leftovers() == []


@pytest.mark.parametrize("size", [100_000, 2 * PART + 123], ids=["small", "multipart"])
@pytest.mark.parametrize("lie", ["sha256", "size"])
async def test_a_wrong_digest_never_ends_in_a_put_reported_as_matching(
    backend: Backend, size: int, lie: str
) -> None:
    data = payload(size)
    truth = stored(data)
    wrong = (truth.size + 1, truth.sha256) if lie == "size" else (truth.size, "0" * 64)
    for attempt in range(2):  # the second finds the first's bytes in place
        try:
            got = await put(backend.storage, data, digest=lambda: wrong)
        except VerificationFailed:
            continue
        assert (got.size, got.sha256) == (truth.size, truth.sha256), f"attempt {attempt}"
    held = await backend.storage.stat(KEY)
    assert held is None or held == truth  # what is at the key is the body, never the lie
    assert await backend.leftovers() == []


# -- the durable step: what the backend declares, it does --------------------------------------


def sidecar_of(tag: str) -> Callable[[StoredObject], bytes]:
    def sidecar(obj: StoredObject) -> bytes:
        return json.dumps({"tag": tag, "size": obj.size, "sha256": obj.sha256}).encode()

    return sidecar


async def test_put_with_a_sidecar_does_what_the_backend_declares(backend: Backend) -> None:
    storage, data = backend.storage, payload(70_000)
    side_key = KEY + ".json"
    got = await put(storage, data, sidecar=sidecar_of("first"))
    assert got == stored(data)
    assert got.sidecar_written is storage.put_writes_sidecar
    assert got.read_back is backend.proves(len(data))
    assert storage.put_verifies or not got.read_back
    if storage.put_writes_sidecar:
        assert await read_all(storage, side_key) == sidecar_of("first")(stored(data))
    else:
        assert await storage.stat(side_key) is None  # ignored: the caller writes it
    # the same bytes again: a no-op for the audio, while the sidecar is replaced
    again = await put(storage, data, sidecar=sidecar_of("again"))
    assert again.sidecar_written is storage.put_writes_sidecar
    assert storage.put_verifies or not again.read_back
    if storage.put_writes_sidecar:
        assert await read_all(storage, side_key) == sidecar_of("again")(stored(data))
    # without a sidecar nothing claims one was written
    plain = await put(storage, data, "AC0123/plain.wav")
    assert not plain.sidecar_written
    assert plain.read_back is backend.proves(len(data))
    assert await backend.leftovers() == []


async def test_a_conflict_writes_no_sidecar(backend: Backend) -> None:
    old, new = payload(1000, seed=1), payload(1000, seed=2)
    await put(backend.storage, old, sidecar=sidecar_of("old"))
    with pytest.raises(ArchiveConflict):
        await put(backend.storage, new, sidecar=sidecar_of("new"))
    if backend.storage.put_writes_sidecar:
        assert await read_all(backend.storage, KEY + ".json") == sidecar_of("old")(stored(old))
    else:
        assert await backend.storage.stat(KEY + ".json") is None
    assert await backend.leftovers() == []


@pytest.mark.parametrize(
    "size", [1000, 3 * MiB, 2 * PART + 123], ids=["short", "streamed", "multipart"]
)
async def test_a_put_that_proves_its_copy_catches_bytes_changed_after_hashing(
    backend: Backend, size: int
) -> None:
    """A put that reports read_back is the verification: with the stored bytes not the hashed
    ones, such a put must fail; one that does not prove it may succeed, leaving the caller to
    verify, but never claims it."""
    storage = backend.storage
    if not storage.put_verifies:
        # nothing claimed: put says it never proves its copy, so the caller verifies
        assert backend.corrupting is None
        assert not (await put(storage, payload(size), sidecar=sidecar_of("x"))).read_back
        return
    assert backend.corrupting is not None
    honest = await put(storage, payload(size, seed=1), "AC0123/honest.wav")
    assert honest.read_back is backend.proves(size)  # what this store proves untouched
    with backend.corrupting():
        if backend.proves(size):
            with pytest.raises((VerificationFailed, StorageUnavailable)):
                await put(storage, payload(size), sidecar=sidecar_of("x"))
            got = None
            # a copy that failed its proof is not left at the key to pass for one later
            assert await storage.stat(KEY) is None
            assert await storage.stat(KEY + ".json") is None
        else:
            try:
                got = await put(storage, payload(size), sidecar=sidecar_of("x"))
            except (VerificationFailed, StorageUnavailable):
                got = None  # caught anyway (SeaweedFS checks every part)
    if got is not None:
        assert not got.read_back  # stored as it came, and not claimed as proven
    assert await backend.leftovers() == []


# -- listing -----------------------------------------------------------------------------------


async def listed(storage: Storage, prefix: str = "") -> list[tuple[str, int]]:
    """What ``list`` streams, sorted: the order is the store's (SeaweedFS: folder by folder)."""
    found = [obj async for obj in storage.list(prefix)]
    for obj in found:
        assert obj.sha256 == ""  # neither backend has it without reading the object
    keys = [obj.key for obj in found]
    assert len(set(keys)) == len(keys)  # each key once, across pages too
    return sorted((obj.key, obj.size) for obj in found)


NESTED = [
    "AC0123/2024/05/06/RE0001.wav",
    "AC0123/2024/05/06/RE0001.wav.json",
    "AC0123/2024/05/06/RE0002.mp4",
    "AC0123/2024/05/07/RE0003.wav",
    "AC0123/2024/12/31/RE0004.wav",
    "AC0123/2024-notes.txt",  # shares "AC0123/2024" with a folder
    "AC9999/2025/01/01/RE0005.wav",
    "top.txt",
]


async def test_list_of_an_empty_store_is_empty(backend: Backend) -> None:
    assert await listed(backend.storage) == []
    assert await listed(backend.storage, "AC0123/") == []
    assert await listed(backend.storage, "AC0123/2024/05/06/RE") == []


async def test_list_streams_every_nested_key_under_a_prefix(backend: Backend) -> None:
    for n, key in enumerate(NESTED):
        await put(backend.storage, payload(100 + n, seed=n), key)
    everything = sorted((key, 100 + n) for n, key in enumerate(NESTED))
    assert await listed(backend.storage) == everything
    for prefix in ("AC0123/", "AC0123/2024/05/", "AC0123/2024/05/06/RE0001", "AC0123/2024", "t"):
        want = [(k, size) for k, size in everything if k.startswith(prefix)]
        assert await listed(backend.storage, prefix) == want, prefix
    assert await listed(backend.storage, "AC5555/") == []
    assert await listed(backend.storage, "top.txt/") == []  # a key, not a folder
    await backend.storage.delete("top.txt")
    assert ("top.txt", 107) not in await listed(backend.storage)


async def test_list_spans_more_keys_than_one_page(backend: Backend) -> None:
    keys = [f"AC0123/2024/05/06/RE{n:04}.wav" for n in range(3 * LIST_PAGE + 1)]
    await asyncio.gather(
        *(put(backend.storage, payload(10, seed=n), k) for n, k in enumerate(keys))
    )
    assert await listed(backend.storage, "AC0123/") == [(k, 10) for k in keys]


@pytest.mark.parametrize("size", [100_000, PART + 300_000], ids=["buffered", "spooled"])
async def test_list_shows_no_temp_file_nor_upload_in_flight(backend: Backend, size: int) -> None:
    await put(backend.storage, b"done", "AC0123/2024/05/06/RE0001.wav")
    assert backend.abandoned is not None
    await backend.abandoned("AC0123/2024/05/06/RE0009.wav")  # a killed writer's
    sent = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in chunks(payload(size)):
            yield chunk
        sent.set()
        await asyncio.Event().wait()  # in flight while the listing runs
        yield b"never"

    task = asyncio.create_task(
        backend.storage.put("AC0123/2024/05/06/RE0002.wav", stalls(), content_type="audio/wav")
    )
    try:
        await asyncio.wait_for(sent.wait(), timeout=30)
        assert await listed(backend.storage) == [("AC0123/2024/05/06/RE0001.wav", 4)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_list_refuses_an_unsafe_prefix(backend: Backend) -> None:
    for prefix in ("../", "/abs", "a/../", "a//", "./"):
        with pytest.raises(StorageError, match="archive key"):
            await listed(backend.storage, prefix)


# -- the check command's canary ----------------------------------------------------------------


async def test_canary_is_stored_verified_and_removed(backend: Backend) -> None:
    key, data = "archiver-check/canary-1.txt", b"archiver canary\n"
    canary = await backend.storage.put_canary(key, data)
    assert isinstance(canary, Canary)
    assert canary.retained_until is None  # none of these buckets has Object Lock
    assert all(isinstance(note, str) and note for note in canary.notes)
    assert await backend.storage.stat(key) == stored(data, key)
    await backend.storage.delete_canary(key)
    assert await backend.storage.stat(key) is None
    assert await backend.leftovers() == []


def test_no_environment_leaks() -> None:
    assert not any(k in os.environ for k in ("AWS_CA_BUNDLE", "AWS_PROFILE"))
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
