"""Which accounts a pass archives, and the client for each.

The credentials belong to ``source.account_sid``. The accounts archived with them are
``source.accounts`` (default: that account alone) and, with ``source.subaccounts``, every
active sub-account the platform's accounts list names, read again every
``source.accounts_refresh`` (a sub-account opened while the daemon runs is picked up then).
Between reads, and when a read fails, the accounts last listed (kept in the ledger) are used.

Every account gets its own view of the one client (:meth:`Source.for_account`): the same
session, credentials and request rate. An account that cannot be reached (closed, suspended,
forbidden: :class:`AccountUnavailable`) is that account's problem for the pass, reported and
kept in the ledger; the others go on. Only when every account archived is unreachable, or the
credentials themselves are rejected, does the pass stop (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from archiver.config import SourceConfig
from archiver.errors import AccountUnavailable, SourceProtocolError, SourceUnavailable
from archiver.ledger import Ledger
from archiver.model import Account
from archiver.source import Source

log = structlog.get_logger("archiver.accounts")

CONFIGURED = "configured"
DISCOVERED = "discovered"


class Accounts:
    """The accounts of one config: resolved at the start of every pass (:meth:`resolve`)."""

    def __init__(
        self, cfg: SourceConfig, root: Source, ledger: Ledger, *, clock: Callable[[], float]
    ) -> None:
        self.cfg = cfg
        self.root = root
        self.ledger = ledger
        self.clock = clock
        self.configured = list(cfg.accounts) or [cfg.account_sid]
        self.archived: list[str] = list(self.configured)  # as of the last resolve
        self.refresh_problem: str | None = None  # the accounts list could not be read
        self._views: dict[str, Source] = {}
        self._noted = False  # the configured accounts are in the ledger (once per process)

    def isolates(self, account_sid: str) -> bool:
        """Whether ``account_sid``'s trouble is its own: it is one of several archived, or
        not the config's own account (a row left by an account no longer archived). The
        config's one account being unreachable is everyone's: the pass stops."""
        return self.many or account_sid != self.root.account_sid

    @property
    def many(self) -> bool:
        """More than one account is archived: one account's trouble is not everyone's."""
        return len(self.archived) > 1

    def client(self, account_sid: str | None) -> Source:
        """The client for ``account_sid`` (the root's own account when None)."""
        if account_sid is None or account_sid == self.root.account_sid:
            return self.root
        view = self._views.get(account_sid)
        if view is None:
            view = self._views[account_sid] = self.root.for_account(account_sid)
        return view

    async def resolve(self) -> list[str]:
        """The accounts this pass lists, in a stable order: the configured ones, then the
        active sub-accounts (discovered now, or as last discovered)."""
        now = self.clock()
        if not self._noted:  # once per process: a no-news pass writes nothing it need not
            await self.ledger.adopt_watermark(self.root.account_sid)  # a schema-3 ledger's
            configured = [Account(sid) for sid in self.configured]
            await self.ledger.note_accounts(configured, CONFIGURED, now, refreshed=False)
            self._noted = True
        if not self.cfg.subaccounts:
            self.archived = list(self.configured)
            return self.archived
        discovered = await self._discovered(now)
        extra = [a.sid for a in discovered if a.active and a.sid not in self.configured]
        self.archived = self.configured + sorted(extra)
        return self.archived

    async def _discovered(self, now: float) -> list[Account]:
        refresh = self.cfg.accounts_refresh.total_seconds()
        last = await self.ledger.accounts_refreshed_at()
        if last and 0 <= now - last < refresh:
            return await self.ledger.known_accounts(origin=DISCOVERED)
        try:
            listed = await self.root.list_accounts()
        except (SourceUnavailable, SourceProtocolError, AccountUnavailable) as exc:
            # the accounts list is down or forbidden (a role without Read:Accounts), the
            # recordings may not be: go on with the last list, and say so (exit 1)
            self.refresh_problem = f"accounts list: {type(exc).__name__}: {exc}"
            log.warning("accounts.refresh_failed", error=self.refresh_problem)
            return await self.ledger.known_accounts(origin=DISCOVERED)
        self.refresh_problem = None
        listed = [a for a in listed if a.sid != self.root.account_sid]
        await self.ledger.note_accounts(listed, DISCOVERED, now, refreshed=True)
        known = {a.sid for a in await self.ledger.known_accounts(origin=DISCOVERED)}
        gone = sorted(known - {a.sid for a in listed})
        if gone:  # no longer listed (deleted): its recordings stay in the ledger and status
            await self.ledger.note_accounts(
                [Account(sid, "unlisted") for sid in gone], DISCOVERED, now, refreshed=False
            )
        active = sum(a.active for a in listed)
        log.info("accounts.refreshed", listed=len(listed), active=active, unlisted=len(gone))
        return listed
