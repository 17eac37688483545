"""What the store does, found out once per open by the first put that needs to know (so
read-only commands such as ``verify`` write nothing), each with one small object: whether it
honours ``If-None-Match: *`` (:class:`ConditionalWrites`), and whether it refuses a body that
does not match its ``ChecksumSHA256`` (:class:`ChecksumEnforcement`).

Where If-None-Match is honoured, a new object goes up conditionally and only a refused write
looks at what the key holds; elsewhere a HeadObject precedes every put. Two accepted writes in a
row mean the header is ignored (some S3-compatible stores). A probe that fails for another reason
falls back the same way, with a warning: the slower path is the safe one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from archiver.errors import StorageError
from archiver.storage.s3_errors import error_code, refused_existing

log = structlog.get_logger("archiver.storage.s3")

PROBE_KEY = ".archiver/conditional-put-probe"
PROBE_BODY = b"archiver: probe for conditional writes (If-None-Match); safe to delete\n"


class _ProbedOnce:
    """A yes/no about the store, found out once by the first put that needs it (``answer``:
    None until probed; False when switched off). Subclasses say how (``_probe``)."""

    def __init__(self, enabled: bool) -> None:
        self.answer: bool | None = None if enabled else False
        self._probing: asyncio.Lock | None = None

    async def __call__(self, put_probe: Callable[[], Awaitable[None]]) -> bool:
        if self.answer is None:
            if self._probing is None:
                self._probing = asyncio.Lock()
            async with self._probing:  # the first puts of a pass arrive together: probe once
                if self.answer is None:
                    self.answer = await self._probe(put_probe)
        return self.answer

    @staticmethod
    async def _probe(put_probe: Callable[[], Awaitable[None]]) -> bool:
        raise NotImplementedError


class ConditionalWrites(_ProbedOnce):
    """Whether new objects go up with If-None-Match (``honoured``); ``put_probe`` writes
    PROBE_BODY at PROBE_KEY with ``If-None-Match: *`` (raising StorageError when refused)."""

    @property
    def honoured(self) -> bool | None:
        return self.answer

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


CHECKSUM_PROBE_KEY = ".archiver/checksum-probe"
CHECKSUM_PROBE_BODY = b"archiver: probe for checksum enforcement (ChecksumSHA256); safe to delete\n"
# sent with CHECKSUM_PROBE_BODY: the SHA-256 of other bytes, so a store that checks refuses it
CHECKSUM_PROBE_WRONG = b"archiver: not the probe's body\n"
# what a store answers when the body does not match the checksum sent with it
_MISMATCH_CODES = {"BadDigest", "InvalidDigest", "InvalidChecksum", "XAmzContentSHA256Mismatch"}


class ChecksumEnforcement(_ProbedOnce):
    """Whether the store refuses a PutObject whose ``ChecksumSHA256`` does not match its body:
    found out once, by the first put that needs to know, with one small PutObject that carries
    the SHA-256 of other bytes (``enforced``: None until probed; False when switched off).

    Where it is refused, a PutObject the store took with our checksum was checked by the store
    against our SHA-256 (what a read-back would prove), so no HeadObject has to follow it. The
    probe goes up with ``If-None-Match: *``: an enforcing store never stores it, so the key
    stays absent there; a store that takes it keeps one small object, and a later probe refused
    as existing (412) means an earlier one was taken. Any other answer, an accepted probe
    included, means not enforced: the slower path (a HeadObject after each put) is the safe one.
    """

    # put_probe writes CHECKSUM_PROBE_BODY at CHECKSUM_PROBE_KEY with the checksum of
    # CHECKSUM_PROBE_WRONG and If-None-Match: * (raising StorageError when refused)

    @property
    def enforced(self) -> bool | None:
        return self.answer

    @staticmethod
    async def _probe(put_probe: Callable[[], Awaitable[None]]) -> bool:
        try:
            await put_probe()
        except StorageError as exc:
            if checksum_refused(exc):
                log.info("storage.checksum_enforced", enforced=True)
                return True
            if refused_existing(exc):
                reason = "an earlier probe with a wrong checksum was stored"
                log.info("storage.checksum_enforced", enforced=False, reason=reason)
                return False
            reason = f"probe failed: {exc}"
            log.warning("storage.checksum_enforced", enforced=False, reason=reason)
            return False
        log.info(
            "storage.checksum_enforced",
            enforced=False,
            reason="the store accepts a wrong ChecksumSHA256; a HeadObject follows every put",
        )
        return False


def checksum_refused(exc: StorageError) -> bool:
    """The store refused a body because it did not match the checksum sent with it."""
    code, status = error_code(exc)
    if code in _MISMATCH_CODES:
        return True
    # AWS answers some checksum problems with a plain InvalidRequest: only one that says so
    text = str(exc).lower()
    return code == "InvalidRequest" and status == 400 and ("checksum" in text or "digest" in text)
