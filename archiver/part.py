"""What every part of a pass works with (``transfer``, ``deletion``), written once."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from archiver.accounts import Accounts
from archiver.audit import Journal
from archiver.errors import AccountUnavailable
from archiver.hooks import NO_HOOKS, Hooks
from archiver.ledger import Ledger
from archiver.report import PassResult
from archiver.source import Source
from archiver.storage import Storage

log = structlog.get_logger("archiver.sync")


class PassPart:
    """The accounts (a source client for each), the archive, the ledger, the pass's clock,
    the journal and the hooks; the Syncer gives every part the same ones."""

    def __init__(
        self,
        accounts: Accounts,
        storage: Storage,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        journal: Journal | None,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self.accounts = accounts
        self.storage = storage
        self.ledger = ledger
        self.clock = clock
        self.journal = journal
        self.hooks = hooks

    def _audit(self, event: str, **fields: object) -> None:
        """One journal line (none without a journal: one-off tools)."""
        if self.journal is not None:
            self.journal.append(event, **fields)

    def source_for(self, account_sid: str | None) -> Source:
        """The client of the account that owns a recording."""
        return self.accounts.client(account_sid)

    def account_down(self, exc: AccountUnavailable, result: PassResult) -> None:
        """``exc``'s account cannot be reached: its work waits for a later pass, uncharged,
        while the other accounts go on. The config's one account unreachable is everyone's:
        raised."""
        if not self.accounts.isolates(exc.account_sid):
            raise exc
        if result.account_failed(exc.account_sid, str(exc)):
            log.error("account.unavailable", account=exc.account_sid, error=str(exc))
