"""Progress of a sync pass: a live display on a terminal (a real pseudo-terminal, read back
through a terminal emulator), log lines off one."""

from __future__ import annotations

import inspect
import io
import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from structlog.testing import capture_logs

from archiver.config import Config
from archiver.hooks import BothHooks, Hooks
from archiver.progress import Progress
from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli, run_in_terminal
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN
from tests.support.harness import Harness

ESCAPE = "\x1b["
RECORDINGS = 60  # 6 pages of 10: the listing has something to count


def _sim_with_a_bad_recording(sim: RestcommSimulator) -> str:
    """``RECORDINGS`` good recordings and one whose media is an HTML page (it fails); list
    pages answer slowly, as a big backlog's do, so the display shows the listing under way."""
    sim.inject(path=r"/Recordings\.json$", delay=0.15, times=None)
    sim.generate(RECORDINGS, start=NOW - timedelta(hours=2), size=50_000)
    bad = sim.generate(1, start=NOW - timedelta(minutes=1))[0]
    sim.inject(
        path=rf"{bad.sid}\.wav", status=200, body=b"<html>no</html>", times=None,
        content_type="text/html",
    )  # fmt: skip
    return bad.sid


# -- on a terminal --------------------------------------------------------------------------------


async def test_the_terminal_shows_the_listing_then_the_transfer(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        bad = _sim_with_a_bad_recording(sim)
        cfg = write_config(tmp_path, sim)
        term = await run_in_terminal("--config", str(cfg), "sync")
    assert term.code == 1, term.text  # one recording failed
    raw = term.raw.decode()
    screen = term.text
    # while it ran: the listing counted pages before the transfer began
    assert re.search(r"listing +[1-9]\d* pages read", raw), raw
    assert raw.index("listing ") < raw.index("transfer ")
    # the final screen: the listing line, the transfer at its total, the failure, the summary
    total = RECORDINGS + 1
    assert f"listed   7 pages read, {total} recordings found, {total} new" in screen, screen
    transfer = [line for line in term.screen if line.startswith("transfer ")]
    assert len(transfer) == 1, screen  # redrawn in place, not a line per update
    assert f" {total}/{total} recordings " in transfer[0] and "1 failed" in transfer[0]
    assert "MB/s" in transfer[0] and "ETA" in transfer[0]
    # a warning or error prints above the display; per-recording INFO lines not at all
    assert "recording.failed" in screen and bad in screen
    assert "recording.verified" not in raw and "pass.started" not in raw
    assert f"listed {total} (new {total}, invalid 0), archived {RECORDINGS}" in screen
    assert f"failed {bad}: " in screen
    assert TOKEN not in raw


async def test_log_level_debug_shows_every_recording_above_the_display(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        term = await run_in_terminal("--config", str(cfg), "sync", "--log-level", "debug")
    assert term.code == 0, term.text
    assert term.text.count("recording.verified") == 3, term.text
    assert " 3/3 recordings " in term.text


async def test_quiet_hides_the_display(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        term = await run_in_terminal(
            "--config", str(cfg), "sync", "--quiet", "--log-level", "warning"
        )
    assert term.code == 0, term.text
    assert "transfer " not in term.text and "listing " not in term.text.replace("listed 3", "")
    assert term.screen[0].startswith("listed 3 (new 3, invalid 0), archived 3"), term.text


# -- off a terminal -------------------------------------------------------------------------------


async def test_off_a_terminal_no_escapes_and_progress_lines(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(5, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, err
    assert ESCAPE not in out + err
    events = [json.loads(line) for line in err.splitlines()]
    names = [e["event"] for e in events]
    assert names.count("recording.verified") == 5  # the log keeps every recording
    progress = [e for e in events if e["event"] == "pass.progress"]
    assert progress and progress[0]["total"] == 5
    assert "scan.progress" in names
    assert out.startswith("listed 5 (new 5, invalid 0), archived 5, verified 5, failed 0")


async def _pass(cfg: Config, stream: io.StringIO, **kw: bool) -> None:
    progress = Progress(stream, every=0, **kw)
    async with Harness(cfg).syncer(watch=progress) as syncer:
        with progress.attach(syncer):
            await syncer.run_pass()


async def test_progress_events_every_interval_off_a_terminal(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(25, start=NOW - timedelta(hours=1))
    with capture_logs() as logs:
        await _pass(config_for(sim, page_size=10), io.StringIO())
    scan = [e for e in logs if e["event"] == "scan.progress"]
    assert [(e["pages"], e["found"]) for e in scan] == [(1, 10), (2, 20), (3, 25)]
    lines = [e for e in logs if e["event"] == "pass.progress"]
    assert [e["done"] for e in lines] == list(range(1, 26)) and lines[-1]["total"] == 25
    assert all(e["rate_per_s"] > 0 for e in lines)


async def test_quiet_logs_no_progress_events(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    with capture_logs() as logs:
        await _pass(config_for(sim), io.StringIO(), enabled=False)
    assert not [e for e in logs if e["event"] in ("pass.progress", "scan.progress")]


def test_both_hooks_forwards_every_hook() -> None:
    hooks = {
        name
        for name, member in inspect.getmembers(Hooks, inspect.isfunction)
        if not name.startswith("_")
    }
    forwarded = {name for name in hooks if name in BothHooks.__dict__}
    assert forwarded == hooks, f"BothHooks does not forward {sorted(hooks - forwarded)}"


def test_under_the_display_only_what_it_already_shows_is_left_out() -> None:
    import io
    import json

    import structlog

    from archiver import logs

    shown: list[str] = []
    stream = io.StringIO()
    logs.configure("info", "json", stream)
    try:
        log = structlog.get_logger("test")
        with logs.above_display(shown.append):
            log.info("recording.verified", sid="RE1", size=1)  # counted by the display
            log.info("pass.finished", archived=1)  # the summary follows
            log.info("config.reloaded", token_changed=True)  # news: above the display
            log.warning("retry.scheduled", sid="RE2")  # a warning always shows
        log.info("recording.verified", sid="RE3")  # no display: every line is logged
    finally:
        logs.configure("info", "json", io.StringIO())
    events = [json.loads(line)["event"] for line in shown]
    assert events == ["config.reloaded", "retry.scheduled"]
    assert [json.loads(line)["sid"] for line in stream.getvalue().splitlines()] == ["RE3"]
