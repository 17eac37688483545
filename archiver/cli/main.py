"""main(): parse, load the config, take the writer lock, dispatch; exit codes tell the truth."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from archiver import logs
from archiver.cli.codes import EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE
from archiver.cli.demo import cmd_demo
from archiver.cli.parser import build_parser
from archiver.cli.passes import cmd_reconcile, cmd_run, cmd_sync, cmd_sync_dry_run
from archiver.cli.reports import (
    cmd_audit_recover,
    cmd_audit_verify,
    cmd_check,
    cmd_config_show,
    cmd_status,
    cmd_verify,
)
from archiver.cli.state import cmd_backup, cmd_ledger_rebuild, cmd_retry
from archiver.cli.wiring import configure_logging, load
from archiver.config import (
    Config,
    secret_file_warnings,
)
from archiver.errors import ArchiverError, ConfigError, LedgerError
from archiver.lock import WriterLock

log = structlog.get_logger("archiver.cli")

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


def _command(args: argparse.Namespace) -> str:
    if args.command == "audit":
        return f"audit {args.audit_command}"
    if args.command == "verify" and args.repair:
        return "verify --repair"
    if args.command == "ledger":
        return f"ledger {args.ledger_command}"
    if args.command == "sync" and args.dry_run:
        return "sync --dry-run"  # writes nothing: takes no lock, runs beside the daemon
    if args.command == "config":
        return f"config {args.config_command}"
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


async def _config_show(args: argparse.Namespace, cfg: Config) -> int:
    return cmd_config_show(cfg, args.json, dict(os.environ))


# each command as its name is spelled in the lock and the logs (``_command``)
Runner = Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]
COMMANDS: dict[str, Runner] = {
    "sync": lambda a, c: cmd_sync(c, a.config, quiet=a.quiet),
    "sync --dry-run": lambda a, c: cmd_sync_dry_run(c, quiet=a.quiet),
    "run": lambda a, c: cmd_run(c, a.config),
    "reconcile": lambda a, c: cmd_reconcile(c, a.since, a.until, a.config),
    "status": lambda a, c: cmd_status(c, a.json, a.failures),
    "check": lambda a, c: cmd_check(c),
    "verify": lambda a, c: cmd_verify(c, a.deep),
    "verify --repair": lambda a, c: cmd_verify(c, a.deep, repair=True),
    "config show": _config_show,
    "audit verify": lambda a, c: cmd_audit_verify(c, a.journal_only),
    "audit recover": lambda a, c: cmd_audit_recover(c, a.reason),
    "backup": lambda a, c: cmd_backup(c, a.to),
    "ledger rebuild": lambda a, c: cmd_ledger_rebuild(c),
    "retry": lambda a, c: cmd_retry(c, a.sids),
}


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = _command(args)
    cfg: Config | None = None
    lock: WriterLock | None = None
    try:
        if name == "demo":
            args.log_level = args.log_level or "warning"  # the summary is the demo's output
            configure_logging(args, None)
            return asyncio.run(cmd_demo(args.recordings, args.out, args.platform, args.subaccounts))
        cfg = load(args)
        logs.register_secret(cfg.source.auth_token)
        configure_logging(args, cfg)
        for path in secret_file_warnings(cfg):
            log.warning("config.secret_file_readable", path=path, fix=f"chmod 600 {path}")
        if name in WRITING_COMMANDS:
            lock = WriterLock(cfg.ledger.path, name, ["archiver", *argv])
            lock.acquire()  # held until main returns (or the process dies: the kernel drops it)
        return asyncio.run(COMMANDS[name](args, cfg))
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
            configure_logging(args, None)  # the failure came before the config's own settings
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


if __name__ == "__main__":
    raise SystemExit(main())
