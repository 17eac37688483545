"""Recording bodies made up on the fly: real WAV/MP4 headers, then deterministic bytes.

Nothing is kept in memory: a body is a pure function of (sid, seed, size, ext), generated at
memcpy speed, so a benchmark can serve gigabytes and a test can recompute any digest.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

BLOCK = 65536  # the pseudo-random block every body is cut from, and the default chunk


def wav_header(
    data_len: int, *, sample_rate: int = 8000, channels: int = 1, bits_per_sample: int = 16
) -> bytes:
    """A 44-byte canonical RIFF/WAVE PCM header for ``data_len`` bytes of samples."""
    block_align = channels * bits_per_sample // 8
    byte_rate = sample_rate * block_align
    riff_size = min(36 + data_len, 0xFFFFFFFF)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, block_align, bits_per_sample
        )
        + b"data"
        + struct.pack("<I", min(data_len, 0xFFFFFFFF))
    )


def mp4_header(total_size: int) -> bytes:
    """An ``ftyp`` box followed by the header of an ``mdat`` box filling ``total_size``."""
    ftyp = struct.pack(">I", 32) + b"ftyp" + b"isom" + struct.pack(">I", 0x200)
    ftyp += b"isom" + b"iso2" + b"avc1" + b"mp41"
    mdat_size = total_size - len(ftyp)
    if mdat_size <= 0xFFFFFFFF:
        mdat = struct.pack(">I", max(mdat_size, 8)) + b"mdat"
    else:
        mdat = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", mdat_size)
    return ftyp + mdat


def header(ext: str, size: int) -> bytes:
    """The container header of a ``size``-byte ``ext`` body, cut to ``size``."""
    head = mp4_header(size) if ext == "mp4" else wav_header(max(size - 44, 0))
    return head[:size]


def iter_body(sid: str, seed: int, size: int, ext: str, chunk_size: int) -> Iterator[bytes]:
    """The body in pieces of at most ``chunk_size`` bytes; the content does not depend on it.

    Data block ``j`` is a rotation of a 64 KiB pseudo-random block (from ``sid``, ``seed``,
    ``size``) whose first 8 bytes are replaced by ``j``, so every block differs.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    head = header(ext, size)
    yield from split(head, chunk_size)
    remaining = size - len(head)
    if remaining <= 0:
        return
    doubled = _base_block(sid, seed, size)
    index = 0
    while remaining > 0:
        offset = (index * 40503) % BLOCK
        block = index.to_bytes(8, "little") + doubled[offset + 8 : offset + BLOCK]
        if remaining < BLOCK:
            block = block[:remaining]
        remaining -= len(block)
        index += 1
        yield from split(block, chunk_size)


def _base_block(sid: str, seed: int, size: int) -> bytes:
    """Two copies of the pseudo-random block back to back, so any rotation is one slice."""
    key = f"{sid}\x00{seed}\x00{size}".encode()
    block = hashlib.shake_256(key).digest(BLOCK)
    return block + block


def split(data: bytes, chunk_size: int) -> Iterator[bytes]:
    """``data`` in pieces of at most ``chunk_size`` bytes (nothing for empty data)."""
    if len(data) <= chunk_size:
        if data:
            yield data
        return
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]
