"""The Restcomm platform, whole: what each route of ``/restcomm/2012-04-24/Accounts/{AC}``
answers (:class:`RestcommApi`), and :class:`RestcommSimulator`, which puts it together with
the store, the faults, the media host and the listeners.

It reproduces the real server's behaviour route by route (see
``/work/shared/spec/restcomm-server-behaviour.md``): the security filter's order of refusals
and its regex hole, 400 past the last page, no tiebreak on equal ``date_created``,
unauthenticated media, DELETE 200 then 404. Bodies are written by :mod:`.restcomm_wire`.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta, timezone, tzinfo

from aiohttp import web

from archiver.simulator.app import Reply, RequestRecord, SimServer, basic_credentials, empty
from archiver.simulator.faults import Fault, FaultInjector
from archiver.simulator.forward import Forward
from archiver.simulator.lifecycle import Served
from archiver.simulator.media import MediaHost
from archiver.simulator.restcomm_wire import (
    API_PREFIX,
    API_VERSION,
    DEFAULT_ACCOUNT_SID,
    SID_RE,
    UNPROTECTED_RE,
    ApiPath,
    envelope,
    json_reply,
    other_envelope,
    parse_list_query,
    parse_path,
    render_account,
    render_json,
    render_xml,
    server_error,
    unauthorized,
    xml_list,
    xml_reply,
)
from archiver.simulator.store import Account, RecordingStore, SimRecording

_LIST_METHODS = ("GET", "HEAD")
_ONE_METHODS = ("GET", "HEAD", "DELETE")


class RestcommApi:
    """The API listener's answers, route by route, over the store."""

    def __init__(
        self,
        store: RecordingStore,
        injector: FaultInjector,
        media: MediaHost,
        *,
        page_uris_json: bool = False,
        auth_hole: bool = True,
    ) -> None:
        self.store = store
        self.injector = injector
        self.media = media
        self.page_uris_json = page_uris_json  # page URIs in the envelope end in .json
        # Reproduce SecurityFilter's regex hole (spec 4.4): unauthenticated metadata requests
        # for SIDs ending in one of ". m p 4 | w a v" get a 500 instead of a 401.
        self.auth_hole = auth_hole
        # called with the page number before a list is counted (may be async): tests change
        # the recordings between pages
        self.on_list: Callable[[int], Awaitable[None] | None] | None = None
        # called as a DELETE is answered: tests check the archive at that moment
        self.on_delete: Callable[[SimRecording], None] | None = None

    def caller(self, request: web.BaseRequest) -> Account | None:
        """The account whose SID and token (or the token's MD5 hash) the request carries."""
        credentials = basic_credentials(request)
        if credentials is None:
            return None
        account = self.store.accounts.get(credentials[0])
        if account is None:
            return None
        password, token = credentials[1], account.auth_token
        md5 = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
        return account if hmac.compare_digest(password, token) or md5 == token else None

    def authorize(self, request: web.BaseRequest) -> bool:
        return self.caller(request) is not None

    async def route(self, request: web.Request, authorized: bool) -> Reply:
        if request.rel_url.raw_path in (f"{API_PREFIX}/Accounts.json", f"{API_PREFIX}/Accounts"):
            return self._accounts(request)
        path = parse_path(request)
        if path is None:
            return empty(404)
        rest = path.rest
        if rest == ["Recordings"] or rest == ["Recordings", ""]:
            return await self._list(request, path, authorized)
        if len(rest) == 3 and rest[0] == "Calls" and rest[2] == "Recordings":
            return self._call_recordings(request, path, authorized)
        if len(rest) != 2 or rest[0] != "Recordings" or not rest[1]:
            return empty(404)
        if rest[1].endswith((".wav", ".mp4")):
            return self._media(request, path)
        return self._one(request, path, authorized)

    def _refuse(
        self,
        request: web.Request,
        path: ApiPath,
        authorized: bool,
        methods: tuple[str, ...],
        *,
        hole: bool = False,
    ) -> Reply | None:
        """The security filter's and Jersey's answers, in their order: 405, 401, 403, 406.

        With ``hole``, a path the filter's regex wrongly takes for media gets a 500, not 401.
        """
        if request.method not in methods:
            return empty(405)
        if not authorized:
            if hole and UNPROTECTED_RE.fullmatch(path.decoded) is not None:
                return server_error()
            return unauthorized()
        caller = self.caller(request)
        if caller is None or caller.status != "active":
            return Reply(403, {"Content-Type": "text/plain"}, b"Provided Account is not active")
        if not self.store.reaches(caller.sid, path.account):
            return empty(403)
        if not path.acceptable:
            return empty(406)
        return None

    async def _list(self, request: web.Request, path: ApiPath, authorized: bool) -> Reply:
        refused = self._refuse(request, path, authorized, _LIST_METHODS)
        if refused is not None:
            return refused
        query = parse_list_query(request.query, path.as_json)
        if isinstance(query, Reply):
            return query
        if self.on_list is not None:
            result = self.on_list(query.page)
            if inspect.isawaitable(result):
                await result
        # COUNT, range check, SELECT
        rows = self.store.select(path.account, query.sort_by, query.where)
        num_pages = len(rows) // query.page_size
        if query.page > num_pages:
            return empty(400)
        chunk = self.store.page(rows, query.page * query.page_size, query.page_size)
        if not path.as_json:
            return xml_reply(xml_list(chunk, self.store.tz))
        if query.page < num_pages and len(chunk) < query.page_size:
            return server_error()  # list.get(pageSize - 1): IndexOutOfBounds
        uri = (API_PREFIX + "/" + "/".join(path.segments)).rstrip("/")
        uri += ".json" if self.page_uris_json else ""
        rendered = [render_json(r, self.store.tz) for r in chunk]
        last_sid = chunk[-1].sid if chunk else ""
        body = envelope(query.page, query.page_size, len(rows), rendered, last_sid, uri)
        if self.injector.envelope_race > 0:
            self.injector.envelope_race -= 1
            body.update(other_envelope(uri))
        return json_reply(body)

    def _accounts(self, request: web.Request) -> Reply:
        """``Accounts.json``: a bare array of the caller's direct sub-accounts, in JSON."""
        if request.method not in _LIST_METHODS:
            return empty(405)
        caller = self.caller(request)
        if caller is None:
            return unauthorized()
        if caller.status != "active":
            return Reply(403, {"Content-Type": "text/plain"}, b"Provided Account is not active")
        children = [a for a in self.store.accounts.values() if a.owner_sid == caller.sid]
        return json_reply([render_account(a) for a in children])

    def _call_recordings(self, request: web.Request, path: ApiPath, authorized: bool) -> Reply:
        refused = self._refuse(request, path, authorized, _LIST_METHODS)
        if refused is not None:
            return refused
        call_sid = path.rest[1]
        if SID_RE.fullmatch(call_sid) is None:
            return server_error()
        recs = self.store.of_call(call_sid)
        if path.as_json:
            return json_reply([render_json(r, self.store.tz) for r in recs])
        return xml_reply(xml_list(recs, self.store.tz))

    def _media(self, request: web.Request, path: ApiPath) -> Reply:
        """Media needs no credentials (the security filter lets it through)."""
        if request.method not in _LIST_METHODS:
            return empty(405)
        if not path.acceptable:
            return empty(406)
        sid = path.rest[1].rsplit(".", 1)[0]
        rec = self._lookup(sid)
        return rec if isinstance(rec, Reply) else self.media.answer(rec)

    def _one(self, request: web.Request, path: ApiPath, authorized: bool) -> Reply:
        """GET, HEAD or DELETE of one recording's metadata."""
        refused = self._refuse(request, path, authorized, _ONE_METHODS, hole=self.auth_hole)
        if refused is not None:
            return refused
        rec = self._lookup(path.rest[1])
        if isinstance(rec, Reply):
            return rec
        if rec.account_sid != path.account:
            return empty(403)
        if request.method == "DELETE":
            if self.on_delete is not None:
                self.on_delete(rec)
            self.store.delete(rec, keep=self.injector.lying_deletes)
            return empty(200)
        if path.as_json:
            return json_reply(render_json(rec, self.store.tz))
        lines = ["<RestcommResponse>", *render_xml(rec, self.store.tz, "  "), "</RestcommResponse>"]
        return xml_reply("\n".join(lines).encode())

    def _lookup(self, sid: str) -> SimRecording | Reply:
        """The recording, or 500 for a SID ``new Sid(...)`` rejects, or 404."""
        if SID_RE.fullmatch(sid) is None and sid not in self.store.recordings:
            return server_error()  # new Sid(...) throws; known hostile SIDs are served
        rec = self.store.recordings.get(sid)
        return empty(404) if rec is None else rec


# --------------------------------------------------------------------------- the simulator


class RestcommSimulator(Served):
    """A Restcomm platform on loopback, for tests, the demo and ``archiver simulator``.

    Its parts: :attr:`store` (accounts, recordings), :attr:`injector` (faults and knobs),
    :attr:`media` (how bodies are served), :attr:`api` (the routes) and :attr:`server` (the
    listeners). The attributes below are theirs, forwarded so a test can say ``sim.tz = ...``.
    """

    # the store
    account_sid = Forward[str]("store.account_sid")
    auth_token = Forward[str]("store.account.auth_token")
    tz = Forward[tzinfo]("store.tz")
    seed = Forward[int]("store.seed")
    shuffle_ties = Forward[bool]("store.shuffle_ties")
    recordings = Forward[dict[str, SimRecording]]("store.recordings")
    deleted = Forward[list[str]]("store.deleted")
    # faults and knobs
    faults = Forward[list[Fault]]("injector.faults")
    latency = Forward[float]("injector.latency")
    envelope_race = Forward[int]("injector.envelope_race")
    lying_deletes = Forward[bool]("injector.lying_deletes")
    uploading = Forward[set[str]]("injector.uploading")
    # media, routes, listeners
    media_mode = Forward[str]("media.mode")
    storage_origin = Forward[str]("media.origin")
    page_uris_json = Forward[bool]("api.page_uris_json")
    auth_hole = Forward[bool]("api.auth_hole")
    on_list = Forward[Callable[[int], Awaitable[None] | None] | None]("api.on_list")
    on_delete = Forward[Callable[[SimRecording], None] | None]("api.on_delete")
    requests = Forward[list[RequestRecord]]("server.requests")
    in_flight = Forward[int]("server.in_flight")
    peak_in_flight = Forward[int]("server.peak_in_flight")
    clock = Forward[Callable[[], float] | None]("server.clock")

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
        self.store = RecordingStore(
            account_sid, auth_token, tz=tz, seed=seed, shuffle_ties=shuffle_ties
        )
        self.injector = FaultInjector()
        self.media = MediaHost(self.store, self.injector, media_mode, seed)
        self.api = RestcommApi(
            self.store,
            self.injector,
            self.media,
            page_uris_json=page_uris_json,
            auth_hole=auth_hole,
        )
        self.server = SimServer(
            self.injector, self.api.authorize, self.api.route, self.media.storage_route
        )
        self.base_url = ""
        self.make_sid = self.store.make_sid
        self.add = self.store.add
        self.generate = self.store.generate
        self.inject = self.injector.inject
        self.clear_faults = self.injector.clear

    @property
    def api_base(self) -> str:
        """``base_url`` + ``/2012-04-24``."""
        return f"{self.base_url}/{API_VERSION}"

    def _root(self, api_origin: str) -> str:
        return f"{api_origin}/restcomm"
