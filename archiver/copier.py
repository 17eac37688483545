"""One recording's copy: streamed from its source into the archive, checked, with its sidecar.

The transfer (:mod:`archiver.transfer`) decides *which* recordings are copied and records what
happened; a :class:`Copier` does the copying, here in this process. ``source.workers > 1``
puts the same copier in worker processes behind :class:`archiver.workers.WorkerPool`, which
offers the one method of :class:`Copies` too; nothing else of a pass runs in them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Protocol

from archiver.copies import content_type, object_metadata, put_sidecar, sidecar
from archiver.errors import STOPS_PASS, VerificationFailed
from archiver.model import Recording
from archiver.retry import retrying
from archiver.source import Source
from archiver.storage import Storage, StoredObject

DEFAULT_TRANSFER_ATTEMPTS = 3  # immediate tries of one transfer before it is left for later


class Copies(Protocol):
    """What the transfer asks of whoever copies: this recording, to this key, checked."""

    async def copy(self, rec: Recording, key: str, archived_at: float) -> StoredObject:
        """Archive ``rec`` at ``key``: stored, compared with what was downloaded, read back
        (or proven by the store), its sidecar written. Raises what went wrong."""
        ...

    async def complete(self, rec: Recording, copy: StoredObject, archived_at: float) -> None:
        """The read-back and the sidecar of a copy stored before (a restart between them)."""
        ...

    def set_token(self, token: str) -> None:
        """A token reloaded (SIGHUP) for whoever copies with their own client."""
        ...


class Copier:
    """Copies in this process: at most ``concurrency`` downloads at once (its slots)."""

    def __init__(
        self, source_for: Callable[[str | None], Source], storage: Storage, concurrency: int
    ) -> None:
        self.source_for = source_for
        self.storage = storage
        # download slots: every slot is given back when its body is in, pass or no pass
        self._slots = asyncio.Semaphore(concurrency)

    def set_token(self, token: str) -> None:
        """Nothing to do: this copier uses this process's client, given the token already."""

    async def copy(self, rec: Recording, key: str, archived_at: float) -> StoredObject:
        done = await self._download(rec, key, archived_at)
        await self.complete(rec, done, archived_at)
        return done

    async def _download(self, rec: Recording, key: str, archived_at: float) -> StoredObject:
        """Stream ``rec`` into the archive at ``key``; what the archive stored, checked
        against what was downloaded."""

        def sidecar_for(stored: StoredObject) -> bytes:
            return sidecar(rec, key, stored.size, stored.sha256, archived_at)

        async def transfer() -> StoredObject:
            source = self.source_for(rec.account_sid)
            async with _Slot(self._slots) as slot, source.media(rec.sid, rec.ext) as body:
                done = await self.storage.put(
                    key,
                    slot.released_at_end(body),
                    content_type=content_type(rec),
                    metadata=object_metadata(rec),
                    sidecar=sidecar_for,
                    size_hint=body.content_length,
                    digest=lambda: (body.size, body.sha256),  # hashed as it streamed in
                )
            if (done.size, done.sha256) != (body.size, body.sha256):
                raise VerificationFailed(
                    f"stored {done.size} bytes sha256 {done.sha256}, downloaded "
                    f"{body.size} bytes sha256 {body.sha256}"
                )
            return done

        return await retrying("transfer", transfer, attempts=DEFAULT_TRANSFER_ATTEMPTS, sid=rec.sid)

    async def complete(self, rec: Recording, copy: StoredObject, archived_at: float) -> None:
        """What the backend did not do in its put: the read-back and the sidecar. They are
        independent requests on a remote store: made together, a recording waits for one
        round trip instead of two, and is verified only when both succeeded."""
        steps: list[Awaitable[object]] = []
        if not copy.read_back:
            verify = partial(self.storage.verify, copy.key, copy.size, copy.sha256)
            steps.append(retrying("verify", verify, sid=rec.sid))
        if not copy.sidecar_written:
            data = sidecar(rec, copy.key, copy.size, copy.sha256, archived_at)
            write = partial(put_sidecar, self.storage, copy.key, data)
            steps.append(retrying("sidecar", write, sid=rec.sid))
        if steps:  # a local put does both itself: nothing to wait for on every recording
            await _together(steps)


class _Slot:
    """One download slot, held from the request until the body's last byte has arrived."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def __aenter__(self) -> _Slot:
        await self._slots.acquire()
        self._held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    async def released_at_end(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in body:
            yield chunk
        self.release()  # the source is done with; what is left is the archive's work


async def _together(steps: list[Awaitable[object]]) -> None:
    """Run ``steps`` at once and wait for every one; then raise a failure, if any: one that
    stops the pass first, else the first in order."""
    failures = [
        outcome
        for outcome in await asyncio.gather(*steps, return_exceptions=True)
        if isinstance(outcome, BaseException)
    ]
    if failures:
        raise next((f for f in failures if isinstance(f, STOPS_PASS)), failures[0])
