"""Restcomm's wire format: paths, credentials, JSON (Gson) and XML bodies, the page/PageSize
query and its envelope, and the error bodies.

Quirks included (see ``/work/shared/spec/restcomm-server-behaviour.md``): ``.json`` stripped
from every path segment, XML by default, the list envelope with the string ``"null"`` and floor
``num_pages``, day-granular ``StartTime``/``EndTime`` in the server's time zone, a JBoss page
for every exception. What each route answers is in :mod:`.restcomm`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web

from archiver.simulator.app import Reply, empty
from archiver.simulator.java import (
    format_java_date,
    gson_dumps,
    java_double,
    java_int,
    parse_java_date_prefix,
)
from archiver.simulator.store import Account, SimRecording, SortBy, Where, like, naive_seconds

API_VERSION = "2012-04-24"
API_PREFIX = f"/restcomm/{API_VERSION}"
# Restcomm's well-known default administrator account.
DEFAULT_ACCOUNT_SID = "ACae6e420f425248d6a26948c17a9e2acf"
REALM_HEADER = 'Basic realm="Restcomm realm"'

SID_RE = re.compile(r"[a-zA-Z0-9]{34}|ID[0-9a-fA-F]{32}-CA[0-9a-fA-F]{32}")
# SecurityFilter.PATTERN_FOR_RECORDING_FILE_PATH: "[.mp4|.wav]" is a character class.
UNPROTECTED_RE = re.compile(r".*Accounts/.*/Recordings/RE.*[.mp4|.wav]")
_SORT_FIELDS = ("DateCreated", "Duration", "CallSid")
_ERROR_500_PAGE = (
    b"<html><head><title>JBWEB000065: HTTP Status 500 - </title></head><body>"
    b"<h1>JBWEB000065: HTTP Status 500 - </h1><p><b>JBWEB000309: type</b> "
    b"JBWEB000066: Exception report</p><p><b>JBWEB000068: message</b> <u></u></p>"
    b"<p><b>JBWEB000069: description</b> <u>JBWEB000145: The server encountered an internal "
    b"error that prevented it from fulfilling this request.</u></p>"
    b"<hr/><h3>JBoss Web/7.2.0.Final</h3></body></html>"
)


def server_error() -> Reply:
    """JBoss's 500 page: what an exception thrown anywhere in Restcomm looks like."""
    return Reply(500, {"Content-Type": "text/html;charset=utf-8"}, _ERROR_500_PAGE)


def unauthorized() -> Reply:
    return empty(401, **{"WWW-Authenticate": REALM_HEADER})


# --------------------------------------------------------------------------- requests


@dataclass
class ApiPath:
    """A request path under ``/restcomm/2012-04-24/`` as Restcomm reads it."""

    segments: list[str]  # percent-decoded, ``.json`` stripped from each
    decoded: str  # percent-decoded, ``.json`` kept (what the security filter matches)
    as_json: bool  # answer JSON (a ``.json`` anywhere, or an Accept naming json), else XML
    acceptable: bool  # Jersey's @Produces({XML, JSON}) accepts the request

    @property
    def account(self) -> str:
        return self.segments[1]

    @property
    def rest(self) -> list[str]:
        """The segments after ``Accounts/{AC}``."""
        return self.segments[2:]


def parse_path(request: web.Request) -> ApiPath | None:
    """The path of an ``Accounts/{AC}/...`` request, or None (a 404)."""
    raw_path = request.rel_url.raw_path
    prefix = API_PREFIX + "/"
    if not raw_path.startswith(prefix):
        return None
    original = [unquote(s) for s in raw_path[len(prefix) :].split("/")]
    decoded = "/".join(original)
    segments = [s.replace(".json", "") for s in original]
    if len(segments) < 3 or segments[0] != "Accounts" or not segments[1]:
        return None
    json_suffix = ".json" in decoded
    accept = request.headers.get("Accept")
    return ApiPath(
        segments=segments,
        decoded=decoded,
        as_json=json_suffix or (accept is not None and "json" in accept),
        # Jersey matches @Produces({XML, JSON}) after the security filter ran.
        acceptable=json_suffix or accept is None or _accept_ok(accept),
    )


def _accept_ok(accept: str) -> bool:
    """Jersey @Produces({XML, JSON}): is any listed media range compatible?"""
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in ("", "*", "*/*", "application/*", "application/xml", "application/json"):
            return True
    return False


# --------------------------------------------------------------------------- rendering


def render_account(account: Account) -> dict[str, Any]:
    """One account as Restcomm's AccountConverter writes it (JSON)."""
    return {
        "sid": account.sid,
        "friendly_name": account.friendly_name,
        "email_address": f"{account.sid.lower()}@example.invalid",
        "type": "Full",
        "status": account.status,
        "role": "Developer",
        "date_created": account.date_created.strftime("%a, %d %b %Y %H:%M:%S +0000"),
        "date_updated": account.date_created.strftime("%a, %d %b %Y %H:%M:%S +0000"),
        "auth_token": account.auth_token,
        "uri": f"/{API_VERSION}/Accounts/{account.sid}",
    }


def render_json(rec: SimRecording, tz: tzinfo) -> dict[str, str]:
    """One recording as the JSON converter writes it (no ``call_sid`` key when it is null)."""
    out: dict[str, str] = {
        "sid": rec.sid,
        "date_created": format_java_date(rec.date_created, tz),
        "date_updated": format_java_date(rec.date_updated or rec.date_created, tz),
        "account_sid": rec.account_sid,
    }
    if rec.call_sid is not None:
        out["call_sid"] = rec.call_sid
    out["duration"] = java_double(rec.duration)
    out["api_version"] = API_VERSION
    out["uri"] = f"/{API_VERSION}/Accounts/{rec.account_sid}/Recordings/{rec.sid}.json"
    out["file_uri"] = file_uri(rec)
    return out


def file_uri(rec: SimRecording) -> str:
    """Where the platform says the media is: its own internal host, not the client's."""
    return (
        f"{rec.file_uri_host}{API_PREFIX}/Accounts/{rec.account_sid}/Recordings/{rec.sid}.{rec.ext}"
    )


def render_xml(rec: SimRecording, tz: tzinfo, indent: str) -> list[str]:
    """One ``<Recording>`` element, as lines indented by ``indent``."""
    fields = [
        ("Sid", rec.sid),
        ("DateCreated", format_java_date(rec.date_created, tz)),
        ("DateUpdated", format_java_date(rec.date_updated or rec.date_created, tz)),
        ("AccountSid", rec.account_sid),
        ("CallSid", rec.call_sid),
        ("Duration", java_double(rec.duration)),
        ("ApiVersion", API_VERSION),
        ("Uri", f"/{API_VERSION}/Accounts/{rec.account_sid}/Recordings/{rec.sid}"),
        ("FileUri", file_uri(rec)),
    ]
    lines = [f"{indent}<Recording>"]
    for name, value in fields:
        if value is not None:
            lines.append(f"{indent}  <{name}>{xml_escape(value)}</{name}>")
    lines.append(f"{indent}</Recording>")
    return lines


def xml_list(recs: list[SimRecording], tz: tzinfo) -> bytes:
    lines = ["<RestcommResponse>"]
    if recs:
        lines.append("  <Recordings>")
        for rec in recs:
            lines.extend(render_xml(rec, tz, "    "))
        lines.append("  </Recordings>")
    else:
        lines.append("  <Recordings/>")
    lines.append("</RestcommResponse>")
    return "\n".join(lines).encode()


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, gson_dumps(payload).encode())


def xml_reply(xml: bytes) -> Reply:
    return Reply(200, {"Content-Type": "application/xml"}, xml)


def error_message(as_json: bool, message: str) -> Reply:
    """A 400 carrying a message, as the list endpoint rejects a bad parameter."""
    if as_json:
        return json_reply({"message": message}, 400)
    xml = f"<RestcommResponse>\n  <Message>{xml_escape(message)}</Message>\n</RestcommResponse>"
    return Reply(400, {"Content-Type": "application/xml"}, xml.encode())


# --------------------------------------------------------------------------- paging


@dataclass
class ListQuery:
    """The list endpoint's parameters, parsed as Restcomm parses them."""

    page: int
    page_size: int
    sort_by: SortBy | None
    where: Where


def parse_list_query(query: Mapping[str, str], as_json: bool) -> ListQuery | Reply:
    """The parameters, or the answer Restcomm gives to the first bad one, in its order."""
    sort_by = parse_sort_by(query, as_json)
    if isinstance(sort_by, Reply):
        return sort_by
    page = java_int(query.get("Page", "0"))
    page_size = java_int(query.get("PageSize", "50"))
    if page is None or page_size is None or page_size <= 0 or page < 0:
        return server_error()
    where = Where(call_like=like(query["CallSid"]) if "CallSid" in query else None)
    for name, days_after in (("StartTime", 0), ("EndTime", 1)):
        if name in query:
            day = parse_java_date_prefix(query[name])
            if day is None:
                return empty(400)
            bound = _local_midnight(day + timedelta(days=days_after))
            if name == "StartTime":
                where.start = bound
            else:
                where.end = bound
    if query.get("localOnly", "").lower() == "false":
        return server_error()  # no instanceid column
    return ListQuery(page, page_size, sort_by, where)


def parse_sort_by(query: Mapping[str, str], as_json: bool) -> SortBy | Reply | None:
    """``SortBy=Field[:ASC|DESC]``; an unknown field is ignored, a malformed one is a 400."""
    if "SortBy" not in query:
        return None
    field_name, sep, direction = query["SortBy"].partition(":")
    if not field_name:
        return error_message(
            as_json, "Error parsing the SortBy parameter: missing field to sort by"
        )
    if sep and direction.lower() not in ("asc", "desc"):
        return error_message(
            as_json,
            "Error parsing the SortBy parameter: sort direction needs to be either ASC or DESC",
        )
    ascending = not sep or direction.lower() == "asc"
    return (field_name, ascending) if field_name in _SORT_FIELDS else None


def _local_midnight(day: date) -> int:
    """Midnight of ``day`` as a DATETIME value (naive wall-time seconds)."""
    return naive_seconds(datetime(day.year, day.month, day.day))


def envelope(
    page: int, page_size: int, total: int, chunk: list[dict[str, str]], last_sid: str, uri: str
) -> dict[str, Any]:
    """The list envelope: ``num_pages`` is floored, absent page URIs are the string "null"."""
    num_pages = total // page_size
    last = page == num_pages
    start = page * page_size
    return {
        "page": page,
        "num_pages": num_pages,
        "page_size": page_size,
        "total": total,
        "start": str(start),
        "end": str(start + len(chunk) if last else page_size - 1 + start),
        "uri": uri,
        "first_page_uri": f"{uri}?Page=0&PageSize={page_size}",
        "previous_page_uri": (
            "null" if page == 0 else f"{uri}?Page={page - 1}&PageSize={page_size}"
        ),
        "next_page_uri": (
            "null" if last else f"{uri}?Page={page + 1}&PageSize={page_size}&AfterSid={last_sid}"
        ),
        "last_page_uri": f"{uri}?Page={num_pages}&PageSize={page_size}",
        "recordings": chunk,
    }


def other_envelope(uri: str) -> dict[str, Any]:
    """The envelope of another client's request (page 0 of 3 recordings, 50 a page) that a
    shared converter can hand to this one."""
    return {
        "page": 0,
        "num_pages": 0,
        "page_size": 50,
        "total": 3,
        "start": "0",
        "end": "3",
        "first_page_uri": f"{uri}?Page=0&PageSize=50",
        "previous_page_uri": "null",
        "next_page_uri": "null",
        "last_page_uri": f"{uri}?Page=0&PageSize=50",
    }
