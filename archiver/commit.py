"""Group commit: a verified copy counts only once its journal lines and ledger row are durable.

Transfers hand their verified copies to :class:`GroupCommit` and wait. One writer loop takes
everything queued (at most ``DEFAULT_COMMIT_BATCH``), appends the batch's journal lines,
fsyncs the journal once, then writes the batch's ledger rows in one transaction (SQLite
``synchronous=FULL``: fsynced before COMMIT returns), and only then wakes the transfers, which
report their recordings archived and verified (logs, metrics, progress, exit code). While one
batch is being made durable the next one gathers, so batches grow with the load and a lone
recording waits for nothing but its own fsyncs.

The journal goes first: after a crash between the two, the journal says a copy was verified
that the ledger does not know, and the next pass archives it again (the same bytes: a no-op)
and journals it again; the ledger can never claim a verification the journal lacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from archiver.audit import Journal
from archiver.ledger import Ledger, VerifiedCopy

DEFAULT_COMMIT_BATCH = 256


@dataclass
class _Waiting:
    copy: VerifiedCopy
    done: asyncio.Future[None]


class GroupCommit:
    """Run :meth:`run` in a task for as long as transfers may call :meth:`verified`; call
    :meth:`close` once they are all done, and :meth:`run` returns after the last batch."""

    def __init__(
        self,
        ledger: Ledger,
        journal: Journal | None,
        *,
        clock: Callable[[], float],
        max_batch: int = DEFAULT_COMMIT_BATCH,
    ) -> None:
        self.ledger = ledger
        self.journal = journal
        self.clock = clock
        self.max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._closing = False
        self.batches = 0  # how many commits were made (for tests and the benchmark)

    async def verified(self, copy: VerifiedCopy) -> None:
        """Queue ``copy`` and return once it is durable; raises what the commit raised."""
        if self._closing:
            raise RuntimeError("GroupCommit used after close()")
        waiting = _Waiting(copy, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._wake.set()
        await waiting.done

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        batch: list[_Waiting] = []
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                    await self._commit(batch)
                    batch = []
                if self._closing:
                    return
        finally:
            # cancelled (the pass is being torn down): nobody may go on believing it committed
            for waiting in [*batch, *self._queue]:
                if not waiting.done.done():
                    waiting.done.cancel()

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            if self.journal is not None:
                for w in batch:
                    c = w.copy
                    if c.fresh:
                        self.journal.append(
                            "archived", sid=c.sid, key=c.key, size=c.size, sha256=c.sha256
                        )
                    self.journal.append(
                        "verified", sid=c.sid, key=c.key, size=c.size, sha256=c.sha256
                    )
                await self.journal.sync()
            await self.ledger.commit_verified([w.copy for w in batch], self.clock())
        except Exception as exc:  # every waiter learns it; the first to see it stops the pass
            for w in batch:
                if not w.done.done():
                    w.done.set_exception(exc)
            return
        self.batches += 1
        for w in batch:
            if not w.done.done():
                w.done.set_result(None)
