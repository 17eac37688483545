"""Processes the tests and the benchmark start: on free 127.0.0.1 ports, in an environment with
nothing of the developer's AWS or archiver settings, and stopped by the PID we started (never by
name). A child gets SIGTERM if its parent dies, so no server outlives a killed run.

No pytest here: ``bench/`` uses these too. A process that does not come up raises
:class:`StartFailed` with the tail of its log; the fixtures turn that into a failed test.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_LOG_TAIL = 30  # lines of a server's log shown when it fails to start
LOCAL = "127.0.0.1,localhost"


class StartFailed(RuntimeError):
    """A process exited, or never became ready, while starting; the message carries its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """In the child (``preexec_fn``): get SIGTERM when the parent dies."""
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``AWS_*`` and ``ARCHIVER_*``, proxies bypassed for
    127.0.0.1 and the EC2 metadata service off (nothing leaves the machine); then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARCHIVER_"))}
    env.update(NO_PROXY=LOCAL, AWS_EC2_METADATA_DISABLED="true", **extra)
    return env


def start(
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr into ``log``, dying with us; ``env`` defaults to
    :func:`clean_env`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env() if env is None else env,
            cwd=cwd,
            preexec_fn=die_with_parent,
        )


def log_tail(path: Path, lines: int = DEFAULT_LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log: Path,
) -> None:
    """Poll ``ready()`` until it holds; raise :class:`StartFailed` if ``proc`` exits first, or
    stop it and raise if ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartFailed(
                f"{what} exited with status {proc.returncode} while starting; "
                f"log {log}:\n{log_tail(log)}"
            )
        if ready():
            return
        time.sleep(0.05)
    stop(proc)
    raise StartFailed(f"{what} did not answer within {timeout:.0f}s; log {log}:\n{log_tail(log)}")


def stop(proc: subprocess.Popen[bytes], timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
    """Stop the one process we started, by its PID: SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def opener() -> urllib.request.OpenerDirector:
    """A urllib opener that ignores any proxy settings (everything here is on 127.0.0.1)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str) -> bool:
    """Something answers HTTP at ``url`` (any status: SeaweedFS says 403 to an unsigned GET)."""
    try:
        opener().open(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def read_fields(log: Path) -> dict[str, str]:
    """The ``key: value`` lines a server printed on start-up (the simulator prints its address)."""
    fields: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields
