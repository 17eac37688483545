"""Archiving from Twilio and SignalWire through the real CLI, against the bundled simulator:
cursor paging, whole-day filters, statuses, redirects to storage, 204 deletes, and the same
guarantees as for Restcomm (exit codes, deletion only after verification, no credentials
off-origin)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.simulator import TwilioSimulator
from tests.support.cli import run_cli
from tests.support.config import write_config


def config(tmp_path: Path, sim: TwilioSimulator, **given: object) -> Path:
    platform = "signalwire" if "/api/laml" in sim.base_url else "twilio"
    return write_config(
        tmp_path,
        None,
        platform=platform,
        base_url=sim.base_url,
        account_sid=sim.account_sid,
        auth_token=sim.auth_token,
        start_time=datetime.now(UTC) - timedelta(days=3),
        **given,
    )


def media_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "archive").rglob("*.wav") if ".archiver-tmp" not in p.parts]


async def test_sync_archives_every_completed_recording_across_cursor_pages(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    recs = twilio_sim.generate(23, start=datetime.now(UTC) - timedelta(hours=30))
    cfg = config(tmp_path, twilio_sim, page_size=5)  # 5 cursor pages, two GMT days
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    assert "archived 23, verified 23, failed 0" in out, out
    stored = {p.stem: p for p in media_files(tmp_path)}
    assert set(stored) == {r.sid for r in recs}
    sidecar = json.loads(Path(f"{stored[recs[0].sid]}.json").read_text())
    assert sidecar["source"]["status"] == "completed"  # the whole resource is kept
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0 and "archived 0" in out, out + err  # nothing repeated


async def test_processing_waits_and_absent_is_reported(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    done, busy, lost = twilio_sim.generate(3, start=datetime.now(UTC) - timedelta(hours=2))
    twilio_sim.set_status(busy, "processing")
    twilio_sim.set_status(lost, "absent", error_code=13617)
    cfg = config(tmp_path, twilio_sim)
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 1, out + err  # work is left: one waiting, one invalid
    code, out, _err = await run_cli("--config", str(cfg), "status", "--json")
    facts = json.loads(out)
    assert facts["states"]["verified"] == 1
    failed = {f["sid"]: f["reason"] for f in facts["failures"]}
    assert "absent" in failed[lost.sid]
    assert busy.sid in failed and "not" in failed[busy.sid].lower()  # not ready yet (404)
    assert "code 20404" in failed[busy.sid]  # the platform's own error code is shown
    assert {p.stem for p in media_files(tmp_path)} == {done.sid}


async def test_media_redirected_to_storage_never_carries_the_credentials(
    tmp_path: Path,
) -> None:
    async with TwilioSimulator(seed=3, media_mode="redirect") as sim:
        sim.generate(4, start=datetime.now(UTC) - timedelta(hours=1))
        cfg = config(tmp_path, sim)
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, out + err  # the storage host refuses any request with credentials
        assert len(media_files(tmp_path)) == 4


async def test_deletion_after_verification_answers_204(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    recs = twilio_sim.generate(3, start=datetime.now(UTC) - timedelta(hours=2))
    cfg = config(tmp_path, twilio_sim, delete={"enabled": True, "min_age": "0s"})
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    assert {r.sid for r in recs} <= set(twilio_sim.deleted)  # each DELETE answered 204
    code, out, _err = await run_cli("--config", str(cfg), "status", "--json")
    assert json.loads(out)["states"]["deleted"] == 3
    assert len(media_files(tmp_path)) == 3  # verified before its DELETE, and kept


@pytest.mark.parametrize("platform", ["twilio", "signalwire"])
async def test_the_demo_runs_offline_on_every_platform(tmp_path: Path, platform: str) -> None:
    code, out, err = await run_cli(
        "demo", "--platform", platform, "--recordings", "30", "--out", str(tmp_path / "d")
    )
    assert code == 0, out + err
    assert f"simulator    {platform} at" in out and "archived 30, verified 30, failed 0" in out
    assert len([p for p in (tmp_path / "d").rglob("*.wav")]) == 30


async def test_concurrency_adapts_to_the_accounts_cap_and_no_recording_is_charged(
    tmp_path: Path,
) -> None:
    """Twilio caps concurrent requests per account (429, code 20429): the client halves its
    concurrency for that account on each 429 and grows it back while answers come without."""
    async with TwilioSimulator(seed=5, concurrency_limit=2) as sim:
        sim.generate(24, start=datetime.now(UTC) - timedelta(hours=1))
        sim.latency = 0.02  # requests take a while: more than two in flight are refused
        cfg = config(tmp_path, sim, concurrency=8)
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, out + err
        assert "archived 24, verified 24, failed 0" in out, out
        throttled = [q for q in sim.requests if q.status == 429]
        assert throttled, "the cap was never reached: the test proves nothing"
        assert "source.throttled" in out + err  # the operator sees it slowed down
        assert sim.peak_in_flight <= 8


AT = "Tue, 01 Dec 2026 {:02d}:00:00 +0000"


def test_a_recording_the_platform_deleted_is_never_work() -> None:
    from archiver.model import Recording
    from archiver.source.twilio import TwilioClient

    client = TwilioClient("https://api.twilio.com", "AC" + "1" * 32, "token")
    listed = {
        "recordings": [
            {
                "sid": "RE" + "a" * 32,
                "status": "deleted",
                "date_created": "Tue, 01 Dec 2026 10:00:00 +0000",
            },
            {
                "sid": "RE" + "b" * 32,
                "status": "completed",
                "date_created": "Tue, 01 Dec 2026 09:00:00 +0000",
            },
        ],
        "next_page_uri": None,
        "page": 0,
    }
    page = client._parse_cursor_page(json.dumps(listed), 50)
    assert [x.sid for x in page.items] == ["RE" + "b" * 32]
    assert isinstance(page.items[0], Recording) and page.last and page.cursor is None
