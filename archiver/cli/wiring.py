"""Wiring at the edge: logging, the config, and a Syncer over concrete parts."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import structlog

from archiver import logs, retry
from archiver.audit import (
    Head,
    Journal,
)
from archiver.config import (
    Config,
    journal_path,
    load_config,
)
from archiver.errors import ConfigError
from archiver.hooks import Hooks, both
from archiver.ledger import Ledger
from archiver.metrics import PrometheusHooks
from archiver.source import open_source
from archiver.storage import open_storage
from archiver.sync import Syncer
from archiver.workers import WorkerPool

log = structlog.get_logger("archiver.cli")


def configure_logging(args: argparse.Namespace, cfg: Config | None) -> None:
    level = args.log_level or (cfg.log.level if cfg else "info")
    fmt = args.log_format or (cfg.log.format if cfg else "auto")
    logs.configure(level, fmt)


def load(args: argparse.Namespace) -> Config:
    if not args.config:
        raise ConfigError("--config", "is required (or set ARCHIVER_CONFIG)")
    return load_config(args.config)


def reloader(config_path: str | None, syncer: Syncer) -> Callable[[], Awaitable[None]]:
    """What SIGHUP does: re-read the config file's secrets (a rotated token) and use them."""

    async def reload() -> None:
        if config_path is None:
            log.info("config.reload_skipped", reason="no config file to re-read")
            return
        try:
            fresh = await asyncio.to_thread(load_config, config_path)
        except ConfigError as exc:
            log.error("config.reload_failed", error=str(exc), kept="the config in use")
            return
        logs.register_secret(fresh.source.auth_token)
        changed = syncer.set_token(fresh.source.auth_token)
        log.info(
            "config.reloaded",
            token_changed=changed,
            note="only secrets are reloaded; restart to apply other changes",
        )

    return reload


async def with_stack(
    cfg: Config,
    stack: AsyncExitStack,
    clock: Callable[[], float] = time.time,
    *,
    watch: Hooks | None = None,
) -> Syncer:
    ledger = await stack.enter_async_context(Ledger(cfg.ledger.path))
    # the journal must still hold the checkpoint the ledger keeps: refused if cut or deleted
    checkpoint = Head.decode(await ledger.audit_checkpoint())
    journal = await stack.enter_async_context(
        Journal(journal_path(cfg), clock=clock, checkpoint=checkpoint)
    )
    hooks = both(PrometheusHooks(), watch)  # watch: e.g. the progress display
    retry.set_hooks(hooks)
    client = await stack.enter_async_context(open_source(cfg.source, hooks))
    storage = await stack.enter_async_context(open_storage(cfg.archive))
    # more than one core: recordings copied by worker processes, started on the first copy
    pool = None
    if cfg.source.workers > 1:
        pool = await stack.enter_async_context(WorkerPool(cfg, hooks))
    return Syncer(
        cfg, client, storage, ledger, clock=clock, journal=journal, hooks=hooks, copier=pool
    )
