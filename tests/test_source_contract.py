"""The source contract (archiver/source/base.py), clause by clause, for every platform: each
client against its simulator over HTTP on 127.0.0.1, built by the factory from its config."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.config import SourceConfig
from archiver.errors import SourceAuthError
from archiver.ledger import Ledger
from archiver.listing import lister_for
from archiver.simulator import RestcommSimulator, SignalWireSimulator, TwilioSimulator
from archiver.simulator.store import SimRecording
from archiver.source import open_source

Simulator = RestcommSimulator | TwilioSimulator


@dataclass
class Platform:
    sim: Simulator
    cfg: SourceConfig
    sha256: Callable[[SimRecording], str]  # of the media the source serves for a recording


@pytest.fixture(params=["restcomm", "twilio", "signalwire"])
async def platform(request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    name: str = request.param
    kind = {"restcomm": RestcommSimulator, "twilio": TwilioSimulator}.get(name, SignalWireSimulator)
    async with kind(seed=11) as sim:
        cfg = SourceConfig(
            platform=name,
            base_url=sim.base_url,
            account_sid=sim.account_sid,
            auth_token=sim.auth_token,
            page_size=4,
            concurrency=2,
        )
        if isinstance(sim, TwilioSimulator):
            served = sim

            def sha(rec: SimRecording) -> str:
                return served.media_body(rec).sha256()
        else:

            def sha(rec: SimRecording) -> str:
                return rec.sha256()

        yield Platform(sim, cfg, sha)


def generate(p: Platform, n: int) -> list[SimRecording]:
    recs = p.sim.generate(n, start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5))
    return list(recs)


async def test_the_listing_finds_every_recording_of_the_window_once(
    platform: Platform, tmp_path: Path
) -> None:
    recs = generate(platform, 11)  # three pages of four
    async with open_source(platform.cfg) as source, Ledger(tmp_path / "l.sqlite3") as ledger:
        lister = lister_for(source)(
            source, ledger, page_size=4, zone_slack=timedelta(hours=2), clock=time.time
        )
        result = await lister.scan(datetime.now(UTC) - timedelta(days=1))
        assert result.complete and result.new == 11 and result.invalid == 0
        assert result.newest == max(r.date_created for r in recs)
        async with ledger.db.execute("SELECT sid FROM recordings") as cur:
            assert {r[0] for r in await cur.fetchall()} == {r.sid for r in recs}


async def test_media_streams_the_recordings_bytes_with_its_size_and_sha256(
    platform: Platform,
) -> None:
    (rec,) = generate(platform, 1)
    async with open_source(platform.cfg) as source, source.media(rec.sid, "wav") as body:
        h = hashlib.sha256()
        async for chunk in body:
            h.update(chunk)
        assert body.sha256 == h.hexdigest() == platform.sha256(rec)
        assert body.size == body.content_length


async def test_delete_says_whether_it_deleted_or_found_it_gone(platform: Platform) -> None:
    (rec,) = generate(platform, 1)
    async with open_source(platform.cfg) as source:
        assert await source.delete(rec.sid) is True
        assert await source.delete(rec.sid) is False


async def test_check_reaches_the_list_and_wrong_credentials_are_an_auth_error(
    platform: Platform,
) -> None:
    generate(platform, 2)
    async with open_source(platform.cfg) as source:
        assert await source.check() >= 0
    wrong = replace(platform.cfg, auth_token="not-the-token")
    async with open_source(wrong) as source:
        with pytest.raises(SourceAuthError):
            await source.check()
