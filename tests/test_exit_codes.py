"""Exit codes tell the truth: 0 only when nothing is failed, waiting, untried or unverified.

Through the real CLI (a child process, as a pipeline runs it) against the simulator.
"""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.copier import DEFAULT_TRANSFER_ATTEMPTS
from archiver.ledger import Ledger
from archiver.simulator import RestcommSimulator, SignalWireSimulator, TwilioSimulator
from archiver.transfer import DEFAULT_OUTAGE_STREAK
from tests.support.cli import run_cli, start_cli
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN

# every platform: the exit codes mean the same on each
PLATFORMS = pytest.mark.parametrize(
    "kind",
    [RestcommSimulator, TwilioSimulator, SignalWireSimulator],
    ids=["restcomm", "twilio", "signalwire"],
)
Kind = type[RestcommSimulator] | type[TwilioSimulator]


def media_requests(sim: RestcommSimulator | TwilioSimulator) -> int:
    return sum(1 for r in sim.requests if r.path.endswith((".wav", ".mp4")))


@PLATFORMS
async def test_sync_exits_1_while_a_failed_recording_waits_for_its_retry(
    tmp_path: Path, kind: Kind
) -> None:
    async with kind(auth_token=TOKEN) as sim:
        good = sim.generate(3, start=NOW - timedelta(hours=1))
        bad = good.pop()
        sim.inject(
            path=rf"{bad.sid}\.wav",
            status=200,
            body=b"<html>proxy error</html>",
            content_type="text/html",
            times=None,
        )
        cfg = write_config(tmp_path, sim)
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 1, err
        assert "1 failed (1 waiting, next try at" in out
        # the next sync comes before the retry is due: the recording is still not archived
        code, out, _ = await run_cli("--config", str(cfg), "sync")
        assert code == 1 and "1 failed (1 waiting" in out
        code, out, _ = await run_cli("--config", str(cfg), "status")
        assert code == 1 and "left         1 failed (1 waiting" in out
        code, out, _ = await run_cli("--config", str(cfg), "status", "--json")
        facts = json.loads(out)
        assert facts["outstanding"]["failed_waiting"] == 1 and facts["outstanding_total"] == 1
        sim.clear_faults()
        await run_cli("--config", str(cfg), "retry")
        code, out, _ = await run_cli("--config", str(cfg), "sync")
        assert code == 0 and "left         nothing" in out


@PLATFORMS
async def test_an_interrupted_sync_never_exits_0(tmp_path: Path, kind: Kind) -> None:
    async with kind(auth_token=TOKEN) as sim:
        sim.generate(40, start=NOW - timedelta(hours=1))
        sim.inject(path=r"\.wav", delay=0.2, times=None)
        cfg = write_config(tmp_path, sim, concurrency=2)
        proc = await start_cli("--config", str(cfg), "sync")
        for _ in range(400):
            await asyncio.sleep(0.02)
            if media_requests(sim) >= 3:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1, err.decode()
        assert "interrupted" in out.decode() and "not yet tried" in out.decode()


@PLATFORMS
async def test_a_source_down_for_everyone_stops_the_pass_charging_nobody(
    tmp_path: Path, kind: Kind
) -> None:
    async with kind(auth_token=TOKEN) as sim:
        sim.generate(30, start=NOW - timedelta(hours=1))
        sim.inject(path=r"\.wav", status=503, times=None)
        cfg = write_config(tmp_path, sim, concurrency=2)
        code, _out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 3, err
        assert "failed for" in err and "charged none of them" in err
        # a few recordings tried, then the pass stopped: not 30 recordings re-downloaded
        in_flight = 2 * 2
        assert media_requests(sim) <= DEFAULT_TRANSFER_ATTEMPTS * (
            DEFAULT_OUTAGE_STREAK + in_flight
        )
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        counts = await ledger.counts()
        assert counts["discovered"] == 30 and counts["failed"] == 0
        async with ledger.db.execute("SELECT MAX(attempts) FROM recordings") as cur:
            assert (await cur.fetchone()) == (0,)
    code, out, _ = await run_cli("--config", str(cfg), "status")
    assert code == 1 and "30 not yet tried" in out


@PLATFORMS
async def test_one_recordings_own_5xx_is_charged_to_it_alone(tmp_path: Path, kind: Kind) -> None:
    async with kind(auth_token=TOKEN) as sim:
        recs = sim.generate(6, start=NOW - timedelta(hours=1))
        sim.inject(path=rf"{recs[0].sid}\.wav", status=500, times=None)
        cfg = write_config(tmp_path, sim, concurrency=1)
        code, out, _ = await run_cli("--config", str(cfg), "sync")
    assert code == 1 and "verified 5" in out and "1 failed (1 waiting" in out
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        row = await ledger.get(recs[0].sid)
        assert row is not None and row.state == "failed" and row.attempts == 1
