"""Tests for archiver.simulator: real HTTP against the started simulator."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from yarl import URL

from archiver.simulator import (
    DEFAULT_ACCOUNT_SID,
    RestcommSimulator,
    SimRecording,
    format_java_date,
    gson_dumps,
    java_double,
    parse_java_date_prefix,
    wav_header,
)

JST = timezone(timedelta(hours=9))
START = datetime(2015, 1, 1, tzinfo=UTC)
FOREIGN = "AC" + "f" * 32
ENVELOPE_KEYS = [
    "page",
    "num_pages",
    "page_size",
    "total",
    "start",
    "end",
    "uri",
    "first_page_uri",
    "previous_page_uri",
    "next_page_uri",
    "last_page_uri",
    "recordings",
]
RECORDING_KEYS = [
    "sid",
    "date_created",
    "date_updated",
    "account_sid",
    "call_sid",
    "duration",
    "api_version",
    "uri",
    "file_uri",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def sim() -> AsyncIterator[RestcommSimulator]:
    async with RestcommSimulator() as simulator:
        yield simulator


def auth(sim: RestcommSimulator, token: str | None = None) -> dict[str, str]:
    value = aiohttp.encode_basic_auth(sim.account_sid, token or sim.auth_token)
    return {"Authorization": value}


def recordings_url(
    sim: RestcommSimulator, suffix: str = ".json", account: str | None = None
) -> str:
    return f"{sim.base_url}/2012-04-24/Accounts/{account or sim.account_sid}/Recordings{suffix}"


async def get_json(
    http: aiohttp.ClientSession, sim: RestcommSimulator, **params: str | int
) -> tuple[int, Any]:
    query = {k: str(v) for k, v in params.items()}
    async with http.get(recordings_url(sim), params=query, headers=auth(sim)) as resp:
        text = await resp.text()
        is_json = resp.content_type == "application/json"
        return resp.status, (json.loads(text) if is_json else text)


async def list_sids(
    http: aiohttp.ClientSession, sim: RestcommSimulator, **params: str
) -> list[str]:
    status, body = await get_json(http, sim, **params)
    assert status == 200
    return [r["sid"] for r in body["recordings"]]


def rec_at(sim: RestcommSimulator, when: datetime, **kw: Any) -> SimRecording:
    return sim.add(
        SimRecording(sim.make_sid(), sim.account_sid, kw.pop("call_sid", None), when, 2.0, **kw)
    )


# --------------------------------------------------------------------------- pure helpers


def test_formatting_helpers() -> None:
    assert java_double(2.0) == "2.0"
    assert java_double(14.70275) == "14.70275"
    assert java_double(59) == "59.0"
    assert java_double(1e7) == "1.0E7"
    assert java_double(0.0001) == "1.0E-4"
    when = datetime(2014, 1, 5, 23, 51, 7, tzinfo=UTC)
    assert format_java_date(when, JST) == "Mon, 6 Jan 2014 08:51:07 +0900"
    assert format_java_date(when, UTC) == "Sun, 5 Jan 2014 23:51:07 +0000"
    assert (
        gson_dumps({"u": "a?b=1&c=<'>"})
        == '{\n  "u": "a?b\\u003d1\\u0026c\\u003d\\u003c\\u0027\\u003e"\n}'
    )
    assert parse_java_date_prefix("2015-1-8") == datetime(2015, 1, 8).date()
    assert parse_java_date_prefix("2015-01-08T23:59:59Z") == datetime(2015, 1, 8).date()
    assert parse_java_date_prefix("2015-13-40") == datetime(2016, 2, 9).date()
    assert parse_java_date_prefix("08/01/2015") is None
    assert parse_java_date_prefix("") is None


def test_bodies_are_deterministic_and_chunk_independent() -> None:
    rec = SimRecording("RE" + "1" * 32, DEFAULT_ACCOUNT_SID, None, START, 1.0, size=300_000)
    body = rec.body()
    assert len(body) == 300_000
    assert b"".join(rec.iter_body(7_777)) == body
    assert all(len(c) <= 7_777 for c in rec.iter_body(7_777))
    assert rec.sha256() == hashlib.sha256(body).hexdigest()
    assert body[:44] == wav_header(300_000 - 44)
    assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", body[4:8])[0] == 300_000 - 8
    assert struct.unpack("<I", body[40:44])[0] == 300_000 - 44
    other = SimRecording(rec.sid, rec.account_sid, None, START, 1.0, size=300_000, seed=1)
    assert other.sha256() != rec.sha256()
    # every 64 KiB block differs (no repeated content a client could confuse)
    blocks = {body[44 + i : 44 + i + 65536] for i in range(0, 3 * 65536, 65536)}
    assert len(blocks) == 3
    mp4 = SimRecording("RE" + "2" * 32, DEFAULT_ACCOUNT_SID, None, START, 1.0, ext="mp4")
    assert mp4.body()[4:8] == b"ftyp" and len(mp4.body()) == mp4.size


def test_generate_layout() -> None:
    sim = RestcommSimulator(seed=3)
    recs = sim.generate(6, start=START, same_second_every=3, ext_mp4_every=2)
    assert [r.ext for r in recs] == ["wav", "mp4"] * 3
    assert len({r.date_created for r in recs[:3]}) == 1
    assert recs[3].date_created - recs[0].date_created == timedelta(seconds=7)
    assert all(len(r.sid) == 34 and r.sid.startswith("RE") for r in recs)
    again = RestcommSimulator(seed=3).generate(6, start=START)
    assert [r.sid for r in again] == [r.sid for r in recs]


# --------------------------------------------------------------------------- list envelope


async def test_envelope_fields_order_and_null_strings(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    sim.generate(34, start=START)
    async with http.get(recordings_url(sim), params={"PageSize": "10"}, headers=auth(sim)) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        raw = await resp.text()
    assert "\\u003d" in raw and "\\u0026" in raw and '\n  "page": 0,' in raw
    body = json.loads(raw)
    assert list(body) == ENVELOPE_KEYS
    uri = f"/restcomm/2012-04-24/Accounts/{sim.account_sid}/Recordings"
    assert body["uri"] == uri
    assert (body["page"], body["num_pages"], body["page_size"], body["total"]) == (0, 3, 10, 34)
    assert (body["start"], body["end"]) == ("0", "9")
    assert body["previous_page_uri"] == "null"
    assert body["first_page_uri"] == f"{uri}?Page=0&PageSize=10"
    assert body["last_page_uri"] == f"{uri}?Page=3&PageSize=10"
    last_sid = body["recordings"][-1]["sid"]
    assert body["next_page_uri"] == f"{uri}?Page=1&PageSize=10&AfterSid={last_sid}"
    item = body["recordings"][0]
    assert list(item) == RECORDING_KEYS
    assert item["duration"] == "1.0" and item["api_version"] == "2012-04-24"
    assert item["uri"] == f"/2012-04-24/Accounts/{sim.account_sid}/Recordings/{item['sid']}.json"
    assert item["file_uri"].startswith("http://internal.invalid:8080/restcomm/2012-04-24/")
    # newest first
    assert item["sid"] == max(sim.recordings.values(), key=lambda r: r.date_created).sid

    status, page2 = await get_json(http, sim, Page=2, PageSize=10, StartTime="2000-01-01")
    assert status == 200 and (page2["start"], page2["end"]) == ("20", "29")
    assert "StartTime" not in page2["next_page_uri"]  # filters are dropped
    assert page2["previous_page_uri"] == f"{uri}?Page=1&PageSize=10"
    status, page3 = await get_json(http, sim, Page=3, PageSize=10)
    assert (page3["start"], page3["end"], page3["next_page_uri"]) == ("30", "34", "null")
    assert len(page3["recordings"]) == 4
    status, default = await get_json(http, sim)
    assert (default["num_pages"], default["start"], default["end"]) == (0, "0", "34")


async def test_exact_multiple_has_empty_last_page_then_400(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    sim.generate(20, start=START)
    status, page1 = await get_json(http, sim, Page=1, PageSize=10)
    assert status == 200 and page1["num_pages"] == 2
    assert page1["next_page_uri"].startswith(page1["uri"] + "?Page=2&PageSize=10&AfterSid=RE")
    status, page2 = await get_json(http, sim, Page=2, PageSize=10)
    assert status == 200 and page2["recordings"] == []
    assert (page2["start"], page2["end"], page2["next_page_uri"]) == ("20", "20", "null")
    async with http.get(
        recordings_url(sim), params={"Page": "3", "PageSize": "10"}, headers=auth(sim)
    ) as resp:
        assert resp.status == 400 and await resp.read() == b""


async def test_empty_account_and_bad_numbers(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get_json(http, sim)
    assert status == 200 and body["total"] == 0 and body["recordings"] == []
    assert body["next_page_uri"] == "null" and body["end"] == "0"
    assert (await get_json(http, sim, Page=1))[0] == 400
    assert (await get_json(http, sim, PageSize=0))[0] == 500
    async with http.get(recordings_url(sim), params={"Page": "x"}, headers=auth(sim)) as resp:
        assert resp.status == 500 and "text/html" in resp.headers["Content-Type"]


async def test_page_uris_json_variant(http: aiohttp.ClientSession) -> None:
    async with RestcommSimulator(page_uris_json=True) as sim:
        sim.generate(3, start=START)
        _, body = await get_json(http, sim, PageSize=1)
        assert body["uri"].endswith("/Recordings.json")
        assert body["next_page_uri"].startswith(body["uri"] + "?Page=1&PageSize=1&AfterSid=")


# --------------------------------------------------------------------------- filters, sort


async def test_date_filters_use_server_tz_and_end_plus_one_day(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    def local(y: int, mo: int, d: int, h: int, mi: int, s: int) -> datetime:
        return datetime(y, mo, d, h, mi, s, tzinfo=JST)

    before = rec_at(sim, local(2015, 1, 7, 23, 59, 59))
    first = rec_at(sim, local(2015, 1, 8, 0, 0, 0))
    mid = rec_at(sim, local(2015, 1, 8, 12, 0, 0))
    midnight = rec_at(sim, local(2015, 1, 9, 0, 0, 0))
    after = rec_at(sim, local(2015, 1, 9, 0, 0, 1))

    for start in ("2015-01-08", "2015-1-8", "2015-01-08T23:59:59Z", "2015-01-08 08:51:07.955000"):
        got = set(await list_sids(http, sim, StartTime=start))
        assert got == {first.sid, mid.sid, midnight.sid, after.sid}, start
    got = set(await list_sids(http, sim, EndTime="2015-01-08"))
    assert got == {before.sid, first.sid, mid.sid, midnight.sid}
    got = set(await list_sids(http, sim, StartTime="2015-01-08", EndTime="2015-01-08"))
    assert got == {first.sid, mid.sid, midnight.sid}
    # UTC midnight of Jan 8 is 09:00 local: the server uses its own zone, not the client's
    assert before.date_created.astimezone(UTC).day == 7
    for bad in ("08/01/2015", "", "yesterday"):
        async with http.get(
            recordings_url(sim), params={"StartTime": bad}, headers=auth(sim)
        ) as resp:
            assert resp.status == 400 and await resp.read() == b""
    # Twilio dialect is silently ignored
    assert len(await list_sids(http, sim, **{"DateCreated>": "2030-01-01"})) == 5


async def test_callsid_like_and_sortby(sim: RestcommSimulator, http: aiohttp.ClientSession) -> None:
    a = rec_at(sim, START, call_sid="ID" + "a" * 32 + "-CA" + "1" * 32)
    b = rec_at(sim, START + timedelta(seconds=1), call_sid="ID" + "b" * 32 + "-CA" + "2" * 32)
    a.duration, b.duration = 5.0, 1.0
    assert await list_sids(http, sim, CallSid="%-CA" + "1" * 32) == [a.sid]
    assert await list_sids(http, sim, CallSid="ID_" + "b" * 31 + "%") == [b.sid]
    assert await list_sids(http, sim, CallSid="CA" + "1" * 32) == []
    assert await list_sids(http, sim, SortBy="DateCreated") == [a.sid, b.sid]
    assert await list_sids(http, sim, SortBy="DateCreated:DESC") == [b.sid, a.sid]
    assert await list_sids(http, sim, SortBy="Duration:asc") == [b.sid, a.sid]
    assert await list_sids(http, sim, SortBy="date_created:asc") == [b.sid, a.sid]  # ignored
    for value, message in (
        ("DateCreated:up", "sort direction needs to be either ASC or DESC"),
        (":asc", "missing field to sort by"),
    ):
        status, body = await get_json(http, sim, SortBy=value)
        assert status == 400
        assert body == {"message": f"Error parsing the SortBy parameter: {message}"}


async def test_ties_are_shuffled_between_requests(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    sim.generate(30, start=START, same_second_every=30)
    orders = {tuple(await list_sids(http, sim)) for _ in range(4)}
    assert len(orders) > 1
    assert all(set(o) == set(sim.recordings) for o in orders)
    # in-place edits are seen despite the simulator's sort cache
    moved = next(iter(sim.recordings.values()))
    moved.date_created += timedelta(seconds=1)
    assert (await list_sids(http, sim))[0] == moved.sid
    # ties across a page boundary: pages overlap or miss rows from one request to the next
    seen = [set(await list_sids(http, sim, PageSize="10", Page=str(p))) for p in range(3)]
    assert sum(len(s) for s in seen) == 30


async def test_ties_stable_without_shuffle(http: aiohttp.ClientSession) -> None:
    async with RestcommSimulator(shuffle_ties=False) as sim:
        sim.generate(10, start=START, same_second_every=10)
        orders = {tuple(await list_sids(http, sim)) for _ in range(3)}
        assert len(orders) == 1


# --------------------------------------------------------------------------- formats, auth


async def test_xml_unless_json_requested(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    (rec,) = sim.generate(1, start=START)
    for headers in ({}, {"Accept": "*/*"}):
        async with http.get(recordings_url(sim, ""), headers={**auth(sim), **headers}) as resp:
            assert resp.status == 200 and resp.content_type == "application/xml"
            text = await resp.text()
        assert text.startswith("<RestcommResponse>\n  <Recordings>\n    <Recording>\n")
        assert f"<Sid>{rec.sid}</Sid>" in text and "<Duration>1.0</Duration>" in text
        assert "Page" not in text and "total" not in text
    json_accept = {**auth(sim), "Accept": "application/json;q=0.1"}
    async with http.get(recordings_url(sim, ""), headers=json_accept) as resp:
        assert resp.content_type == "application/json"
    # .json stripped from any segment
    url = f"{recordings_url(sim, '.json')}/{rec.sid}"
    async with http.get(url, headers=auth(sim)) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["sid"] == rec.sid and list(body) == RECORDING_KEYS
    async with http.get(f"{recordings_url(sim, '')}/{rec.sid}", headers=auth(sim)) as resp:
        text = await resp.text()
    assert text.startswith("<RestcommResponse>\n  <Recording>\n    <Sid>")


async def test_auth_401_403_and_request_log(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    sim.generate(1, start=START)
    async with http.get(recordings_url(sim)) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="Restcomm realm"'
        assert await resp.read() == b""
    async with http.get(recordings_url(sim), headers=auth(sim, "wrong")) as resp:
        assert resp.status == 401
    async with http.get(recordings_url(sim, account=FOREIGN), headers=auth(sim)) as resp:
        assert resp.status == 403
    async with http.get(recordings_url(sim), headers=auth(sim)) as resp:
        assert resp.status == 200
    log = sim.requests
    assert [(r.authorized, r.auth_header_present, r.status) for r in log] == [
        (False, False, 401),
        (False, True, 401),
        (True, True, 403),
        (True, True, 200),
    ]
    assert log[0].host_port == sim.base_url.split("/")[2]


async def test_single_recording_errors(sim: RestcommSimulator, http: aiohttp.ClientSession) -> None:
    base = recordings_url(sim, "")
    async with http.get(f"{base}/RE{'0' * 32}.json", headers=auth(sim)) as resp:
        assert resp.status == 404
    async with http.get(f"{base}/RE123.json", headers=auth(sim)) as resp:
        assert resp.status == 500
    async with http.get(f"{base}/RE{'0' * 32}.mp3", headers=auth(sim)) as resp:
        assert resp.status == 500
    # SecurityFilter regex hole: unauthenticated SIDs ending in a/4 give 500, not 401
    async with http.get(f"{base}/RE{'0' * 31}a") as resp:
        assert resp.status == 500
    async with http.get(f"{base}/RE{'0' * 31}b") as resp:
        assert resp.status == 401


# --------------------------------------------------------------------------- media


async def test_media_without_auth(sim: RestcommSimulator, http: aiohttp.ClientSession) -> None:
    wav, mp4 = sim.generate(2, start=START, size=200_000, ext_mp4_every=2)
    url = recordings_url(sim, f"/{wav.sid}.wav", account=FOREIGN)
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/x-wav"
        assert resp.content_length == 200_000
        data = await resp.read()
    assert hashlib.sha256(data).hexdigest() == wav.sha256()
    # the extension served comes from the recording, not from the request
    async with http.get(recordings_url(sim, f"/{mp4.sid}.wav")) as resp:
        assert resp.headers["Content-Type"] == "video/mp4"
        assert (await resp.read())[4:8] == b"ftyp"
    async with http.get(recordings_url(sim, f"/RE{'0' * 32}.wav")) as resp:
        assert resp.status == 404
    async with http.get(recordings_url(sim, f"/{wav.sid}.wav"), headers={"Accept": "audio/*"}) as r:
        assert r.status == 406
    assert sim.requests[0].authorized is False and sim.requests[0].status == 200


async def test_redirect_mode_goes_to_another_origin(http: aiohttp.ClientSession) -> None:
    async with RestcommSimulator(media_mode="redirect") as sim:
        (rec,) = sim.generate(1, start=START, size=70_000)
        url = recordings_url(sim, f"/{rec.sid}.wav")
        async with http.get(url, headers=auth(sim), allow_redirects=False) as resp:
            assert resp.status == 307
            location = URL(resp.headers["Location"])
        assert str(location.origin()) == sim.storage_origin
        assert location.origin() != URL(sim.base_url).origin()
        assert "X-Amz-Signature" in location.query
        # aiohttp drops Authorization on a cross-origin redirect
        async with http.get(url, headers=auth(sim)) as resp:
            assert resp.status == 200 and resp.content_length == 70_000
            assert hashlib.sha256(await resp.read()).hexdigest() == rec.sha256()
        storage = [r for r in sim.requests if r.path.startswith("/storage/")]
        assert storage[-1].auth_header_present is False
        assert storage[-1].host_port == f"{location.host}:{location.port}"
        # a client forwarding Basic auth to "S3" is refused, like real S3 does
        async with http.get(location, headers=auth(sim)) as resp:
            assert resp.status == 400
        async with http.get(location.with_query({"X-Amz-Signature": "0"})) as resp:
            assert resp.status == 403


async def test_proxy_mode_is_chunked(http: aiohttp.ClientSession) -> None:
    async with RestcommSimulator(media_mode="proxy") as sim:
        (rec,) = sim.generate(1, start=START, size=100_000)
        async with http.get(recordings_url(sim, f"/{rec.sid}.wav")) as resp:
            assert resp.status == 200 and "Content-Length" not in resp.headers
            assert resp.headers["Transfer-Encoding"] == "chunked"
            assert hashlib.sha256(await resp.read()).hexdigest() == rec.sha256()


# --------------------------------------------------------------------------- delete


async def test_delete_then_404(sim: RestcommSimulator, http: aiohttp.ClientSession) -> None:
    a, b = sim.generate(2, start=START)
    async with http.delete(recordings_url(sim, f".json/{a.sid}"), headers=auth(sim)) as resp:
        assert resp.status == 200 and await resp.read() == b""
    async with http.delete(recordings_url(sim, f"/{a.sid}.json"), headers=auth(sim)) as resp:
        assert resp.status == 404
    async with http.delete(recordings_url(sim, f"/{b.sid}")) as resp:
        assert resp.status in (401, 500)  # 500 only through the regex hole
    async with http.delete(recordings_url(sim, f"/{b.sid}.wav"), headers=auth(sim)) as resp:
        assert resp.status == 405
    assert sim.deleted == [a.sid] and set(sim.recordings) == {b.sid}
    async with http.get(recordings_url(sim, f"/{a.sid}.wav")) as resp:
        assert resp.status == 404


# --------------------------------------------------------------------------- faults, hooks


async def test_fault_503_with_retry_after_then_recovers(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    sim.generate(1, start=START)
    fault = sim.inject(path=r"/Recordings(\.json)?$", status=503, retry_after="2", times=2)
    for _ in range(2):
        async with http.get(recordings_url(sim), headers=auth(sim)) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "2"
    async with http.get(recordings_url(sim), headers=auth(sim)) as resp:
        assert resp.status == 200
    assert fault.hits == 2 and [r.fault for r in sim.requests] == [True, True, False]
    forever = sim.inject(status=502, times=None, method="*")
    for _ in range(3):
        async with http.delete(recordings_url(sim, "/x"), headers=auth(sim)) as resp:
            assert resp.status == 502
    forever.remove()
    assert sim.faults == [fault]


async def test_fault_truncate_and_wrong_length(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    (rec,) = sim.generate(1, start=START, size=300_000)
    url = recordings_url(sim, f"/{rec.sid}.wav")
    sim.inject(path=r"\.wav$", truncate_after=1000)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(url) as resp:
            assert resp.content_length == 300_000
            await resp.read()
    sim.inject(path=r"\.wav$", content_length_delta=5)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(url) as resp:
            assert resp.content_length == 300_005
            await resp.read()
    sim.inject(path=r"\.wav$", content_length_delta=-5)
    async with http.get(url) as resp:
        data = await resp.read()
    assert len(data) == 299_995 and hashlib.sha256(data).hexdigest() != rec.sha256()
    # and the connection still works afterwards
    async with http.get(url) as resp:
        assert hashlib.sha256(await resp.read()).hexdigest() == rec.sha256()


async def test_fault_html_error_page_as_audio(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    (rec,) = sim.generate(1, start=START)
    page = b"<html><body>Service Unavailable</body></html>"
    sim.inject(path=rec.sid, status=200, body=page, content_type="text/html", delay=0.05)
    async with http.get(recordings_url(sim, f"/{rec.sid}.wav")) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/html"
        assert await resp.read() == page


async def test_on_list_hook_mutates_between_pages(
    sim: RestcommSimulator, http: aiohttp.ClientSession
) -> None:
    recs = sim.generate(10, start=START)
    seen: list[int] = []

    async def hook(page: int) -> None:
        seen.append(page)
        if page == 1:  # an archiver deleting while paging skips rows
            for r in recs[-3:]:
                sim.recordings.pop(r.sid)

    sim.on_list = hook
    page0 = await list_sids(http, sim, Page="0", PageSize="3")
    page1 = await list_sids(http, sim, Page="1", PageSize="3")
    assert seen == [0, 1]
    assert page0 == [r.sid for r in reversed(recs[-3:])]
    assert page1 == [r.sid for r in reversed(recs[-9:-6])]  # rows recs[-6:-3] were skipped
    sim.on_list = seen.append  # plain callables work too
    await list_sids(http, sim)
    assert seen[-1] == 0
