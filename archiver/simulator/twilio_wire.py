"""Twilio's wire format (API 2010-04-01), and SignalWire's copy of it under ``/api/laml``:
paths, JSON resources, the list query and its cursor-paged envelope, and the error bodies.

Taken from Twilio's OpenAPI description (twilio/twilio-oai ``spec/json/twilio_api_v2010.json``):
the Recording and Account resources' fields and enums, RFC 2822 GMT dates, ``duration`` a
string, ``PageSize`` 1..1000 (default 50), ``Page`` "simply for client state", ``PageToken``
"provided by the API", the envelope's keys with ``next_page_uri``/``previous_page_uri``
nullable, ``DateCreated``/``<``/``>`` as ``YYYY-MM-DD`` GMT days, DELETE 204. What each route
answers is in :mod:`.twilio`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from archiver.simulator.app import Reply
from archiver.simulator.bodies import Body
from archiver.simulator.store import Account, SimRecording

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "5ea1" * 8  # a made-up main account
DEFAULT_PROJECT_ID = "c8f1b0a2-6d3e-4f5a-9b7c-1d2e3f4a5b6c"  # a made-up SignalWire project
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
RECORDING_STATUSES = (
    "in-progress",
    "paused",
    "stopped",
    "processing",
    "completed",
    "absent",
    "deleted",
)
RECORDING_SOURCES = (
    "DialVerb",
    "Conference",
    "OutboundAPI",
    "Trunking",
    "RecordVerb",
    "StartCallRecordingAPI",
    "StartConferenceRecordingAPI",
)
_CONFERENCE_SOURCES = ("Conference", "StartConferenceRecordingAPI")
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?")
# the list filters, in the order they are written back into page URIs
RECORDING_FILTERS = (
    "DateCreated",
    "DateCreated<",
    "DateCreated>",
    "CallSid",
    "ConferenceSid",
    "IncludeSoftDeleted",
)
ACCOUNT_FILTERS = ("FriendlyName", "Status")


@dataclass(frozen=True)
class Dialect:
    """What tells the platforms apart: the URL prefix before ``/2010-04-01``, how SIDs look,
    the realm a 401 names."""

    name: str
    prefix: str
    sid_style: str
    realm: str


TWILIO = Dialect("twilio", "", "twilio", "Twilio API")
SIGNALWIRE = Dialect("signalwire", "/api/laml", "uuid", "SignalWire")


# --------------------------------------------------------------------------- errors


def error(status: int, code: int, message: str, **extra: str) -> Reply:
    """Twilio's error body: ``code``, ``message``, ``more_info``, ``status``."""
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
        **extra,
    }
    return json_reply(body, status)


def not_found(path: str) -> Reply:
    return error(404, 20404, f"The requested resource {path} was not found")


def unauthorized(realm: str) -> Reply:
    reply = error(401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect.")
    reply.headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
    return reply


def not_active() -> Reply:
    """A suspended or closed account's recordings (error 20005, "Account not active")."""
    return error(401, 20005, "Account not active")


def forbidden() -> Reply:
    """Valid credentials, another account's resources (neither it nor a sub-account of it)."""
    return error(403, 20006, "Access Denied")


def too_many_requests() -> Reply:
    return error(429, 20429, "Too Many Requests")


def method_not_allowed() -> Reply:
    return error(405, 20004, "Method not allowed")


def bad_request(message: str, code: int = 20001) -> Reply:
    return error(400, code, message)


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())


# --------------------------------------------------------------------------- paths


@dataclass
class TwilioPath:
    """A request path after ``{prefix}/2010-04-01/`` as the routes read it."""

    kind: str  # accounts | account | recordings | recording | media
    path: str  # the raw path, for error messages and page URIs
    account: str = ""
    sid: str = ""
    ext: str = ""  # media: "", "wav" or "mp3"


def parse_path(raw_path: str, prefix: str) -> TwilioPath | None:
    """The route a path names, or None (a 404)."""
    root = f"{prefix}/{API_VERSION}/"
    if not raw_path.startswith(root):
        return None
    parts = [unquote(s) for s in raw_path[len(root) :].split("/")]
    if parts == ["Accounts.json"]:
        return TwilioPath("accounts", raw_path)
    if len(parts) < 2 or parts[0] != "Accounts" or not parts[1]:
        return None
    if len(parts) == 2 and parts[1].endswith(".json"):
        return TwilioPath("account", raw_path, account=parts[1][: -len(".json")])
    account = parts[1]
    rest = parts[2:]
    if rest == ["Recordings.json"]:
        return TwilioPath("recordings", raw_path, account=account)
    if len(rest) != 2 or rest[0] != "Recordings" or not rest[1]:
        return None
    name, dot, ext = rest[1].rpartition(".")
    if not dot:
        return TwilioPath("media", raw_path, account=account, sid=rest[1])
    if ext == "json":
        return TwilioPath("recording", raw_path, account=account, sid=name)
    if ext in ("wav", "mp3"):
        return TwilioPath("media", raw_path, account=account, sid=name, ext=ext)
    return None


def account_of(raw_path: str, prefix: str) -> str | None:
    """The account a request is for (its concurrency is counted against it), if any."""
    path = parse_path(raw_path, prefix)
    return path.account if path is not None and path.account else None


# --------------------------------------------------------------------------- resources


def rfc2822(when: datetime) -> str:
    """``Tue, 01 Dec 2026 10:00:00 +0000``: RFC 2822 in GMT, as every date is written."""
    return format_datetime(when.astimezone(UTC).replace(microsecond=0))


def recording_uri(prefix: str, account_sid: str, sid: str) -> str:
    return f"{prefix}/{API_VERSION}/Accounts/{account_sid}/Recordings/{sid}"


def render_recording(rec: SimRecording, prefix: str, origin: str) -> dict[str, Any]:
    """One Recording resource, its keys in the order the spec's examples show them."""
    base = recording_uri(prefix, rec.account_sid, rec.sid)
    in_progress = rec.status in ("in-progress", "paused", "stopped")
    completed = rec.status in ("completed", "deleted")
    return {
        "account_sid": rec.account_sid,
        "api_version": API_VERSION,
        "call_sid": rec.call_sid,
        "conference_sid": rec.conference_sid,
        "channels": rec.channels,
        "date_created": rfc2822(rec.date_created),
        "date_updated": rfc2822(rec.date_updated or rec.date_created),
        "start_time": rfc2822(rec.date_created),
        "price": "-0.00250" if completed else None,  # priced once the recording is done
        "price_unit": "USD",
        "duration": "-1" if in_progress else str(max(round(rec.duration), 0)),
        "sid": rec.sid,
        "source": rec.source,
        "status": rec.status,
        "error_code": rec.error_code if rec.status == "absent" else None,
        "uri": f"{base}.json",
        "subresource_uris": {
            "add_on_results": f"{base}/AddOnResults.json",
            "transcriptions": f"{base}/Transcriptions.json",
        },
        "encryption_details": rec.encryption_details,
        "media_url": f"{origin}{base}",
    }


def render_account(account: Account, prefix: str) -> dict[str, Any]:
    """One Account resource; a main account is its own ``owner_account_sid``."""
    base = f"{prefix}/{API_VERSION}/Accounts/{account.sid}"
    return {
        "auth_token": account.auth_token,
        "date_created": rfc2822(account.date_created),
        "date_updated": rfc2822(account.date_created),
        "friendly_name": account.friendly_name,
        "owner_account_sid": account.owner_sid or account.sid,
        "sid": account.sid,
        "status": account.status,
        "subresource_uris": {
            "calls": f"{base}/Calls.json",
            "conferences": f"{base}/Conferences.json",
            "recordings": f"{base}/Recordings.json",
            "transcriptions": f"{base}/Transcriptions.json",
        },
        "type": "Full",
        "uri": f"{base}.json",
    }


# --------------------------------------------------------------------------- media


def requested_channels(rec: SimRecording, query: Mapping[str, str]) -> int | Reply:
    """The channels of the file to serve: ``RequestedChannels`` (1 or 2), else the recording's
    own, except that a conference recording downloads as mono unless asked."""
    asked = query.get("RequestedChannels")
    if asked is None:
        return 1 if rec.source in _CONFERENCE_SOURCES else rec.channels
    if asked not in ("1", "2"):
        return bad_request(f"Invalid RequestedChannels {asked!r}: 1 or 2")
    if asked == "2" and rec.channels == 1:
        return bad_request(
            "Cannot download a dual-channel presentation of a mono recording", code=16113
        )
    return int(asked)


def rendition(rec: SimRecording, ext: str, channels: int) -> Body | None:
    """The file Twilio serves for ``rec`` as ``ext`` (wav or mp3) in ``channels``: a WAV of
    ``rec.size`` bytes in its own channels, half the samples when mixed down, an mp3 an eighth
    of the WAV."""
    if ext not in ("wav", "mp3") or channels not in (1, 2) or channels > rec.channels:
        return None
    data = max(rec.size - 44, 0)
    if channels < rec.channels:
        data = data // 2 - (data // 2) % 2
    if ext == "mp3":
        return rec.rendition("mp3", channels, max((data + 44) // 8, 64))
    return rec.rendition("wav", channels, data + 44)


# --------------------------------------------------------------------------- the list query


@dataclass
class PageQuery:
    """``PageSize``, ``Page``, ``PageToken`` and the filters, as given."""

    page_size: int
    page: int
    token: str | None  # "PA<sid>": the page after that item; "PB<sid>": the page before it
    filters: list[tuple[str, str]] = field(default_factory=list)


def parse_page_query(query: Mapping[str, str], filters: Sequence[str]) -> PageQuery | Reply:
    size_text = query.get("PageSize", str(DEFAULT_PAGE_SIZE))
    page_text = query.get("Page", "0")
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
        return bad_request(f"PageSize must be an integer from 1 to {MAX_PAGE_SIZE}")
    if not page_text.isdigit():
        return bad_request("Page must be a non-negative integer")
    token = query.get("PageToken")
    if token is not None and (len(token) < 3 or token[:2] not in ("PA", "PB")):
        return bad_request(f"Invalid PageToken {token!r}")
    kept = [(name, query[name]) for name in filters if name in query]
    return PageQuery(int(size_text), int(page_text), token, kept)


@dataclass
class DayWindow:
    """``DateCreated`` filters as instants: ``start`` inclusive, ``end`` exclusive."""

    start: datetime | None = None
    end: datetime | None = None

    def admits(self, when: datetime) -> bool:
        if self.start is not None and when < self.start:
            return False
        return self.end is None or when < self.end


def parse_day_window(query: Mapping[str, str]) -> DayWindow | Reply:
    """Whole GMT days: ``DateCreated=D`` is that day, ``DateCreated>=D`` from its midnight on,
    ``DateCreated<=D`` up to the end of it. A time after the date is ignored, as the day is
    all Twilio compares."""
    window = DayWindow()
    for name in ("DateCreated", "DateCreated>", "DateCreated<"):
        if name not in query:
            continue
        day = _parse_day(query[name])
        if day is None:
            return bad_request(f"Invalid {name} {query[name]!r}: expected YYYY-MM-DD")
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if name in ("DateCreated", "DateCreated>"):
            window.start = max(filter(None, (window.start, midnight)))
        if name in ("DateCreated", "DateCreated<"):
            end = midnight + timedelta(days=1)
            window.end = min(filter(None, (window.end, end)))
    return window


def _parse_day(text: str) -> date | None:
    match = _DAY.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return date(*(int(g) for g in match.groups()))
    except ValueError:
        return None


# --------------------------------------------------------------------------- paging

T = TypeVar("T")
Key = tuple[datetime, str]


@dataclass
class Page:
    """One page cut from an ordered listing, and whether anything lies before or after it."""

    items: list[Any]
    before: bool
    after: bool


def cut_page(
    items: Sequence[T],
    key: Callable[[T], Key],
    cursor: tuple[str, Key] | None,
    size: int,
    *,
    descending: bool,
) -> Page:
    """The page after (``PA``) or before (``PB``) the cursor's position in ``items`` (sorted
    by ``key``, descending or not); the first page without a cursor. A cursor's item need not
    be there any more (deleted between pages): its key places it."""
    if cursor is None:
        start = 0
        end = min(size, len(items))
    else:
        direction, at = cursor

        def precedes(k: Key, strict: bool) -> bool:
            if descending:
                return k > at if strict else k >= at
            return k < at if strict else k <= at

        if direction == "PA":
            start = sum(1 for x in items if precedes(key(x), strict=False))
            end = min(start + size, len(items))
        else:
            end = sum(1 for x in items if precedes(key(x), strict=True))
            start = max(end - size, 0)
    return Page(list(items[start:end]), start > 0, end < len(items))


def envelope(
    name: str,
    path: str,
    query: PageQuery,
    resources: list[dict[str, Any]],
    next_token: str | None,
    previous_token: str | None,
) -> dict[str, Any]:
    """The list envelope, keys in the spec example's order; every page URI keeps the filters."""

    def page_uri(page: int, token: str | None) -> str:
        parts = [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.filters]
        parts += [f"PageSize={query.page_size}", f"Page={page}"]
        if token is not None:
            parts.append(f"PageToken={quote(token, safe='')}")
        return f"{path}?{'&'.join(parts)}"

    start = query.page * query.page_size
    return {
        "end": start + max(len(resources) - 1, 0),
        "first_page_uri": page_uri(0, None),
        "next_page_uri": None if next_token is None else page_uri(query.page + 1, next_token),
        "page": query.page,
        "page_size": query.page_size,
        "previous_page_uri": (
            None if previous_token is None else page_uri(max(query.page - 1, 0), previous_token)
        ),
        name: resources,
        "start": start,
        "uri": page_uri(query.page, query.token),
    }
