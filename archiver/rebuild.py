"""Rebuild a lost ledger from the archive: every sidecar names its recording, size and SHA-256.

When the state volume is lost and no backup is left (README "Backup and restore"), the archive
still holds what the ledger knew of every archived copy: ``<key>.json`` beside each recording.
:func:`rebuild_ledger` streams the archive's listing (never all of it in memory), reads each
sidecar, checks it names the audio next to it (same key, same size), and writes one ledger row
per copy as ``archived``, not verified: the next pass verifies every copy again (size and
SHA-256, and rewrites its sidecar) before anything counts as done or may be deleted. The
watermark is left unset, so the next pass lists from ``source.start_time`` and whatever the
source still has that the archive lacks is archived as new. What cannot be used is reported
by key with the reason, never guessed at: an audio object without a sidecar (the listing
archives it again, a no-op for the same bytes), a sidecar that does not parse or disagrees
with its audio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from archiver.copies import parse_sidecar
from archiver.ledger import Ledger, RebuiltRow
from archiver.storage import Storage, StoredObject
from archiver.storage.base import MAX_SIDECAR_BYTES

log = structlog.get_logger("archiver.rebuild")

DEFAULT_REBUILD_BATCH = 500
# what the archive holds besides recordings: our daily manifests and `check`'s canaries
NOT_RECORDINGS = ("audit/", "archiver-check/")
MEDIA_SUFFIXES = (".wav", ".mp4", ".mp3")
DEFAULT_SHOWN = 20  # problems named one by one; the rest are counted


@dataclass
class Rebuilt:
    rows: int = 0
    orphans: int = 0  # audio without a sidecar
    unusable: int = 0  # sidecars that do not parse or disagree with their audio
    problems: list[tuple[str, str]] = field(default_factory=list)  # (key, why), the first few
    newest: datetime | None = None

    def problem(self, key: str, why: str) -> None:
        log.warning("rebuild.skipped", key=key, reason=why)
        if len(self.problems) < DEFAULT_SHOWN:
            self.problems.append((key, why))


async def rebuild_ledger(storage: Storage, ledger: Ledger, clock: Callable[[], float]) -> Rebuilt:
    """Rows for every archived copy ``storage`` holds a usable sidecar for."""
    result = Rebuilt()
    batch: list[RebuiltRow] = []
    async for obj in storage.list(""):
        if obj.key.startswith(NOT_RECORDINGS):
            continue
        if obj.key.endswith(".json"):
            audio_key = obj.key.removesuffix(".json")
            row = await _row_from(storage, obj, audio_key, result)
            if row is not None:
                batch.append(row)
        if len(batch) >= DEFAULT_REBUILD_BATCH:
            result.rows += await ledger.insert_rebuilt(batch, clock())
            batch = []
    if batch:
        result.rows += await ledger.insert_rebuilt(batch, clock())
    result.orphans = await _count_orphans(storage, result)
    return result


async def _row_from(
    storage: Storage, sidecar: StoredObject, audio_key: str, result: Rebuilt
) -> RebuiltRow | None:
    if sidecar.size > MAX_SIDECAR_BYTES:
        result.unusable += 1
        result.problem(sidecar.key, f"{sidecar.size} bytes: not a sidecar of ours")
        return None
    data = bytearray()
    async for chunk in storage.read(sidecar.key):
        data += chunk
    try:
        rec, size, sha256, archived_at = parse_sidecar(bytes(data), audio_key)
    except ValueError as exc:
        result.unusable += 1
        result.problem(sidecar.key, str(exc))
        return None
    audio = await storage.stat(audio_key)
    if audio is None:
        result.unusable += 1
        result.problem(sidecar.key, "its audio is missing")
        return None
    if audio.size != size:
        result.unusable += 1
        result.problem(sidecar.key, f"says {size} bytes, the audio has {audio.size}")
        return None
    if result.newest is None or rec.date_created > result.newest:
        result.newest = rec.date_created
    return RebuiltRow(rec, audio_key, size, sha256, archived_at)


async def _count_orphans(storage: Storage, result: Rebuilt) -> int:
    """Audio objects with no sidecar beside them (the listing's order is the store's, so a
    second, streaming walk checks each audio key against the store, not against memory)."""
    orphans = 0
    async for obj in storage.list(""):
        if obj.key.startswith(NOT_RECORDINGS) or not obj.key.endswith(MEDIA_SUFFIXES):
            continue
        if await storage.stat(obj.key + ".json") is None:
            orphans += 1
            result.problem(obj.key, "no sidecar: archived again if the source still lists it")
    return orphans
