"""The Twilio platform (and SignalWire's copy of it), whole: what each route under
``{prefix}/2010-04-01`` answers (:class:`TwilioApi`), and :class:`TwilioSimulator` /
:class:`SignalWireSimulator`, which put it together with the store, the faults, the media
host and the listeners.

Behaviour as Twilio's: Basic auth as an account or as its owner (a parent's credentials reach
every sub-account); cursor paging where ``next_page_uri`` carries a ``PageToken`` and the
filters; newest first with the SID as tiebreak; day-granular ``DateCreated`` filters; media
behind Basic auth, 404 until the recording is ``completed``, optionally a 302 to a presigned
storage URL; DELETE 204 and the resource kept as ``deleted`` (``IncludeSoftDeleted``); 429
with code 20429 past a concurrency limit per account. Bodies are written by
:mod:`.twilio_wire`.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aiohttp import web

from archiver.simulator.app import Reply, RequestRecord, SimServer, basic_credentials, empty
from archiver.simulator.bodies import Body
from archiver.simulator.faults import Fault, FaultInjector
from archiver.simulator.forward import Forward
from archiver.simulator.lifecycle import Served
from archiver.simulator.media import MediaHost
from archiver.simulator.store import Account, RecordingStore, SimRecording
from archiver.simulator.twilio_wire import (
    ACCOUNT_FILTERS,
    API_VERSION,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_PROJECT_ID,
    RECORDING_FILTERS,
    RECORDING_STATUSES,
    SIGNALWIRE,
    TWILIO,
    Dialect,
    Key,
    PageQuery,
    account_of,
    bad_request,
    cut_page,
    envelope,
    forbidden,
    json_reply,
    method_not_allowed,
    not_active,
    not_found,
    parse_day_window,
    parse_page_query,
    parse_path,
    render_account,
    render_recording,
    rendition,
    requested_channels,
    too_many_requests,
    unauthorized,
)

_READ = ("GET", "HEAD")


def _recording_key(rec: SimRecording) -> Key:
    return (rec.date_created, rec.sid)


def _account_key(account: Account) -> Key:
    return (account.date_created, account.sid)


class TwilioApi:
    """The API listener's answers, route by route, over the store."""

    def __init__(
        self, store: RecordingStore, injector: FaultInjector, media: MediaHost, dialect: Dialect
    ) -> None:
        self.store = store
        self.injector = injector
        self.media = media
        self.dialect = dialect
        self.origin = ""  # http://host:port of the API listener, once started (media_url)
        self.tags: dict[str, int] = {}  # the listener's in-flight count per account
        # more than this many requests in flight for one account: 429, code 20429
        self.concurrency_limit: int | None = None
        # deleted recordings, kept with status "deleted" (IncludeSoftDeleted=true shows them)
        self.soft_deleted: dict[str, SimRecording] = {}
        # called with the page number before a list is cut (may be async): tests change the
        # recordings between pages
        self.on_list: Callable[[int], Awaitable[None] | None] | None = None
        # called as a DELETE is answered: tests check the archive at that moment
        self.on_delete: Callable[[SimRecording], None] | None = None
        self._positions: dict[str, Key] = {}  # where each page token's item stood

    # ---------------------------------------------------------------- credentials

    def caller(self, request: web.BaseRequest) -> Account | None:
        """The account whose SID and token the request carries (closed ones no longer work)."""
        credentials = basic_credentials(request)
        if credentials is None:
            return None
        account = self.store.accounts.get(credentials[0])
        if account is None or account.status == "closed":
            return None
        return account if hmac.compare_digest(credentials[1], account.auth_token) else None

    def authorize(self, request: web.BaseRequest) -> bool:
        return self.caller(request) is not None

    def tag(self, request: web.BaseRequest) -> str | None:
        """The account a request counts against: the one in its path, else the caller."""
        account = account_of(request.rel_url.raw_path, self.dialect.prefix)
        if account is not None:
            return account
        credentials = basic_credentials(request)
        root = f"{self.dialect.prefix}/{API_VERSION}/"
        if credentials is None or not request.rel_url.raw_path.startswith(root):
            return None
        return credentials[0]

    # ---------------------------------------------------------------- routing

    async def route(self, request: web.Request, authorized: bool) -> Reply:
        reply = await self._route(request)
        tag = self.tag(request)
        if tag is not None:
            reply.headers["Twilio-Concurrent-Requests"] = str(self.tags.get(tag, 0))
        return reply

    async def _route(self, request: web.Request) -> Reply:
        path = parse_path(request.rel_url.raw_path, self.dialect.prefix)
        if path is None:
            return not_found(request.rel_url.raw_path)
        methods = ("GET", "HEAD", "DELETE") if path.kind == "recording" else _READ
        if request.method not in methods:
            return method_not_allowed()
        caller = self.caller(request)
        if caller is None:
            return unauthorized(self.dialect.realm)
        if path.kind == "accounts":
            return self._limited(caller.sid) or self._accounts(request, caller, path.path)
        account = self.store.accounts.get(path.account)
        if account is None:
            return not_found(path.path)
        if not self.store.reaches(caller.sid, account.sid):
            return forbidden()
        limited = self._limited(account.sid)
        if limited is not None:
            return limited
        if path.kind == "account":
            return json_reply(render_account(account, self.dialect.prefix))
        if account.status != "active" or caller.status != "active":
            return not_active()
        if path.kind == "recordings":
            return await self._list(request, account, path.path)
        if path.kind == "recording":
            return self._one(request, account, path.sid, path.path)
        return self._media(request, account, path.sid, path.ext, path.path)

    def _limited(self, account_sid: str) -> Reply | None:
        limit = self.concurrency_limit
        if limit is not None and self.tags.get(account_sid, 0) > limit:
            return too_many_requests()
        return None

    # ---------------------------------------------------------------- lists

    def _token_cursor(
        self, query: PageQuery, lookup: Callable[[str], Key | None]
    ) -> tuple[str, Key] | Reply | None:
        if query.token is None:
            return None
        sid = query.token[2:]
        at = self._positions.get(sid) or lookup(sid)
        if at is None:
            return bad_request(f"Invalid PageToken {query.token!r}")
        return (query.token[:2], at)

    def _tokens(
        self, items: list[tuple[str, Key]], before: bool, after: bool
    ) -> tuple[str | None, str | None]:
        """The next and previous page tokens for a page whose items are ``(sid, key)``."""
        if not items:
            return None, None
        (first_sid, first_key), (last_sid, last_key) = items[0], items[-1]
        self._positions[first_sid] = first_key
        self._positions[last_sid] = last_key
        return (f"PA{last_sid}" if after else None), (f"PB{first_sid}" if before else None)

    async def _list(self, request: web.Request, account: Account, path: str) -> Reply:
        query = parse_page_query(request.query, RECORDING_FILTERS)
        if isinstance(query, Reply):
            return query
        window = parse_day_window(request.query)
        if isinstance(window, Reply):
            return window
        if self.on_list is not None:
            result = self.on_list(query.page)
            if inspect.isawaitable(result):
                await result
        recs = list(self.store.newest_first(account.sid))
        if request.query.get("IncludeSoftDeleted", "").lower() == "true":
            gone = [r for r in self.soft_deleted.values() if r.account_sid == account.sid]
            recs = sorted([*recs, *gone], key=_recording_key, reverse=True)
        call_sid = request.query.get("CallSid")
        conference_sid = request.query.get("ConferenceSid")
        recs = [
            r
            for r in recs
            if window.admits(r.date_created)
            and (call_sid is None or r.call_sid == call_sid)
            and (conference_sid is None or r.conference_sid == conference_sid)
        ]
        cursor = self._token_cursor(query, self._recording_position)
        if isinstance(cursor, Reply):
            return cursor
        page = cut_page(recs, _recording_key, cursor, query.page_size, descending=True)
        chunk: list[SimRecording] = page.items
        next_token, previous_token = self._tokens(
            [(r.sid, _recording_key(r)) for r in chunk], page.before, page.after
        )
        rendered = [render_recording(r, self.dialect.prefix, self.origin) for r in chunk]
        body = envelope("recordings", path, query, rendered, next_token, previous_token)
        return json_reply(body)

    def _recording_position(self, sid: str) -> Key | None:
        rec = self.store.recordings.get(sid) or self.soft_deleted.get(sid)
        return None if rec is None else _recording_key(rec)

    def _accounts(self, request: web.Request, caller: Account, path: str) -> Reply:
        """``Accounts.json``: the caller and the accounts it owns, oldest first."""
        query = parse_page_query(request.query, ACCOUNT_FILTERS)
        if isinstance(query, Reply):
            return query
        name = request.query.get("FriendlyName")
        status = request.query.get("Status")
        accounts = sorted(
            (
                a
                for a in self.store.accounts.values()
                if self.store.reaches(caller.sid, a.sid)
                and (name is None or a.friendly_name == name)
                and (status is None or a.status == status)
            ),
            key=_account_key,
        )

        def position(sid: str) -> Key | None:
            account = self.store.accounts.get(sid)
            return None if account is None else _account_key(account)

        cursor = self._token_cursor(query, position)
        if isinstance(cursor, Reply):
            return cursor
        page = cut_page(accounts, _account_key, cursor, query.page_size, descending=False)
        chunk: list[Account] = page.items
        next_token, previous_token = self._tokens(
            [(a.sid, _account_key(a)) for a in chunk], page.before, page.after
        )
        rendered = [render_account(a, self.dialect.prefix) for a in chunk]
        return json_reply(envelope("accounts", path, query, rendered, next_token, previous_token))

    # ---------------------------------------------------------------- one recording

    def _find(self, account: Account, sid: str) -> SimRecording | None:
        rec = self.store.recordings.get(sid)
        return rec if rec is not None and rec.account_sid == account.sid else None

    def _one(self, request: web.Request, account: Account, sid: str, path: str) -> Reply:
        rec = self._find(account, sid)
        if request.method == "DELETE":
            if rec is None:
                return not_found(path)
            if self.on_delete is not None:
                self.on_delete(rec)
            self.store.delete(rec, keep=self.injector.lying_deletes)
            if not self.injector.lying_deletes:
                self.soft_deleted[sid] = replace(rec, status="deleted")
            return empty(204)
        if rec is None and request.query.get("IncludeSoftDeleted", "").lower() == "true":
            gone = self.soft_deleted.get(sid)
            rec = gone if gone is not None and gone.account_sid == account.sid else None
        if rec is None:
            return not_found(path)
        return json_reply(render_recording(rec, self.dialect.prefix, self.origin))

    def _media(
        self, request: web.Request, account: Account, sid: str, ext: str, path: str
    ) -> Reply:
        """The media file: wav (no extension, or ``.wav``) or mp3, once ``completed``."""
        rec = self._find(account, sid)
        if rec is None or rec.status != "completed":
            return not_found(path)  # not written yet (processing, in-progress), or absent
        channels = requested_channels(rec, request.query)
        if isinstance(channels, Reply):
            return channels
        body = rendition(rec, ext or "wav", channels)
        return not_found(path) if body is None else self.media.answer(rec, body)


# --------------------------------------------------------------------------- the simulator


class TwilioSimulator(Served):
    """A Twilio platform on loopback, for tests, the demo and ``archiver simulator``.

    Its parts: :attr:`store` (accounts, recordings), :attr:`injector` (faults and knobs),
    :attr:`media` (how bodies are served), :attr:`api` (the routes) and :attr:`server` (the
    listeners). :attr:`base_url` is the API root a client appends ``/2010-04-01/...`` to.
    """

    dialect = TWILIO

    # the store
    account_sid = Forward[str]("store.account_sid")
    auth_token = Forward[str]("store.account.auth_token")
    seed = Forward[int]("store.seed")
    recordings = Forward[dict[str, SimRecording]]("store.recordings")
    accounts = Forward[dict[str, Account]]("store.accounts")
    deleted = Forward[list[str]]("store.deleted")
    # faults and knobs
    faults = Forward[list[Fault]]("injector.faults")
    latency = Forward[float]("injector.latency")
    lying_deletes = Forward[bool]("injector.lying_deletes")
    uploading = Forward[set[str]]("injector.uploading")
    concurrency_limit = Forward[int | None]("api.concurrency_limit")
    # media, routes, listeners
    media_mode = Forward[str]("media.mode")
    storage_origin = Forward[str]("media.origin")
    soft_deleted = Forward[dict[str, SimRecording]]("api.soft_deleted")
    on_list = Forward[Callable[[int], Awaitable[None] | None] | None]("api.on_list")
    on_delete = Forward[Callable[[SimRecording], None] | None]("api.on_delete")
    requests = Forward[list[RequestRecord]]("server.requests")
    in_flight = Forward[int]("server.in_flight")
    peak_in_flight = Forward[int]("server.peak_in_flight")
    clock = Forward[Callable[[], float] | None]("server.clock")

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str = "sim-token",
        *,
        seed: int = 0,
        media_mode: str = "direct",
        concurrency_limit: int | None = None,
    ) -> None:
        sid = account_sid or self.default_account_sid()
        self.store = RecordingStore(
            sid, auth_token, tz=UTC, seed=seed, sid_style=self.dialect.sid_style
        )
        self.store.account.friendly_name = f"{self.dialect.name} main account"
        self.injector = FaultInjector()
        self.media = MediaHost(
            self.store, self.injector, media_mode, seed, redirect_status=302, renditions=rendition
        )
        self.api = TwilioApi(self.store, self.injector, self.media, self.dialect)
        self.api.concurrency_limit = concurrency_limit
        self.server = SimServer(
            self.injector,
            self.api.authorize,
            self.api.route,
            self.media.storage_route,
            tag=self.api.tag,
        )
        self.api.tags = self.server.in_flight_by
        self.base_url = ""
        self.make_sid = self.store.make_sid
        self.add = self.store.add
        self.inject = self.injector.inject
        self.clear_faults = self.injector.clear

    @classmethod
    def default_account_sid(cls) -> str:
        return DEFAULT_ACCOUNT_SID

    # ---------------------------------------------------------------- conveniences

    def generate(
        self,
        n: int,
        *,
        start: datetime,
        spacing: timedelta = timedelta(seconds=7),
        size: int = 16_044,
        same_second_every: int = 1,
        account_sid: str | None = None,
        channels: int = 1,
        status: str = "completed",
    ) -> list[SimRecording]:
        """Add ``n`` recordings (wav, ``size`` bytes) to ``account_sid`` (default: the main
        account) from ``start`` on, ``spacing`` apart, all with ``status``."""
        recs = self.store.generate(
            n,
            start=start,
            spacing=spacing,
            size=size,
            same_second_every=same_second_every,
            account_sid=account_sid,
            channels=channels,
        )
        for rec in recs:
            self.set_status(rec, status)
        return recs

    def set_status(
        self, rec: SimRecording | str, status: str, *, error_code: int | None = None
    ) -> SimRecording:
        """Put a recording in ``status`` (``processing``, ``absent`` with ``error_code``...)."""
        if isinstance(rec, str):
            rec = self.store.recordings[rec]
        if status not in RECORDING_STATUSES or status == "deleted":
            raise ValueError(f"unknown recording status {status!r} (delete it instead)")
        rec.status = status
        rec.error_code = error_code
        return rec

    def media_body(self, rec: SimRecording, ext: str = "wav", channels: int | None = None) -> Body:
        """The file the API serves for ``rec`` as ``ext`` (and ``RequestedChannels``), to
        compare a download with."""
        chosen = channels if channels is not None else requested_channels(rec, {})
        assert isinstance(chosen, int)
        body = rendition(rec, ext, chosen)
        if body is None:
            raise ValueError(f"{rec.sid} has no {ext} in {chosen} channels")
        return body

    @property
    def api_base(self) -> str:
        """``base_url`` + ``/2010-04-01``."""
        return f"{self.base_url}/{API_VERSION}"

    def account_base(self, account_sid: str | None = None) -> str:
        """``api_base`` + ``/Accounts/{account_sid}``."""
        return f"{self.api_base}/Accounts/{account_sid or self.account_sid}"

    # ---------------------------------------------------------------- lifecycle

    def _root(self, api_origin: str) -> str:
        self.api.origin = api_origin  # the API names its own origin in what it answers
        return f"{api_origin}{self.dialect.prefix}"


class SignalWireSimulator(TwilioSimulator):
    """SignalWire's LaML API: Twilio's, under ``/api/laml``, with UUIDs for the project ID
    (the account SID; the token is the project's API token) and for every SID."""

    dialect = SIGNALWIRE

    @classmethod
    def default_account_sid(cls) -> str:
        return DEFAULT_PROJECT_ID

    @property
    def project_id(self) -> str:
        return self.account_sid

    @property
    def api_token(self) -> str:
        return self.auth_token
