"""The command line: the one place that wires concrete things together.

Exit codes: 0 nothing is failed, waiting, untried or unverified and the listing was complete;
1 the pass ran but work is left (failed, waiting for a retry, not yet tried, the listing
incomplete, or the pass interrupted; see ``status``); 2 bad usage or bad config (nothing
touched); 3 source or archive unreachable or down for every recording, credentials rejected, the
state volume unusable (ledger or journal), another writer holding the lock, or a bug (logged).

Every command that writes (``WRITING_COMMANDS``) holds the writer lock (``archiver.lock``) for
the life of the process; read-only ones take none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from archiver import __version__, logs, retry
from archiver.audit import (
    Head,
    Journal,
    check_manifests,
    manifest_key,
    recover_journal,
    scan_journal,
)
from archiver.backup import take_backup
from archiver.config import (
    Config,
    environ_overrides,
    is_secret,
    journal_path,
    load_config,
    parse_timestamp,
    plain_values,
    secret_file_of,
    secret_file_warnings,
)
from archiver.daemon import Daemon, run_until_signalled
from archiver.errors import ArchiverError, ConfigError, LedgerError, ObjectLocked
from archiver.hooks import Hooks, both
from archiver.ledger import Ledger, iso
from archiver.lock import WriterLock
from archiver.metrics import PrometheusHooks
from archiver.notify import Notifier
from archiver.preview import Preview, ledger_copy, preview
from archiver.progress import Progress
from archiver.rebuild import rebuild_ledger
from archiver.server import Health, HealthServer
from archiver.source import open_source
from archiver.storage import open_storage
from archiver.storage.base import check_sidecar
from archiver.sync import PassResult, Syncer, lag_seconds

log = structlog.get_logger("archiver.cli")

EXIT_OK, EXIT_FAILURES, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
# the commands that write the ledger, the journal or the archive: one process at a time
WRITING_COMMANDS = frozenset(
    {
        "sync",
        "run",
        "reconcile",
        "retry",
        "check",
        "audit recover",
        "verify --repair",
        "ledger rebuild",
    }
)
DEFAULT_DEMO_RECORDINGS = 300


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """--config, --log-level and --log-format, accepted before or after the command. On a
    command they default to SUPPRESS, so a value given before the command is kept."""
    default = (lambda value: value) if top else (lambda _value: argparse.SUPPRESS)
    p.add_argument(
        "--config",
        default=default(os.environ.get("ARCHIVER_CONFIG")),
        metavar="FILE",
        help="TOML config file (default: $ARCHIVER_CONFIG)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default(None),
        help="log level (default: log.level in the config, else info)",
    )
    p.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default=default(None),
        help="auto: readable on a terminal, JSON lines otherwise (journald, containers)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="archiver",
        description="Archive Restcomm call recordings to S3 or local disk, verified.",
        epilog=_examples(
            "archiver demo                                  # try it: simulator -> local folder",
            "archiver --config /etc/archiver/archiver.toml check",
            "archiver sync --config archiver.toml           # options go before or after",
            "archiver status --config archiver.toml --json",
        )
        + "\n\nexit codes: 0 done, nothing left; 1 work left (failed, waiting, untried, "
        "incomplete); 2 bad config; 3 unreachable or unusable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"archiver {__version__}")
    _global_options(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, description: str, *examples: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            help=help_,
            description=description,
            epilog=_examples(*examples) if examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _global_options(cmd, top=False)
        return cmd

    sy = command(
        "sync",
        "run one pass, then exit",
        "List new recordings from the watermark, archive and verify them, delete verified ones "
        "(when [delete] is enabled), then exit. Exit 0 only when nothing is left to do.\n\n"
        "On a terminal a live display shows the listing (pages, recordings found, new), then "
        "the transfer (done/due, bytes, rate, ETA, failures); per-recording lines are left out "
        "of the screen unless --log-level debug, warnings and errors print above it. Off a "
        "terminal, pass.progress log lines every 10 s instead.",
        "archiver sync --config archiver.toml",
        "archiver sync --config archiver.toml --quiet              # no progress display",
        "archiver sync --config archiver.toml --dry-run            # what would it do?",
        "archiver sync --config archiver.toml --log-level debug    # every recording, too",
        "archiver sync --config archiver.toml --log-format json   # for cron or a pipeline",
    )
    sy.add_argument(
        "--dry-run",
        action="store_true",
        help="list, and report what would be archived and deleted; write nothing (the listing "
        "fills a throwaway copy of the ledger; no journal, archive, media or DELETE). Exit "
        "codes as for sync, on the ledger as the listing leaves it: 0 only when nothing would "
        "be left to do",
    )
    sy.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display on a terminal, no pass.progress lines off one (log lines "
        "are unchanged: add --log-level warning for errors only)",
    )
    command(
        "run",
        "run as a daemon: a pass every poll_interval until SIGTERM",
        "Run passes every source.poll_interval, serve /metrics, /healthz and /readyz on "
        "server.listen, speak the systemd notify protocol. SIGTERM drains, a second one "
        "cancels; SIGHUP re-reads the config's secrets.",
        "archiver run --config /etc/archiver/archiver.toml",
    )
    st = command(
        "status",
        "ledger summary (no network)",
        "Counts by state, what is left to do, the watermark, the lag, the last pass and recent "
        "failures, read from the ledger. Exit 1 when anything is left to do.",
        "archiver status --config archiver.toml",
        "archiver status --config archiver.toml --json | jq .outstanding",
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--failures", type=int, default=10, help="how many recent failures to list")
    command(
        "check",
        "validate config, reach the source, write a canary to the archive",
        "Validate the config, list one page from the source with the credentials, write, read "
        "back and remove a small canary object in the archive, and open the ledger.",
        "archiver check --config archiver.toml",
    )
    rt = command(
        "retry",
        "make failed recordings due again (all, or the SIDs given)",
        "Reset the attempts of failed recordings so the next pass tries them again. SIDs the "
        "ledger does not know, or that are not failed, are reported.",
        "archiver retry --config archiver.toml",
        "archiver retry --config archiver.toml RE0123456789abcdef0123456789abcdef",
    )
    rt.add_argument("sids", nargs="*", metavar="SID", help="recording SIDs (default: every one)")
    ver = command(
        "verify",
        "re-check archived copies against the ledger",
        "Check that every archived copy is there with the size and SHA-256 the ledger holds.",
        "archiver verify --config archiver.toml",
        "archiver verify --config archiver.toml --deep   # download and re-hash each copy",
    )
    ver.add_argument("--deep", action="store_true", help="download and re-hash every copy")
    ver.add_argument(
        "--repair",
        action="store_true",
        help="rewrite damaged sidecars from the ledger; archive missing or altered copies again "
        "on the next pass (takes the writer lock)",
    )
    rc = command(
        "reconcile",
        "list a date range ignoring the watermark, archive gaps",
        "List every recording created in a range, whatever the watermark says, and archive "
        "what the ledger lacks. The watermark is neither used nor moved.",
        "archiver reconcile --config archiver.toml --since 2026-01-01",
        "archiver reconcile --config archiver.toml --since 2026-01-01 --until 2026-02-01",
    )
    rc.add_argument("--since", required=True, help="ISO date or time, e.g. 2025-01-01")
    rc.add_argument("--until", help="ISO date or time (default: now)")
    au = command(
        "audit",
        "the audit journal",
        "The hash-chained audit journal of every archive, verification and deletion.",
        "archiver audit verify --config archiver.toml",
    )
    au_sub = au.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    au_verify = au_sub.add_parser(
        "verify",
        help="check the journal's hash chain, then each day against its manifest in the archive",
        description="Check the journal's hash chain and the ledger's checkpoint, then compare "
        "every day already copied into the archive (audit/YYYY/MM/DD.jsonl) with the journal's "
        "lines: a journal rewritten with a consistent chain still differs from the archive's "
        "copy. Exit 1 on a broken chain or a differing or missing manifest.",
        epilog=_examples(
            "archiver audit verify --config archiver.toml",
            "archiver audit verify --config archiver.toml --journal-only",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(au_verify, top=False)
    au_verify.add_argument(
        "--journal-only",
        action="store_true",
        help="check the chain only, without reaching the archive",
    )
    ar = au_sub.add_parser(
        "recover",
        help="record a cut, deleted or rewritten journal as a chain break and start a new segment",
        epilog=_examples(
            'archiver audit recover --config archiver.toml --reason "journal volume restored '
            'from the 03:00 snapshot"'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(ar, top=False)
    ar.add_argument("--reason", required=True, help="why, in words an auditor will read later")
    lg = command(
        "ledger",
        "the ledger: rebuild a lost one from the archive",
        "When the state volume is lost and no backup is left, 'ledger rebuild' writes a new "
        "ledger at ledger.path from the sidecars in the archive: one row per archived copy, "
        "'archived' (the next pass verifies every copy again before it counts or may be "
        "deleted); the watermark is left unset, so the next pass lists from start_time. "
        "Audio without a sidecar and sidecars that cannot be used are named; the next pass "
        "archives them again from the source (the same bytes: nothing is rewritten).",
        "archiver ledger rebuild --config /etc/archiver/archiver.toml",
    )
    lg_sub = lg.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    lg_rebuild = lg_sub.add_parser(
        "rebuild", help="write a new ledger from the archive's sidecars (the old one is lost)"
    )
    _global_options(lg_rebuild, top=False)
    bk = command(
        "backup",
        "copy the ledger and the audit journal, consistently, while the daemon runs",
        "Write a new folder archiver-backup-<time> under --to with ledger.sqlite3 (SQLite's "
        "online backup), journal.jsonl (up to its last complete line, holding the ledger's "
        "checkpoint) and backup.json (sizes, SHA-256s). Takes no lock: run it beside the "
        "daemon, from cron or a systemd timer. README 'Backup and restore' says how to restore.",
        "archiver backup --config /etc/archiver/archiver.toml --to /srv/backups/archiver",
    )
    bk.add_argument("--to", required=True, metavar="DIR", help="folder to create the backup in")
    _config_command(command)
    demo = command(
        "demo",
        "archive from the bundled simulator into a local folder, then exit",
        "Start the bundled simulator, archive its recordings into a local folder with a "
        "config written there, and print the commands to look at the result.",
        "archiver demo",
        "archiver demo --recordings 2000 --out /tmp/demo",
    )
    demo.add_argument("--recordings", type=int, default=DEFAULT_DEMO_RECORDINGS)
    demo.add_argument("--out", default="demo-output", help="folder for the archive and ledger")
    sub.add_parser(
        "simulator",
        help="serve the bundled Restcomm simulator (try configs and alerts offline)",
        add_help=False,  # its own options: archiver simulator --help
    )
    return p


def _config_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    cf = command(
        "config",
        "the config in effect",
        "The config as archiver uses it: the file, then ARCHIVER_<SECTION>__<KEY> environment "
        "variables, then secret files (*_file). Secrets are masked.",
        "archiver config show --config archiver.toml",
        "ARCHIVER_SOURCE__PAGE_SIZE=50 archiver config show --config archiver.toml --json",
    )
    cf_sub = cf.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = cf_sub.add_parser(
        "show",
        help="print the effective config as TOML, secrets masked, overrides named",
        description="Print every key with the value in effect, as TOML in the config file's "
        "spelling (durations like 15m, ISO times; secrets masked as ***); a value that an "
        "environment variable or a secret file set carries its source as a comment.",
        epilog=_examples(
            "archiver config show --config archiver.toml",
            "archiver config show --config archiver.toml --json | jq .config.source",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(show, top=False)
    show.add_argument("--json", action="store_true", help="machine-readable output")


def _configure_logging(args: argparse.Namespace, cfg: Config | None) -> None:
    level = args.log_level or (cfg.log.level if cfg else "info")
    fmt = args.log_format or (cfg.log.format if cfg else "auto")
    logs.configure(level, fmt)


def _load(args: argparse.Namespace) -> Config:
    if not args.config:
        raise ConfigError("--config", "is required (or set ARCHIVER_CONFIG)")
    return load_config(args.config)


def _reloader(config_path: str | None, syncer: Syncer) -> Callable[[], Awaitable[None]]:
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
        changed = syncer.client.set_token(fresh.source.auth_token)
        log.info(
            "config.reloaded",
            token_changed=changed,
            note="only secrets are reloaded; restart to apply other changes",
        )

    return reload


async def _with_stack(
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
    return Syncer(cfg, client, storage, ledger, clock=clock, journal=journal, hooks=hooks)


async def cmd_sync(cfg: Config, config_path: str | None = None, *, quiet: bool = False) -> int:
    progress = Progress(enabled=not quiet)
    async with AsyncExitStack() as stack:
        syncer = await _with_stack(cfg, stack, watch=progress)
        with progress.attach(syncer):
            result = await run_until_signalled(
                syncer.run_pass,
                cfg.daemon.drain_timeout.total_seconds(),
                on_reload=_reloader(config_path, syncer),
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
    print(f"left         {_describe_left(found.outstanding.as_dict())}")
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
    if not result.scan.complete:
        print(f"listing incomplete: {result.scan.reason}; the watermark was not moved")
    if result.stopped_early:
        print("interrupted: the pass stopped before all work was done; run sync again")
    if result.outstanding is not None:
        print(f"left         {_describe_left(result.outstanding.as_dict())}")


def _describe_left(left: dict[str, Any]) -> str:
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
        syncer = await _with_stack(cfg, stack)
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
            on_reload=_reloader(config_path, syncer),
        )
    return EXIT_OK


def _existing_ledger(cfg: Config) -> None:
    """Commands that only read the ledger never create one (a wrong path would look empty)."""
    if not Path(cfg.ledger.path).exists():
        raise ConfigError("ledger.path", f"no ledger at {cfg.ledger.path} yet: run 'sync' first")


async def status_facts(cfg: Config, failures: int = 10) -> dict[str, Any]:
    _existing_ledger(cfg)
    async with Ledger(cfg.ledger.path) as ledger:
        counts = await ledger.counts()
        left = await ledger.outstanding(time.time(), cfg.source.max_attempts)
        repairs = await ledger.count_repairs()
        watermark = await ledger.watermark()
        newest = await ledger.newest_archived()
        n_archived, archived_bytes = await ledger.archived_totals()
        last_pass, last_pass_at = await ledger.last_pass()
        recent = await ledger.failures(failures)
        head = Head.decode(await ledger.audit_checkpoint())
    journal = Path(journal_path(cfg))
    try:
        journal_bytes: int | None = journal.stat().st_size
    except OSError:
        journal_bytes = None
    now = datetime.now(UTC)
    return {
        "states": counts,
        "total": sum(counts.values()),
        "archived_recordings": n_archived,
        "archived_bytes": archived_bytes,
        "watermark": watermark.isoformat() if watermark else None,
        "newest_archived": newest.isoformat() if newest else None,
        "lag_seconds": lag_seconds(newest, now),
        "outstanding": left.as_dict(),
        "outstanding_total": left.total,
        "needs_repair": repairs,
        "last_pass": last_pass,
        "last_pass_at": iso(last_pass_at),
        # lines as of the last checkpoint (end of a pass), read from the ledger, not the file
        "journal": {
            "path": str(journal),
            "bytes": journal_bytes,
            "lines": head.seq if head else 0,
        },
        "failures": [
            {
                "sid": r.sid,
                "attempts": r.attempts,
                "permanent": r.permanent,
                "reason": r.last_error,
                "updated_at": iso(r.updated_at),
            }
            for r in recent
        ],
    }


def _print_status(facts: dict[str, Any]) -> None:
    print("state        recordings")
    for state, n in facts["states"].items():
        print(f"  {state:<11}{n:>10}")
    print(f"  {'total':<11}{facts['total']:>10}")
    print(
        f"archived     {facts['archived_recordings']} recordings, "
        f"{facts['archived_bytes'] / 1e6:.1f} MB"
    )
    print(f"watermark    {facts['watermark'] or '-'}")
    lag = facts["lag_seconds"]
    print(
        f"lag          {'-' if lag is None else str(timedelta(seconds=int(lag)))}"
        f"  (newest archived {facts['newest_archived'] or '-'})"
    )
    last = facts["last_pass"]
    if last:
        print(
            f"last pass    {facts['last_pass_at']}: listed {last['listed']}, "
            f"archived {last['archived']}, failed {last['failed']}, {last['duration_s']}s"
        )
        if last.get("scan_complete") is False:
            print(f"             listing incomplete: {last.get('scan_problem') or 'see the log'}")
        if last.get("stopped_early"):
            print("             interrupted before all work was done")
    else:
        print("last pass    -")
    print(f"left         {_describe_left(facts['outstanding'])}")
    if facts["needs_repair"]:
        print(
            f"repair       {facts['needs_repair']} archived copies need repair (found missing or "
            "altered by verify --repair): archived again from the source on the next pass"
        )
    j = facts["journal"]
    size = "not written yet" if j["bytes"] is None else f"{j['bytes'] / 1e6:.1f} MB"
    print(f"journal      {j['path']}: {size}, {j['lines']} lines")
    if facts["failures"]:
        print("recent failures:")
        for f in facts["failures"]:
            kind = "permanent" if f["permanent"] else f"attempt {f['attempts']}"
            print(f"  {f['sid']}  [{kind}]  {f['reason']}")


async def cmd_status(cfg: Config, as_json: bool, failures: int) -> int:
    facts = await status_facts(cfg, failures)
    if as_json:
        print(json.dumps(facts, indent=2))
    else:
        _print_status(facts)
    last = facts["last_pass"] or {}
    incomplete = last.get("scan_complete") is False or last.get("stopped_early")
    return EXIT_FAILURES if facts["outstanding_total"] or incomplete else EXIT_OK


async def cmd_verify(cfg: Config, deep: bool, repair: bool = False) -> int:
    """Check every archived copy, audio and sidecar; with ``repair``, rewrite damaged sidecars
    from the ledger and mark rows whose audio is missing or altered to be archived again."""
    _existing_ledger(cfg)
    checked = 0
    problems: list[str] = []
    repaired: list[str] = []
    async with AsyncExitStack() as stack:
        syncer = await _with_stack(cfg, stack) if repair else None  # repair journals too
        if syncer is not None:
            ledger, storage = syncer.ledger, syncer.storage
        else:
            ledger = await stack.enter_async_context(Ledger(cfg.ledger.path))
            storage = await stack.enter_async_context(open_storage(cfg.archive))
        after = ""
        while rows := await ledger.archived_rows(after, 500):
            for row in rows:
                checked += 1
                assert row.archive_key and row.size is not None and row.sha256
                where = storage.describe(row.archive_key)
                try:
                    await storage.verify(row.archive_key, row.size, row.sha256, deep=deep)
                except ArchiverError as exc:
                    problems.append(f"{row.sid} {where}: {exc}")
                    if syncer is not None:
                        if await syncer.queue_repair(row, str(exc)):
                            repaired.append(f"{row.sid}: will be archived again on the next pass")
                        else:
                            repaired.append(
                                f"{row.sid}: LOST: deleted from the source, so it cannot be "
                                "archived again; marked failed for good (status shows it)"
                            )
                    continue
                try:
                    await check_sidecar(storage, row.archive_key, row.sid, row.size, row.sha256)
                except ArchiverError as exc:
                    problems.append(f"{row.sid} {exc}")
                    if syncer is not None:
                        await syncer.restore_sidecar(row, str(exc))
                        repaired.append(f"{row.sid}: sidecar rewritten from the ledger")
            after = rows[-1].sid
    for line in problems:
        print(f"DRIFT {line}")
    for line in repaired:
        print(f"REPAIR {line}")
    print(
        f"checked {checked} archived copies and sidecars{' (deep)' if deep else ''}: "
        f"{len(problems)} discrepanc{'y' if len(problems) == 1 else 'ies'}"
        + (f", {len(repaired)} repaired or queued" if repair else "")
    )
    return EXIT_FAILURES if problems else EXIT_OK


async def cmd_reconcile(
    cfg: Config, since: str, until: str | None, config_path: str | None = None
) -> int:
    start = parse_timestamp(since, "--since")
    end = parse_timestamp(until, "--until") if until else None
    async with AsyncExitStack() as stack:
        syncer = await _with_stack(cfg, stack)

        async def reconcile(stopping: asyncio.Event) -> PassResult:
            return await syncer.run_pass(stopping, since=start, until=end)

        result = await run_until_signalled(
            reconcile,
            cfg.daemon.drain_timeout.total_seconds(),
            on_reload=_reloader(config_path, syncer),
        )
    if result is None:
        print("interrupted: the pass was cancelled; run reconcile again", file=sys.stderr)
        return EXIT_FAILURES
    _print_pass(result)
    return _exit_code(result)


def _config_sources(cfg: Config, environ: dict[str, str]) -> dict[str, str]:
    """``section.key`` -> where its value came from, for the values not from the file."""
    sources = {f"{sec}.{key}": name for (sec, key), name in environ_overrides(environ).items()}
    for section, values in plain_values(cfg).items():
        for key in values:
            file_key = secret_file_of(section, key)
            if file_key and getattr(getattr(cfg, section), file_key):
                sources[f"{section}.{key}"] = f"{section}.{file_key}"
    return sources


def cmd_config_show(cfg: Config, as_json: bool, environ: dict[str, str]) -> int:
    sources = _config_sources(cfg, environ)
    shown = {
        section: {
            key: (logs.MASK if value and is_secret(section, key) else value)
            for key, value in values.items()
        }
        for section, values in plain_values(cfg).items()
    }
    if as_json:
        print(json.dumps({"config": shown, "from": sources}, indent=2))
        return EXIT_OK
    print(
        "# the config in effect: the file, then ARCHIVER_* environment variables, then secret "
        "files; secrets masked (***)"
    )
    for section, values in shown.items():
        print(f"\n[{section}]")
        for key, value in values.items():
            line = f"{key} = {json.dumps(value)}"
            source = sources.get(f"{section}.{key}")
            if source is not None:
                line += f"  # from {source}"
            print(line)
    return EXIT_OK


async def cmd_audit_verify(cfg: Config, journal_only: bool = False) -> int:
    path = Path(journal_path(cfg))
    _existing_ledger(cfg)
    async with Ledger(cfg.ledger.path) as ledger:
        checkpoint = Head.decode(await ledger.audit_checkpoint())
        copied = await ledger.manifest_offset()
    if not path.exists():
        if checkpoint is None or checkpoint.seq == 0:
            raise ConfigError("audit.journal", f"no journal at {path}")
        print(
            f"journal {path}: MISSING: the ledger's checkpoint is seq {checkpoint.seq}; "
            "restore it from a backup, or record the break: archiver audit recover --reason ..."
        )
        return EXIT_FAILURES
    report = await asyncio.to_thread(scan_journal, path, checkpoint)
    for line, doc in report.breaks:
        print(
            f"journal {path}: recorded chain break at line {line} ({doc.get('ts')}): "
            f"{doc.get('found')}; reason: {doc.get('reason')}"
        )
    if report.broken is not None:
        line, why = report.broken
        print(f"journal {path}: BROKEN at line {line}: {why}")
        return EXIT_FAILURES
    head = f"seq {checkpoint.seq}" if checkpoint else "no checkpoint yet"
    segments = f", {len(report.breaks) + 1} segments" if report.breaks else ""
    print(f"journal {path}: chain intact (ledger checkpoint {head}{segments})")
    if journal_only or not cfg.audit.manifests:
        return EXIT_OK
    async with open_storage(cfg.archive) as storage:
        found = await check_manifests(path, copied, storage)
    for day, why in found.differ:
        print(f"manifest {day}: DIFFERS: {why}")
    for day in found.missing:
        print(f"manifest {day}: MISSING from the archive ({storage.describe(manifest_key(day))})")
    print(
        f"manifests    {found.matched} day(s) match the archive's copies, "
        f"{len(found.differ)} differ, {len(found.missing)} missing"
    )
    return EXIT_OK if not (found.differ or found.missing) else EXIT_FAILURES


async def cmd_audit_recover(cfg: Config, reason: str) -> int:
    if not reason.strip():
        raise ConfigError("--reason", "must say why the chain is broken (an auditor reads it)")
    path = Path(journal_path(cfg))
    async with Ledger(cfg.ledger.path) as ledger:
        checkpoint = Head.decode(await ledger.audit_checkpoint())
        now = datetime.now(UTC)
        recovery = await asyncio.to_thread(recover_journal, path, checkpoint, reason, now)
        if recovery is None:
            print(f"journal {path}: chain intact; nothing to recover")
            return EXIT_OK
        offset = await ledger.manifest_offset()
        # the new segment is the ledger's checkpoint now; daily manifests go on from where
        # the old file's lines that are still there end
        await ledger.restart_audit(recovery.head.encode(), min(offset, recovery.kept_bytes))
    print(f"journal {path}: recorded a chain break at seq {recovery.head.seq}: {recovery.found}")
    if recovery.moved_to is not None:
        print(f"  the damaged journal is kept, untouched, at {recovery.moved_to}")
    return EXIT_OK


async def cmd_backup(cfg: Config, to: str) -> int:
    if not Path(cfg.ledger.path).exists():
        raise ConfigError("ledger.path", f"no ledger at {cfg.ledger.path} to back up")
    done = await take_backup(cfg.ledger.path, Path(journal_path(cfg)), Path(to))
    seq = done.checkpoint.seq if done.checkpoint else 0
    print(
        f"backup       {done.folder}: ledger {done.ledger_bytes / 1e6:.1f} MB, journal "
        f"{done.journal_bytes / 1e6:.1f} MB (holds the ledger's checkpoint, seq {seq})"
    )
    return EXIT_OK


async def cmd_ledger_rebuild(cfg: Config) -> int:
    path = Path(cfg.ledger.path)
    if path.exists():
        raise ConfigError(
            "ledger.path",
            f"{path} exists: 'ledger rebuild' writes a new ledger and never touches one that is "
            f"there. If it is damaged, move it aside first (mv {path} {path}.damaged) or restore "
            "a backup (README 'Backup and restore')",
        )
    async with (
        Ledger(path) as ledger,
        Journal(journal_path(cfg)) as journal,
        open_storage(cfg.archive) as storage,
    ):
        result = await rebuild_ledger(storage, ledger, time.time)
        journal.append(
            "ledger-rebuilt",
            rows=result.rows,
            without_sidecar=result.orphans,
            unusable=result.unusable,
            archive=storage.describe(),
        )
        await ledger.set_audit_checkpoint((await journal.sync()).encode())
    print(
        f"rebuilt      {path}: {result.rows} rows from sidecars in {storage.describe()}, "
        f"{result.orphans} without a sidecar, {result.unusable} unusable"
    )
    for key, why in result.problems:
        print(f"  skipped    {key}: {why}")
    if len(result.problems) < result.orphans + result.unusable:
        print(f"  ... and {result.orphans + result.unusable - len(result.problems)} more (the log)")
    print(
        "next         'archiver sync' verifies every copy again and archives from the source "
        "whatever the archive lacks (status shows them 'archived' until then)"
    )
    return EXIT_OK if result.orphans + result.unusable == 0 else EXIT_FAILURES


async def cmd_retry(cfg: Config, sids: list[str]) -> int:
    code = EXIT_OK
    async with Ledger(cfg.ledger.path) as ledger:
        for sid in sids:
            row = await ledger.get(sid)
            if row is None:
                print(f"unknown      {sid}: the ledger has no such recording", file=sys.stderr)
                code = EXIT_FAILURES
            elif row.state != "failed":
                print(f"not failed   {sid}: it is {row.state}; nothing to retry")
        n = await ledger.retry_failed(sids or None, time.time())
    print(f"{n} failed recording(s) will be retried on the next pass")
    return code


async def cmd_check(cfg: Config) -> int:
    print(f"config       ok ({cfg.archive.backend} backend)")
    async with open_source(cfg.source) as client:
        total = await client.check()
        print(f"source       ok: {cfg.source.base_url} answers, {total} recordings listed")
    async with open_storage(cfg.archive) as storage:
        key = f"archiver-check/canary-{os.getpid()}-{int(time.time())}.txt"
        data = f"archiver canary {datetime.now(UTC).isoformat()}\n".encode()
        canary = await storage.put_canary(key, data)
        print(f"archive      ok: wrote, read back and verified {storage.describe(key)}")
        if canary.retained_until is not None:
            print(
                "             canary under Object Lock GOVERNANCE until "
                f"{canary.retained_until.isoformat()} (the shortest retention this bucket allows)"
            )
        for note in canary.notes:
            print(f"             {note}")
        try:
            await storage.delete_canary(key)
            print("             canary removed")
        except ObjectLocked as exc:
            print(f"             canary kept: {exc}; it is {len(data)} bytes")
        except ArchiverError as exc:
            print(f"             canary kept ({exc}); it is {len(data)} bytes")
    async with Ledger(cfg.ledger.path) as ledger:
        counts = await ledger.counts()
        print(f"ledger       ok: {cfg.ledger.path} ({sum(counts.values())} recordings)")
    return EXIT_OK


async def cmd_demo(recordings: int, out: str) -> int:
    from archiver.simulator import RestcommSimulator

    out_dir = Path(out).resolve()
    reused = (out_dir / "ledger.sqlite3").exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = RestcommSimulator()
    now = datetime.now(UTC).replace(microsecond=0)
    sim.generate(
        recordings,
        start=now - timedelta(hours=3),
        spacing=timedelta(seconds=max(3 * 10_800 // max(recordings, 1), 1)),
        same_second_every=3,  # same-second groups that straddle page boundaries, as in life
        ext_mp4_every=25,
    )
    async with sim:
        settings: dict[str, dict[str, Any]] = {
            "source": {
                "base_url": sim.base_url,
                "account_sid": sim.account_sid,
                "auth_token": sim.auth_token,
                "page_size": 50,
                "start_time": (now - timedelta(days=1)).isoformat(),
            },
            "archive": {"backend": "local", "path": str(out_dir / "recordings")},
            "ledger": {"path": str(out_dir / "ledger.sqlite3")},
        }
        cfg = load_config(None, environ={}, overrides=settings)
        config_file = out_dir / "archiver.toml"
        config_file.write_text(_toml(settings))
        logs.register_secret(cfg.source.auth_token)
        print(f"simulator    {sim.base_url} ({recordings} recordings, account {sim.account_sid})")
        if reused:
            print(
                f"reusing      the ledger and archive of an earlier demo in {out_dir} "
                "(remove the folder, or pass --out, for a fresh start)"
            )
        with WriterLock(cfg.ledger.path, "demo"):
            code = await cmd_sync(cfg)
    # the command as it runs here, so it works as printed even outside an activated venv
    me = f"{shlex.quote(sys.executable)} -m archiver"
    print(f"archive      {out_dir / 'recordings'}")
    print(f"ledger       {out_dir / 'ledger.sqlite3'}")
    print(f"status       {me} status --config {shlex.quote(str(config_file))}")
    return code


def _toml(settings: dict[str, dict[str, Any]]) -> str:
    lines = ["# written by 'archiver demo' (the simulator it names is gone once demo exits)"]
    for section, values in settings.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def _command(args: argparse.Namespace) -> str:
    if args.command == "audit":
        return f"audit {args.audit_command}"
    if args.command == "verify" and args.repair:
        return "verify --repair"
    if args.command == "ledger":
        return f"ledger {args.ledger_command}"
    if args.command == "sync" and args.dry_run:
        return "sync --dry-run"  # writes nothing: takes no lock, runs beside the daemon
    return str(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["simulator"]:  # its own parser and options
        from archiver.simulator import main as simulator_main

        simulator_main(given[1:], prog="archiver simulator")
        return EXIT_OK
    try:
        return _main(given)
    except BrokenPipeError:  # `archiver status | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE, which is what a shell expects


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg: Config | None = None
    lock: WriterLock | None = None
    try:
        if args.command == "demo":
            args.log_level = args.log_level or "warning"  # the summary is the demo's output
            _configure_logging(args, None)
            return asyncio.run(cmd_demo(args.recordings, args.out))
        cfg = _load(args)
        logs.register_secret(cfg.source.auth_token)
        _configure_logging(args, cfg)
        for path in secret_file_warnings(cfg):
            log.warning("config.secret_file_readable", path=path, fix=f"chmod 600 {path}")
        if _command(args) in WRITING_COMMANDS:
            given = sys.argv[1:] if argv is None else list(argv)
            lock = WriterLock(cfg.ledger.path, _command(args), ["archiver", *given])
            lock.acquire()  # held until main returns (or the process dies: the kernel drops it)
        if args.command == "sync" and args.dry_run:
            return asyncio.run(cmd_sync_dry_run(cfg, quiet=args.quiet))
        if args.command == "sync":
            return asyncio.run(cmd_sync(cfg, args.config, quiet=args.quiet))
        if args.command == "run":
            return asyncio.run(cmd_run(cfg, args.config))
        if args.command == "status":
            return asyncio.run(cmd_status(cfg, args.json, args.failures))
        if args.command == "check":
            return asyncio.run(cmd_check(cfg))
        if args.command == "verify":
            return asyncio.run(cmd_verify(cfg, args.deep, args.repair))
        if args.command == "reconcile":
            return asyncio.run(cmd_reconcile(cfg, args.since, args.until, args.config))
        if args.command == "config":
            return cmd_config_show(cfg, args.json, dict(os.environ))
        if args.command == "audit" and args.audit_command == "recover":
            return asyncio.run(cmd_audit_recover(cfg, args.reason))
        if args.command == "audit":
            return asyncio.run(cmd_audit_verify(cfg, args.journal_only))
        if args.command == "backup":
            return asyncio.run(cmd_backup(cfg, args.to))
        if args.command == "ledger":
            return asyncio.run(cmd_ledger_rebuild(cfg))
        if args.command == "retry":
            return asyncio.run(cmd_retry(cfg, args.sids))
    except ConfigError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LedgerError as exc:  # the state volume: operational (systemd restarts), not config
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ArchiverError as exc:
        print(f"archiver: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # the reader of our output left: main() ends quietly
    except Exception as exc:  # the last resort: a bug is logged, never shown as a traceback
        if cfg is None:
            _configure_logging(args, None)  # the failure came before the config's own settings
        log.exception("bug.unexpected_error", command=_command(args), error_type=type(exc).__name__)
        print(
            f"archiver: unexpected error in '{_command(args)}' (a bug; the log has the "
            f"traceback): {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    finally:
        if lock is not None:
            lock.release()
    parser.error(f"unknown command {args.command!r}")
    return EXIT_CONFIG  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
