"""The storage interface every archive backend implements, and the contract it keeps.

Contract (checked by ``tests/test_storage_contract.py`` for every backend):

* ``put`` is atomic: no partial object is ever visible at ``key``; a failure or a cancellation
  leaves nothing behind (temp files removed, multipart uploads aborted).
* ``put`` is idempotent per key: putting the same bytes again is a no-op (nothing new is
  stored; the bytes may travel and be refused by the store); different bytes at an
  existing key raise :class:`~archiver.errors.ArchiveConflict` naming both checksums, unless
  ``replace=True`` (used only for sidecars, never for audio), which writes without looking at
  what is there (so the same bytes may be written again). The rule is written once,
  :func:`archiver.storage.rules.same_or_conflict`; a backend supplies what the key holds.
* ``put`` consumes ``body`` exactly once and returns the size and SHA-256 of what it stored.
* ``verify`` proves an archived copy: it raises VerificationFailed unless the store holds
  exactly ``size`` bytes with ``sha256`` at ``key`` (and whatever protection the backend is
  configured to require, e.g. S3 Object Lock retention). ``deep`` re-reads the bytes even where
  stored checksums would do.
* The durable step is declared, not guessed: a backend with ``put_writes_sidecar`` stores
  ``sidecar(stored)`` (``sidecar`` is a function of the stored object giving its sidecar's
  bytes) at ``key + ".json"``, replacing it, in the same durable step as the object, and sets
  ``sidecar_written`` on what ``put`` returns; a conflict writes no sidecar. A backend with
  ``put_verifies`` may prove, before ``put`` returns, what ``verify`` would (the bytes at
  ``key`` are the ``size`` bytes with ``sha256``, with the protection the backend requires),
  and then sets ``read_back`` on what that put returns: by re-reading them (local), or because
  the store checked them against our SHA-256 as it took them and refuses them otherwise (S3,
  where probed so, single PutObject only). Bytes that differ must make ``put`` raise, never
  return ``read_back``. Which puts prove it is per put: where ``read_back`` is not set (and
  always for a backend without ``put_verifies``) the caller verifies. A backend without
  ``put_writes_sidecar`` ignores ``sidecar``; the caller writes it.
* ``digest`` gives the size and SHA-256 of ``body`` once it has been consumed (the download's
  own hash, computed as it streamed in): a backend may use it instead of hashing the bytes
  again, and then proves what it stored against it (the read-back); a wrong digest never ends
  in a put reported as matching: the put raises VerificationFailed, or returns the digest of
  what it really stored.
* ``size_hint`` is the length the body declares (a Content-Length), when known: a backend may
  use it to choose how to store the body, never to decide what was stored: a wrong hint
  changes neither what is stored nor what ``put`` returns.
* ``stat`` returns the size and SHA-256 the store holds for ``key`` (None when absent), from
  stored checksums where the backend has them; ``read`` streams the bytes back.
* ``put_canary`` and ``delete_canary`` are what ``archiver check`` writes and removes: the
  canary gets the shortest protection the store allows (S3 Object Lock: GOVERNANCE for a day,
  never the bucket's default), ``Canary`` says until when and adds the backend's own notes
  (S3: how overwrites are refused). The CLI knows no concrete backend.
* ``list(prefix)`` streams a StoredObject for every key that starts with ``prefix`` ("" for
  all; any string, not only a folder), each once, a page (S3 ListObjectsV2) or one folder
  (local) at a time: never the whole listing in memory. The order is the store's (local and
  AWS: key order; SeaweedFS: folder by folder): callers must not depend on it. ``size`` is
  the stored size; ``sha256`` is "" where the store cannot give it without reading the object
  (both backends today: ask ``stat``). Temp files, spool files, in-flight or incomplete
  uploads and names that are not keys (``check_key`` refuses them: our probe objects, foreign
  files) are never listed; a key put meanwhile may or may not be. A missing folder lists
  nothing; an unsafe prefix raises StorageError like an unsafe key.
* Library errors are translated: missing key → ObjectNotFound; throttling, 5xx, timeouts →
  StorageUnavailable (transient); denied, missing bucket or folder, disk full → StorageDenied.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from archiver.errors import ObjectNotFound, StorageError, VerificationFailed

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")
MAX_KEY_LENGTH = 900


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    # how the put went, not what is stored: left out of equality
    # proven by the put as verify() would: re-read (local), or checked by the store against
    # our SHA-256 as it took the bytes (S3 where it refuses a wrong checksum); see the contract
    read_back: bool = field(default=False, compare=False)
    sidecar_written: bool = field(default=False, compare=False)  # stored at key + ".json" too


Sidecar = Callable[[StoredObject], bytes]
Digest = Callable[[], tuple[int, str]]  # (size, SHA-256) of a body, once it is consumed


@dataclass(frozen=True)
class Canary:
    """How ``put_canary`` stored the ``check`` command's canary."""

    retained_until: datetime | None = None  # the store refuses to delete it before then
    notes: tuple[str, ...] = ()  # lines ``check`` prints about how the store keeps the contract


@runtime_checkable
class Storage(Protocol):
    """One archive backend. Open it with ``async with``."""

    name: str  # equals the config's archive.backend
    put_writes_sidecar: bool  # put(sidecar=...) stores the sidecar in the same durable step
    put_verifies: bool  # put may prove its copy itself (sets read_back on that put's result)
    # the immutability the backend requires of every copy (Object Lock "COMPLIANCE" or
    # "GOVERNANCE"), "" when none: a copy found altered under it is evidence of tampering

    @property
    def protection(self) -> str: ...

    async def __aenter__(self) -> Storage: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def put(
        self,
        key: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        replace: bool = False,
        sidecar: Sidecar | None = None,
        size_hint: int | None = None,
        digest: Digest | None = None,
    ) -> StoredObject: ...

    async def stat(self, key: str) -> StoredObject | None: ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def verify(self, key: str, size: int, sha256: str, *, deep: bool = False) -> None: ...

    def list(self, prefix: str = "") -> AsyncIterator[StoredObject]: ...

    async def delete(self, key: str) -> None: ...

    async def sweep(self) -> int:
        """Remove what dead writers left (temp files, incomplete uploads); called on open and
        at the end of every pass. Never raises for what it could not remove. Every file a
        writer leaves carries its PID (:mod:`archiver.storage.rules`): a live one's are kept."""
        ...

    def describe(self, key: str = "") -> str: ...

    async def put_canary(self, key: str, data: bytes) -> Canary:
        """``archiver check``: store ``data`` at ``key`` under the shortest protection the
        store allows, read it back and verify it (VerificationFailed if it differs)."""
        ...

    async def delete_canary(self, key: str) -> None:
        """Remove the canary and what it needed (an emptied folder), lifting the protection
        ``put_canary`` gave it where the store allows; ObjectLocked when it refuses."""
        ...


def check_key(key: str) -> str:
    """Refuse any key that could escape the archive or be read two ways."""
    if not key or len(key) > MAX_KEY_LENGTH or key.startswith("/"):
        raise StorageError(f"archive key {key!r} is empty, absolute or too long")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise StorageError(f"archive key {key!r} has an unsafe segment {segment!r}")
    return key


def is_key(key: str) -> bool:
    """Whether ``key`` is one :func:`check_key` accepts (a listing skips the others)."""
    try:
        check_key(key)
    except StorageError:
        return False
    return True


def check_prefix(prefix: str) -> str:
    """Refuse a listing prefix that no safe key could start with (as :func:`check_key`)."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


async def digest(storage: Storage, key: str) -> StoredObject:
    """Read ``key`` back in full and hash it: the deep check of an archived copy."""
    h = hashlib.sha256()
    size = 0
    async for chunk in storage.read(key):
        h.update(chunk)
        size += len(chunk)
    return StoredObject(key, size, h.hexdigest())


def compare(key: str, got: StoredObject | None, size: int, sha256: str, where: str) -> None:
    """Raise VerificationFailed unless ``got`` is ``size`` bytes with ``sha256``."""
    if got is None:
        raise VerificationFailed(f"{where}: archived copy is missing")
    if got.size != size:
        raise VerificationFailed(f"{where}: archived copy has {got.size} bytes, expected {size}")
    if got.sha256 != sha256:
        raise VerificationFailed(
            f"{where}: archived copy has sha256 {got.sha256}, expected {sha256}"
        )


MAX_SIDECAR_BYTES = 4 * 2**20  # a sidecar is a few KiB; more is not one of ours


async def check_sidecar(storage: Storage, key: str, sid: str, size: int, sha256: str) -> None:
    """Raise VerificationFailed unless ``key``'s sidecar is there, parses, and names the same
    recording, size and SHA-256 as the ledger: the sidecar is part of the archived copy."""
    where = storage.describe(key + ".json")
    data = bytearray()
    try:
        async for chunk in storage.read(key + ".json"):
            data += chunk
            if len(data) > MAX_SIDECAR_BYTES:
                raise VerificationFailed(f"{where}: sidecar is over {MAX_SIDECAR_BYTES} bytes")
    except ObjectNotFound:
        raise VerificationFailed(f"{where}: sidecar is missing") from None
    try:
        doc = json.loads(data)
    except ValueError:
        raise VerificationFailed(f"{where}: sidecar is not JSON") from None
    if not isinstance(doc, dict):
        raise VerificationFailed(f"{where}: sidecar is not a JSON object")
    for name, want in (("sid", sid), ("size", size), ("sha256", sha256)):
        if doc.get(name) != want:
            raise VerificationFailed(
                f"{where}: sidecar says {name} {doc.get(name)!r}, the ledger {want!r}"
            )


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a body for ``put``."""
    yield data
