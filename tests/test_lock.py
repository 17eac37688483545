"""One writer at a time (issue 13, Trust II): real processes racing for the writer lock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from archiver.lock import lock_path
from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli, start_cli, wait_verified
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN


async def holder_of(path: Path, pid: int) -> dict[str, object]:
    """The lock file's record, once it names ``pid`` (the holder writes it after locking)."""
    for _ in range(400):
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(path.read_text())
            if doc.get("pid") == pid:
                return dict(doc)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never named PID {pid}")


async def test_second_writer_exits_3_naming_the_daemon_while_readers_work(
    tmp_path: Path,
) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(5, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        proc = await start_cli("--config", str(cfg), "run", stdout=asyncio.subprocess.DEVNULL)
        try:
            holder = await holder_of(lock_path(tmp_path / "l.sqlite3"), proc.pid)
            assert holder["command"] == "run"
            await wait_verified(cfg, 5)  # `status` reads while the daemon holds the lock
            for command in (
                ["sync"],
                ["reconcile", "--since", (NOW - timedelta(days=1)).date().isoformat()],
                ["retry"],
                ["check"],
            ):
                code, out, err = await run_cli("--config", str(cfg), *command)
                assert code == 3, (command, out, err)
                assert f"PID {proc.pid}, command 'run'" in err, err
                assert "only one process may write" in err
                assert "Traceback" not in err
            code, out, err = await run_cli("--config", str(cfg), "audit", "verify")
            assert code == 0 and "chain intact" in out, err
            code, out, err = await run_cli("--config", str(cfg), "verify")
            assert code == 0 and "checked 5 archived copies and sidecars: 0 discrepancies" in out, (
                err
            )
            requests_before = len(sim.requests)
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err_bytes.decode()
        # the refused writers never reached the source (only the daemon's passes did)
        assert all(r.path.endswith("Recordings.json") for r in sim.requests[requests_before:])
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, err  # the daemon is gone: the lock is free


async def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        ledger = tmp_path / "l.sqlite3"
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys, time\n"
            "from archiver.lock import WriterLock\n"
            "WriterLock(sys.argv[1], 'reconcile', ['archiver', 'reconcile']).acquire()\n"
            "time.sleep(120)\n",
            str(ledger),
        )
        try:
            await holder_of(lock_path(ledger), child.pid)
            code, _out, err = await run_cli("--config", str(cfg), "sync")
            assert code == 3 and f"PID {child.pid}, command 'reconcile'" in err, err
            assert not ledger.exists()  # refused before anything was opened
        finally:
            os.kill(child.pid, signal.SIGKILL)
            await child.wait()
        assert child.returncode == -signal.SIGKILL
        assert lock_path(ledger).exists()  # the file stays; the lock died with its holder
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0 and "archived 3" in out, err
