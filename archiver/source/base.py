"""The source interface: a platform's recordings API, as the pass and the CLI use it.

Contract (kept by every platform's client; ``tests/test_restcomm.py`` checks Restcomm's
against the simulator over HTTP):

* ``list_page`` returns one page of the account's recordings, newest first, created on or
  after the date ``start`` (in the server's zone) and up to ``end``; ``Page.last`` is True
  only when the page itself proves the list ended (shorter than asked for, empty, or past
  the end). Items that can never be archived come back as ``InvalidItem``, never dropped.
* ``server_now`` is the server's clock as of its last answer (its ``Date`` header), or None.
* ``media`` opens a recording's media; the yielded body is iterated once, streams (never
  whole in memory), and raises ``MediaDamaged`` for an error page or a cut body and
  ``MediaUnavailable`` for a stall or a reset. Credentials go only to the configured origin.
* ``delete`` returns True when it deleted the recording, False when it was already gone.
* ``for_account`` gives the same client for another account the credentials reach (a
  sub-account): the same session, credentials and request rate, that account's URLs; a
  listed recording that says it belongs to another account than the one listed is an
  ``InvalidItem``. ``list_accounts`` names the accounts the credentials own (Restcomm: the
  direct sub-accounts; Twilio: the main account and its sub-accounts), with their status.
* Errors are translated: rejected credentials → SourceAuthError (every account fails alike);
  an account that is not active or not reachable with them → AccountUnavailable (that
  account alone); 5xx, throttling, no connection → SourceUnavailable (transient); an answer
  we cannot read → SourceProtocolError. Error messages carry the platform's error code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Protocol

from archiver.model import Account, Page


class Media(Protocol):
    """A streamed media body; ``size`` and ``sha256`` are final once it was iterated."""

    content_length: int | None

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...


class Source(Protocol):
    """One account of one platform. Open it with ``async with``."""

    account_sid: str  # the account this client lists, fetches and deletes for

    @property
    def credentials_sid(self) -> str:
        """The account whose credentials it sends (the same, or a parent)."""
        ...

    server_now: datetime | None
    paging: str  # "offset" (numbered pages with a total) or "cursor" (next_page_uri)

    async def __aenter__(self) -> Source: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def list_page(
        self, page: int, page_size: int, start_date: date | None, end_date: date | None = None
    ) -> Page: ...

    def media(self, sid: str, ext: str) -> AbstractAsyncContextManager[Media]: ...

    async def delete(self, sid: str) -> bool: ...

    def for_account(self, account_sid: str) -> Source: ...

    async def list_accounts(self) -> list[Account]: ...

    async def check(self) -> int:
        """Reach the list with the credentials; the total the server reports."""
        ...

    def set_token(self, token: str) -> bool:
        """Use ``token`` from now on (a reloaded secret); True when it changed."""
        ...
