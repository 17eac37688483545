"""The command line fits operators' habits: help with examples, options anywhere, quiet pipes,
clear answers for unknown SIDs and busy ports, a demo whose printed commands work, and the
simulator as a tool. Real child processes throughout."""

from __future__ import annotations

import asyncio
import shlex
import socket
import sys
from datetime import timedelta
from pathlib import Path

from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli, start_cli
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN


async def test_every_command_has_help_with_an_example() -> None:
    for command in ("sync", "run", "status", "check", "retry", "verify", "reconcile", "demo"):
        code, out, _ = await run_cli(command, "--help")
        assert code == 0 and "examples:" in out and f"archiver {command}" in out, command
        assert "--config" in out and "--log-level" in out, command
    code, out, _ = await run_cli("--help")
    assert code == 0 and "exit codes:" in out and "simulator" in out


async def test_global_options_work_after_the_command_too(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(2, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        code, _out, err = await run_cli("sync", "--config", str(cfg), "--log-level", "warning")
        assert code == 0, err
    code, out, _ = await run_cli("status", "--json", "--config", str(cfg))
    assert code == 0 and '"verified": 2' in out
    # given before, kept when not repeated after
    code, out, _ = await run_cli("--config", str(cfg), "status", "--log-level", "error")
    assert code == 0 and "verified" in out


async def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(2, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        await run_cli("--config", str(cfg), "sync")
    read, write = socket.socketpair()
    read.close()  # the reader is gone before anything is written, as `| head -0` leaves it
    proc = await start_cli("--config", str(cfg), "status", stdout=write.fileno())
    write.close()
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err


async def test_retry_reports_sids_it_does_not_know(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        rec = sim.generate(1, start=NOW - timedelta(hours=1))[0]
        cfg = write_config(tmp_path, sim)
        await run_cli("--config", str(cfg), "sync")
    code, out, err = await run_cli("--config", str(cfg), "retry", "REnotasid", rec.sid)
    assert code == 1
    assert "unknown      REnotasid: the ledger has no such recording" in err
    assert f"not failed   {rec.sid}: it is verified" in out


async def test_a_busy_metrics_port_is_exit_3_not_a_config_error(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        async with RestcommSimulator(auth_token=TOKEN) as sim:
            cfg = write_config(tmp_path, sim, server={"listen": f"127.0.0.1:{port}"})
            code, _out, err = await run_cli("--config", str(cfg), "run")
    finally:
        holder.close()
    assert code == 3, err
    assert f"127.0.0.1:{port}" in err and "in use by another process" in err


async def test_check_leaves_no_folder_behind(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        cfg = write_config(tmp_path, sim)
        code, out, err = await run_cli("--config", str(cfg), "check")
    assert code == 0, err
    assert "canary removed" in out
    assert not (tmp_path / "archive" / "archiver-check").exists()


async def test_the_demo_prints_commands_that_work_and_says_when_it_reuses(tmp_path: Path) -> None:
    out_dir = tmp_path / "d"
    code, out, err = await run_cli("demo", "--recordings", "20", "--out", str(out_dir))
    assert code == 0, err
    assert "reusing" not in out
    status = next(line for line in out.splitlines() if line.startswith("status"))
    command = shlex.split(status.removeprefix("status"))
    assert command[0] == sys.executable  # no activated venv needed
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    printed, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and b"verified" in printed
    code, out, _ = await run_cli("demo", "--recordings", "20", "--out", str(out_dir))
    assert f"reusing      the ledger and archive of an earlier demo in {out_dir}" in out


async def test_the_simulator_runs_on_its_own_with_faults(tmp_path: Path) -> None:
    proc = await start_cli(
        "simulator", "--port", "0", "--recordings", "10", "--fail-every", "5", "--spacing", "1"
    )
    try:
        assert proc.stdout is not None
        lines: dict[str, str] = {}
        while "oldest" not in lines:
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert raw, "the simulator exited"
            key, _, value = raw.decode().partition(":")
            lines[key.strip()] = value.strip()
        cfg = write_config(
            tmp_path,
            name="sim.toml",
            base_url=lines["base_url"],
            account_sid=lines["account_sid"],
            auth_token=lines["auth_token"],
            start_time="2020-01-01T00:00:00Z",
            page_size=None,  # the default page, as an operator's first config has it
        )
        code, out, err = await run_cli("--config", str(cfg), "sync")
    finally:
        proc.terminate()  # by its PID
        await proc.wait()
    assert code == 1, err  # every 5th recording always answers 503: two are left failed
    assert "verified 8" in out and "2 failed" in out
