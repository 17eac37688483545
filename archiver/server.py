"""The HTTP endpoint for operators: /metrics (Prometheus), /healthz (alive), /readyz (ready)."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from archiver.config import parse_listen
from archiver.errors import ConfigError, PortBusy
from archiver.metrics import REGISTRY

if TYPE_CHECKING:
    from aiohttp import web

log = structlog.get_logger("archiver.server")


@dataclass
class Health:
    """What the daemon tells the endpoint about itself."""

    stall_timeout: float = 900.0  # no loop progress for this long: not alive
    failure_grace: float = 900.0  # passes failing for this long: not ready
    clock: Callable[[], float] = time.time
    ledger_open: bool = False
    last_progress: float = field(default_factory=time.time)
    failing_since: float | None = None
    last_error: str | None = None

    def progress(self) -> None:
        self.last_progress = self.clock()

    def pass_ok(self) -> None:
        self.progress()
        self.failing_since = None
        self.last_error = None

    def pass_failed(self, error: str) -> None:
        self.progress()
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = self.clock()

    def alive(self) -> bool:
        return self.clock() - self.last_progress < self.stall_timeout

    def ready(self) -> bool:
        failing_for = 0.0 if self.failing_since is None else self.clock() - self.failing_since
        return self.ledger_open and failing_for < self.failure_grace

    def facts(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "alive": self.alive(),
            "ready": self.ready(),
            "ledger_open": self.ledger_open,
            "seconds_since_progress": round(now - self.last_progress, 1),
            "failing_for_seconds": None
            if self.failing_since is None
            else round(now - self.failing_since, 1),
            "last_error": self.last_error,
        }


def make_app(health: Health) -> web.Application:
    # Imported here: a `sync` without an endpoint never needs the server half of aiohttp.
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        facts = health.facts()
        return web.json_response(
            {"status": "ok" if facts["alive"] else "stalled", **facts},
            status=200 if facts["alive"] else 503,
        )

    async def readyz(_request: web.Request) -> web.Response:
        facts = health.facts()
        return web.json_response(
            {"status": "ready" if facts["ready"] else "not ready", **facts},
            status=200 if facts["ready"] else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class HealthServer:
    """``async with HealthServer(listen, health)``; a no-op when ``listen`` is empty."""

    def __init__(self, listen: str, health: Health) -> None:
        self.address = parse_listen(listen)
        self.health = health
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def __aenter__(self) -> HealthServer:
        if self.address is None:
            return self
        from aiohttp import web

        self._runner = web.AppRunner(make_app(self.health), access_log=None)
        await self._runner.setup()
        host, port = self.address
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:  # another process has it: may pass, so restart
                raise PortBusy(
                    f"cannot listen on {host}:{port} for /metrics and /healthz: the port is in "
                    "use by another process (another archiver?); stop it, or choose another "
                    "server.listen"
                ) from exc
            raise ConfigError(
                "server.listen", f"cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("server.listening", host=host, port=self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
