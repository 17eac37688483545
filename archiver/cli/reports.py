"""The commands that look: status, verify, config show, audit, check."""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from archiver import logs
from archiver.audit import (
    Head,
    check_manifests,
    manifest_key,
    recover_journal,
    scan_journal,
)
from archiver.cli.codes import EXIT_FAILURES, EXIT_OK
from archiver.cli.passes import describe_left
from archiver.cli.wiring import with_stack
from archiver.config import (
    Config,
    environ_overrides,
    is_secret,
    journal_path,
    plain_values,
    secret_file_of,
)
from archiver.errors import (
    AccountUnavailable,
    ArchiverError,
    ConfigError,
    ObjectLocked,
    VerificationFailed,
)
from archiver.ledger import AccountState, Ledger, Row, iso
from archiver.source import Source, open_source
from archiver.storage import Storage, open_storage
from archiver.storage.base import check_sidecar
from archiver.sync import Syncer, lag_seconds

log = structlog.get_logger("archiver.cli")


def _existing_ledger(cfg: Config) -> None:
    """Commands that only read the ledger never create one (a wrong path would look empty)."""
    if not Path(cfg.ledger.path).exists():
        raise ConfigError("ledger.path", f"no ledger at {cfg.ledger.path} yet: run 'sync' first")


async def status_facts(cfg: Config, failures: int = 10) -> dict[str, Any]:
    _existing_ledger(cfg)
    # read only: no whole-file check on opening (a second per million rows); a damaged page
    # that a query meets is still reported as a damaged ledger
    async with Ledger(cfg.ledger.path, check=False) as ledger:
        counts = await ledger.counts()
        left = await ledger.outstanding(time.time(), cfg.source.max_attempts)
        repairs = await ledger.count_repairs()
        watermark = await ledger.oldest_watermark()
        accounts = await ledger.account_states(counts)
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
        "accounts": [_account_facts(a) for a in accounts],
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


def _account_facts(a: AccountState) -> dict[str, Any]:
    facts = a.as_dict()
    facts["outstanding"] = sum(a.states.get(s, 0) for s in ("discovered", "archived", "failed"))
    return facts


def _print_accounts(accounts: list[dict[str, Any]]) -> None:
    """One line per account: what it holds, what is left, its watermark, what is wrong."""
    if len(accounts) <= 1 and not any(a["problem"] for a in accounts):
        return  # one account: the totals above are its own
    print(f"accounts     {len(accounts)}")
    print(
        f"  {'account':<36} {'name':<16} {'verified':>9} {'deleted':>8} {'left':>7}  "
        "watermark / problem"
    )
    for a in accounts:
        states = a["states"]
        status = a["status"]
        note = a["problem"] or (a["watermark"] or "-")
        if status and status not in ("active",):
            note = f"{status}: not archived now; {note}"
        if a["scan_complete"] is False and not a["problem"]:
            note = f"listing incomplete; {note}"
        name = (a["friendly_name"] or "-")[:16]
        print(
            f"  {a['sid'] or '(none)':<36} {name:<16} {states.get('verified', 0):>9} "
            f"{states.get('deleted', 0):>8} {a['outstanding']:>7}  {note}"
        )


def _print_status(facts: dict[str, Any]) -> None:
    print("state        recordings")
    for state, n in facts["states"].items():
        print(f"  {state:<11}{n:>10}")
    print(f"  {'total':<11}{facts['total']:>10}")
    print(
        f"archived     {facts['archived_recordings']} recordings, "
        f"{facts['archived_bytes'] / 1e6:.1f} MB"
    )
    several = len(facts["accounts"]) > 1
    oldest = "  (the account furthest behind)" if several else ""
    print(f"watermark    {facts['watermark'] or '-'}{oldest}")
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
        if last.get("accounts_problem"):
            print(f"             {last['accounts_problem']}; the accounts last listed were used")
    else:
        print("last pass    -")
    print(f"left         {describe_left(facts['outstanding'])}")
    _print_accounts(facts["accounts"])
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
    incomplete = (
        last.get("scan_complete") is False
        or last.get("stopped_early")
        or bool(last.get("account_problems"))
        or bool(last.get("accounts_problem"))
    )
    return EXIT_FAILURES if facts["outstanding_total"] or incomplete else EXIT_OK


async def _audio_problem(storage: Storage, row: Row, deep: bool) -> tuple[str, bool] | None:
    """What is wrong with ``row``'s archived audio (None when it verifies), and whether it is
    evidence of tampering: a copy that is there but altered under the archive's Object Lock."""
    copy = row.archived()
    try:
        await storage.verify(copy.archive_key, copy.size, copy.sha256, deep=deep)
    except ArchiverError as exc:
        if (
            storage.protection
            and isinstance(exc, VerificationFailed)
            and await storage.stat(copy.archive_key) is not None
        ):
            return f"TAMPERING: altered under Object Lock {storage.protection}: {exc}", True
        return str(exc), False
    return None


async def cmd_verify(cfg: Config, deep: bool, repair: bool = False) -> int:
    """Check every archived copy, audio and sidecar; with ``repair``, rewrite damaged sidecars
    from the ledger and mark rows whose audio is missing or altered to be archived again."""
    _existing_ledger(cfg)
    checked = 0
    problems: list[str] = []
    repaired: list[str] = []
    async with AsyncExitStack() as stack:
        syncer = await with_stack(cfg, stack) if repair else None  # repair journals too
        if syncer is not None:
            ledger, storage = syncer.ledger, syncer.storage
        else:
            ledger = await stack.enter_async_context(Ledger(cfg.ledger.path))
            storage = await stack.enter_async_context(open_storage(cfg.archive))
        after = ""
        while rows := await ledger.archived_rows(after, 500):
            for row in rows:
                checked += 1
                found = await _audio_problem(storage, row, deep)
                if found is not None:
                    problem, tampered = found
                    problems.append(
                        f"{row.sid} {storage.describe(row.archive_key or '')}: {problem}"
                    )
                    if syncer is not None:
                        repaired.append(await _mend_audio(syncer, row, problem, tampered))
                    continue
                copy = row.archived()
                try:
                    await check_sidecar(storage, copy.archive_key, row.sid, copy.size, copy.sha256)
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


async def _mend_audio(syncer: Syncer, row: Row, problem: str, tampered: bool) -> str:
    if tampered:
        # never archived over: the store keeps the original version under its lock
        syncer.deletions.record_tampering(row, problem)
        return (
            f"{row.sid}: NOT archived again: evidence of tampering, journaled; the original "
            "version is kept by the lock (list the key's versions to investigate)"
        )
    if await syncer.queue_repair(row, problem):
        return f"{row.sid}: will be archived again on the next pass"
    return (
        f"{row.sid}: LOST: deleted from the source, so it cannot be archived again; marked "
        "failed for good (status shows it)"
    )


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


async def cmd_check(cfg: Config) -> int:
    print(f"config       ok ({cfg.archive.backend} backend)")
    async with open_source(cfg.source) as client:
        total = await client.check()
        print(f"source       ok: {cfg.source.base_url} answers, {total} recordings listed")
        unreachable = await _check_accounts(cfg, client)
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
    return EXIT_FAILURES if unreachable else EXIT_OK


async def _check_accounts(cfg: Config, client: Source) -> int:
    """Reach every account the config archives besides its own; how many could not be."""
    named = [sid for sid in cfg.source.accounts if sid != client.account_sid]
    if cfg.source.subaccounts:
        subs = [a for a in await client.list_accounts() if a.sid != client.account_sid]
        active = [a.sid for a in subs if a.active]
        inactive = sorted({a.status for a in subs if not a.active})
        skipped = len(subs) - len(active)
        print(
            f"accounts     {len(active)} active sub-accounts listed"
            + (f"; {skipped} not archived ({', '.join(inactive)})" if skipped else "")
        )
        named += [sid for sid in active if sid not in named]
    unreachable = 0
    for sid in named:
        try:
            total = await client.for_account(sid).check()
        except AccountUnavailable as exc:
            unreachable += 1
            print(f"  account {sid}: {exc}")
        else:
            print(f"  account {sid}: ok, {total} recordings listed")
    return unreachable
