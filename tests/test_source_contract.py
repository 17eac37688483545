"""The source contract (archiver/source/base.py), clause by clause, for every platform: each
client against its simulator over HTTP on 127.0.0.1, built by the factory from its config."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from archiver.config import SourceConfig
from archiver.errors import AccountUnavailable, SourceAuthError
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


async def test_the_accounts_list_names_the_sub_accounts_with_their_status(
    platform: Platform,
) -> None:
    active = platform.sim.add_subaccount("active one")
    closed = platform.sim.add_subaccount("closed one", status="closed")
    async with open_source(platform.cfg) as source:
        listed = {a.sid: a for a in await source.list_accounts()}
    assert listed[active.sid].active and listed[active.sid].friendly_name == "active one"
    assert listed[closed.sid].status == "closed" and not listed[closed.sid].active
    assert set(listed) - {platform.sim.account_sid} == {active.sid, closed.sid}


async def test_a_view_of_a_sub_account_lists_fetches_and_deletes_its_own_recordings(
    platform: Platform, tmp_path: Path
) -> None:
    sub = platform.sim.add_subaccount("customer")
    generate(platform, 2)  # the parent's: never listed for the sub-account
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    (rec,) = platform.sim.generate(1, start=start, account_sid=sub.sid)
    async with open_source(platform.cfg) as source, Ledger(tmp_path / "l.sqlite3") as ledger:
        view = source.for_account(sub.sid)
        assert (view.account_sid, view.credentials_sid) == (sub.sid, platform.sim.account_sid)
        assert source.for_account(source.account_sid) is source
        lister = lister_for(view)(
            view, ledger, page_size=4, zone_slack=timedelta(hours=2), clock=time.time
        )
        result = await lister.scan(datetime.now(UTC) - timedelta(days=1))
        assert result.complete and result.new == 1
        async with ledger.db.execute("SELECT sid, account_sid FROM recordings") as cur:
            assert await cur.fetchall() == [(rec.sid, sub.sid)]
        async with view.media(rec.sid, "wav") as body:
            async for _chunk in body:
                pass
        assert body.sha256 == platform.sha256(rec)
        assert await view.delete(rec.sid) is True
    assert rec.sid not in platform.sim.recordings


async def test_a_listed_recording_of_another_account_is_an_invalid_item(
    platform: Platform, tmp_path: Path
) -> None:
    sub = platform.sim.add_subaccount("customer")
    (rec,) = generate(platform, 1)
    version = "2012-04-24" if isinstance(platform.sim, RestcommSimulator) else "2010-04-01"
    path = f"/{version}/Accounts/{platform.sim.account_sid}/Recordings.json"
    token = base64.b64encode(f"{platform.sim.account_sid}:{platform.sim.auth_token}".encode())
    auth = {"Authorization": f"Basic {token.decode()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(platform.sim.base_url + path, headers=auth) as r,
    ):
        page = await r.json(content_type=None)
    for item in page["recordings"]:  # the parent's list says it is the sub-account's
        item["account_sid"] = sub.sid
    platform.sim.inject(
        path=f"{path}$",
        times=None,
        status=200,
        body=json.dumps(page).encode(),
        content_type="application/json",
    )
    async with open_source(platform.cfg) as source, Ledger(tmp_path / "l.sqlite3") as ledger:
        lister = lister_for(source)(
            source, ledger, page_size=4, zone_slack=timedelta(hours=2), clock=time.time
        )
        result = await lister.scan(datetime.now(UTC) - timedelta(days=1))
        assert result.invalid == 1 and result.new == 0
        row = await ledger.get(rec.sid)
        assert row is not None and row.permanent and "belongs to" in (row.last_error or "")
        assert row.account_sid == platform.sim.account_sid  # reported under the one listed


async def test_a_closed_sub_account_is_that_accounts_problem_not_the_credentials(
    platform: Platform,
) -> None:
    sub = platform.sim.add_subaccount("gone", status="closed")
    async with open_source(platform.cfg) as source:
        view = source.for_account(sub.sid)
        if isinstance(platform.sim, RestcommSimulator):
            # Restcomm checks only the authenticated account's status (spec 4.2): its
            # parent still reaches a closed sub-account's recordings
            assert await view.check() >= 0
        else:
            with pytest.raises(AccountUnavailable, match="not active") as caught:
                await view.check()
            assert caught.value.account_sid == sub.sid and "20005" in str(caught.value)
        assert await source.check() >= 0  # the parent itself is fine
