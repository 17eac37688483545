"""Prometheus metrics (prometheus-client), in one registry of our own.

:class:`PrometheusHooks` is the core's :class:`~archiver.hooks.Hooks` turned into samples:
counters where things happen (source, pass, retries), and gauges that describe the ledger,
refreshed from it after every pass. Only the CLI wires it in; the core imports no metrics.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from archiver.hooks import Hooks
from archiver.ledger import STATES, AccountState, Ledger

if TYPE_CHECKING:
    from archiver.sync import PassResult

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDINGS = Gauge(
    "archiver_recordings", "Recordings in the ledger by state", ["state"], registry=REGISTRY
)
ARCHIVED_RECORDINGS = Counter(
    "archiver_archived_recordings_total", "Recordings archived and verified", registry=REGISTRY
)
ARCHIVED_BYTES = Counter(
    "archiver_archived_bytes_total", "Bytes of recordings archived and verified", registry=REGISTRY
)
FAILURES = Counter(
    "archiver_failures_total",
    "Recording transfers that failed, by reason",
    ["reason"],
    registry=REGISTRY,
)
DELETIONS = Counter(
    "archiver_deletions_total",
    "Recordings deleted from the source, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
SOURCE_REQUESTS = Counter(
    "archiver_source_requests_total",
    "Requests to the Restcomm API by HTTP status",
    ["status"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "archiver_retries_total", "Retries scheduled, by operation", ["operation"], registry=REGISTRY
)
PASSES = Counter(
    "archiver_passes_total",
    "Sync passes by outcome (ok, failures, error)",
    ["outcome"],
    registry=REGISTRY,
)
PASS_DURATION = Histogram(
    "archiver_pass_duration_seconds",
    "Duration of sync passes",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
    registry=REGISTRY,
)
WATERMARK = Gauge(
    "archiver_watermark_timestamp_seconds",
    "The watermark (newest date_created listed completely) of the account furthest behind, "
    "Unix time",
    registry=REGISTRY,
)
OUTSTANDING = Gauge(
    "archiver_outstanding_recordings",
    "Recordings not done yet, by kind (untried, unverified, failed_waiting, failed_permanent): "
    "what keeps sync's exit code at 1",
    ["kind"],
    registry=REGISTRY,
)
REPAIRS = Gauge(
    "archiver_recordings_needing_repair",
    "Verified recordings whose archived copy was found missing or altered (verify --repair): "
    "archived again from the source on the next pass",
    registry=REGISTRY,
)
SCAN_COMPLETE = Gauge(
    "archiver_last_scan_complete",
    "1 when the last pass listed everything it set out to, 0 when a page kept failing",
    registry=REGISTRY,
)
LAST_PASS_SUCCESS = Gauge(
    "archiver_last_pass_success_timestamp_seconds",
    "When the last pass finished without error",
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "archiver_in_flight_transfers", "Recording transfers in progress", registry=REGISTRY
)
AUDIT_JOURNAL_BYTES = Gauge(
    "archiver_audit_journal_bytes",
    "Size of the local audit journal (it is never pruned: size its volume)",
    registry=REGISTRY,
)

_newest_archived: list[float | None] = [None]


def _lag() -> float:
    newest = _newest_archived[0]
    return float("nan") if newest is None else max(time.time() - newest, 0.0)


ARCHIVE_LAG = Gauge(
    "archiver_archive_lag_seconds",
    "Now minus the date_created of the newest archived recording",
    registry=REGISTRY,
)
ARCHIVE_LAG.set_function(_lag)


# one series per account, for at most this many accounts; the rest are summed as "_other"
MAX_ACCOUNT_SERIES = 100
OTHER_ACCOUNTS = "_other"
ACCOUNT_RECORDINGS = Gauge(
    "archiver_account_recordings",
    "Recordings in the ledger by account and state (accounts past the first "
    f'{MAX_ACCOUNT_SERIES}, troubled ones first, summed as account="{OTHER_ACCOUNTS}")',
    ["account", "state"],
    registry=REGISTRY,
)
ACCOUNT_OUTSTANDING = Gauge(
    "archiver_account_outstanding_recordings",
    "Recordings of the account not done yet (discovered, archived unverified, failed)",
    ["account"],
    registry=REGISTRY,
)
ACCOUNT_UP = Gauge(
    "archiver_account_up",
    "1 when the account's last listing was complete and it could be reached, else 0",
    ["account"],
    registry=REGISTRY,
)
ACCOUNT_WATERMARK = Gauge(
    "archiver_account_watermark_timestamp_seconds",
    "The account's watermark (newest date_created listed completely), Unix time",
    ["account"],
    registry=REGISTRY,
)
_ACCOUNT_GAUGES = (ACCOUNT_RECORDINGS, ACCOUNT_OUTSTANDING, ACCOUNT_UP, ACCOUNT_WATERMARK)


def set_accounts(states: list[AccountState]) -> None:
    """Per-account series, bounded: accounts with a problem or work left get theirs first."""

    def trouble(a: AccountState) -> tuple[int, bool, str]:
        return (_up(a), _left(a) == 0, a.sid)

    ordered = sorted((a for a in states if a.sid), key=trouble)
    named, rest = ordered[:MAX_ACCOUNT_SERIES], ordered[MAX_ACCOUNT_SERIES:]
    for gauge in _ACCOUNT_GAUGES:
        gauge.clear()
    for a in named:
        for state in STATES:
            ACCOUNT_RECORDINGS.labels(a.sid, state).set(a.states.get(state, 0))
        ACCOUNT_OUTSTANDING.labels(a.sid).set(_left(a))
        ACCOUNT_UP.labels(a.sid).set(_up(a))
        if a.watermark is not None:
            ACCOUNT_WATERMARK.labels(a.sid).set(a.watermark.timestamp())
    if rest:
        for state in STATES:
            total = sum(a.states.get(state, 0) for a in rest)
            ACCOUNT_RECORDINGS.labels(OTHER_ACCOUNTS, state).set(total)
        ACCOUNT_OUTSTANDING.labels(OTHER_ACCOUNTS).set(sum(_left(a) for a in rest))
        ACCOUNT_UP.labels(OTHER_ACCOUNTS).set(min(_up(a) for a in rest))
        marks = [a.watermark.timestamp() for a in rest if a.watermark is not None]
        if marks:
            ACCOUNT_WATERMARK.labels(OTHER_ACCOUNTS).set(min(marks))


def _up(a: AccountState) -> int:
    return int(a.problem is None and a.scan_complete is not False)


def _left(a: AccountState) -> int:
    return sum(a.states.get(s, 0) for s in ("discovered", "archived", "failed"))


def set_newest_archived(when: datetime | None) -> None:
    _newest_archived[0] = None if when is None else when.timestamp()


async def refresh_from_ledger(ledger: Ledger, now: float, max_attempts: int) -> None:
    counts = await ledger.counts()
    for state in STATES:
        RECORDINGS.labels(state).set(counts.get(state, 0))
    left = await ledger.outstanding(now, max_attempts)
    for kind, n in (
        ("untried", left.untried),
        ("unverified", left.unverified),
        ("failed_waiting", left.waiting),
        ("failed_permanent", left.permanent),
    ):
        OUTSTANDING.labels(kind).set(n)
    REPAIRS.set(await ledger.count_repairs())
    watermark = await ledger.oldest_watermark()
    if watermark is not None:
        WATERMARK.set(watermark.timestamp())
    set_accounts(await ledger.account_states(counts))
    set_newest_archived(await ledger.newest_archived())


class PrometheusHooks(Hooks):
    """Every observation of the core as a sample in :data:`REGISTRY`."""

    def source_request(self, status: int | str) -> None:
        SOURCE_REQUESTS.labels(str(status)).inc()

    def retry_scheduled(self, operation: str) -> None:
        RETRIES.labels(operation).inc()

    def transfer_started(self) -> None:
        IN_FLIGHT.inc()

    def transfer_ended(self) -> None:
        IN_FLIGHT.dec()

    def recording_verified(self, size: int) -> None:
        ARCHIVED_RECORDINGS.inc()
        ARCHIVED_BYTES.inc(size)

    def recording_failed(self, error_type: str) -> None:
        FAILURES.labels(error_type).inc()

    def deletion(self, outcome: str) -> None:
        DELETIONS.labels(outcome).inc()

    def pass_failed(self) -> None:
        PASSES.labels("error").inc()

    def pass_finished(self, result: PassResult, wall_time: float) -> None:
        SCAN_COMPLETE.set(1 if result.scan.complete else 0)
        PASSES.labels("ok" if result.ok else "failures").inc()
        LAST_PASS_SUCCESS.set(wall_time)

    def pass_took(self, seconds: float) -> None:
        PASS_DURATION.observe(seconds)

    async def after_pass(self, ledger: Ledger, now: float, max_attempts: int) -> None:
        await refresh_from_ledger(ledger, now, max_attempts)

    def journal_size(self, size: int) -> None:
        AUDIT_JOURNAL_BYTES.set(size)
