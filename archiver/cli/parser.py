"""The command line's parser: every command, flag and example."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from archiver import __version__

DEFAULT_DEMO_RECORDINGS = 300
# adds one command: (name, help, description, *examples) -> its parser
Command = Callable[..., argparse.ArgumentParser]


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
        description="Archive call recordings from Restcomm, Twilio and SignalWire accounts to "
        "S3 or local disk, verified.",
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

    _pass_commands(command)
    _look_commands(command)
    _repair_commands(command)
    _reconcile_command(command)
    _audit_command(command)
    _state_commands(command)
    _tool_commands(command, sub)
    return p


def _config_command(command: Command) -> None:
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


def _pass_commands(command: Command) -> None:
    """sync and run: the passes."""
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


def _look_commands(command: Command) -> None:
    """status and check."""
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


def _repair_commands(command: Command) -> None:
    """retry and verify (--repair)."""
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


def _reconcile_command(command: Command) -> None:
    """reconcile."""
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


def _audit_command(command: Command) -> None:
    """audit verify and audit recover."""
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


def _state_commands(command: Command) -> None:
    """ledger rebuild, backup and config show."""
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


def _tool_commands(command: Command, sub: argparse._SubParsersAction[Any]) -> None:
    """demo and simulator."""
    demo = command(
        "demo",
        "archive from the bundled simulator into a local folder, then exit",
        "Start the bundled simulator, archive its recordings into a local folder with a "
        "config written there, and print the commands to look at the result.",
        "archiver demo",
        "archiver demo --recordings 2000 --out /tmp/demo",
        "archiver demo --platform twilio --out /tmp/demo-twilio",
        "archiver demo --subaccounts 3 --out /tmp/demo-accounts",
    )
    demo.add_argument("--recordings", type=int, default=DEFAULT_DEMO_RECORDINGS)
    demo.add_argument(
        "--platform",
        choices=("restcomm", "twilio", "signalwire"),
        default="restcomm",
        help="which platform's API the simulator speaks (default: restcomm)",
    )
    demo.add_argument(
        "--subaccounts",
        type=int,
        default=0,
        metavar="N",
        help="N sub-accounts with --recordings each, all archived (source.subaccounts = true)",
    )
    demo.add_argument("--out", default="demo-output", help="folder for the archive and ledger")
    sub.add_parser(
        "simulator",
        help="serve the bundled simulator of Restcomm, Twilio or SignalWire (try configs and "
        "alerts offline)",
        add_help=False,  # its own options: archiver simulator --help
    )
