"""What a pass did and what it left: the numbers behind the summary line and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from archiver.ledger import Outstanding
from archiver.listing import ScanResult


@dataclass
class AccountPass:
    """One account's part of a pass: its listing, its watermark after it, and what kept it
    from being listed or fetched (if anything)."""

    scan: ScanResult = field(default_factory=ScanResult)
    watermark: datetime | None = None
    problem: str | None = None


MAX_REPORTED_PROBLEMS = 20  # accounts with a problem named in one pass's summary


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
    throttled: int = 0  # left due, uncharged, after the platform kept answering 429
    # what is left to do once the pass ended (the whole ledger, not only this pass's work)
    outstanding: Outstanding | None = None
    accounts: dict[str, AccountPass] = field(default_factory=dict)
    # the accounts list (subaccounts = true) could not be read: the last one was used
    accounts_problem: str | None = None

    def account_failed(self, account_sid: str, problem: str) -> bool:
        """Note that ``account_sid`` could not be reached; True the first time this pass."""
        part = self.accounts.setdefault(account_sid, AccountPass())
        if part.problem is not None:
            return False
        part.problem = problem
        return True

    def unavailable(self, account_sid: str | None) -> bool:
        part = self.accounts.get(account_sid or "")
        return part is not None and part.problem is not None

    @property
    def problems(self) -> dict[str, str]:
        return {sid: p.problem for sid, p in self.accounts.items() if p.problem is not None}

    def merge_scans(self) -> None:
        """The pass's listing: every account's, added up; complete only if each was."""
        scans = [(sid, part.scan) for sid, part in self.accounts.items()]
        if len(scans) == 1:
            self.scan = scans[0][1]
            self.watermark = next(iter(self.accounts.values())).watermark
            return
        total = ScanResult()
        for _sid, scan in scans:
            total.listed += scan.listed
            total.reread += scan.reread
            total.new += scan.new
            total.invalid += scan.invalid
            total.pages += scan.pages
            total.relisted += scan.relisted
            if scan.newest is not None and (total.newest is None or scan.newest > total.newest):
                total.newest = scan.newest
        broken = [(sid, scan) for sid, scan in scans if not scan.complete]
        if broken:
            total.complete = False
            sid, first = broken[0]
            more = f" (and {len(broken) - 1} more accounts)" if len(broken) > 1 else ""
            total.reason = f"account {sid}: {first.reason}{more}"
        total.unreachable = bool(scans) and all(scan.unreachable for _, scan in scans)
        self.scan = total
        marks = [p.watermark for p in self.accounts.values() if p.watermark is not None]
        self.watermark = min(marks) if marks else None  # the account furthest behind

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
            and not self.problems
            and self.accounts_problem is None
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
            "throttled": self.throttled,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "duration_s": round(self.finished_at - self.started_at, 3),
            "stopped_early": self.stopped_early,
            "accounts": len(self.accounts),
            "account_problems": dict(list(self.problems.items())[:MAX_REPORTED_PROBLEMS]) or None,
            "accounts_problem": self.accounts_problem,
        }
