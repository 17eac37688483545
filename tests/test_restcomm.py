"""The Restcomm client against the simulator: paging, parsing, media checks, credentials."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver.errors import (
    MediaDamaged,
    MediaNotReady,
    MediaUnavailable,
    SourceAuthError,
    SourceProtocolError,
    SourceUnavailable,
)
from archiver.listing import end_date_for, start_date_for
from archiver.model import InvalidItem, Recording
from archiver.simulator import RestcommSimulator, SimRecording
from archiver.source.restcomm import (
    RestcommClient,
    parse_date,
    parse_recording,
    parse_retry_after,
)
from tests.support.constants import NOW


def client_for(sim: RestcommSimulator, token: str | None = None) -> RestcommClient:
    return RestcommClient(sim.base_url, sim.account_sid, token or sim.auth_token)


async def test_pages_newest_first_and_end_of_list(sim: RestcommSimulator) -> None:
    sim.generate(25, start=NOW - timedelta(hours=3), spacing=timedelta(minutes=1))
    async with client_for(sim) as c:
        p0 = await c.list_page(0, 10, None)
        assert (p0.total, p0.num_pages, len(p0.items), p0.last) == (25, 2, 10, False)
        stamps = [x.date_created for x in p0.items if isinstance(x, Recording)]
        assert stamps == sorted(stamps, reverse=True)
        p2 = await c.list_page(2, 10, None)
        assert p2.last and len(p2.items) == 5
        past = await c.list_page(3, 10, None)  # the server answers 400 past the end
        assert past.last and past.items == []
    assert all(r.query.get("Accept") is None for r in sim.requests)
    assert all(r.path.endswith("Recordings.json") for r in sim.requests)


async def test_exact_multiple_ends_on_the_empty_page(sim: RestcommSimulator) -> None:
    sim.generate(20, start=NOW - timedelta(hours=1))
    async with client_for(sim) as c:
        assert not (await c.list_page(1, 10, None)).last
        assert (await c.list_page(2, 10, None)).last


async def test_parses_the_server_formats_and_learns_its_zone(sim: RestcommSimulator) -> None:
    rec = sim.generate(1, start=datetime(2026, 1, 6, 23, 51, 7, tzinfo=UTC))[0]
    async with client_for(sim) as c:
        page = await c.list_page(0, 10, None)
        item = page.items[0]
        assert isinstance(item, Recording)
        assert item.date_created == rec.date_created
        assert item.source["date_created"] == "Wed, 7 Jan 2026 08:51:07 +0900"
        assert isinstance(item.source["duration"], str)
        assert item.duration == pytest.approx(rec.duration)
        assert c.server_tz is not None
        assert c.server_tz.utcoffset(None) == timedelta(hours=9)


def test_parse_odd_dates_and_items() -> None:
    assert parse_date("Mon, 6 Jan 2014 08:51:07 +0900") == datetime(
        2014, 1, 5, 23, 51, 7, tzinfo=UTC
    )
    assert parse_date("2014-01-06T08:51:07Z") == datetime(2014, 1, 6, 8, 51, 7, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_date("yesterday")
    with pytest.raises(ValueError):
        parse_date("2014-01-06 08:51:07")  # no zone, none configured
    assert parse_date("2014-01-06 08:51:07", timezone(timedelta(hours=1))).hour == 7
    good = {
        "sid": "RE" + "a" * 32,
        "account_sid": "AC" + "b" * 32,
        "date_created": "Mon, 6 Jan 2014 08:51:07 +0900",
        "duration": "2.0",
        "file_uri": "http://internal:8080/x/RE.mp4",
        "extra_field": [1, 2],
    }
    rec = parse_recording(good)
    assert isinstance(rec, Recording) and rec.ext == "mp4" and rec.duration == 2.0
    for bad, why in [
        ({**good, "sid": "../x"}, "malformed"),
        ({**good, "date_created": "13/13/13"}, "no known format"),
        ({**good, "duration": "long"}, "not a number"),
        ({**good, "account_sid": "AC/../.."}, "malformed"),
    ]:
        item = parse_recording(bad)
        assert isinstance(item, InvalidItem) and why in item.reason
    assert isinstance(parse_recording(["not", "a", "dict"]), InvalidItem)


@given(
    since=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    behind=st.one_of(st.none(), st.timedeltas(timedelta(0), timedelta(days=3))),
)
def test_start_date_covers_every_zone_and_never_passes_the_servers_date(
    since: datetime, behind: timedelta | None
) -> None:
    server_now = None if behind is None else since - behind
    start = start_date_for(since, server_now)
    for minutes in range(-12 * 60, 14 * 60 + 1, 15):  # every offset in use, and then some
        zone = timezone(timedelta(minutes=minutes))
        midnight = datetime(start.year, start.month, start.day, tzinfo=zone)
        assert midnight <= since  # the server's StartTime midnight, in any zone, is early enough
        if server_now is not None:
            assert start <= server_now.astimezone(zone).date()  # never a day not begun there
    earliest = since if server_now is None else min(since, server_now)
    assert earliest - start_as_utc(start) <= timedelta(days=2)  # and not needlessly early


def start_as_utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_end_date_covers_every_zone() -> None:
    until = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    end = end_date_for(until)
    for minutes in range(-12 * 60, 14 * 60 + 1, 15):
        zone = timezone(timedelta(minutes=minutes))
        assert end >= until.astimezone(zone).date()


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    value = parse_retry_after(later)
    assert value is not None and 20 < value <= 31


async def test_wrong_token_is_an_auth_error(sim: RestcommSimulator) -> None:
    async with client_for(sim, token="wrong") as c:
        with pytest.raises(SourceAuthError, match="401"):
            await c.list_page(0, 10, None)


async def test_malformed_pages_are_protocol_errors(sim: RestcommSimulator) -> None:
    async with client_for(sim) as c:
        sim.inject(
            path="Recordings", status=200, body=b"<html>oops</html>", content_type="text/html"
        )
        with pytest.raises(SourceProtocolError, match="not JSON"):
            await c.list_page(0, 10, None)
        sim.inject(
            path="Recordings", status=200, body=b'{"page": 0}', content_type="application/json"
        )
        with pytest.raises(SourceProtocolError, match="recordings"):
            await c.list_page(0, 10, None)
        sim.inject(path="Recordings", status=503, retry_after="3")
        with pytest.raises(SourceUnavailable) as info:
            await c.list_page(0, 10, None)
        assert info.value.retry_after == 3.0


async def test_foreign_next_page_uri_is_never_followed(sim: RestcommSimulator) -> None:
    sim.generate(3, start=NOW - timedelta(hours=1))
    body = (
        b'{"page":0,"num_pages":1,"page_size":2,"total":3,'
        b'"next_page_uri":"http://evil.invalid/steal?Page=1","recordings":[]}'
    )
    sim.inject(path="Recordings", status=200, body=body, content_type="application/json")
    async with client_for(sim) as c:
        page = await c.list_page(0, 2, None)
        assert page.last  # an empty page ends the list whatever next_page_uri says
        await c.list_page(1, 2, None)
    assert all(r.host_port == sim.requests[0].host_port for r in sim.requests)


async def _download(c: RestcommClient, sid: str, ext: str = "wav") -> bytes:
    out = bytearray()
    async with c.media(sid, ext) as body:
        async for chunk in body:
            out += chunk
    return bytes(out)


async def test_media_streams_and_hashes(sim: RestcommSimulator) -> None:
    rec = sim.generate(1, start=NOW, size=1_000_000)[0]
    async with client_for(sim) as c, c.media(rec.sid, "wav") as body:
        data = b"".join([chunk async for chunk in body])
        assert body.sha256 == rec.sha256() and body.size == rec.size == len(data)
    media = [r for r in sim.requests if r.path.endswith(".wav")]
    assert media and media[0].path == (
        f"/restcomm/2012-04-24/Accounts/{sim.account_sid}/Recordings/{rec.sid}.wav"
    )


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        (
            {"status": 200, "body": b"<html>Error 500</html>", "content_type": "text/html"},
            MediaDamaged,
            "not a recording",
        ),
        ({"truncate_after": 5000}, (MediaDamaged, MediaUnavailable), "truncated|broke"),
        ({"content_length_delta": -10}, MediaDamaged, "truncated|WAVE"),
        ({"content_length_delta": 10}, (MediaDamaged, MediaUnavailable), "truncated|broke"),
        ({"status": 404}, MediaNotReady, "404"),
        ({"status": 502}, MediaUnavailable, "502"),
    ],
)
async def test_bad_media_is_never_accepted(
    sim: RestcommSimulator,
    fault: dict[str, object],
    error: type[Exception] | tuple[type[Exception], ...],
    match: str,
) -> None:
    rec = sim.generate(1, start=NOW, size=50_000)[0]
    sim.inject(path=r"\.wav", **fault)  # type: ignore[arg-type]
    async with client_for(sim) as c:
        with pytest.raises(error, match=match):
            await _download(c, rec.sid)


async def test_redirect_to_storage_is_followed_without_credentials() -> None:
    async with RestcommSimulator(media_mode="redirect") as sim:
        rec = sim.generate(1, start=NOW)[0]
        async with client_for(sim) as c:
            assert await _download(c, rec.sid) == rec.body()
        storage = [r for r in sim.requests if r.path.startswith("/storage/")]
        api = [r for r in sim.requests if not r.path.startswith("/storage/")]
        assert storage and not any(r.auth_header_present for r in storage)
        assert api[0].host_port != storage[0].host_port


async def test_credentials_only_to_the_configured_origin(sim: RestcommSimulator) -> None:
    sim.generate(2, start=NOW)
    async with client_for(sim) as c:
        await c.list_page(0, 10, None)
    assert sim.requests[-1].authorized
    # the same server under another origin (localhost vs 127.0.0.1) gets no credentials
    other = sim.base_url.replace("127.0.0.1", "localhost")
    async with RestcommClient(sim.base_url, sim.account_sid, sim.auth_token) as c:
        rec = next(iter(sim.recordings.values()))
        headers = c._headers_for(f"{other}/2012-04-24/x", "*/*")
        assert "Authorization" not in headers
        assert await _download(c, rec.sid) == rec.body()


async def test_hostile_sid_never_reaches_the_network(sim: RestcommSimulator) -> None:
    sim.add(
        SimRecording(
            sid="..%2f..%2fx",
            account_sid=sim.account_sid,
            call_sid=None,
            date_created=NOW,
            duration=1.0,
        )
    )
    async with client_for(sim) as c:
        with pytest.raises(Exception, match="malformed"):
            await _download(c, "../x")
    assert not sim.requests
