"""Whether the store honours ``If-None-Match: *``: found out once, by the first put that needs
to know (so read-only commands such as ``verify`` write nothing), with one small object.

Where it is honoured, a new object goes up conditionally and only a refused write looks at what
the key holds; elsewhere a HeadObject precedes every put. Two accepted writes in a row mean the
header is ignored (some S3-compatible stores). A probe that fails for another reason falls
back the same way, with a warning: the slower path is the safe one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from archiver.errors import StorageError
from archiver.storage.s3_errors import refused_existing

log = structlog.get_logger("archiver.storage.s3")

PROBE_KEY = ".archiver/conditional-put-probe"
PROBE_BODY = b"archiver: probe for conditional writes (If-None-Match); safe to delete\n"


class ConditionalWrites:
    """The answer, once known (``honoured``: None until probed; False when switched off)."""

    def __init__(self, enabled: bool) -> None:
        self.honoured: bool | None = None if enabled else False
        self._probing: asyncio.Lock | None = None

    async def __call__(self, put_probe: Callable[[], Awaitable[None]]) -> bool:
        """Whether new objects go up with If-None-Match; ``put_probe`` writes PROBE_BODY at
        PROBE_KEY with ``If-None-Match: *`` (raising StorageError when refused)."""
        if self.honoured is None:
            if self._probing is None:
                self._probing = asyncio.Lock()
            async with self._probing:  # the first puts of a pass arrive together: probe once
                if self.honoured is None:
                    self.honoured = await self._probe(put_probe)
        return self.honoured

    @staticmethod
    async def _probe(put_probe: Callable[[], Awaitable[None]]) -> bool:
        for _ in range(2):
            try:
                await put_probe()
            except StorageError as exc:
                if refused_existing(exc):
                    log.info("storage.conditional_put", honoured=True)
                    return True
                reason = f"probe failed: {exc}"
                log.warning("storage.conditional_put", honoured=False, reason=reason)
                return False
        log.warning(
            "storage.conditional_put",
            honoured=False,
            reason="the store ignores If-None-Match; a HeadObject precedes every put",
        )
        return False
