"""Objects, keys and metadata the storage tests share (the contract suite and the S3 tests)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from archiver.storage.base import Storage

KEY = "AC0123/2024/05/06/RE0001.wav"
META = {
    "sid": "RE0001",
    "call-sid": "CA0001",
    "account-sid": "AC0123",
    "date-created": "2024-05-06T07:08:09Z",
    "duration": "12",
}
DEFAULT_CHUNK = 256 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ per ``seed`` and are not all one byte."""
    block = hashlib.sha256(f"{seed}".encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def chunks(data: bytes, size: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])
