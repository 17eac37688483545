"""The fixtures, and only fixtures: each a thin wrapper over ``tests/support`` (where the
helpers are). No test module imports this file; pytest hands these to the tests by name."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from archiver import retry
from archiver.config import Config
from archiver.simulator import RestcommSimulator, SignalWireSimulator, TwilioSimulator
from tests.support import s3
from tests.support.config import make_config
from tests.support.mounts import Tmpfs
from tests.support.process import LOCAL, StartFailed
from tests.support.s3 import S3Server

# -- isolation ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No ARCHIVER_* or AWS_* from the developer's shell leaks into a test; AWS credentials come
    only from what a test sets (``aws_env``): the shared files point nowhere and IMDS is off, so
    nothing leaves the machine. Retries are instant, and logging is reset afterwards."""
    for name in list(os.environ):
        if name.startswith(("ARCHIVER_", "AWS_")):
            monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path_factory.getbasetemp() / "no-aws"  # never created
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere / "credentials"))
    monkeypatch.setenv("NO_PROXY", LOCAL)
    retry.set_testing(True)
    yield
    retry.set_testing(False)
    structlog.reset_defaults()  # a CLI test may have bound logging to a captured stream


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``aws_env(server)``: point this process's AWS credential chain at ``server``."""

    def use(server: S3Server, *, secret_key: str | None = None) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key or server.secret_key)
        monkeypatch.setenv("AWS_DEFAULT_REGION", server.region)

    return use


# -- the source ----------------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[RestcommSimulator]:
    async with RestcommSimulator(seed=7) as s:
        yield s


@pytest.fixture(params=[TwilioSimulator, SignalWireSimulator], ids=["twilio", "signalwire"])
async def twilio_sim(request: pytest.FixtureRequest) -> AsyncIterator[TwilioSimulator]:
    """A Twilio simulator, and once more its SignalWire variant (same API, another prefix)."""
    kind: type[TwilioSimulator] = request.param
    async with kind(seed=7) as s:
        yield s


@pytest.fixture(params=["restcomm", "twilio", "signalwire"])
async def any_sim(
    request: pytest.FixtureRequest,
) -> AsyncIterator[RestcommSimulator | TwilioSimulator]:
    """The simulator of each platform in turn: a scenario that applies to every platform."""
    kind = {"restcomm": RestcommSimulator, "twilio": TwilioSimulator}.get(
        request.param, SignalWireSimulator
    )
    async with kind(seed=7) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[..., Config]:
    """``config_for(sim, **source)``: an in-process config (``make_config``) under tmp_path."""

    def build(sim: RestcommSimulator | TwilioSimulator, **source: Any) -> Config:
        return make_config(sim, tmp_path, **source)

    return build


# -- S3 servers: one process each per session; every bucket a test creates is deleted after it --


def _started(server: Any) -> Iterator[S3Server]:
    try:
        with server as started:
            yield started
    except StartFailed as exc:  # a server that cannot start fails the tests, never skips them
        pytest.fail(str(exc), pytrace=False)


def _buckets_deleted(server: S3Server) -> Iterator[S3Server]:
    first = len(server.created)
    yield server
    for bucket in server.created[first:]:
        s3.delete_bucket(server, bucket)  # a COMPLIANCE-locked bucket stays (see delete_bucket)
    del server.created[first:]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    yield from _started(s3.moto(tmp_path_factory.mktemp("moto")))


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    yield from _started(s3.seaweedfs(tmp_path_factory.mktemp("seaweedfs")))


@pytest.fixture
def moto_s3(moto_server: S3Server) -> Iterator[S3Server]:
    """moto (lenient: accepts wrong checksums and any key)."""
    yield from _buckets_deleted(moto_server)


@pytest.fixture
def seaweedfs_s3(seaweedfs_server: S3Server) -> Iterator[S3Server]:
    """SeaweedFS (strict: SigV4, checksums, Object Lock)."""
    yield from _buckets_deleted(seaweedfs_server)


# -- file systems --------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs("state", "1m")``: a folder under tmp_path with a tmpfs of that size on it."""
    mounts = Tmpfs(tmp_path)
    yield mounts.mount
    mounts.unmount_all()
