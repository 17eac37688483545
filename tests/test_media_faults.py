"""Media that arrives damaged, stalled or from a storage origin: retried where a retry can help,
reported as the source's fault (naming the URL), never as the archive's or as our credentials'.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from archiver.config import Config
from archiver.simulator import RestcommSimulator, TwilioSimulator
from tests.support.archive import archived_files, assert_archive_matches
from tests.support.constants import NOW
from tests.support.harness import Harness

HTML = {"status": 200, "body": b"<html>502 Bad Gateway</html>", "content_type": "text/html"}

Simulator = RestcommSimulator | TwilioSimulator


async def test_an_error_page_served_as_audio_once_is_retried_within_the_pass(
    any_sim: Simulator, config_for: Callable[..., Config]
) -> None:
    sim = any_sim  # every platform
    rec = sim.generate(1, start=NOW - timedelta(hours=1))[0]
    sim.inject(path=rf"{rec.sid}\.wav", times=1, **HTML)  # type: ignore[arg-type]
    result = await Harness(config_for(sim)).pass_()
    assert result.ok and result.verified == 1 and result.failed == 0


async def test_a_body_cut_short_once_is_retried_within_the_pass(
    any_sim: Simulator, config_for: Callable[..., Config]
) -> None:
    sim = any_sim  # every platform
    rec = sim.generate(1, start=NOW - timedelta(hours=1), size=300_000)[0]
    sim.inject(path=rf"{rec.sid}\.wav", truncate_after=100_000, times=1)
    result = await Harness(config_for(sim)).pass_()
    assert result.ok and result.verified == 1


async def test_a_stalled_body_is_a_source_error_retried_then_failed_with_the_url(
    any_sim: Simulator, config_for: Callable[..., Config]
) -> None:
    sim = any_sim  # every platform
    once, always = sim.generate(2, start=NOW - timedelta(hours=1), size=200_000)
    sim.inject(path=rf"{once.sid}\.wav", stall_after=70_000, stall_for=1.5, times=1)
    sim.inject(path=rf"{always.sid}\.wav", stall_after=70_000, stall_for=1.5, times=None)
    cfg = config_for(sim, request_timeout="0.4s")
    h = Harness(cfg)
    result = await h.pass_()
    assert result.verified == 1 and result.failed == 1
    assert set(archived_files(cfg)) == {once.sid}
    state, _sha, error = (await h.ledger_rows())[always.sid]
    assert state == "failed"
    assert error.startswith("MediaUnavailable: media http://127.0.0.1:")
    assert f"{always.sid}.wav: stalled, no data for 0.4s" in error
    assert "writing" not in error  # the archive did nothing wrong
    assert not list((Path(cfg.archive.path) / ".archiver-tmp").iterdir())


async def test_a_presigned_url_answering_403_is_media_not_ready_not_our_credentials(
    config_for: Callable[..., Config],
) -> None:
    async with RestcommSimulator(seed=5, media_mode="redirect") as sim:
        recs = sim.generate(4, start=NOW - timedelta(minutes=10))
        sim.uploading.add(recs[0].sid)  # the platform's upload to S3 still runs
        cfg = config_for(sim)
        h = Harness(cfg)
        result = await h.pass_()  # no SourceAuthError: the pass goes on
        assert result.verified == 3 and not result.ok
        state, _sha, error = (await h.ledger_rows())[recs[0].sid]
        assert state == "failed" and "presigned" in error and "still be uploading" in error
        storage = [r for r in sim.requests if "/storage/" in r.path]
        assert storage and not any(r.auth_header_present for r in storage)
        async with h.syncer() as syncer:
            row = await syncer.ledger.get(recs[0].sid)
            assert row is not None and row.attempts == 0  # within media_grace: not charged
        sim.uploading.clear()
        later = Harness(cfg, clock=lambda: NOW.timestamp() + 3600)
        result = await later.pass_()
        assert result.ok and result.verified == 1
        assert_archive_matches(sim, cfg)
