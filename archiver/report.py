"""What a pass did and what it left: the numbers behind the summary line and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from archiver.ledger import Outstanding
from archiver.listing import ScanResult


@dataclass
class PassResult:
    started_at: float = 0.0
    finished_at: float = 0.0
    scan: ScanResult = field(default_factory=ScanResult)
    archived: int = 0
    verified: int = 0
    failed: int = 0
    bytes: int = 0
    watermark: datetime | None = None
    stopped_early: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    deleted: int = 0
    would_delete: int = 0
    delete_skipped: int = 0
    # what is left to do once the pass ended (the whole ledger, not only this pass's work)
    outstanding: Outstanding | None = None

    @property
    def ok(self) -> bool:
        """True only when nothing is failed, waiting or untried, the listing was complete and
        the pass ran to its end: the one condition for exit code 0."""
        return (
            self.failed == 0
            and self.scan.invalid == 0
            and self.scan.complete
            and not self.stopped_early
            and self.outstanding is not None
            and self.outstanding.total == 0
        )

    def summary(self) -> dict[str, object]:
        left = self.outstanding.as_dict() if self.outstanding is not None else None
        return {
            "listed": self.scan.listed,
            "reread": self.scan.reread,
            "new": self.scan.new,
            "invalid": self.scan.invalid,
            "pages": self.scan.pages,
            "relisted": self.scan.relisted,
            "scan_complete": self.scan.complete,
            "scan_problem": self.scan.reason or None,
            "outstanding": left,
            "archived": self.archived,
            "verified": self.verified,
            "failed": self.failed,
            "bytes": self.bytes,
            "deleted": self.deleted,
            "would_delete": self.would_delete,
            "delete_skipped": self.delete_skipped,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "duration_s": round(self.finished_at - self.started_at, 3),
            "stopped_early": self.stopped_early,
        }
