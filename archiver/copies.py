"""What an archived copy is made of: its key, its object metadata and its sidecar."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from archiver.model import Recording
from archiver.storage import Storage, check_key
from archiver.storage.base import single_chunk


def render_key(template: str, rec: Recording) -> str:
    key = template.format(
        account_sid=rec.account_sid,
        sid=rec.sid,
        call_sid=rec.call_sid or "none",
        date_created=rec.date_created.astimezone(UTC),
        ext=rec.ext,
    )
    return check_key(key)


def content_type(rec: Recording) -> str:
    return "video/mp4" if rec.ext == "mp4" else "audio/x-wav"


def sidecar(rec: Recording, key: str, size: int, sha256: str, archived_at: float) -> bytes:
    """The JSON stored at ``key + ".json"``: enough to rebuild the ledger row from the archive."""
    doc = {
        "sid": rec.sid,
        "account_sid": rec.account_sid,
        "call_sid": rec.call_sid,
        "date_created": rec.date_created.astimezone(UTC).isoformat(),
        "duration": rec.duration,
        "ext": rec.ext,
        "size": size,
        "sha256": sha256,
        "archive_key": key,
        "archived_at": datetime.fromtimestamp(archived_at, UTC).isoformat(),
        "source": rec.source,
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def object_metadata(rec: Recording) -> dict[str, str]:
    return {
        "sid": rec.sid,
        "call-sid": rec.call_sid or "",
        "account-sid": rec.account_sid,
        "date-created": rec.date_created.astimezone(UTC).isoformat(),
        "duration": repr(rec.duration),
    }


async def put_sidecar(storage: Storage, key: str, data: bytes) -> None:
    """The sidecar of ``key``; replaced if there (it describes, it is not the evidence)."""
    await storage.put(
        key + ".json", single_chunk(data), content_type="application/json", replace=True
    )
