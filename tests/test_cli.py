"""The command line as operators use it: real processes, real signals, exit codes, logs."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import Config
from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli, start_cli
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN


async def test_demo_archives_into_a_folder_and_exits_0(tmp_path: Path) -> None:
    code, out, err = await run_cli("demo", "--recordings", "60", "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert "archived 60, verified 60, failed 0" in out
    wavs = [p for p in (tmp_path / "d" / "recordings").rglob("*") if p.suffix in (".wav", ".mp4")]
    assert len(wavs) == 60
    code, out, _ = await run_cli("--config", str(tmp_path / "d" / "archiver.toml"), "status")
    assert code == 0 and "verified" in out


async def test_sync_then_status_json(
    tmp_path: Path, capsys: object, config_for: Callable[..., Config]
) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(12, start=NOW - timedelta(hours=1))
        bad = sim.generate(1, start=NOW - timedelta(minutes=1))[0]
        sim.inject(
            path=rf"{bad.sid}\.wav",
            status=200,
            body=b"<html>no</html>",
            times=None,
            content_type="text/html",
        )
        cfg = write_config(tmp_path, sim)
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 1, err  # the pass ran; one recording failed
        assert f"failed {bad.sid}" in out and "not a recording" in out
        assert TOKEN not in out + err
        code, out, _ = await run_cli("--config", str(cfg), "status", "--json")
        facts = json.loads(out)
        assert code == 1
        assert facts["states"]["verified"] == 12 and facts["states"]["failed"] == 1
        assert facts["failures"][0]["sid"] == bad.sid
        assert "not a recording" in facts["failures"][0]["reason"]
        assert facts["watermark"] and facts["last_pass"]["archived"] == 12
        assert facts["lag_seconds"] is not None
        journal = Path(facts["journal"]["path"])
        lines = journal.read_bytes().count(b"\n")
        assert lines == 12 * 2 + 1  # archived and verified each, and the failure
        size = journal.stat().st_size
        assert facts["journal"] == {"path": str(journal), "bytes": size, "lines": lines}
        code, out, _ = await run_cli("--config", str(cfg), "status")
        assert f"journal      {journal}: " in out and f"{lines} lines" in out


async def test_unreachable_source_exits_3_without_the_token(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, None)
    code, out, err = await run_cli("--config", str(cfg), "--log-level", "debug", "sync")
    assert code == 3
    assert "SourceUnavailable" in err and TOKEN not in out + err


async def test_rejected_credentials_exit_3(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token="other") as sim:
        cfg = write_config(tmp_path, sim)
        code, _out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 3 and "401" in err and TOKEN not in err


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: object) -> None:
    cfg = write_config(tmp_path, None)
    import pytest

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("ARCHIVER_CONFIG", str(cfg))
        mp.setenv("ARCHIVER_SOURCE__PAGE_SIZE", "0")
        assert main(["status"]) == 2  # the env config was read, and the override validated
    finally:
        mp.undo()


async def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(30, start=NOW - timedelta(hours=1), size=200_000)
        sim.inject(path=r"\.wav", delay=0.2, times=None)  # slow media: transfers are in flight
        cfg = write_config(tmp_path, sim, concurrency=2)
        proc = await start_cli("--config", str(cfg), "--log-format", "json", "run")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if sum(r.path.endswith(".wav") for r in sim.requests) >= 4:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        events = [json.loads(line)["event"] for line in err.decode().splitlines() if line]
        assert "daemon.stopping" in events and "daemon.stopped" in events
        assert TOKEN not in err.decode()
    archive = tmp_path / "archive"
    assert not list((archive / ".archiver-tmp").iterdir())
    _code, out, _ = await run_cli("--config", str(cfg), "status", "--json")
    facts = json.loads(out)
    # in-flight transfers finished; nothing new started after the signal; nothing half-done
    assert facts["states"]["archived"] == 0
    assert 0 < facts["states"]["verified"] < 30
    files = [p for p in archive.rglob("*.wav")]
    assert len(files) == facts["states"]["verified"]


async def test_run_speaks_the_systemd_notify_protocol(tmp_path: Path) -> None:
    import socket

    address = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.setblocking(False)
    loop = asyncio.get_running_loop()
    messages: list[str] = []
    try:
        async with RestcommSimulator(auth_token=TOKEN) as sim:
            sim.generate(5, start=NOW - timedelta(hours=1))
            cfg = write_config(tmp_path, sim)
            proc = await start_cli(
                "--config",
                str(cfg),
                "run",
                env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"},
            )

            async def collect_until(predicate: Callable[[], bool]) -> None:
                while not predicate():
                    data = await asyncio.wait_for(loop.sock_recv(receiver, 4096), 20)
                    messages.append(data.decode())

            await collect_until(lambda: messages.count("WATCHDOG=1") >= 2)
            proc.send_signal(signal.SIGTERM)
            await collect_until(lambda: "STOPPING=1" in messages)
            _out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
    finally:
        receiver.close()
    kinds = [m.split("=", 1)[0] + ("=1" if m.endswith("=1") else "") for m in messages]
    assert kinds.index("READY=1") < kinds.index("WATCHDOG=1") < kinds.index("STOPPING=1")
    assert any(m.startswith("STATUS=") for m in messages)


async def test_check_reports_each_step_and_leaves_no_canary(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(tmp_path, sim)
        code, out, err = await run_cli("--config", str(cfg), "check")
        assert code == 0, err
        assert "source       ok" in out and "3 recordings listed" in out
        assert "archive      ok" in out and "canary removed" in out and "ledger       ok" in out
        assert not [p for p in (tmp_path / "archive").rglob("*canary*") if p.is_file()]
        sim.auth_token = "rotated"
        code, out, err = await run_cli("--config", str(cfg), "check")
    assert code == 3 and "config       ok" in out and "401" in err


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "2-workers"])
async def test_run_reloads_a_rotated_token_on_401_and_on_sighup(
    tmp_path: Path, workers: int
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(3, start=NOW - timedelta(hours=1))
        cfg = write_config(
            tmp_path, sim, auth_token=None, auth_token_file=token_file, workers=workers
        )
        proc = await start_cli("--config", str(cfg), "--log-format", "json", "run")
        ledger = tmp_path / "l.sqlite3"

        async def verified() -> int:
            _code, out, _ = await run_cli("--config", str(cfg), "status", "--json")
            return int(json.loads(out)["states"]["verified"]) if out else 0

        async def wait_for(n: int) -> None:
            for _ in range(300):
                if ledger.exists() and await verified() >= n:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"never reached {n} verified")

        await wait_for(3)
        # rotation: the old token is revoked, the new one is in the file; no restart
        sim.auth_token = "rotated-T0KEN-2"
        token_file.write_text("rotated-T0KEN-2\n")
        sim.generate(2, start=NOW - timedelta(minutes=5))
        await wait_for(5)
        # SIGHUP re-reads the config's secrets and never stops the daemon; the server
        # switches only afterwards, so no 401 can be what made the daemon re-read the file
        token_file.write_text("rotated-T0KEN-3\n")
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        sim.auth_token = "rotated-T0KEN-3"
        switched = len(sim.requests)
        sim.generate(1, start=NOW - timedelta(minutes=4))
        await wait_for(6)
        # every process that sends requests (the workers too) had the new token before
        # the server asked for it: each request after the switch, the media ones too
        # (Restcomm serves media without checking), carried the new token
        after = sim.requests[switched:]
        assert any(r.path.endswith(".wav") for r in after)
        assert [(r.path, r.status) for r in after if not r.authorized] == []
        assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "source.token_reloaded" in names
    reloaded = [e for e in events if e["event"] == "config.reloaded"]
    assert reloaded and reloaded[0]["token_changed"] is True
    assert "rotated-T0KEN" not in err.decode() and TOKEN not in err.decode()
