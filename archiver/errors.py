"""The one exception tree of archiver.

::

    ArchiverError                     base of everything we raise on purpose
    ├── ConfigError                   bad config: names the key and the fix (exit 2)
    ├── SourceError                   the Restcomm API
    │   ├── SourceUnavailable         cannot reach it, 5xx, 429, timeouts     [transient]
    │   ├── SourceAuthError           401/403: credentials rejected (exit 3)
    │   ├── SourceProtocolError       malformed page, wrong host in a page URI
    │   └── MediaError                one recording's media cannot be archived
    │       ├── MediaNotReady         404 for a listed recording (still being written) [transient]
    │       ├── MediaUnavailable      5xx / connection dropped or stalled mid-body [transient]
    │       ├── MediaDamaged          error page served as audio, body cut short   [transient]
    │       └── MediaInvalid          a media answer no retry can mend (absurd length, bad
    │                                 redirect, unexpected 4xx)
    ├── StorageError                  the archive backend
    │   ├── StorageUnavailable        unreachable, throttled, 5xx           [transient]
    │   ├── StorageDenied             access denied, missing bucket/folder, disk full (exit 3)
    │   │   └── ObjectLocked          a delete refused by Object Lock retention or legal hold
    │   ├── ObjectNotFound            the key does not exist
    │   ├── VerificationFailed        the archived copy does not match (size, SHA-256, lock)
    │   └── ArchiveConflict           the key holds different bytes; never overwritten
    ├── LedgerError                   the state volume: ledger or journal unusable (exit 3)
    │   └── JournalError              the audit journal lacks the ledger's checkpoint, or fails
    ├── LockHeld                      another archiver process is writing this state (exit 3)
    ├── PortBusy                      server.listen is taken by another process (exit 3)
    └── InvalidRecording              hostile or malformed SID, unparseable fields (permanent)

``transient`` errors are retried (``archiver.retry``); all others fail at once. Library errors
(aiohttp, botocore, OSError) are translated at the boundary that sees them, ``raise X from exc``.
"""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error archiver raises on purpose."""

    transient: bool = False


class ConfigError(ArchiverError):
    """The configuration is wrong. The message names the key and how to fix it."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config: {key}: {problem}")


class SourceError(ArchiverError):
    """Something went wrong talking to the Restcomm API."""


class SourceUnavailable(SourceError):
    """Connection refused or reset, timeout, HTTP 429 or 5xx."""

    transient = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, throttled: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled  # a 429: the platform asks us to slow down, nothing failed


class SourceAuthError(SourceError):
    """The API rejected the credentials (401) or the account (403)."""


class AccountUnavailable(SourceAuthError):
    """The credentials are good but this account cannot be reached now: it is not active
    (closed, suspended) or not theirs. Every other account goes on."""

    def __init__(self, message: str, *, account_sid: str) -> None:
        super().__init__(message)
        self.account_sid = account_sid


class SourceProtocolError(SourceError):
    """The API answered something we cannot use: not JSON, missing fields, a foreign host."""


class MediaError(SourceError):
    """One recording's media could not be archived."""


class MediaNotReady(MediaError):
    """The list shows the recording but its media answers 404 (it may still be written)."""

    transient = True


class MediaUnavailable(MediaError):
    """5xx, 429 or a connection dropped while fetching media."""

    transient = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, throttled: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled  # a 429: the platform asks us to slow down, nothing failed


class MediaDamaged(MediaError):
    """The body is not the recording it should be: an error page served as audio, a body cut
    short or longer than announced. A proxy hiccup looks like this, so it is retried."""

    transient = True


class MediaInvalid(MediaError):
    """A media answer no retry can mend: an absurd length, a broken redirect, a 4xx."""


class StorageError(ArchiverError):
    """Something went wrong with the archive backend."""


class StorageUnavailable(StorageError):
    """The archive is unreachable, throttling or failing with 5xx."""

    transient = True


class StorageDenied(StorageError):
    """Access denied, missing bucket or folder, read-only or full disk."""


class ObjectLocked(StorageDenied):
    """The store refused a delete because the object is under Object Lock (not credentials)."""


class ObjectNotFound(StorageError):
    """The key does not exist in the archive."""


class VerificationFailed(StorageError):
    """The archived copy is missing or differs from what was downloaded."""


class ArchiveConflict(StorageError):
    """The key already holds different bytes. Archives are never overwritten."""


class LedgerError(ArchiverError):
    """The ledger cannot be opened, migrated or written: names the file, the cause, the fix.

    An operational fault of the state volume (disk full, I/O error, read-only, damaged), never
    a config error: systemd restarts on it.
    """


class JournalError(LedgerError):
    """The audit journal cannot be written, or no longer holds the checkpoint the ledger keeps
    (cut, deleted or rewritten). Never healed silently: ``archiver audit recover``."""


class LockHeld(ArchiverError):
    """Another archiver process holds the writer lock on this ledger."""


class PortBusy(ArchiverError):
    """The health/metrics address is in use by another process: operational, not config."""


class WorkerLost(ArchiverError):
    """The worker process copying a recording died (killed, out of memory) twice while it
    did: charged to the recording, which is tried again later like any failure."""


class WorkersFailed(ArchiverError):
    """Worker processes (``source.workers``) cannot be started: the pass stops (exit 3)."""


class InvalidRecording(ArchiverError):
    """A listed recording that can never be archived: hostile SID, unusable fields."""


# What a pass does with an error, by kind (the classification lives with the tree):
# these stop the pass at once, whatever recording met them (exit 3) ...
STOPS_PASS: tuple[type[ArchiverError], ...] = (
    SourceAuthError,
    StorageDenied,
    LedgerError,
    WorkersFailed,
)
# ... and these may be everyone's (5xx, throttling, no connection): charged to a recording
# only once a later one succeeds; several in a row are an outage.
MAYBE_SHARED: tuple[type[ArchiverError], ...] = (
    SourceUnavailable,
    MediaUnavailable,
    StorageUnavailable,
)
