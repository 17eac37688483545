"""What an archived copy is made of: its key, its object metadata and its sidecar."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from archiver.model import Recording
from archiver.storage import Storage, check_key
from archiver.storage.base import single_chunk

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SID = re.compile(r"[A-Za-z0-9-]{2,64}")


def _aware(when: datetime) -> datetime:
    """``when`` in UTC; a date without a zone is refused (never read in this machine's zone)."""
    if when.tzinfo is None:
        raise ValueError(f"{when.isoformat()} has no zone")
    return when.astimezone(UTC)


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


def parse_sidecar(data: bytes, key: str) -> tuple[Recording, int, str, float]:
    """The recording, size, SHA-256 and archived-at a sidecar of ``key`` states; ValueError
    naming what is wrong when it is not one of ours or names another key."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("archive_key") != key:
        raise ValueError(f"names archive_key {doc.get('archive_key')!r}, not {key!r}")
    try:
        size, sha256 = doc["size"], doc["sha256"]
        if not isinstance(size, int) or size < 0 or not _SHA256.fullmatch(str(sha256)):
            raise ValueError(f"size {size!r} or sha256 {sha256!r} is malformed")
        source = doc.get("source")
        rec = Recording(
            sid=str(doc["sid"]),
            account_sid=str(doc["account_sid"]),
            call_sid=doc.get("call_sid") if isinstance(doc.get("call_sid"), str) else None,
            date_created=_aware(datetime.fromisoformat(doc["date_created"])),
            duration=float(doc.get("duration") or 0.0),
            ext=str(doc["ext"]),
            source=source if isinstance(source, dict) else {},
        )
        archived_at = _aware(datetime.fromisoformat(doc["archived_at"])).timestamp()
        for name in ("sid", "account_sid"):
            if not _SID.fullmatch(getattr(rec, name)):
                raise ValueError(f"{name} {getattr(rec, name)!r} is malformed")
    except KeyError as exc:
        raise ValueError(f"lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a field is malformed: {exc}") from None
    return rec, size, str(sha256), archived_at


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
