"""S3 Object Lock: the protection archive requires of what it writes, and the checks of it.

With ``mode`` set (GOVERNANCE or COMPLIANCE) every object goes up with that mode and a
retain-until of its recording's ``date-created`` plus ``retention_days`` (never less than a day
ahead: S3 refuses a date in the past), and a legal hold when asked; opening refuses a bucket
without Object Lock rather than write unprotected copies; ``verify`` refuses a copy whose lock
is weaker than that. The ``check`` canary gets the shortest retention the bucket allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.errors import ObjectNotFound, StorageDenied, StorageError, VerificationFailed
from archiver.storage.s3_errors import boundary, error_code

DEFAULT_MIN_RETENTION = timedelta(days=1)  # floor for a retain-until date already in the past
DEFAULT_CLOCK_SLACK = timedelta(minutes=5)  # our clock vs the store's, for retention checks
DATE_META = "date-created"


@dataclass(frozen=True)
class ObjectLock:
    """The Object Lock archive requires (``mode`` "": none)."""

    mode: str = ""
    retention_days: int = 0
    legal_hold: bool = False

    def put_args(self, date_created: str | None) -> dict[str, Any]:
        """The PutObject/CreateMultipartUpload arguments that protect a new object."""
        if not self.mode:
            return {}
        args: dict[str, Any] = {
            "ObjectLockMode": self.mode,
            "ObjectLockRetainUntilDate": self.retain_until(date_created),
        }
        if self.legal_hold:
            args["ObjectLockLegalHoldStatus"] = "ON"
        return args

    def retain_until(self, date_created: str | None) -> datetime:
        now = datetime.now(UTC)
        base = parse_date(date_created) or now
        # A recording older than its retention period is still written protected for a day:
        # S3 refuses a retain-until date in the past.
        until = max(base + timedelta(days=self.retention_days), now + DEFAULT_MIN_RETENTION)
        return ceil_second(until)

    def verify(self, where: str, head: Mapping[str, Any]) -> None:
        """Raise VerificationFailed unless ``head`` (a HeadObject answer) is protected so."""
        if not self.mode:
            return
        mode = head.get("ObjectLockMode")
        if mode != self.mode:
            raise VerificationFailed(
                f"{where}: Object Lock mode is {mode or 'absent'}, expected {self.mode}"
            )
        retention = timedelta(days=self.retention_days)
        created = parse_date(head.get("Metadata", {}).get(DATE_META))
        if created is not None:
            required = (created + retention).replace(microsecond=0)
        else:  # a sidecar: protected from about when it was written
            modified = head.get("LastModified") or datetime.now(UTC)
            required = modified + retention - DEFAULT_CLOCK_SLACK
        until = head.get("ObjectLockRetainUntilDate")
        if not isinstance(until, datetime) or until < required:
            raise VerificationFailed(
                f"{where}: Object Lock retains until {until or 'never'}, "
                f"expected at least {required.isoformat()}"
            )
        if self.legal_hold and head.get("ObjectLockLegalHoldStatus") != "ON":
            raise VerificationFailed(f"{where}: legal hold is not ON")

    async def check_bucket(self, client: Any, bucket: str) -> None:
        """On open: refuse a bucket that cannot keep the lock required."""
        if self.mode and not await lock_enabled(client, bucket):
            raise StorageDenied(
                f"bucket {bucket} has no Object Lock configuration but "
                f"archive.object_lock_mode = {self.mode!r}; "
                "refusing to write unprotected copies"
            )


async def lock_enabled(client: Any, bucket: str) -> bool:
    """Whether ``bucket`` has Object Lock enabled (False where the store has none at all)."""
    try:
        with boundary(f"GetObjectLockConfiguration {bucket}"):
            resp = await client.get_object_lock_configuration(Bucket=bucket)
    except ObjectNotFound:  # ObjectLockConfigurationNotFoundError is a 404
        return False
    except StorageError as exc:
        code, status = error_code(exc)
        # Not configured (ObjectLockConfigurationNotFoundError) or not implemented.
        if "ObjectLock" in code or code == "NotImplemented" or status == 501:
            return False
        raise
    return bool(resp.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")


async def canary_retention(client: Any, bucket: str) -> datetime | None:
    """The shortest retention a canary (``check``) can get here: none in a bucket without
    Object Lock; else an explicit GOVERNANCE retain-until one day ahead, which takes the
    place of a default retention (possibly COMPLIANCE for years) and of archive's own."""
    if not await lock_enabled(client, bucket):
        return None
    return ceil_second(datetime.now(UTC) + DEFAULT_MIN_RETENTION)


def lock_of(head: Mapping[str, Any]) -> str:
    """The Object Lock protecting an object now, in words ("" when none)."""
    parts = []
    until = head.get("ObjectLockRetainUntilDate")
    if isinstance(until, datetime) and until > datetime.now(UTC):
        parts.append(f"{head.get('ObjectLockMode') or 'retention'} until {until.isoformat()}")
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        parts.append("legal hold ON")
    return ", ".join(parts)


def parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def ceil_second(dt: datetime) -> datetime:
    # Stores keep whole seconds; rounding up keeps the stored date >= the one we computed.
    return dt if dt.microsecond == 0 else dt.replace(microsecond=0) + timedelta(seconds=1)
