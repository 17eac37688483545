"""The simulator's HTTP side: loopback listeners that apply faults and log every request.

Wire formats answer with a :class:`Reply` from a :data:`Route`; this module turns it into an
aiohttp response, sleeping, cutting, stalling or mis-sizing it as the matching
:class:`~archiver.simulator.faults.Fault` says. It knows no URL of any platform.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from archiver.simulator.bodies import BLOCK, split
from archiver.simulator.faults import Fault, FaultInjector

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Reply:
    """An answer before it is sent: a body in memory or a stream of chunks."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: Iterable[bytes] | None = None
    length: int | None = None  # for stream; None means chunked transfer

    def chunks(self) -> tuple[Iterable[bytes], int | None]:
        """The body as chunks, and its length (None: unknown, send it chunked)."""
        if self.stream is None:
            return split(self.body, BLOCK), len(self.body)
        return self.stream, self.length


def empty(status: int, **headers: str) -> Reply:
    return Reply(status, dict(headers))


def basic_credentials(request: web.BaseRequest) -> tuple[str, str] | None:
    """The user and password of a well-formed ``Authorization: Basic`` header, else None."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    parts = header.split(" ", 1)
    if len(parts) != 2 or parts[0] != "Basic":
        return None
    try:
        decoded = base64.b64decode(parts[1].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


# a wire format's answer to a request, given whether the request carried valid credentials
Route = Callable[[web.Request, bool], Awaitable[Reply]]


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


class SimServer:
    """Two listeners on loopback: the platform's API and the storage origin its media
    redirects to. Every request is checked for credentials, matched against the fault rules,
    answered by its route and logged in :attr:`requests`."""

    def __init__(
        self,
        injector: FaultInjector,
        authorize: Callable[[web.BaseRequest], bool],
        api: Route,
        storage: Route,
        tag: Callable[[web.BaseRequest], str | None] | None = None,
    ) -> None:
        self.injector = injector
        self.authorize = authorize
        self.routes = (api, storage)
        self.requests: list[RequestRecord] = []
        self.in_flight = 0  # requests being answered now, and the most there ever were
        self.peak_in_flight = 0
        # requests being answered now by tag (an account, say), for a concurrency limit
        self.tag = tag
        self.in_flight_by: dict[str, int] = {}
        # the server's clock for its Date header (None: the real one); tests step it
        self.clock: Callable[[], float] | None = None
        self._runners: list[web.AppRunner] = []

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str, port: int) -> tuple[str, str]:
        """Listen (``port`` 0: a free one); returns the API's and the storage's origins."""
        if self._runners:
            raise RuntimeError("simulator already started")
        if host not in LOOPBACK:
            raise ValueError("the simulator binds loopback only")
        api, storage = self.routes
        try:
            api_port = await self._serve(api, host, port)
            storage_port = await self._serve(storage, host, 0)
        except BaseException:
            await self.stop()
            raise
        return f"http://{host}:{api_port}", f"http://{host}:{storage_port}"

    async def _serve(self, route: Route, host: str, port: int) -> int:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(request, route)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port)
        await site.start()
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    # ---------------------------------------------------------------- one request

    async def _dispatch(self, request: web.Request, route: Route) -> web.StreamResponse:
        authorized = self.authorize(request)
        fault = self.injector.take(request.method, request.path, request.query)
        status = 500
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        tag = self.tag(request) if self.tag is not None else None
        if tag is not None:
            self.in_flight_by[tag] = self.in_flight_by.get(tag, 0) + 1
        try:
            reply = await self._answer(request, route, authorized, fault)
            status = reply.status
            return await self._send(request, reply, fault)
        finally:
            self.in_flight -= 1
            if tag is not None:
                self.in_flight_by[tag] -= 1
            self._record(request, authorized, status, fault is not None)

    async def _answer(
        self, request: web.Request, route: Route, authorized: bool, fault: Fault | None
    ) -> Reply:
        if self.injector.latency > 0:  # a platform across a network, not next door
            await asyncio.sleep(self.injector.latency)
        if fault is None:
            return await route(request, authorized)
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault.replaces_answer:
            headers: dict[str, str] = {}
            if fault.content_type is not None:
                headers["Content-Type"] = fault.content_type
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            status = fault.status if fault.status is not None else 200
            return Reply(status, headers, fault.body or b"")
        reply = await route(request, authorized)
        if fault.retry_after is not None:
            reply.headers["Retry-After"] = fault.retry_after
        return reply

    async def _send(
        self, request: web.Request, reply: Reply, fault: Fault | None
    ) -> web.StreamResponse:
        if self.clock is not None:  # the server's own clock, as its Date header shows it
            reply.headers["Date"] = email.utils.formatdate(self.clock(), usegmt=True)
        bent = fault is not None and fault.bends_body
        if reply.stream is None and not bent:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        stream, length = reply.chunks()
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        if length is None:
            response.enable_chunked_encoding()
        else:
            delta = fault.content_length_delta if fault is not None else 0
            response.content_length = max(length + delta, 0)
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        try:
            await _write_body(request, response, stream, fault)
        except ConnectionError:  # the client went away mid-body
            _drop(request)
        return response

    def _record(self, request: web.BaseRequest, authorized: bool, status: int, fault: bool) -> None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        self.requests.append(
            RequestRecord(
                method=request.method,
                path=request.path,
                query={k: request.query[k] for k in request.query},
                authorized=authorized,
                auth_header_present="Authorization" in request.headers,
                status=status,
                host_port=f"{sockname[0]}:{sockname[1]}" if sockname else "",
                headers=dict(request.headers),
                fault=fault,
            )
        )


async def _write_body(
    request: web.Request,
    response: web.StreamResponse,
    stream: Iterable[bytes],
    fault: Fault | None,
) -> None:
    """Write ``stream`` whole, or stalled, cut short or over-announced as ``fault`` says."""
    truncate = fault.truncate_after if fault is not None else None
    stall = fault.stall_after if fault is not None else None
    stall_for = fault.stall_for if fault is not None else 0.0
    written = 0
    for chunk in stream:
        if stall is not None and written + len(chunk) > stall:
            head, chunk = chunk[: stall - written], chunk[stall - written :]
            await response.write(head)
            written += len(head)
            await asyncio.sleep(stall_for)  # the transfer stalls mid-body
            stall = None
        if truncate is not None and written + len(chunk) >= truncate:
            part = chunk[: truncate - written]
            if part:
                await response.write(part)
            _drop(request)
            return
        await response.write(chunk)
        written += len(chunk)
    if fault is not None and fault.content_length_delta > 0:
        _drop(request)  # the body fell short of what was announced
        return
    await response.write_eof()


def _drop(request: web.Request) -> None:
    """Close the connection after flushing what was written so far."""
    transport = request.transport
    if transport is not None:
        transport.close()
