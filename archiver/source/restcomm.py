"""The Restcomm client: the Recordings API as the real server behaves (see shared/spec).

What this client knows about the server, so that nothing above it has to:

* the list is offset-paged, newest first, with no tiebreak inside one second; page URLs are
  built here (``next_page_uri`` drops every filter and may lack ``.json``), a page past the end
  is a 400, ``"null"`` ends the list;
* ``StartTime`` filters by DATE only, in the server's time zone;
* ``duration`` is a string, dates are RFC-2822-like in the server's zone;
* media is fetched from ``{base_url}/2012-04-24/Accounts/{AC}/Recordings/{sid}.wav|.mp4``, never
  from ``file_uri`` (which may name an internal host); redirects are followed by hand and Basic
  auth is sent only to the origin of ``base_url``;
* a media body is accepted only when the status is 200, its length matches ``Content-Length``
  and it starts like a WAV (``RIFF....WAVE``) or an MP4 (``....ftyp``); anything else is
  ``MediaDamaged`` (an error page or a cut body: retried), a stall or a reset mid-body is
  ``MediaUnavailable`` (retried), both naming the URL;
* the list ends only on a page shorter than asked for, an empty page or the 400 past the end:
  ``num_pages`` and ``next_page_uri`` come from a converter shared between requests and may
  describe another request (spec 2.5);
* a 401 makes the client re-read its token file once (a rotated token) before it gives up; a
  401/403 from a host we sent no credentials to (a presigned storage URL) means the media is
  not there yet, never that our credentials are wrong;
* the server's clock is read from its ``Date`` header (``server_now``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import email.utils
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
import structlog

from archiver import __version__, logs
from archiver.errors import (
    AccountUnavailable,
    InvalidRecording,
    MediaDamaged,
    MediaInvalid,
    MediaNotReady,
    MediaUnavailable,
    SourceAuthError,
    SourceProtocolError,
    SourceUnavailable,
)
from archiver.hooks import NO_HOOKS, Hooks
from archiver.model import Account, InvalidItem, Page, Recording

log = structlog.get_logger("archiver.restcomm")

API_VERSION = "2012-04-24"
# letters, digits and dashes (SignalWire SIDs are UUIDs): safe in a URL and in an archive key
SID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{1,63}$")
DEFAULT_CHUNK = 256 * 1024
# bytes of a body held before they are hashed: a short recording is hashed off the event loop
DEFAULT_HASH_DEFER = 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
MAX_RECORDING_BYTES = 16 * 2**30  # a Content-Length above this is absurd for a call recording
USER_AGENT = f"archiver/{__version__}"
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def public_url(url: str) -> str:
    """``url`` without its query (a presigned URL's signature) or any user info: for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def describe_error(exc: BaseException) -> str:
    """A network error in plain words, never a library repr."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else "failed"
        return f"cannot connect to {exc.host}:{exc.port} ({cause.lower()})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection broke mid-body"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode("latin-1", "strict")).decode()
    return f"Basic {token}"


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def parse_date(value: Any, server_tz: tzinfo | None = None) -> datetime:
    """A Restcomm date (``Mon, 6 Jan 2014 08:51:07 +0900``), or ISO-8601, to an aware UTC time.

    Raises ValueError with the offending value.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"date_created {value!r} is not a date")
    text = value.strip()
    dt: datetime | None = None
    try:
        dt = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"date_created {value!r} is in no known format") from None
    if dt.tzinfo is None:
        if server_tz is None:
            raise ValueError(f"date_created {value!r} has no time zone and none is configured")
        dt = dt.replace(tzinfo=server_tz)
    return dt.astimezone(UTC)


def validate_sid(sid: Any, what: str = "sid") -> str:
    if not isinstance(sid, str) or not SID_RE.match(sid):
        raise InvalidRecording(f"{what} {sid!r} is malformed: only letters and digits are allowed")
    return sid


def parse_recording(
    item: Any, server_tz: tzinfo | None = None, default_account: str | None = None
) -> Recording | InvalidItem:
    if not isinstance(item, dict):
        return InvalidItem(None, f"list item is not an object: {str(item)[:80]!r}", {})
    raw_sid = item.get("sid")
    sid = raw_sid if isinstance(raw_sid, str) and raw_sid else None
    try:
        validate_sid(raw_sid)
        account_sid = item.get("account_sid") or default_account
        validate_sid(account_sid, "account_sid")
        call_sid = item.get("call_sid")
        if call_sid is not None and not isinstance(call_sid, str):
            raise InvalidRecording(f"call_sid {call_sid!r} is not a string")
        created = parse_date(item.get("date_created"), server_tz)
        raw_duration = item.get("duration", "0")
        try:
            duration = float(raw_duration)
        except (TypeError, ValueError):
            raise InvalidRecording(f"duration {raw_duration!r} is not a number") from None
        file_uri = item.get("file_uri") or ""
        ext = "mp4" if isinstance(file_uri, str) and file_uri.lower().endswith(".mp4") else "wav"
    except (InvalidRecording, ValueError) as exc:
        return InvalidItem(sid, str(exc), item)
    assert isinstance(raw_sid, str) and isinstance(account_sid, str)
    return Recording(raw_sid, account_sid, call_sid, created, duration, ext, item)


def offset_of(value: str) -> tzinfo | None:
    """The fixed offset printed in a Restcomm date, or None."""
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return dt.tzinfo


class RateLimiter:
    """Caps requests per second across every worker; a 429 slows everyone down."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._penalty_until = 0.0

    def penalize(self, seconds: float) -> None:
        self._penalty_until = max(self._penalty_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = max(self._next - now, self._penalty_until - now, 0.0)
            if wait:
                await asyncio.sleep(wait)
            self._next = max(now, self._next) + self.interval


class ConcurrencyGate:
    """Requests in flight for one account, at most :attr:`allowed`. A 429 (Twilio's 20429:
    too many concurrent requests) halves it; every ``allowed`` answers without one grow it by
    one, back up to the ceiling (additive increase, multiplicative decrease, as TCP does),
    ten times slower from the level where a 429 was met."""

    def __init__(self, ceiling: int, account_sid: str) -> None:
        self.ceiling = max(ceiling, 1)
        self.allowed = self.ceiling
        self.in_flight = 0
        self.account_sid = account_sid
        self._good = 0
        self._refused = self.ceiling + 1  # the lowest level a 429 answered (none yet)
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[_GateSlot]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.allowed)
            self.in_flight += 1
        slot = _GateSlot()
        try:
            yield slot
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._settle(slot.throttled)
                self._changed.notify_all()

    def _settle(self, throttled: bool) -> None:
        if throttled:
            self._good = 0
            self._refused = min(self._refused, self.allowed)  # where the cap was met
            if self.allowed > 1:
                self.allowed = max(1, self.allowed // 2)
                log.warning(
                    "source.throttled",
                    account=self.account_sid,
                    concurrency=self.allowed,
                    ceiling=self.ceiling,
                )
            return
        self._good += 1
        # back up to just below where the cap was met at the usual pace; that level and past
        # it only ten times slower (a fixed cap is not hit over and over)
        window = self.allowed if self.allowed + 1 < self._refused else 10 * self.allowed
        if self.allowed < self.ceiling and self._good >= window:
            self._good = 0
            self.allowed += 1


@dataclass
class _GateSlot:
    throttled: bool = False


@dataclass
class MediaBody:
    """A streamed, checked media body. Iterate it once; ``size``/``sha256`` are final after.

    Hashing is deferred by up to ``DEFAULT_HASH_DEFER`` bytes: a short body is hashed when
    ``sha256`` is first read, which a local archive does in its file thread, so the event
    loop (the one core every transfer shares) does not. A local archive holds the same chunks
    until it writes them (bytes are shared, not copied); for S3 they are at most 1 MiB more."""

    content_type: str
    content_length: int | None
    _chunks: AsyncIterator[bytes]
    ext: str
    url: str = ""  # without query: for messages
    read_timeout: float = 0.0
    size: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)
    _riff_size: int | None = None
    _unhashed: list[bytes] = field(default_factory=list)
    _unhashed_size: int = 0

    @property
    def sha256(self) -> str:
        self._hash_held()
        return str(self._hash.hexdigest())

    def _hash_held(self) -> None:
        held, self._unhashed, self._unhashed_size = self._unhashed, [], 0
        for chunk in held:
            self._hash.update(chunk)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._checked():
                yield chunk
        except TimeoutError as exc:  # first: aiohttp's read timeout is a connection error too
            raise MediaUnavailable(
                f"media {self.url}: stalled, no data for {self.read_timeout:g}s "
                f"after {self.size} bytes"
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise MediaUnavailable(
                f"media {self.url}: {describe_error(exc)} after {self.size} bytes"
            ) from exc
        except MediaDamaged as exc:
            raise MediaDamaged(f"media {self.url}: {exc}") from None

    async def _checked(self) -> AsyncIterator[bytes]:
        head = b""
        checked = False
        async for chunk in self._chunks:
            if not chunk:
                continue
            if not checked:
                head += chunk
                if len(head) < 12:
                    continue
                _check_magic(head, self.ext, self.content_type)
                if self.ext == "wav":
                    riff = int.from_bytes(head[4:8], "little")
                    # 0 and 0xFFFFFFFF mean "unknown" in streamed WAVs
                    self._riff_size = riff if 0 < riff < 0xFFFFFFFF else None
                chunk, head, checked = head, b"", True
            self.size += len(chunk)
            if self.content_length is not None and self.size > self.content_length:
                raise MediaDamaged(f"body is longer than its Content-Length {self.content_length}")
            self._unhashed.append(chunk)
            self._unhashed_size += len(chunk)
            if self._unhashed_size >= DEFAULT_HASH_DEFER:
                self._hash_held()  # a long body: hashed as it streams, memory stays bounded
            yield chunk
        if not checked:
            _check_magic(head, self.ext, self.content_type)  # raises: too short to be audio
        if self.content_length is not None and self.size != self.content_length:
            raise MediaDamaged(f"truncated body: got {self.size} of {self.content_length} bytes")
        if self._riff_size is not None and self.size < self._riff_size + 8:
            # Content-Length can be honest about a file that is itself cut short (still being
            # written, or a partial copy); the WAV header knows the real length.
            raise MediaDamaged(
                f"truncated WAV: its header promises {self._riff_size + 8} bytes, "
                f"the body has {self.size}"
            )


def _check_magic(head: bytes, ext: str, content_type: str) -> None:
    if ext == "mp4":
        if len(head) >= 8 and head[4:8] == b"ftyp":
            return
        expected = "an MP4 'ftyp' box"
    else:
        if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return
        expected = "a RIFF/WAVE header"
    sample = head[:32].decode("latin-1").replace("\n", " ")
    raise MediaDamaged(
        f"body is not a recording: expected {expected}, got {content_type or 'no type'} "
        f"starting {sample!r}"
    )


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON, or SourceProtocolError naming ``what`` and how the text starts."""
    try:
        return json.loads(text)
    except ValueError:
        raise SourceProtocolError(f"{what} is not JSON (starts {text[:60]!r})") from None


def parse_account(item: Any, owner_sid: str | None = None) -> Account:
    """One account of an accounts list; SourceProtocolError when it has no usable SID."""
    if not isinstance(item, dict):
        raise SourceProtocolError(f"accounts list item is not an object: {str(item)[:60]!r}")
    sid = item.get("sid")
    try:
        validate_sid(sid, "account sid")
    except InvalidRecording as exc:
        raise SourceProtocolError(f"accounts list: {exc}") from None
    assert isinstance(sid, str)
    owner = item.get("owner_account_sid") or item.get("parent_sid") or owner_sid
    status = item.get("status")
    name = item.get("friendly_name")
    return Account(
        sid,
        status if isinstance(status, str) else "unknown",
        name if isinstance(name, str) else "",
        owner if isinstance(owner, str) and owner != sid else None,
    )


ACCOUNT_NOT_ACTIVE = 20005  # Twilio's error code for a suspended or closed account


def platform_error(body: str) -> tuple[int | None, str]:
    """The error code of a JSON error body (Twilio's ``{"code", "message"}``) and a
    ``: code N: message`` suffix for the operator; (None, "") for anything else."""
    text = body.strip()
    if not text.startswith("{"):
        return None, ""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, ""
    if not isinstance(parsed, dict) or "code" not in parsed:
        return None, ""
    code = parsed.get("code")
    number = code if isinstance(code, int) and not isinstance(code, bool) else None
    message = str(parsed.get("message", ""))[:200]
    return number, f": code {code}: {message}" if message else f": code {code}"


class _Shared:
    """What every account's view of one client shares: the credentials, the session, the
    request rate."""

    def __init__(self, sid: str, token_file: str | None, limiter: RateLimiter) -> None:
        self.sid = sid  # whose credentials: the account that authenticates every request
        self.token = ""
        self.auth = ""
        self.token_file = token_file
        self.limiter = limiter
        self.session: aiohttp.ClientSession | None = None


class RestcommClient:
    """An async context manager around one aiohttp session for one account; :meth:`for_account`
    gives a view of another account the same credentials reach, sharing the session."""

    api_version = API_VERSION
    paging = "offset"  # numbered pages with a total (see archiver.listing.Lister)

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        *,
        timeout: float = 60.0,
        server_tz: tzinfo | None = None,
        max_requests_per_second: float = 0.0,
        connections: int = 16,
        token_file: str | None = None,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self.hooks = hooks
        self.base_url = base_url.rstrip("/")
        self.account_sid = validate_sid(account_sid, "account_sid")
        self._shared = _Shared(
            self.account_sid, token_file or None, RateLimiter(max_requests_per_second)
        )
        self.set_token(auth_token)
        self.server_now: datetime | None = None  # from the last answer's Date header
        self._origin = origin_of(self.base_url)
        # URLs built here start with this; their authority is the configured one by construction
        self._own_prefix = f"{self.base_url}/{self.api_version}/Accounts/{self.account_sid}/"
        self._timeout = timeout
        self.server_tz = server_tz
        self.configured_tz = server_tz is not None
        self._connections = connections
        self._gate = ConcurrencyGate(connections, self.account_sid)
        self._warned_foreign = False

    def for_account(self, account_sid: str) -> Self:
        """This client for another account the same credentials reach (a sub-account):
        the same session, credentials and request rate; its own URLs and clock reading."""
        if account_sid == self.account_sid:
            return self
        view = copy.copy(self)
        view.account_sid = validate_sid(account_sid, "account_sid")
        view._own_prefix = f"{self.base_url}/{self.api_version}/Accounts/{view.account_sid}/"
        view.server_now = None
        view._gate = ConcurrencyGate(self._connections, view.account_sid)  # the cap is per account
        return view

    @property
    def credentials_sid(self) -> str:
        """The account whose credentials every request carries."""
        return self._shared.sid

    @property
    def token_file(self) -> str | None:
        return self._shared.token_file

    @property
    def _limiter(self) -> RateLimiter:
        return self._shared.limiter

    @property
    def _auth(self) -> str:
        return self._shared.auth

    def set_token(self, token: str) -> bool:
        """Use ``token`` from now on (every view); True when it differs from the one in use."""
        shared = self._shared
        if token == shared.token:
            return False
        shared.token = token
        shared.auth = basic_auth(shared.sid, token)
        logs.register_secret(token)
        logs.register_secret(shared.auth.split(" ", 1)[1])  # the header form, base64
        return True

    async def reload_token(self) -> bool:
        """Re-read the token file (a rotated token); True when the token changed."""
        if self.token_file is None:
            return False
        path = Path(self.token_file)
        try:
            token = (await asyncio.to_thread(path.read_text, encoding="utf-8")).strip()
        except OSError as exc:
            log.error("source.token_unreadable", file=str(path), error=exc.strerror)
            return False
        if not token or not self.set_token(token):
            return False
        log.info("source.token_reloaded", file=str(path))
        return True

    def _note_date(self, resp: aiohttp.ClientResponse) -> None:
        value = resp.headers.get("Date")
        if not value:
            return
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return
        self.server_now = when if when.tzinfo else when.replace(tzinfo=UTC)

    @property
    def api_root(self) -> str:
        return f"{self.base_url}/{self.api_version}/Accounts/{self.account_sid}"

    async def __aenter__(self) -> RestcommClient:
        if self._shared.session is None:
            self._shared.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._shared.session = self._shared.session, None
        if session is not None:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._shared.session is None:
            raise RuntimeError("RestcommClient used outside 'async with'")
        return self._shared.session

    def _headers_for(self, url: str, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        # credentials never leave the configured origin (the prefix test spares a URL parse
        # for the URLs built here; a redirect's Location is parsed)
        if url.startswith(self._own_prefix) or origin_of(url) == self._origin:
            headers["Authorization"] = self._auth
        return headers

    def _count(self, status: int | str) -> None:
        self.hooks.source_request(status)

    # ---------------------------------------------------------------- list

    def page_url(
        self, page: int, page_size: int, start_date: date | None, end_date: date | None = None
    ) -> str:
        params: dict[str, str | int] = {"Page": page, "PageSize": page_size}
        if start_date is not None:
            params["StartTime"] = start_date.isoformat()
        if end_date is not None:
            params["EndTime"] = end_date.isoformat()
        return f"{self.api_root}/Recordings.json?{urlencode(params)}"

    async def list_page(
        self, page: int, page_size: int, start_date: date | None, end_date: date | None = None
    ) -> Page:
        """One page of the newest-first list. A 400 past the first page means past the end."""
        url = self.page_url(page, page_size, start_date, end_date)
        status, text = await self._api("GET", url, f"list page {page}")
        if status == 400:
            if page > 0:
                return Page(page, page_size, 0, page - 1, [], last=True)
            raise SourceProtocolError(
                f"the list answered 400 for page 0 (StartTime={start_date}); "
                "the server rejects the query"
            )
        if status == 404:
            raise SourceProtocolError(
                f"list page {page}: {public_url(url)} answered 404: is source.base_url the API "
                "root, everything before /2012-04-24 (e.g. https://host/restcomm)?"
            )
        if status != 200:
            raise SourceProtocolError(f"list page {page}: {public_url(url)} answered HTTP {status}")
        return self._parse_page(text, page, page_size)

    async def _api(self, method: str, url: str, what: str) -> tuple[int, str]:
        """One small API request (a list page, a DELETE): (status, body). A 401 re-reads the
        token file once; errors that are not an answer to interpret are raised here."""
        for reread in (False, True):
            await self._limiter.acquire()
            try:
                async with (
                    self._gate.slot() as slot,
                    self.session.request(
                        method,
                        url,
                        headers=self._headers_for(url, "application/json"),
                        allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=self._timeout),
                    ) as resp,
                ):
                    self._count(resp.status)
                    self._note_date(resp)
                    slot.throttled = resp.status == 429
                    if resp.status == 401 and not reread and await self.reload_token():
                        continue  # the token was rotated: once more with the new one
                    if resp.status in (401, 403, 429):
                        text = await resp.text(errors="replace")
                        self._raise_for_status(resp.status, resp.headers, what, text)
                    if resp.status != 404:
                        self._raise_for_status(resp.status, resp.headers, what)
                    return resp.status, await resp.text(errors="replace")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._count("error")
                raise SourceUnavailable(
                    f"{what}: {public_url(url)}: {describe_error(exc)}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _whose(self) -> str:
        if self.account_sid == self.credentials_sid:
            return f"account {self.account_sid}"
        return f"account {self.account_sid} (reached with {self.credentials_sid}'s credentials)"

    def _raise_for_status(
        self, status: int, headers: Mapping[str, str], what: str, body: str = ""
    ) -> None:
        code, said = platform_error(body)
        if status == 401 and code != ACCOUNT_NOT_ACTIVE:
            raise SourceAuthError(
                f"{what}: 401 credentials rejected for account {self.credentials_sid}{said} "
                "(check source.account_sid and source.auth_token)"
            )
        if status in (401, 403):
            reason = (
                "the account is not active (closed or suspended)"
                if code == ACCOUNT_NOT_ACTIVE or "not active" in body
                else "account not active, not reachable with these credentials, or the token "
                "lacks Read/Delete:Recordings"
            )
            raise AccountUnavailable(
                f"{what}: {status} forbidden for {self._whose()}{said} ({reason})",
                account_sid=self.account_sid,
            )
        if status in _RETRYABLE_STATUS:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            if status == 429:
                self._limiter.penalize(retry_after or 1.0)
            raise SourceUnavailable(
                f"{what}: HTTP {status} from the source{said}",
                retry_after=retry_after,
                throttled=status == 429,
            )

    def _parse_page(self, text: str, page: int, page_size: int) -> Page:
        body = parse_json(text, f"list page {page}")
        if not isinstance(body, dict) or not isinstance(body.get("recordings"), list):
            raise SourceProtocolError(f"list page {page} has no 'recordings' array")
        try:
            total = int(body.get("total", 0))
            num_pages = int(body.get("num_pages", 0))
        except (TypeError, ValueError):
            raise SourceProtocolError(
                f"list page {page} has a non-numeric total/num_pages"
            ) from None
        next_uri = body.get("next_page_uri")
        if isinstance(next_uri, str) and next_uri not in ("", "null"):
            absolute = urljoin(self.base_url + "/", next_uri)
            if origin_of(absolute) != self._origin and not self._warned_foreign:
                # We never follow page URIs (we build them), so this costs nothing but a warning.
                self._warned_foreign = True
                log.warning("source.foreign_page_uri", next_page_uri_origin=origin_of(absolute))
        raw: list[Any] = body["recordings"]
        if not self.configured_tz:
            for item in raw[:1]:
                if isinstance(item, dict) and isinstance(item.get("date_created"), str):
                    learned = offset_of(item["date_created"])
                    if learned is not None:
                        self.server_tz = learned
        items = [
            self.owned(parse_recording(item, self.server_tz, self.account_sid)) for item in raw
        ]
        # Only the page itself tells the end: a full page's num_pages/next_page_uri may be
        # another request's (the server's converter is shared between requests).
        last = len(raw) < page_size
        return Page(page, page_size, total, num_pages, items, last)

    # ---------------------------------------------------------------- accounts

    async def list_accounts(self) -> list[Account]:
        """The sub-accounts these credentials own: Restcomm's ``Accounts.json`` is a bare
        array of the authenticated account's direct children (no paging)."""
        url = f"{self.base_url}/{self.api_version}/Accounts.json"
        status, text = await self._api("GET", url, "accounts list")
        if status != 200:
            raise SourceProtocolError(f"accounts list: {public_url(url)} answered HTTP {status}")
        try:
            body = json.loads(text)
        except ValueError:
            raise SourceProtocolError(f"accounts list is not JSON (starts {text[:60]!r})") from None
        if isinstance(body, dict) and isinstance(body.get("accounts"), list):
            body = body["accounts"]
        if not isinstance(body, list):
            raise SourceProtocolError("accounts list is not an array of accounts")
        return [parse_account(item, self.credentials_sid) for item in body]

    def owned(self, item: Recording | InvalidItem) -> Recording | InvalidItem:
        """A listed recording of another account than the one listed is not taken for this
        one's (its key, its media URL and its deletion would all be another account's)."""
        if isinstance(item, Recording) and item.account_sid != self.account_sid:
            return InvalidItem(
                item.sid,
                f"listed under account {self.account_sid} but says it belongs to "
                f"{item.account_sid}",
                item.source,
            )
        return item

    async def check(self) -> int:
        """Reach the list with the credentials; returns the total the server reports."""
        page = await self.list_page(0, 1, None)
        return page.total

    # ---------------------------------------------------------------- media

    def media_url(self, sid: str, ext: str) -> str:
        validate_sid(sid)
        return f"{self.api_root}/Recordings/{sid}.{ext}"

    @asynccontextmanager
    async def media(self, sid: str, ext: str) -> AsyncIterator[MediaBody]:
        """Open the media of one recording; iterate the yielded body to stream it."""
        first = url = self.media_url(sid, ext)
        reread = False
        try:
            async with self._gate.slot() as slot:  # held until the body is read
                hops = 0
                while True:
                    if hops > DEFAULT_MAX_REDIRECTS:
                        raise MediaInvalid(f"more than {DEFAULT_MAX_REDIRECTS} redirects for {sid}")
                    hops += 1
                    headers = {**self._headers_for(url, "*/*"), "Accept-Encoding": "identity"}
                    await self._limiter.acquire()
                    async with self.session.get(
                        url,
                        headers=headers,
                        allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(
                            total=None, connect=self._timeout, sock_read=self._timeout
                        ),
                    ) as resp:
                        self._count(resp.status)
                        slot.throttled = resp.status == 429
                        if resp.status in (301, 302, 303, 307, 308):
                            location = resp.headers.get("Location")
                            if not location:
                                raise MediaInvalid(f"HTTP {resp.status} redirect without Location")
                            url = urljoin(url, location)
                            if urlsplit(url).scheme not in ("http", "https"):
                                raise MediaInvalid("redirect to a non-HTTP URL refused")
                            continue
                        sent_auth = "Authorization" in headers
                        if resp.status == 401 and sent_auth and not reread:
                            reread = True
                            if await self.reload_token():  # rotated: start again from our URL
                                url, hops = first, 0
                                continue
                        if resp.status in (401, 403) and sent_auth:
                            text = await resp.text(errors="replace")
                            self._raise_for_status(
                                resp.status, resp.headers, f"media {public_url(url)}", text
                            )
                        said = ""
                        if resp.status >= 400 and "json" in resp.content_type:
                            said = platform_error(await resp.text(errors="replace"))[1]
                        yield self._media_body(resp, ext, url, sent_auth, said)
                        return
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
            self._count("error")
            raise MediaUnavailable(f"media {public_url(url)}: {describe_error(exc)}") from exc
        except aiohttp.ClientError as exc:
            self._count("error")
            raise MediaUnavailable(f"media {public_url(url)}: {describe_error(exc)}") from exc

    def _media_body(
        self, resp: aiohttp.ClientResponse, ext: str, url: str, sent_auth: bool, said: str = ""
    ) -> MediaBody:
        """The body to stream, or the error its answer means; ``said``: the platform's error
        code and message, when its error body had them."""
        where = public_url(url)
        if resp.status == 404:
            raise MediaNotReady(
                f"media {where} answered 404{said} (the platform may still be writing it)"
            )
        if resp.status in _RETRYABLE_STATUS:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if resp.status == 429:
                self._limiter.penalize(retry_after or 1.0)
            raise MediaUnavailable(
                f"media {where} answered HTTP {resp.status}{said}",
                retry_after=retry_after,
                throttled=resp.status == 429,
            )
        if resp.status in (401, 403) and not sent_auth:
            # a presigned storage URL refuses a key that is not uploaded yet: our credentials
            # were never sent there, so they cannot be what is wrong
            raise MediaNotReady(
                f"storage {origin_of(url)} answered HTTP {resp.status} to the media's presigned "
                "URL (the platform may still be uploading it)"
            )
        if resp.status in (401, 403):
            raise SourceAuthError(f"media {where} answered HTTP {resp.status}")
        if resp.status != 200:
            raise MediaInvalid(f"media {where} answered HTTP {resp.status}{said}, expected 200")
        length: int | None = None
        header = resp.headers.get("Content-Length")
        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("identity", "")
        if header is not None and not encoded:
            try:
                length = int(header)
            except ValueError:
                raise MediaInvalid(f"Content-Length {header!r} is not a number") from None
            if length < 0 or length > MAX_RECORDING_BYTES:
                raise MediaInvalid(f"Content-Length {length} is absurd for a recording")
        content_type = resp.headers.get("Content-Type", "")
        return MediaBody(
            content_type,
            length,
            resp.content.iter_chunked(DEFAULT_CHUNK),
            ext,
            url=where,
            read_timeout=self._timeout,
        )

    # ---------------------------------------------------------------- delete

    async def delete(self, sid: str) -> bool:
        """DELETE one recording. True when deleted now, False when it was already gone (404)."""
        validate_sid(sid)
        url = f"{self.api_root}/Recordings/{sid}.json"
        status, _body = await self._api("DELETE", url, "delete")
        if status == 404:
            return False
        if status not in (200, 204):
            raise SourceProtocolError(f"delete {public_url(url)} answered HTTP {status}")
        return True
