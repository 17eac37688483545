"""The in-process sync pass against the simulator, wired as the CLI wires it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from archiver.audit import Journal
from archiver.config import Config, journal_path
from archiver.hooks import Hooks, both
from archiver.ledger import Ledger
from archiver.metrics import PrometheusHooks
from archiver.source import open_source
from archiver.storage.local import LocalStorage
from archiver.sync import Syncer
from archiver.workers import WorkerPool
from tests.support.constants import NOW


class Harness:
    """Opens client, storage and ledger for one config, like the CLI does."""

    def __init__(self, cfg: Config, clock: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or (lambda: NOW.timestamp())
        self.hooks = PrometheusHooks()  # as the CLI wires it: the metrics tests read them

    @contextlib.asynccontextmanager
    async def syncer(
        self, syncer_class: type[Syncer] = Syncer, *, watch: Hooks | None = None
    ) -> AsyncIterator[Syncer]:
        """A Syncer over freshly opened ledger, client, local storage and journal; ``watch``
        (e.g. a progress display) sees every hook the metrics see."""
        async with (
            Ledger(self.cfg.ledger.path) as ledger,
            open_source(self.cfg.source, self.hooks) as client,
            LocalStorage(self.cfg.archive.path) as storage,
            Journal(journal_path(self.cfg), clock=lambda: self.clock()) as journal,
            WorkerPool(self.cfg, self.hooks) as pool,
        ):
            yield syncer_class(
                self.cfg,
                client,
                storage,
                ledger,
                clock=self.clock,
                journal=journal,
                hooks=both(self.hooks, watch),
                copier=pool if self.cfg.source.workers > 1 else None,  # as the CLI wires it
            )

    async def pass_(self, **kw: Any) -> Any:
        async with self.syncer() as syncer:
            return await syncer.run_pass(**kw)

    async def ledger_rows(self) -> dict[str, Any]:
        async with (
            Ledger(self.cfg.ledger.path) as ledger,
            ledger.db.execute("SELECT sid, state, sha256, last_error FROM recordings") as c,
        ):
            return {r[0]: r[1:] for r in await c.fetchall()}

    async def watermark(self, account: str | None = None) -> datetime | None:
        """The watermark of ``account`` (default: the config's own account)."""
        async with Ledger(self.cfg.ledger.path) as ledger:
            return await ledger.watermark(account or self.cfg.source.account_sid)
