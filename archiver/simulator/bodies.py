"""Recording bodies made up on the fly: real WAV/MP4/MP3 headers, then deterministic bytes.

Nothing is kept in memory: a body is a pure function of (sid, seed, size, ext, channels),
generated at memcpy speed, so a benchmark can serve gigabytes and a test can recompute any
digest.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

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


def mp3_header(channels: int = 1) -> bytes:
    """An empty ID3v2.4 tag, then the header of an MPEG-1 Layer III frame (128 kbit/s,
    44.1 kHz; mono, or joint stereo for two channels): what an mp3 file starts with."""
    id3 = b"ID3" + bytes([4, 0, 0]) + bytes(4)  # version 2.4, no flags, syncsafe size 0
    mode = 0xC4 if channels == 1 else 0x64  # the channel-mode bits: 11 mono, 01 joint stereo
    return id3 + bytes([0xFF, 0xFB, 0x90, mode])


CONTENT_TYPES = {"wav": "audio/x-wav", "mp4": "video/mp4", "mp3": "audio/mpeg"}


def header(ext: str, size: int, channels: int = 1) -> bytes:
    """The container header of a ``size``-byte ``ext`` body, cut to ``size``."""
    if ext == "mp4":
        head = mp4_header(size)
    elif ext == "mp3":
        head = mp3_header(channels)
    else:
        head = wav_header(max(size - 44, 0), channels=channels)
    return head[:size]


def iter_body(
    sid: str, seed: int, size: int, ext: str, chunk_size: int, channels: int = 1
) -> Iterator[bytes]:
    """The body in pieces of at most ``chunk_size`` bytes; the content does not depend on it.

    Data block ``j`` is a rotation of a 64 KiB pseudo-random block (from ``sid``, ``seed``,
    ``size``, and for an mp3 or a second channel those too) whose first 8 bytes are replaced
    by ``j``, so every block differs.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    head = header(ext, size, channels)
    yield from split(head, chunk_size)
    remaining = size - len(head)
    if remaining <= 0:
        return
    # the bodies of one-channel WAV and MP4 keep the key they always had
    salt = "" if ext != "mp3" and channels == 1 else f"\x00{ext}\x00{channels}"
    doubled = _base_block(sid + salt, seed, size)
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


@dataclass(frozen=True)
class Body:
    """One rendition of a recording's media: its format, channels and size."""

    sid: str
    seed: int
    size: int
    ext: str
    channels: int = 1

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.ext, "application/octet-stream")

    def iter(self, chunk_size: int = BLOCK) -> Iterator[bytes]:
        return iter_body(self.sid, self.seed, self.size, self.ext, chunk_size, self.channels)

    def data(self) -> bytes:
        return b"".join(self.iter())

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.iter():
            digest.update(chunk)
        return digest.hexdigest()
