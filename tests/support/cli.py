"""The command line as a child process (``python -m archiver``), as operators run it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pyte

DEFAULT_CLI_TIMEOUT = 60.0  # seconds a run_cli command may take
DEFAULT_WAIT_TRIES = 200  # wait_verified asks `status` this often, 0.1 s apart
DEFAULT_SCREEN = (40, 120)  # rows, columns of the pseudo-terminal of run_in_terminal


async def start_cli(
    *args: str, env: dict[str, str] | None = None, **kw: Any
) -> asyncio.subprocess.Process:
    """``python -m archiver ARGS`` as a child process with stdout/stderr piped."""
    kw.setdefault("stdout", asyncio.subprocess.PIPE)
    kw.setdefault("stderr", asyncio.subprocess.PIPE)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", *args, env={**os.environ, **(env or {})}, **kw
    )


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command to its end: (exit code, stdout, stderr)."""
    proc = await start_cli(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), DEFAULT_CLI_TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_verified(cfg: Path, n: int) -> None:
    """Until ``status`` counts ``n`` verified recordings (a daemon is working meanwhile)."""
    for _ in range(DEFAULT_WAIT_TRIES):
        code, out, _err = await run_cli("--config", str(cfg), "status", "--json")
        if code == 0 and json.loads(out)["states"]["verified"] == n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {n} verified")


def no_traceback(err: str) -> None:
    """An operational error is a sentence, never a Python traceback."""
    assert not [line for line in err.splitlines() if line.startswith("Traceback")], err


@dataclass(frozen=True)
class Terminal:
    """What a command run in a pseudo-terminal wrote (``raw``, escapes and all) and what the
    screen showed once it exited (``screen``: the lines of a terminal emulator, pyte)."""

    code: int
    raw: bytes
    screen: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.screen)


async def run_in_terminal(
    *args: str, env: dict[str, str] | None = None, size: tuple[int, int] = DEFAULT_SCREEN
) -> Terminal:
    """``python -m archiver ARGS`` with stdout and stderr on a pseudo-terminal (pexpect), as an
    operator at a terminal runs it; read in a thread, so the test's event loop (a simulator)
    goes on serving meanwhile."""
    rows, cols = size
    child = pexpect.spawn(
        sys.executable,
        ["-m", "archiver", *args],
        env={**os.environ, "TERM": "xterm-256color", **(env or {})},
        dimensions=(rows, cols),
        timeout=DEFAULT_CLI_TIMEOUT,
    )
    try:
        raw = await asyncio.to_thread(child.read)
    finally:
        child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    screen = pyte.Screen(cols, rows)
    pyte.ByteStream(screen).feed(raw)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return Terminal(child.exitstatus, raw, lines)
