"""Scenario 5: a pass that finds nothing new on a big ledger, timed outside the HTTP call.

Wired like ``archiver sync`` (ledger, journal, client, local storage, Syncer); the client's
``list_page`` is timed, and the rest of the pass is what the ledger and the pass cost.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from archiver.audit import Journal
from archiver.config import journal_path, load_config
from archiver.ledger import Ledger
from archiver.model import Page
from archiver.source.restcomm import RestcommClient
from archiver.storage.local import LocalStorage
from archiver.sync import Syncer


async def one_pass(config: str) -> dict[str, float]:
    cfg = load_config(config, environ={})
    s = cfg.source
    http = 0.0
    async with (
        Ledger(cfg.ledger.path) as ledger,
        Journal(journal_path(cfg)) as journal,
        RestcommClient(s.base_url, s.account_sid, s.auth_token) as client,
        LocalStorage(cfg.archive.path) as storage,
    ):
        list_page = client.list_page

        async def timed(*args: Any, **kw: Any) -> Page:
            nonlocal http
            t = time.perf_counter()
            try:
                return await list_page(*args, **kw)
            finally:
                http += time.perf_counter() - t

        client.list_page = timed  # type: ignore[method-assign]
        syncer = Syncer(cfg, client, storage, ledger, journal=journal)
        t = time.perf_counter()
        result = await syncer.run_pass()
        wall = time.perf_counter() - t
    if result.scan.new or result.archived or result.failed:
        raise RuntimeError(f"the pass found work: {result.summary()}")
    return {"pass_ms": wall * 1000, "http_ms": http * 1000, "outside_ms": (wall - http) * 1000}


async def main(config: str, repeat: int) -> dict[str, float]:
    runs = [await one_pass(config) for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}
