"""What every part of a pass works with (``transfer``, ``deletion``), written once."""

from __future__ import annotations

from collections.abc import Callable

from archiver.audit import Journal
from archiver.hooks import NO_HOOKS, Hooks
from archiver.ledger import Ledger
from archiver.source import Source
from archiver.storage import Storage


class PassPart:
    """The source, the archive, the ledger, the pass's clock, the journal and the hooks; the
    Syncer gives every part the same ones."""

    def __init__(
        self,
        source: Source,
        storage: Storage,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        journal: Journal | None,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self.source = source
        self.storage = storage
        self.ledger = ledger
        self.clock = clock
        self.journal = journal
        self.hooks = hooks

    def _audit(self, event: str, **fields: object) -> None:
        """One journal line (none without a journal: one-off tools)."""
        if self.journal is not None:
            self.journal.append(event, **fields)
