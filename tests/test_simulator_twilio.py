"""The Twilio simulator and its SignalWire variant, over real HTTP: what a Twilio client meets.

Every test runs against both (the ``twilio_sim`` fixture); the reference is Twilio's OpenAPI
description, twilio/twilio-oai ``spec/json/twilio_api_v2010.json``.
"""

from __future__ import annotations

import asyncio
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from yarl import URL

from archiver.simulator import SignalWireSimulator, TwilioSimulator
from tests.support.cli import start_cli
from tests.support.twilio import Answer, TwilioClient, basic

DAY = datetime(2026, 12, 1, tzinfo=UTC)
# the keys of ListRecordingResponse and of api.v2010.account.recording in the spec
ENVELOPE_KEYS = {
    "end",
    "first_page_uri",
    "next_page_uri",
    "page",
    "page_size",
    "previous_page_uri",
    "start",
    "uri",
    "recordings",
}
RECORDING_KEYS = {
    "account_sid",
    "api_version",
    "call_sid",
    "conference_sid",
    "date_created",
    "date_updated",
    "start_time",
    "duration",
    "sid",
    "price",
    "price_unit",
    "status",
    "channels",
    "source",
    "error_code",
    "uri",
    "encryption_details",
    "subresource_uris",
    "media_url",
}
RFC2822_GMT = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000")


@pytest.fixture
def api(http: aiohttp.ClientSession, twilio_sim: TwilioSimulator) -> TwilioClient:
    return TwilioClient(http, twilio_sim)


def is_sid(sim: TwilioSimulator, value: str, prefix: str) -> bool:
    if isinstance(sim, SignalWireSimulator):
        return str(uuid.UUID(value)) == value
    return re.fullmatch(rf"{prefix}[0-9a-f]{{32}}", value) is not None


def sids(pages: list[dict[str, Any]]) -> list[str]:
    return [r["sid"] for page in pages for r in page["recordings"]]


def assert_error(answer: Answer, status: int, code: int) -> None:
    body = answer.json
    assert answer.status == status, answer.raw
    assert body["code"] == code and body["status"] == status and body["message"]
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


# --------------------------------------------------------------------------- resources


async def test_the_list_envelope_and_the_recording_resource_are_the_specs(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    (rec,) = twilio_sim.generate(1, start=DAY.replace(hour=10), size=16_044 * 4)
    answer = await api.get("Recordings.json")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    body = answer.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 50, 0, 0)
    assert body["next_page_uri"] is None and body["previous_page_uri"] is None
    (item,) = body["recordings"]
    assert set(item) == RECORDING_KEYS
    assert item["date_created"] == "Tue, 01 Dec 2026 10:00:00 +0000"
    assert parsedate_to_datetime(item["date_created"]) == rec.date_created
    assert RFC2822_GMT.fullmatch(item["date_updated"]) and RFC2822_GMT.fullmatch(item["start_time"])
    assert item["duration"] == "4" and item["status"] == "completed" and item["channels"] == 1
    assert is_sid(twilio_sim, item["sid"], "RE") and is_sid(twilio_sim, item["call_sid"], "CA")
    assert is_sid(twilio_sim, item["account_sid"], "AC")
    prefix = "/api/laml" if isinstance(twilio_sim, SignalWireSimulator) else ""
    base = f"{prefix}/2010-04-01/Accounts/{twilio_sim.account_sid}/Recordings/{rec.sid}"
    assert item["uri"] == f"{base}.json"
    assert item["media_url"] == f"{URL(twilio_sim.base_url).origin()}{base}"
    assert item["subresource_uris"]["transcriptions"] == f"{base}/Transcriptions.json"
    one = await api.get(f"Recordings/{rec.sid}.json")
    assert one.status == 200 and one.json == item


async def test_signalwire_serves_under_api_laml_with_uuids(http: aiohttp.ClientSession) -> None:
    async with SignalWireSimulator() as sim:
        assert sim.base_url.endswith("/api/laml")
        assert str(uuid.UUID(sim.project_id)) == sim.project_id == sim.account_sid
        assert sim.api_token == sim.auth_token
        sim.generate(2, start=DAY)
        api = TwilioClient(http, sim)
        listing = await api.get("Recordings.json")
        assert listing.status == 200
        assert listing.json["uri"].startswith(f"/api/laml/2010-04-01/Accounts/{sim.project_id}/")
        origin = str(URL(sim.base_url).origin())
        twilio_path = await api.get(
            f"{origin}/2010-04-01/Accounts/{sim.project_id}/Recordings.json"
        )
        assert_error(twilio_path, 404, 20404)  # the prefix is part of the API's address


# --------------------------------------------------------------------------- paging


async def test_next_page_uri_keeps_the_filters_and_visits_every_recording_once(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    twilio_sim.generate(3, start=DAY - timedelta(days=2))  # before the window
    wanted = twilio_sim.generate(
        23,
        start=DAY,
        spacing=timedelta(hours=1),
        same_second_every=3,  # ties on every page
    )
    twilio_sim.generate(2, start=DAY + timedelta(days=3))  # after it
    params = {"DateCreated>": "2026-12-01", "DateCreated<": "2026-12-01", "PageSize": "5"}
    pages = await api.walk("Recordings.json", params)
    seen = sids(pages)
    assert len(seen) == len(set(seen)) == 23 and set(seen) == {r.sid for r in wanted}
    order = [(twilio_sim.recordings[s].date_created, s) for s in seen]
    assert order == sorted(order, reverse=True)  # newest first, the SID breaks ties
    assert [p["page"] for p in pages] == [0, 1, 2, 3, 4]
    assert [p["start"] for p in pages] == [0, 5, 10, 15, 20]
    assert pages[-1]["end"] == 22 and pages[-1]["next_page_uri"] is None
    for page in pages[:-1]:
        nxt = URL(page["next_page_uri"])
        assert nxt.query["DateCreated>"] == nxt.query["DateCreated<"] == "2026-12-01"
        assert nxt.query["PageSize"] == "5" and nxt.query["PageToken"].startswith("PA")
        assert "DateCreated%3E=2026-12-01" in page["next_page_uri"]
    again = await api.get(pages[0]["next_page_uri"])  # the same cursor gives the same page
    assert sids([again.json]) == sids([pages[1]])
    back = await api.get(pages[2]["previous_page_uri"])
    assert back.json["page"] == 1 and sids([back.json]) == sids([pages[1]])
    assert pages[0]["previous_page_uri"] is None


async def test_a_cursor_survives_the_deletion_of_the_page_it_came_from(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    recs = twilio_sim.generate(12, start=DAY)
    first = await api.get("Recordings.json", params={"PageSize": "4"})
    for item in first.json["recordings"]:  # an archiver deletes what it has archived
        assert (await api.delete(f"Recordings/{item['sid']}.json")).status == 204
    rest = await api.walk(first.json["next_page_uri"], {})
    assert sorted(sids([first.json]) + sids(rest)) == sorted(r.sid for r in recs)


async def test_page_is_client_state_and_page_size_is_bounded(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    twilio_sim.generate(60, start=DAY)
    default = await api.get("Recordings.json")
    assert default.json["page_size"] == 50 and len(default.json["recordings"]) == 50
    most = await api.get("Recordings.json", params={"PageSize": "1000"})
    assert len(most.json["recordings"]) == 60 and most.json["next_page_uri"] is None
    assert_error(await api.get("Recordings.json", params={"PageSize": "1001"}), 400, 20001)
    assert_error(await api.get("Recordings.json", params={"PageSize": "0"}), 400, 20001)
    # without a PageToken, Page only labels the answer: it is still the first page
    labelled = await api.get("Recordings.json", params={"PageSize": "10", "Page": "3"})
    assert labelled.json["page"] == 3 and labelled.json["start"] == 30
    assert sids([labelled.json]) == sids([default.json])[:10]
    bad = await api.get("Recordings.json", params={"PageToken": "nonsense"})
    assert_error(bad, 400, 20001)


async def test_date_created_filters_compare_whole_gmt_days(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    edges = [
        DAY - timedelta(seconds=1),
        DAY,
        DAY + timedelta(hours=23, minutes=59, seconds=59),
        DAY + timedelta(days=1),
    ]
    recs = [twilio_sim.generate(1, start=when)[0] for when in edges]
    before, first, last, after = (r.sid for r in recs)

    async def listed(**params: str) -> set[str]:
        answer = await api.get("Recordings.json", params=params)
        assert answer.status == 200, answer.raw
        return set(sids([answer.json]))

    assert await listed(DateCreated="2026-12-01") == {first, last}
    assert await listed(**{"DateCreated>": "2026-12-01"}) == {first, last, after}
    assert await listed(**{"DateCreated<": "2026-12-01"}) == {before, first, last}
    # a time is not honoured: the day is all that is compared
    assert await listed(**{"DateCreated>": "2026-12-01T12:00:00Z"}) == {first, last, after}
    assert await listed(CallSid=recs[2].call_sid or "") == {last}
    assert_error(await api.get("Recordings.json", params={"DateCreated": "01/12/2026"}), 400, 20001)


# --------------------------------------------------------------------------- media


async def test_media_needs_credentials_and_comes_as_wav_or_mp3(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    (rec,) = twilio_sim.generate(1, start=DAY, size=32_044)
    assert_error(await api.get(f"Recordings/{rec.sid}", auth=False), 401, 20003)
    plain = await api.get(f"Recordings/{rec.sid}")
    wav = await api.get(f"Recordings/{rec.sid}.wav")
    assert plain.status == wav.status == 200 and plain.raw == wav.raw
    assert wav.headers["Content-Type"] == "audio/x-wav" and wav.raw[:4] == b"RIFF"
    assert wav.raw == twilio_sim.media_body(rec).data() and len(wav.raw) == 32_044
    mp3 = await api.get(f"Recordings/{rec.sid}.mp3")
    assert mp3.status == 200 and mp3.headers["Content-Type"] == "audio/mpeg"
    assert mp3.raw.startswith(b"ID3") and mp3.raw[10:12] == b"\xff\xfb"
    assert mp3.raw == twilio_sim.media_body(rec, "mp3").data()


async def test_requested_channels_mixes_a_dual_channel_recording_down(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    (dual,) = twilio_sim.generate(1, start=DAY, size=32_044, channels=2)
    (mono,) = twilio_sim.generate(1, start=DAY, size=32_044)
    both = await api.get(f"Recordings/{dual.sid}.wav", params={"RequestedChannels": "2"})
    mixed = await api.get(f"Recordings/{dual.sid}.wav", params={"RequestedChannels": "1"})
    assert struct.unpack("<H", both.raw[22:24]) == (2,) and len(both.raw) == 32_044
    assert struct.unpack("<H", mixed.raw[22:24]) == (1,) and len(mixed.raw) == 16_044
    assert mixed.raw == twilio_sim.media_body(dual, channels=1).data()
    refused = await api.get(f"Recordings/{mono.sid}", params={"RequestedChannels": "2"})
    assert_error(refused, 400, 16113)


async def test_a_recording_not_yet_completed_is_listed_but_its_media_is_404(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    processing, in_progress, absent = twilio_sim.generate(3, start=DAY)
    twilio_sim.set_status(processing, "processing")
    twilio_sim.set_status(in_progress, "in-progress")
    twilio_sim.set_status(absent, "absent", error_code=16107)
    listing = await api.get("Recordings.json")
    shown = {r["sid"]: r for r in listing.json["recordings"]}
    assert shown[processing.sid]["status"] == "processing"
    assert shown[in_progress.sid]["duration"] == "-1"
    assert shown[absent.sid]["error_code"] == 16107
    for rec in (processing, in_progress, absent):
        assert_error(await api.get(f"Recordings/{rec.sid}.wav"), 404, 20404)
    twilio_sim.set_status(processing, "completed")
    assert (await api.get(f"Recordings/{processing.sid}.wav")).status == 200


async def test_media_may_redirect_to_a_storage_host_that_refuses_credentials(
    http: aiohttp.ClientSession,
) -> None:
    async with TwilioSimulator(media_mode="redirect") as sim:
        (rec,) = sim.generate(1, start=DAY)
        api = TwilioClient(http, sim)
        answer = await api.get(f"Recordings/{rec.sid}.mp3")
        assert answer.status == 302
        location = answer.headers["Location"]
        assert location.startswith(sim.storage_origin)
        leaked = await api.get(location)  # the API's credentials sent along: refused
        assert leaked.status == 400 and b"Only one auth mechanism allowed" in leaked.raw
        clean = await api.get(location, auth=False)
        assert clean.status == 200 and clean.raw == sim.media_body(rec, "mp3").data()
        to_storage = [r for r in sim.requests if r.path.startswith("/storage/")]
        assert [r.auth_header_present for r in to_storage] == [True, False]
        assert [r.status for r in to_storage] == [400, 200]


# --------------------------------------------------------------------------- deleting


async def test_delete_answers_204_then_404_and_keeps_the_resource_as_deleted(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    (rec,) = twilio_sim.generate(1, start=DAY)
    gone = await api.delete(f"Recordings/{rec.sid}.json")
    assert gone.status == 204 and gone.raw == b""
    assert twilio_sim.deleted == [rec.sid] and rec.sid not in twilio_sim.recordings
    assert_error(await api.delete(f"Recordings/{rec.sid}.json"), 404, 20404)
    assert_error(await api.get(f"Recordings/{rec.sid}.json"), 404, 20404)
    assert_error(await api.get(f"Recordings/{rec.sid}.wav"), 404, 20404)
    assert (await api.get("Recordings.json")).json["recordings"] == []
    soft = await api.get(f"Recordings/{rec.sid}.json", params={"IncludeSoftDeleted": "true"})
    assert soft.status == 200 and soft.json["status"] == "deleted"
    listed = await api.get("Recordings.json", params={"IncludeSoftDeleted": "true"})
    assert sids([listed.json]) == [rec.sid]
    assert_error(await api.get("Recordings.json", auth=False), 401, 20003)


# --------------------------------------------------------------------------- concurrency


async def test_too_many_concurrent_requests_for_one_account_answer_429_code_20429(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    sub = twilio_sim.add_subaccount("busy neighbour")
    twilio_sim.generate(2, start=DAY)
    twilio_sim.concurrency_limit = 2
    twilio_sim.latency = 0.3  # every request is in flight at once
    main_calls = [api.get("Recordings.json") for _ in range(4)]
    sub_calls = [api.get("Recordings.json", account=sub.sid) for _ in range(2)]
    answers = await asyncio.gather(*main_calls, *sub_calls)
    main, other = answers[:4], answers[4:]
    assert sorted(a.status for a in main) == [200, 200, 429, 429]
    assert [a.status for a in other] == [200, 200]  # counted per account
    for refused in (a for a in main if a.status == 429):
        assert_error(refused, 429, 20429)
    assert all("Twilio-Concurrent-Requests" in a.headers for a in answers)
    twilio_sim.latency = 0.0
    assert (await api.get("Recordings.json")).status == 200


# --------------------------------------------------------------------------- sub-accounts


async def test_accounts_lists_the_main_account_and_its_subaccounts(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    subs = [twilio_sim.add_subaccount(f"customer {i}") for i in range(3)]
    twilio_sim.set_account_status(subs[1].sid, "suspended")
    pages = await api.walk(f"{twilio_sim.api_base}/Accounts.json", {"PageSize": "2"}, "accounts")
    listed = [a for page in pages for a in page["accounts"]]
    assert [a["sid"] for a in listed] == [twilio_sim.account_sid, *(s.sid for s in subs)]
    assert {"sid", "friendly_name", "status", "owner_account_sid", "date_created", "type"} <= set(
        listed[0]
    )
    assert [a["owner_account_sid"] for a in listed] == [twilio_sim.account_sid] * 4
    assert [a["status"] for a in listed] == ["active", "active", "suspended", "active"]
    assert all(RFC2822_GMT.fullmatch(a["date_created"]) for a in listed)
    active = await api.get(f"{twilio_sim.api_base}/Accounts.json", params={"Status": "active"})
    assert len(active.json["accounts"]) == 3 and "Status=active" in active.json["first_page_uri"]
    named = await api.get(
        f"{twilio_sim.api_base}/Accounts.json", params={"FriendlyName": "customer 2"}
    )
    assert [a["sid"] for a in named.json["accounts"]] == [subs[2].sid]
    own = await api.as_(subs[0].sid, subs[0].auth_token).get(f"{twilio_sim.api_base}/Accounts.json")
    assert [a["sid"] for a in own.json["accounts"]] == [subs[0].sid]  # not its siblings


async def test_a_parents_credentials_reach_its_subaccounts_and_not_the_other_way(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    sub, sibling = twilio_sim.add_subaccount("a"), twilio_sim.add_subaccount("b")
    (rec,) = twilio_sim.generate(1, start=DAY, account_sid=sub.sid)
    twilio_sim.generate(1, start=DAY)
    listing = await api.get("Recordings.json", account=sub.sid)
    assert [r["account_sid"] for r in listing.json["recordings"]] == [sub.sid]
    assert (await api.get(f"Recordings/{rec.sid}.wav", account=sub.sid)).status == 200
    # a recording belongs to one account: not found under its parent's
    assert_error(await api.get(f"Recordings/{rec.sid}.json"), 404, 20404)
    as_sub = api.as_(sub.sid, sub.auth_token)
    assert (await as_sub.get("Recordings.json", account=sub.sid)).status == 200
    assert_error(await as_sub.get("Recordings.json"), 403, 20006)
    assert_error(await as_sub.get("Recordings.json", account=sibling.sid), 403, 20006)
    assert_error(
        await api.as_(sub.sid, "wrong").get("Recordings.json", account=sub.sid), 401, 20003
    )
    assert (await api.delete(f"Recordings/{rec.sid}.json", account=sub.sid)).status == 204


async def test_a_suspended_or_closed_subaccount_is_refused(
    api: TwilioClient, twilio_sim: TwilioSimulator
) -> None:
    sub = twilio_sim.add_subaccount("late payer")
    twilio_sim.generate(1, start=DAY, account_sid=sub.sid)
    twilio_sim.set_account_status(sub.sid, "suspended")
    as_sub = api.as_(sub.sid, sub.auth_token)
    assert_error(await api.get("Recordings.json", account=sub.sid), 401, 20005)
    assert_error(await as_sub.get("Recordings.json", account=sub.sid), 401, 20005)
    resource = await api.get(f"{twilio_sim.api_base}/Accounts/{sub.sid}.json")
    assert resource.status == 200 and resource.json["status"] == "suspended"
    twilio_sim.set_account_status(sub.sid, "closed")
    assert_error(await api.get("Recordings.json", account=sub.sid), 401, 20005)
    assert_error(await as_sub.get("Recordings.json", account=sub.sid), 401, 20003)
    assert (await api.get("Recordings.json")).status == 200  # the parent itself is fine


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize("platform", ["twilio", "signalwire"])
async def test_archiver_simulator_serves_a_twilio_platform(
    http: aiohttp.ClientSession, platform: str
) -> None:
    proc = await start_cli(
        "simulator", "--platform", platform, "--port", "0", "--recordings", "4",
        "--subaccounts", "2",
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: dict[str, list[str]] = {}
        while "oldest" not in lines:
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert raw, "the simulator exited"
            key, _, value = raw.decode().partition(":")
            lines.setdefault(key.strip(), []).append(value.strip())
        base_url, account, token = (
            lines["base_url"][0],
            lines["account_sid"][0],
            lines["auth_token"][0],
        )
        assert lines["platform"] == [platform] and len(lines["subaccount"]) == 2
        assert base_url.endswith("/api/laml") == (platform == "signalwire")
        headers = basic(account, token)
        async with http.get(f"{base_url}/2010-04-01/Accounts.json", headers=headers) as resp:
            assert resp.status == 200 and len((await resp.json())["accounts"]) == 3
        recordings = f"{base_url}/2010-04-01/Accounts/{account}/Recordings.json"
        async with http.get(recordings, headers=headers) as resp:
            assert resp.status == 200 and len((await resp.json())["recordings"]) == 4
    finally:
        proc.terminate()  # by its PID
        await proc.wait()
