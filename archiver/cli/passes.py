"""The commands that run passes: sync (and its dry run), run (the daemon), reconcile."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import structlog

from archiver.cli.codes import EXIT_FAILURES, EXIT_OK, EXIT_UNREACHABLE
from archiver.cli.wiring import reloader, with_stack
from archiver.config import (
    Config,
    parse_timestamp,
)
from archiver.daemon import Daemon, run_until_signalled
from archiver.errors import ArchiverError
from archiver.notify import Notifier
from archiver.preview import Preview, ledger_copy, preview
from archiver.progress import Progress
from archiver.server import Health, HealthServer
from archiver.source import open_source
from archiver.sync import PassResult

log = structlog.get_logger("archiver.cli")


async def cmd_sync(cfg: Config, config_path: str | None = None, *, quiet: bool = False) -> int:
    progress = Progress(enabled=not quiet)
    async with AsyncExitStack() as stack:
        syncer = await with_stack(cfg, stack, watch=progress)
        with progress.attach(syncer):
            result = await run_until_signalled(
                syncer.run_pass,
                cfg.daemon.drain_timeout.total_seconds(),
                on_reload=reloader(config_path, syncer),
            )
    if result is None:
        print("interrupted: the pass was cancelled; run sync again to finish", file=sys.stderr)
        return EXIT_FAILURES
    _print_pass(result)
    return _exit_code(result)


async def cmd_sync_dry_run(cfg: Config, *, quiet: bool = False) -> int:
    """List as ``sync`` would, into a throwaway copy of the ledger; print what it would do."""
    progress = Progress(enabled=not quiet)
    async with (
        ledger_copy(cfg.ledger.path) as ledger,
        open_source(cfg.source, progress) as client,
    ):
        with progress:
            found = await preview(cfg, client, ledger, clock=time.time, hooks=progress)
    _print_preview(found)
    if found.scan.unreachable:
        return EXIT_UNREACHABLE
    return EXIT_OK if found.ok else EXIT_FAILURES


def _print_preview(found: Preview) -> None:
    scan = found.scan
    if found.unknown_size and found.unknown_size == found.would_archive:
        sizes = "sizes known once downloaded"
    else:
        sizes = f"{found.known_bytes / 1e6:.1f} MB"
        if found.unknown_size:
            sizes += f" and {found.unknown_size} of unknown size"
    print(
        f"dry run      would archive {found.would_archive} ({sizes}), would delete "
        f"{found.would_delete}, listing {'complete' if scan.complete else 'incomplete'}"
    )
    print(
        f"listed       {scan.listed} since {found.since.isoformat()} (new {scan.new}, invalid "
        f"{scan.invalid}) in {scan.pages} pages"
    )
    for row in found.to_archive:
        created = row.date_created.isoformat() if row.date_created else "-"
        why = f" (failed before: {row.last_error})" if row.state == "failed" else ""
        print(f"  would archive {row.sid}  {created}  {row.state}{why}")
    if found.would_archive > len(found.to_archive):
        print(f"  ... and {found.would_archive - len(found.to_archive)} more")
    print(f"delete       {found.delete_note}")
    for row in found.to_delete:
        print(f"  would delete  {row.sid}  archived as {row.archive_key}")
    if found.would_delete > len(found.to_delete):
        print(f"  ... and {found.would_delete - len(found.to_delete)} more")
    if not scan.complete:
        print(f"listing incomplete: {scan.reason}")
    print(f"left         {describe_left(found.outstanding.as_dict())}")
    print("nothing was written: no ledger change, no journal line, no archive write, no DELETE")


def _exit_code(result: PassResult) -> int:
    if result.scan.unreachable:
        return EXIT_UNREACHABLE  # not one page listed: the source is down or misconfigured
    return EXIT_OK if result.ok else EXIT_FAILURES


def _print_pass(result: PassResult) -> None:
    s = result.summary()
    reread = f", {s['reread']} re-read" if s["reread"] else ""
    relisted = f", {s['relisted']} listed again after deletion" if s["relisted"] else ""
    print(
        f"listed {s['listed']} (new {s['new']}, invalid {s['invalid']}{reread}{relisted}), "
        f"archived {s['archived']}, verified {s['verified']}, failed {s['failed']}, "
        f"{result.bytes / 1e6:.1f} MB in {s['duration_s']}s; watermark {s['watermark']}"
    )
    for sid, reason in result.failures[:20]:
        print(f"  failed {sid}: {reason}")
    if len(result.accounts) > 1:
        print(f"accounts     {len(result.accounts)} listed, {len(result.problems)} unreachable")
    if result.accounts_problem:
        print(f"accounts     {result.accounts_problem}; the accounts last listed were archived")
    for sid, problem in list(result.problems.items())[:20]:
        print(f"  account {sid}: {problem}; its recordings wait for the next pass")
    if not result.scan.complete:
        moved = "its watermark" if len(result.accounts) > 1 else "the watermark"
        print(f"listing incomplete: {result.scan.reason}; {moved} was not moved")
    if result.stopped_early:
        print("interrupted: the pass stopped before all work was done; run sync again")
    if result.outstanding is not None:
        print(f"left         {describe_left(result.outstanding.as_dict())}")


def describe_left(left: dict[str, Any]) -> str:
    """One line for what is not done yet (the reason an exit code is 1)."""
    parts = []
    failed = left["failed_waiting"] + left["failed_permanent"]
    if failed:
        waiting = ""
        if left["failed_waiting"]:
            waiting = f"{left['failed_waiting']} waiting, next try at {left['next_try_at']}; "
        parts.append(f"{failed} failed ({waiting}{left['failed_permanent']} permanent)")
    if left["untried"]:
        parts.append(f"{left['untried']} not yet tried")
    if left["unverified"]:
        parts.append(f"{left['unverified']} archived but not yet verified")
    return ", ".join(parts) if parts else "nothing: every listed recording is archived"


async def cmd_run(cfg: Config, config_path: str | None = None) -> int:
    health = Health(
        stall_timeout=cfg.server.stall_timeout.total_seconds(),
        failure_grace=cfg.server.ready_failure_grace.total_seconds(),
    )
    notifier = Notifier()

    def on_pass(result: PassResult | None, error: BaseException | None) -> None:
        if result is not None:
            notifier.ready()  # repeated READY=1 is harmless; the first one ends start-up
            s = result.summary()
            notifier.status(
                f"last pass ok: {s['archived']} archived, {s['failed']} failed, "
                f"{s['deleted']} deleted; watermark {s['watermark']}"
            )
        else:
            notifier.status(f"last pass failed: {error}")

    async with AsyncExitStack() as stack:
        await stack.enter_async_context(HealthServer(cfg.server.listen, health))
        syncer = await with_stack(cfg, stack)
        health.ledger_open = True
        try:
            total = await syncer.client.check()
        except ArchiverError as exc:  # READY=1 waits for the first pass that reaches it
            notifier.status(f"waiting for the source: {exc}")
            log.warning("source.unreachable_at_start", error=str(exc))
        else:
            notifier.ready()
            notifier.status(f"ledger open, source reached ({total} recordings listed)")
        daemon = Daemon(
            syncer,
            poll_interval=cfg.source.poll_interval.total_seconds(),
            max_backoff=cfg.daemon.max_backoff.total_seconds(),
            health=health,
            on_pass=on_pass,
        )

        async def main(stopping: asyncio.Event) -> None:
            async with asyncio.TaskGroup() as tg:
                watchdog = tg.create_task(notifier.watchdog_loop(health.alive))
                await daemon.run(stopping)
                watchdog.cancel()

        await run_until_signalled(
            main,
            cfg.daemon.drain_timeout.total_seconds(),
            on_stop=notifier.stopping,
            on_reload=reloader(config_path, syncer),
        )
    return EXIT_OK


async def cmd_reconcile(
    cfg: Config, since: str, until: str | None, config_path: str | None = None
) -> int:
    start = parse_timestamp(since, "--since")
    end = parse_timestamp(until, "--until") if until else None
    async with AsyncExitStack() as stack:
        syncer = await with_stack(cfg, stack)

        async def reconcile(stopping: asyncio.Event) -> PassResult:
            return await syncer.run_pass(stopping, since=start, until=end)

        result = await run_until_signalled(
            reconcile,
            cfg.daemon.drain_timeout.total_seconds(),
            on_reload=reloader(config_path, syncer),
        )
    if result is None:
        print("interrupted: the pass was cancelled; run reconcile again", file=sys.stderr)
        return EXIT_FAILURES
    _print_pass(result)
    return _exit_code(result)
