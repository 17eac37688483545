"""The command line as a child process (``python -m archiver``), as operators run it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_CLI_TIMEOUT = 60.0  # seconds a run_cli command may take
DEFAULT_WAIT_TRIES = 200  # wait_verified asks `status` this often, 0.1 s apart


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
