"""A faithful simulator of the Restcomm Recordings API (``/restcomm/2012-04-24/...``).

It reproduces the real server's wire behaviour, quirks included (see
``/work/shared/spec/restcomm-server-behaviour.md``): ``.json`` stripped from every path
segment, XML by default, the list envelope with the string ``"null"`` and floor
``num_pages``, 400 past the last page, day-granular ``StartTime``/``EndTime`` in the
server's time zone, no tiebreak on equal ``date_created``, unauthenticated media, DELETE
200 then 404, and so on. On top of that it offers fault injection for resilience tests.

Run standalone with ``python -m archiver.simulator --port 8099 --recordings 300``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import email.utils
import hashlib
import hmac
import inspect
import json
import math
import random
import re
import struct
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web

__all__ = [
    "API_VERSION",
    "DEFAULT_ACCOUNT_SID",
    "Fault",
    "RequestRecord",
    "RestcommSimulator",
    "SimRecording",
    "format_java_date",
    "gson_dumps",
    "java_double",
    "main",
    "mp4_header",
    "wav_header",
]

API_VERSION = "2012-04-24"
API_PREFIX = f"/restcomm/{API_VERSION}"
# Restcomm's well-known default administrator account.
DEFAULT_ACCOUNT_SID = "ACae6e420f425248d6a26948c17a9e2acf"
REALM_HEADER = 'Basic realm="Restcomm realm"'

_BLOCK = 65536
_MUTATIONS = [0]  # bumped on every SimRecording attribute assignment
_SID_RE = re.compile(r"[a-zA-Z0-9]{34}|ID[0-9a-fA-F]{32}-CA[0-9a-fA-F]{32}")
# SecurityFilter.PATTERN_FOR_RECORDING_FILE_PATH: "[.mp4|.wav]" is a character class.
_UNPROTECTED_RE = re.compile(r".*Accounts/.*/Recordings/RE.*[.mp4|.wav]")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_DATE_PREFIX_RE = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_GSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "=": "\\u003d",
    "'": "\\u0027",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GSON_ESCAPE_RE = re.compile("[<>&='\u2028\u2029]")

_ERROR_500_PAGE = (
    b"<html><head><title>JBWEB000065: HTTP Status 500 - </title></head><body>"
    b"<h1>JBWEB000065: HTTP Status 500 - </h1><p><b>JBWEB000309: type</b> "
    b"JBWEB000066: Exception report</p><p><b>JBWEB000068: message</b> <u></u></p>"
    b"<p><b>JBWEB000069: description</b> <u>JBWEB000145: The server encountered an internal "
    b"error that prevented it from fulfilling this request.</u></p>"
    b"<hr/><h3>JBoss Web/7.2.0.Final</h3></body></html>"
)


# --------------------------------------------------------------------------- formatting


def gson_dumps(obj: Any) -> str:
    """Serialize like ``new GsonBuilder().setPrettyPrinting().create().toJson(...)``.

    Two-space indentation, ``"key": value``, raw non-ASCII, and Gson's default HTML-safe
    escaping of ``< > & = '`` (and U+2028/U+2029) as ``\\uXXXX``.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    # These characters never occur in JSON syntax outside strings, so a global replace
    # only touches string contents.
    return _GSON_ESCAPE_RE.sub(lambda m: _GSON_ESCAPES[m.group(0)], text)


def java_double(value: float) -> str:
    """``Double.toString``: ``2.0``, ``14.70275``, ``1.0E7``, ``1.0E-4``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        if "e" in text or "E" in text:  # pragma: no cover - repr is decimal in this range
            text = f"{value:f}"
        return text if "." in text else text + ".0"
    for precision in range(17):
        text = f"{value:.{precision}e}"
        if float(text) == value:
            break
    mantissa, exponent = text.split("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{int(exponent)}"


def format_java_date(when: datetime, tz: tzinfo) -> str:
    """``SimpleDateFormat("EEE, d MMM yyyy HH:mm:ss Z", Locale.US)`` in ``tz``."""
    local = when.astimezone(tz)
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (
        f"{_DAYS[local.weekday()]}, {local.day} {_MONTHS[local.month - 1]} {local.year:04d} "
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def parse_java_date_prefix(text: str) -> date | None:
    """Lenient ``SimpleDateFormat("yyyy-MM-dd").parse``: prefix only, fields roll over.

    Returns None where Java throws ``ParseException``.
    """
    match = _DATE_PREFIX_RE.match(text)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups())
    # Lenient calendar: month 13 -> January next year, day 40 -> rolls into next month.
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    try:
        return date(year, month, 1) + timedelta(days=day - 1)
    except (ValueError, OverflowError):
        return None


def wav_header(
    data_len: int, *, sample_rate: int = 8000, channels: int = 1, bits_per_sample: int = 16
) -> bytes:
    """A 44-byte canonical RIFF/WAVE PCM header for ``data_len`` bytes of samples."""
    block_align = channels * bits_per_sample // 8
    byte_rate = sample_rate * block_align
    riff_size = min(36 + data_len, 0xFFFFFFFF)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, block_align, bits_per_sample
        )
        + b"data"
        + struct.pack("<I", min(data_len, 0xFFFFFFFF))
    )


def mp4_header(total_size: int) -> bytes:
    """An ``ftyp`` box followed by the header of an ``mdat`` box filling ``total_size``."""
    ftyp = struct.pack(">I", 32) + b"ftyp" + b"isom" + struct.pack(">I", 0x200)
    ftyp += b"isom" + b"iso2" + b"avc1" + b"mp41"
    mdat_size = total_size - len(ftyp)
    if mdat_size <= 0xFFFFFFFF:
        mdat = struct.pack(">I", max(mdat_size, 8)) + b"mdat"
    else:
        mdat = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", mdat_size)
    return ftyp + mdat


# --------------------------------------------------------------------------- recordings


@dataclass
class SimRecording:
    """One recording held by the simulator; its body is generated on the fly."""

    sid: str
    account_sid: str
    call_sid: str | None
    date_created: datetime
    duration: float
    ext: str = "wav"
    size: int = 16_044
    seed: int = 0
    file_uri_host: str = "http://internal.invalid:8080"
    date_updated: datetime | None = None
    _sha_cache: dict[tuple[str, int, int, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        # Lets the simulator cache its sorted listing and still notice tests that edit a
        # recording in place (e.g. rec.date_created = ...).
        _MUTATIONS[0] += 1
        object.__setattr__(self, name, value)

    @property
    def content_type(self) -> str:
        return "video/mp4" if self.ext == "mp4" else "audio/x-wav"

    @property
    def file_uri(self) -> str:
        return (
            f"{self.file_uri_host}{API_PREFIX}/Accounts/{self.account_sid}"
            f"/Recordings/{self.sid}.{self.ext}"
        )

    def header(self) -> bytes:
        head = mp4_header(self.size) if self.ext == "mp4" else wav_header(max(self.size - 44, 0))
        return head[: self.size]

    def _base_block(self) -> bytes:
        key = f"{self.sid}\x00{self.seed}\x00{self.size}".encode()
        block = hashlib.shake_256(key).digest(_BLOCK)
        return block + block

    def iter_body(self, chunk_size: int = 65536) -> Iterator[bytes]:
        """Yield the body in pieces of at most ``chunk_size`` bytes.

        The content does not depend on ``chunk_size``. Data block ``j`` is a rotation of a
        64 KiB pseudo-random block (from ``sid``, ``seed``, ``size``) whose first 8 bytes
        are replaced by ``j``, so every block differs and generation runs at memcpy speed.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        head = self.header()
        yield from _split(head, chunk_size)
        remaining = self.size - len(head)
        if remaining <= 0:
            return
        doubled = self._base_block()
        index = 0
        while remaining > 0:
            offset = (index * 40503) % _BLOCK
            block = index.to_bytes(8, "little") + doubled[offset + 8 : offset + _BLOCK]
            if remaining < _BLOCK:
                block = block[:remaining]
            remaining -= len(block)
            index += 1
            yield from _split(block, chunk_size)

    def body(self) -> bytes:
        return b"".join(self.iter_body(_BLOCK))

    def sha256(self) -> str:
        key = (self.sid, self.seed, self.size, self.ext)
        cached = self._sha_cache.get(key)
        if cached is None:
            digest = hashlib.sha256()
            for chunk in self.iter_body(_BLOCK):
                digest.update(chunk)
            cached = digest.hexdigest()
            self._sha_cache.clear()
            self._sha_cache[key] = cached
        return cached


def _split(data: bytes, chunk_size: int) -> Iterator[bytes]:
    if len(data) <= chunk_size:
        if data:
            yield data
        return
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]


# --------------------------------------------------------------------------- faults, log


@dataclass
class RequestRecord:
    """One request served by either listener."""

    method: str
    path: str
    query: dict[str, str]
    authorized: bool
    auth_header_present: bool
    status: int
    host_port: str
    headers: dict[str, str] = field(default_factory=dict)
    fault: bool = False  # an injected fault applied to this request


@dataclass
class Fault:
    """An injected fault; see :meth:`RestcommSimulator.inject`."""

    path: str
    method: str
    times: int | None
    status: int | None
    retry_after: str | None
    delay: float
    body: bytes | None
    content_type: str | None
    truncate_after: int | None
    content_length_delta: int
    query: Mapping[str, str] | None = None
    stall_after: int | None = None
    stall_for: float = 0.0
    hits: int = 0
    _registry: list[Fault] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    @property
    def active(self) -> bool:
        return self.times is None or self.hits < self.times

    def matches(self, method: str, path: str, query: Mapping[str, str] | None = None) -> bool:
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self.query is not None and any((query or {}).get(k) != v for k, v in self.query.items()):
            return False
        return self._pattern.search(path) is not None

    def remove(self) -> None:
        if self._registry is not None and self in self._registry:
            self._registry.remove(self)


# (tie key, date_created second, recording)
_Row = tuple[Any, int, "SimRecording"]


@dataclass
class _Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: Iterable[bytes] | None = None
    length: int | None = None  # for stream; None means chunked transfer


def _empty(status: int, **headers: str) -> _Reply:
    return _Reply(status, dict(headers))


def _server_error() -> _Reply:
    return _Reply(500, {"Content-Type": "text/html;charset=utf-8"}, _ERROR_500_PAGE)


# --------------------------------------------------------------------------- simulator


class RestcommSimulator:
    """aiohttp server emulating ``/restcomm/2012-04-24/Accounts/{AC}/Recordings``."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = "sim-token",
        *,
        tz: tzinfo = timezone(timedelta(hours=9)),
        seed: int = 0,
        shuffle_ties: bool = True,
        page_uris_json: bool = False,
        media_mode: str = "direct",
        auth_hole: bool = True,
    ) -> None:
        if media_mode not in ("direct", "redirect", "proxy"):
            raise ValueError(f"unknown media_mode {media_mode!r}")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.tz = tz
        self.seed = seed
        self.shuffle_ties = shuffle_ties
        self.page_uris_json = page_uris_json
        self.media_mode = media_mode
        # Reproduce SecurityFilter's regex hole (spec 4.4): unauthenticated metadata requests
        # for SIDs ending in one of ". m p 4 | w a v" get a 500 instead of a 401.
        self.auth_hole = auth_hole
        self.recordings: dict[str, SimRecording] = {}
        self.requests: list[RequestRecord] = []
        self.deleted: list[str] = []
        self.faults: list[Fault] = []
        self.on_list: Callable[[int], Awaitable[None] | None] | None = None
        self.on_delete: Callable[[SimRecording], None] | None = None
        self.latency = 0.0  # seconds added to every answer (benchmarks: a WAN round trip)
        # the server's clock for its Date header (None: the real one); tests step it
        self.clock: Callable[[], float] | None = None
        # the next N JSON list answers carry another request's envelope (page, num_pages,
        # total, page URIs): the real server builds it in one converter shared between
        # requests (spec 2.5)
        self.envelope_race = 0
        # redirect mode: SIDs whose storage object is still being uploaded (presigned URL 403)
        self.uploading: set[str] = set()
        # DELETE answers 200 but the recording stays (a server that lies, or a replica lag)
        self.lying_deletes = False
        self.in_flight = 0  # requests being answered now, and the most there ever were
        self.peak_in_flight = 0
        self.base_url = ""
        self.storage_origin = ""
        self._sid_rng = random.Random(f"sid:{seed}")
        self._tie_rng = random.Random(f"ties:{seed}")
        self._sign_key = hashlib.sha256(f"storage:{seed}".encode()).digest()
        self._runners: list[web.AppRunner] = []
        self._sort_cache: dict[tuple[str, bool] | None, tuple[tuple[Any, ...], list[_Row]]] = {}

    # ---------------------------------------------------------------- data

    def make_sid(self) -> str:
        return f"RE{self._sid_rng.getrandbits(128):032x}"

    def _make_call_sid(self) -> str:
        return f"ID{self._sid_rng.getrandbits(128):032x}-CA{self._sid_rng.getrandbits(128):032x}"

    def add(self, rec: SimRecording) -> SimRecording:
        self.recordings[rec.sid] = rec
        return rec

    def generate(
        self,
        n: int,
        *,
        start: datetime,
        spacing: timedelta = timedelta(seconds=7),
        size: int = 16_044,
        same_second_every: int = 1,
        ext_mp4_every: int = 0,
    ) -> list[SimRecording]:
        """Add ``n`` recordings from ``start`` onwards, ``spacing`` apart.

        ``same_second_every=k`` gives k consecutive recordings the same ``date_created``;
        ``ext_mp4_every=k`` makes every k-th recording (k-1, 2k-1, ...) an mp4.
        """
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        group = max(same_second_every, 1)
        out: list[SimRecording] = []
        for i in range(n):
            ext = "mp4" if ext_mp4_every > 0 and (i + 1) % ext_mp4_every == 0 else "wav"
            data_len = max(size - 44, 0)
            duration = round(data_len / 16000, 5) if data_len else 0.5
            rec = SimRecording(
                sid=self.make_sid(),
                account_sid=self.account_sid,
                call_sid=self._make_call_sid(),
                date_created=(start + spacing * (i // group)).astimezone(UTC),
                duration=duration or 0.5,
                ext=ext,
                size=size,
                seed=self.seed,
            )
            out.append(self.add(rec))
        return out

    # ---------------------------------------------------------------- faults

    def inject(
        self,
        *,
        path: str = ".*",
        method: str = "GET",
        times: int | None = 1,
        status: int | None = None,
        retry_after: str | None = None,
        delay: float = 0.0,
        body: bytes | None = None,
        content_type: str | None = None,
        truncate_after: int | None = None,
        content_length_delta: int = 0,
        query: Mapping[str, str] | None = None,
        stall_after: int | None = None,
        stall_for: float = 0.0,
    ) -> Fault:
        """Register a fault. The first active fault whose ``path`` regex is found in the
        request path (and whose method matches; ``"*"`` for any) applies:

        * ``delay``: sleep that long first;
        * ``status`` (or ``body``): answer that status (default 200) with ``body``,
          ``content_type`` and ``Retry-After`` instead of the real answer;
        * ``truncate_after``: send the real headers (full Content-Length), then only that
          many body bytes, then drop the connection;
        * ``content_length_delta``: advertise Content-Length + delta. Negative: the body is
          cut to the advertised length. Positive: the whole body is sent, then the
          connection is dropped;
        * ``query``: apply only to requests carrying these query parameters (``{"Page": "2"}``);
        * ``stall_after``/``stall_for``: send that many body bytes, then nothing for
          ``stall_for`` seconds (a stalled transfer), then the rest.
        """
        fault = Fault(
            path=path,
            method=method,
            times=times,
            status=status,
            retry_after=retry_after,
            delay=delay,
            body=body,
            content_type=content_type,
            truncate_after=truncate_after,
            content_length_delta=content_length_delta,
            query=dict(query) if query is not None else None,
            stall_after=stall_after,
            stall_for=stall_for,
            _registry=self.faults,
        )
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def _take_fault(
        self, method: str, path: str, query: Mapping[str, str] | None = None
    ) -> Fault | None:
        for fault in self.faults:
            if fault.active and fault.matches(method, path, query):
                fault.hits += 1
                return fault
        return None

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runners:
            raise RuntimeError("simulator already started")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the simulator binds loopback only")
        api = web.Application()
        api.router.add_route("*", "/{tail:.*}", self._handle_api)
        storage = web.Application()
        storage.router.add_route("*", "/{tail:.*}", self._handle_storage)
        try:
            api_port = await self._serve(api, host, port)
            storage_port = await self._serve(storage, host, 0)
        except BaseException:
            await self.stop()
            raise
        self.base_url = f"http://{host}:{api_port}/restcomm"
        self.storage_origin = f"http://{host}:{storage_port}"
        return self.base_url

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port)
        await site.start()
        address = runner.addresses[0]
        return int(address[1])

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def __aenter__(self) -> RestcommSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- helpers

    @property
    def api_base(self) -> str:
        """``base_url`` + ``/2012-04-24``."""
        return f"{self.base_url}/{API_VERSION}"

    def _check_auth(self, request: web.BaseRequest) -> bool:
        header = request.headers.get("Authorization")
        if not header:
            return False
        parts = header.split(" ", 1)
        if len(parts) != 2 or parts[0] != "Basic":
            return False
        try:
            decoded = base64.b64decode(parts[1].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep or user != self.account_sid:
            return False
        md5 = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
        return hmac.compare_digest(password, self.auth_token) or md5 == self.auth_token

    def _record(self, request: web.BaseRequest, authorized: bool, status: int, fault: bool) -> None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host_port = f"{sockname[0]}:{sockname[1]}" if sockname else ""
        self.requests.append(
            RequestRecord(
                method=request.method,
                path=request.path,
                query={k: request.query[k] for k in request.query},
                authorized=authorized,
                auth_header_present="Authorization" in request.headers,
                status=status,
                host_port=host_port,
                headers=dict(request.headers),
                fault=fault,
            )
        )

    def _signature(self, name: str) -> str:
        return hmac.new(self._sign_key, name.encode(), hashlib.sha256).hexdigest()

    def _render_recording(self, rec: SimRecording) -> dict[str, str]:
        out: dict[str, str] = {
            "sid": rec.sid,
            "date_created": format_java_date(rec.date_created, self.tz),
            "date_updated": format_java_date(rec.date_updated or rec.date_created, self.tz),
            "account_sid": rec.account_sid,
        }
        if rec.call_sid is not None:
            out["call_sid"] = rec.call_sid
        out["duration"] = java_double(rec.duration)
        out["api_version"] = API_VERSION
        out["uri"] = f"/{API_VERSION}/Accounts/{rec.account_sid}/Recordings/{rec.sid}.json"
        out["file_uri"] = rec.file_uri
        return out

    def _recording_xml(self, rec: SimRecording, indent: str) -> list[str]:
        fields = [
            ("Sid", rec.sid),
            ("DateCreated", format_java_date(rec.date_created, self.tz)),
            ("DateUpdated", format_java_date(rec.date_updated or rec.date_created, self.tz)),
            ("AccountSid", rec.account_sid),
            ("CallSid", rec.call_sid),
            ("Duration", java_double(rec.duration)),
            ("ApiVersion", API_VERSION),
            ("Uri", f"/{API_VERSION}/Accounts/{rec.account_sid}/Recordings/{rec.sid}"),
            ("FileUri", rec.file_uri),
        ]
        lines = [f"{indent}<Recording>"]
        for name, value in fields:
            if value is not None:
                lines.append(f"{indent}  <{name}>{xml_escape(value)}</{name}>")
        lines.append(f"{indent}</Recording>")
        return lines

    def _xml_list(self, recs: list[SimRecording]) -> bytes:
        lines = ["<RestcommResponse>"]
        if recs:
            lines.append("  <Recordings>")
            for rec in recs:
                lines.extend(self._recording_xml(rec, "    "))
            lines.append("  </Recordings>")
        else:
            lines.append("  <Recordings/>")
        lines.append("</RestcommResponse>")
        return "\n".join(lines).encode()

    def _metadata(self, as_json: bool, payload: Any, xml: bytes) -> _Reply:
        if as_json:
            return _Reply(200, {"Content-Type": "application/json"}, gson_dumps(payload).encode())
        return _Reply(200, {"Content-Type": "application/xml"}, xml)

    @staticmethod
    def _error_message(as_json: bool, message: str) -> _Reply:
        if as_json:
            body = gson_dumps({"message": message}).encode()
            return _Reply(400, {"Content-Type": "application/json"}, body)
        xml = f"<RestcommResponse>\n  <Message>{xml_escape(message)}</Message>\n</RestcommResponse>"
        return _Reply(400, {"Content-Type": "application/xml"}, xml.encode())

    # ---------------------------------------------------------------- HTTP entry points

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, self._route_api)

    async def _handle_storage(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, self._route_storage)

    async def _dispatch(
        self,
        request: web.Request,
        route: Callable[[web.Request, bool], Awaitable[_Reply]],
    ) -> web.StreamResponse:
        authorized = self._check_auth(request)
        fault = self._take_fault(request.method, request.path, request.query)
        status = 500
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency > 0:  # a platform across a network, not next door
                await asyncio.sleep(self.latency)
            if fault is not None and fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault is not None and (fault.status is not None or fault.body is not None):
                headers: dict[str, str] = {}
                if fault.content_type is not None:
                    headers["Content-Type"] = fault.content_type
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                reply = _Reply(
                    fault.status if fault.status is not None else 200, headers, fault.body or b""
                )
            else:
                reply = await route(request, authorized)
                if fault is not None and fault.retry_after is not None:
                    reply.headers["Retry-After"] = fault.retry_after
            status = reply.status
            return await self._send(request, reply, fault)
        finally:
            self.in_flight -= 1
            self._record(request, authorized, status, fault is not None)

    async def _send(
        self, request: web.Request, reply: _Reply, fault: Fault | None
    ) -> web.StreamResponse:
        truncate = fault.truncate_after if fault is not None else None
        delta = fault.content_length_delta if fault is not None else 0
        stall = fault.stall_after if fault is not None else None
        if self.clock is not None:  # the server's own clock, as its Date header shows it
            reply.headers["Date"] = _http_date(self.clock())
        if reply.stream is None and truncate is None and delta == 0 and stall is None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        if reply.stream is None:
            stream: Iterable[bytes] = _split(reply.body, _BLOCK)
            length: int | None = len(reply.body)
        else:
            stream, length = reply.stream, reply.length
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        if length is None:
            response.enable_chunked_encoding()
        else:
            response.content_length = max(length + delta, 0)
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        written = 0
        try:
            for chunk in stream:
                if stall is not None and fault is not None and written + len(chunk) > stall:
                    head, chunk = chunk[: stall - written], chunk[stall - written :]
                    await response.write(head)
                    written += len(head)
                    await asyncio.sleep(fault.stall_for)  # the transfer stalls mid-body
                    stall = None
                if truncate is not None and written + len(chunk) >= truncate:
                    part = chunk[: truncate - written]
                    if part:
                        await response.write(part)
                    self._drop(request)
                    return response
                await response.write(chunk)
                written += len(chunk)
            if delta > 0:
                self._drop(request)
                return response
            await response.write_eof()
        except ConnectionError:  # the client went away mid-body
            self._drop(request)
        return response

    @staticmethod
    def _drop(request: web.Request) -> None:
        """Close the connection after flushing what was written so far."""
        transport = request.transport
        if transport is not None:
            transport.close()

    # ---------------------------------------------------------------- API routing

    async def _route_api(self, request: web.Request, authorized: bool) -> _Reply:
        raw_path = request.rel_url.raw_path
        prefix = API_PREFIX + "/"
        if not raw_path.startswith(prefix):
            return _empty(404)
        original = [unquote(s) for s in raw_path[len(prefix) :].split("/")]
        decoded_path = "/".join(original)
        json_suffix = ".json" in decoded_path
        segments = [s.replace(".json", "") for s in original]
        accept = request.headers.get("Accept")
        as_json = json_suffix or (accept is not None and "json" in accept)
        # Jersey matches @Produces({XML, JSON}) after the security filter ran.
        acceptable = json_suffix or accept is None or _accept_ok(accept)
        if len(segments) < 3 or segments[0] != "Accounts" or not segments[1]:
            return _empty(404)
        account = segments[1]
        rest = segments[2:]
        method = request.method
        get_like = method in ("GET", "HEAD")

        if rest == ["Recordings"] or rest == ["Recordings", ""]:
            if not get_like:
                return _empty(405)
            if not authorized:
                return _empty(401, **{"WWW-Authenticate": REALM_HEADER})
            if account != self.account_sid:
                return _empty(403)
            if not acceptable:
                return _empty(406)
            path_uri = API_PREFIX + "/" + "/".join(segments)
            return await self._list(request, as_json, path_uri.rstrip("/"))

        if len(rest) == 3 and rest[0] == "Calls" and rest[2] == "Recordings":
            if not get_like:
                return _empty(405)
            if not authorized:
                return _empty(401, **{"WWW-Authenticate": REALM_HEADER})
            if account != self.account_sid:
                return _empty(403)
            if not acceptable:
                return _empty(406)
            if _SID_RE.fullmatch(rest[1]) is None:
                return _server_error()
            recs = sorted(
                (r for r in self.recordings.values() if r.call_sid == rest[1]),
                key=lambda r: r.date_created,
                reverse=True,
            )
            return self._metadata(
                as_json, [self._render_recording(r) for r in recs], self._xml_list(recs)
            )

        if len(rest) != 2 or rest[0] != "Recordings" or not rest[1]:
            return _empty(404)
        name = rest[1]
        media_ext = next((e for e in ("wav", "mp4") if name.endswith("." + e)), None)
        if media_ext is not None:
            if not get_like:
                return _empty(405)
            if not acceptable:
                return _empty(406)
            return self._media(name[: -len(media_ext) - 1], method)

        # metadata GET / DELETE of one recording
        if method not in ("GET", "HEAD", "DELETE"):
            return _empty(405)
        if not authorized:
            hole = self.auth_hole and _UNPROTECTED_RE.fullmatch(decoded_path) is not None
            if hole:
                return _server_error()
            return _empty(401, **{"WWW-Authenticate": REALM_HEADER})
        if account != self.account_sid:
            return _empty(403)
        if not acceptable:
            return _empty(406)
        if _SID_RE.fullmatch(name) is None and name not in self.recordings:
            return _server_error()  # new Sid(...) throws; known hostile SIDs are served
        rec = self.recordings.get(name)
        if rec is None:
            return _empty(404)
        if rec.account_sid != account:
            return _empty(403)
        if method == "DELETE":
            if self.on_delete is not None:
                self.on_delete(rec)  # tests check the archive at the moment of the delete
            if not self.lying_deletes:
                del self.recordings[name]
            self.deleted.append(name)
            return _empty(200)
        payload = self._render_recording(rec)
        xml = "\n".join(
            ["<RestcommResponse>", *self._recording_xml(rec, "  "), "</RestcommResponse>"]
        )
        return self._metadata(as_json, payload, xml.encode())

    def _media(self, sid: str, method: str) -> _Reply:
        if _SID_RE.fullmatch(sid) is None and sid not in self.recordings:
            return _server_error()
        rec = self.recordings.get(sid)
        if rec is None:
            return _empty(404)
        if self.media_mode == "redirect":
            name = f"{rec.sid}.{rec.ext}"
            location = (
                f"{self.storage_origin}/storage/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Expires=600&X-Amz-Signature={self._signature(name)}"
            )
            return _empty(307, Location=location)
        headers = {"Content-Type": rec.content_type}
        if self.media_mode == "proxy":
            return _Reply(200, headers, stream=rec.iter_body(), length=None)
        return _Reply(200, headers, stream=rec.iter_body(), length=rec.size)

    def _sorted_rows(self, sort_by: tuple[str, bool] | None) -> list[_Row]:
        """This account's recordings in SQL ``ORDER BY`` order, without any tiebreak applied
        (ties stay in insertion order). Cached until the recordings change."""
        recs = self.recordings
        fingerprint = (
            sort_by,
            self.tz,
            self.account_sid,
            len(recs),
            _MUTATIONS[0],
            hash(tuple(recs)),
            hash(tuple(map(id, recs.values()))),
        )
        cached = self._sort_cache.get(sort_by)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        account = self.account_sid
        # a DATETIME column holds the server-local wall time: it orders and filters by that
        # (in the repeated autumn hour, instants go back inside the newest-first order)
        base = [(self._wall(r.date_created), r) for r in recs.values() if r.account_sid == account]
        rows: list[_Row]
        field_name, ascending = sort_by or ("", False)
        if field_name in ("", "DateCreated"):
            base.sort(key=lambda t: t[0], reverse=not ascending)
            rows = [(sec, sec, r) for sec, r in base]
        elif field_name == "Duration":
            base.sort(key=lambda t: t[0], reverse=True)
            base.sort(key=lambda t: t[1].duration, reverse=not ascending)
            rows = [((r.duration, sec), sec, r) for sec, r in base]
        else:  # CallSid, then date_created DESC; NULLs sort first ascending
            base.sort(key=lambda t: t[0], reverse=True)
            base.sort(
                key=lambda t: (t[1].call_sid is not None, t[1].call_sid or ""),
                reverse=not ascending,
            )
            rows = [((r.call_sid, sec), sec, r) for sec, r in base]
        self._sort_cache[sort_by] = (fingerprint, rows)
        return rows

    def _select(self, rows: list[_Row], offset: int, limit: int) -> list[SimRecording]:
        """``LIMIT limit OFFSET offset`` over ``rows``. With ``shuffle_ties`` the rows that tie
        on the sort key are shuffled afresh for every request (only the tie groups that touch
        the window need to be, which keeps big listings cheap)."""
        end = min(offset + limit, len(rows))
        if offset >= end:
            return []
        if not self.shuffle_ties:
            return [row[2] for row in rows[offset:end]]
        lo, hi = offset, end
        while lo > 0 and rows[lo - 1][0] == rows[offset][0]:
            lo -= 1
        while hi < len(rows) and rows[hi][0] == rows[end - 1][0]:
            hi += 1
        out: list[SimRecording] = []
        i = lo
        while i < hi:
            j = i + 1
            while j < hi and rows[j][0] == rows[i][0]:
                j += 1
            run = [row[2] for row in rows[i:j]]
            if len(run) > 1:
                self._tie_rng.shuffle(run)
            out.extend(run)
            i = j
        return out[offset - lo : end - lo]

    async def _list(self, request: web.Request, as_json: bool, path_uri: str) -> _Reply:
        query = request.query
        # 2. SortBy
        sort_by: tuple[str, bool] | None = None
        if "SortBy" in query:
            field_name, sep, direction = query["SortBy"].partition(":")
            if not field_name:
                return self._error_message(
                    as_json, "Error parsing the SortBy parameter: missing field to sort by"
                )
            ascending = True
            if sep:
                if direction.lower() not in ("asc", "desc"):
                    return self._error_message(
                        as_json,
                        "Error parsing the SortBy parameter: sort direction needs to be "
                        "either ASC or DESC",
                    )
                ascending = direction.lower() == "asc"
            if field_name in ("DateCreated", "Duration", "CallSid"):
                sort_by = (field_name, ascending)
        # 3. parseInt
        page = _java_int(query.get("Page", "0"))
        page_size = _java_int(query.get("PageSize", "50"))
        if page is None or page_size is None or page_size <= 0 or page < 0:
            return _server_error()
        # 4. dates
        start_at: datetime | None = None
        end_at: datetime | None = None
        if "StartTime" in query:
            day = parse_java_date_prefix(query["StartTime"])
            if day is None:
                return _empty(400)
            start_at = self._local_midnight(day)
        if "EndTime" in query:
            day = parse_java_date_prefix(query["EndTime"])
            if day is None:
                return _empty(400)
            end_at = self._local_midnight(day + timedelta(days=1))
        if query.get("localOnly", "").lower() == "false":
            return _server_error()  # no instanceid column
        call_like = _like_regex(query["CallSid"]) if "CallSid" in query else None

        if self.on_list is not None:
            result = self.on_list(page)
            if inspect.isawaitable(result):
                await result

        # 5. COUNT, 6. range check, 7. SELECT
        rows = self._sorted_rows(sort_by)
        if start_at is not None or end_at is not None or call_like is not None:
            lo_ts = _naive_seconds(start_at) if start_at is not None else None
            hi_ts = _naive_seconds(end_at) if end_at is not None else None
            rows = [
                row
                for row in rows
                if (lo_ts is None or row[1] >= lo_ts)
                and (hi_ts is None or row[1] <= hi_ts)
                and (
                    call_like is None
                    or (row[2].call_sid is not None and call_like.fullmatch(row[2].call_sid))
                )
            ]
        total = len(rows)
        num_pages = total // page_size
        if page > num_pages:
            return _empty(400)
        chunk = self._select(rows, page * page_size, page_size)
        if not as_json:
            return _Reply(200, {"Content-Type": "application/xml"}, self._xml_list(chunk))
        uri = path_uri + (".json" if self.page_uris_json else "")
        last = page == num_pages
        if not last and len(chunk) < page_size:
            return _server_error()  # list.get(pageSize - 1): IndexOutOfBounds
        envelope: dict[str, Any] = {
            "page": page,
            "num_pages": num_pages,
            "page_size": page_size,
            "total": total,
            "start": str(page * page_size),
            "end": str(page * page_size + len(chunk) if last else page_size - 1 + page * page_size),
            "uri": uri,
            "first_page_uri": f"{uri}?Page=0&PageSize={page_size}",
            "previous_page_uri": (
                "null" if page == 0 else f"{uri}?Page={page - 1}&PageSize={page_size}"
            ),
            "next_page_uri": (
                "null"
                if last
                else f"{uri}?Page={page + 1}&PageSize={page_size}&AfterSid={chunk[-1].sid}"
            ),
            "last_page_uri": f"{uri}?Page={num_pages}&PageSize={page_size}",
            "recordings": [self._render_recording(r) for r in chunk],
        }
        if self.envelope_race > 0:
            self.envelope_race -= 1
            envelope.update(_other_envelope(uri))
        return _Reply(200, {"Content-Type": "application/json"}, gson_dumps(envelope).encode())

    def _local_midnight(self, day: date) -> datetime:
        """Midnight of ``day`` as a naive wall time (a DATETIME value)."""
        return datetime(day.year, day.month, day.day)

    def _wall(self, when: datetime) -> int:
        """Seconds of the server-local wall time of ``when`` (naive, as DATETIME stores it)."""
        return _naive_seconds(when.astimezone(self.tz).replace(tzinfo=None))

    # ---------------------------------------------------------------- storage (S3-like)

    async def _route_storage(self, request: web.Request, authorized: bool) -> _Reply:
        match = re.fullmatch(r"/storage/([^/]+)\.(wav|mp4)", request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return _s3_error(404 if match is None else 405, "NoSuchKey", "Not found")
        name = f"{match.group(1)}.{match.group(2)}"
        if "Authorization" in request.headers:
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the "
                "X-Amz-Algorithm query parameter, Signature query string parameter or the "
                "Authorization header should be specified",
            )
        signature = request.query.get("X-Amz-Signature", "")
        if not hmac.compare_digest(signature, self._signature(name)):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature does not match")
        rec = self.recordings.get(match.group(1))
        if rec is not None and rec.sid in self.uploading:
            # S3 answers a missing key with 403 when the signer may not list the bucket
            return _s3_error(403, "AccessDenied", "Access Denied")
        if rec is None or rec.ext != match.group(2):
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        headers = {"Content-Type": rec.content_type, "ETag": f'"{rec.sha256()[:32]}"'}
        return _Reply(200, headers, stream=rec.iter_body(), length=rec.size)


_NAIVE_EPOCH = datetime(1970, 1, 1)


def _naive_seconds(wall: datetime) -> int:
    return math.floor((wall - _NAIVE_EPOCH).total_seconds())


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _s3_error(status: int, code: str, message: str) -> _Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{xml_escape(message)}</Message></Error>"
    )
    return _Reply(status, {"Content-Type": "application/xml"}, body.encode())


def _other_envelope(uri: str) -> dict[str, Any]:
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


def _accept_ok(accept: str) -> bool:
    """Jersey @Produces({XML, JSON}): is any listed media range compatible?"""
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in ("", "*", "*/*", "application/*", "application/xml", "application/json"):
            return True
    return False


def _java_int(text: str) -> int | None:
    if _INT_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if -(2**31) <= value < 2**31 else None


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


# --------------------------------------------------------------------------- CLI


async def _serve_forever(args: argparse.Namespace) -> None:
    sim = RestcommSimulator(
        args.account_sid, args.auth_token, seed=args.seed, media_mode=args.media_mode
    )
    sim.latency = args.latency
    spacing = timedelta(seconds=args.spacing)
    groups = math.ceil(args.recordings / max(args.same_second_every, 1))
    start = datetime.now(UTC).replace(microsecond=0) - spacing * groups
    recs = sim.generate(
        args.recordings,
        start=start,
        spacing=spacing,
        size=args.size,
        same_second_every=args.same_second_every,
    )
    for i, rec in enumerate(recs, start=1):
        if args.fail_every and i % args.fail_every == 0:
            sim.inject(path=rf"{rec.sid}\.", status=503, times=None)
        elif args.html_every and i % args.html_every == 0:
            sim.inject(
                path=rf"{rec.sid}\.",
                status=200,
                body=b"<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
                times=1,
            )
    base_url = await sim.start(args.host, args.port)
    print(f"base_url:     {base_url}", flush=True)
    print(f"account_sid:  {sim.account_sid}", flush=True)
    print(f"auth_token:   {sim.auth_token}", flush=True)
    print(f"recordings:   {len(sim.recordings)}", flush=True)
    print(f"storage:      {sim.storage_origin}", flush=True)
    print(f"oldest:       {start.isoformat()}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the Restcomm Recordings API simulator on loopback, with recordings "
        "created up to now and optional faults, to try configs and alerts before production. "
        "It prints the base_url, account_sid and auth_token to put in [source].",
        epilog="example: archiver simulator --port 8099 --recordings 1000 --html-every 50",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--recordings", type=int, default=300)
    parser.add_argument("--size", type=int, default=16_044, help="body bytes per recording")
    parser.add_argument(
        "--spacing", type=float, default=7.0, help="seconds between recordings' date_created"
    )
    parser.add_argument(
        "--same-second-every", type=int, default=1, help="recordings sharing one date_created"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every answer (a WAN)"
    )
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default="sim-token")
    parser.add_argument("--media-mode", choices=("direct", "redirect", "proxy"), default="direct")
    parser.add_argument(
        "--html-every",
        type=int,
        default=0,
        metavar="N",
        help="every Nth recording's media is an HTML error page, once (a proxy hiccup)",
    )
    parser.add_argument(
        "--fail-every",
        type=int,
        default=0,
        metavar="N",
        help="every Nth recording's media answers 503, always (failures to alert on)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


if __name__ == "__main__":
    main()
