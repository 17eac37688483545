"""The sd_notify protocol against real AF_UNIX datagram sockets (a path, and an abstract one)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from archiver.notify import Notifier


class Receiver:
    """The systemd side: a bound datagram socket that collects what the service sends."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    async def recv(self) -> bytes:
        async with asyncio.timeout(2):
            return await asyncio.get_running_loop().sock_recv(self.sock, 4096)

    def pending(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096))
            except BlockingIOError:
                return out


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    address = str(tmp_path / "n.sock")
    assert len(address) < 100, "AF_UNIX paths are limited to 107 bytes"
    rx = Receiver(address)
    yield address, rx
    rx.sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, Receiver]]:
    name = f"archiver-test-{uuid.uuid4().hex}"
    rx = Receiver("\0" + name)
    yield "@" + name, rx
    rx.sock.close()


@pytest.mark.parametrize("kind", ["path_socket", "abstract_socket"])
async def test_messages_arrive_in_order_with_exact_bytes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    address, rx = request.getfixturevalue(kind)
    n = Notifier({"NOTIFY_SOCKET": address})
    assert n.enabled

    n.ready()
    n.status("archiving: 3 in flight")
    n.watchdog()
    n.stopping()

    assert [await rx.recv() for _ in range(4)] == [
        b"READY=1",
        b"STATUS=archiving: 3 in flight",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]
    assert rx.pending() == []


async def test_status_newlines_cannot_inject_assignments(
    path_socket: tuple[str, Receiver],
) -> None:
    address, rx = path_socket
    Notifier({"NOTIFY_SOCKET": address}).status("line one\nREADY=1")
    assert await rx.recv() == b"STATUS=line one READY=1"


def test_watchdog_interval_is_half_of_watchdog_usec(path_socket: tuple[str, Receiver]) -> None:
    address, _ = path_socket
    assert (
        Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "120000000"}).watchdog_interval == 60
    )
    own = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(own).watchdog_interval == 1.0
    # meant for another process, absent, or garbage: no watchdog
    assert Notifier({**own, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"NOTIFY_SOCKET": address}).watchdog_interval is None
    assert Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "x"}).watchdog_interval is None
    assert Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "0"}).watchdog_interval is None
    # no socket to send to: no watchdog either
    assert Notifier({"WATCHDOG_USEC": "2000000"}).watchdog_interval is None


async def test_watchdog_loop_pings_at_the_interval_until_alive_turns_false(
    path_socket: tuple[str, Receiver],
) -> None:
    address, rx = path_socket
    n = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})  # ping every 50 ms
    assert n.watchdog_interval == 0.05
    calls = 0
    sent_at: list[float] = []

    def alive() -> bool:
        nonlocal calls
        calls += 1
        if calls <= 4:
            sent_at.append(time.monotonic())  # the loop pings right after alive() says yes
            return True
        return False

    task = asyncio.create_task(n.watchdog_loop(alive))
    for _ in range(4):
        assert await rx.recv() == b"WATCHDOG=1"
    with capture_logs() as logs:
        await asyncio.wait_for(task, 2)  # returns by itself once alive() is False
    assert [e["event"] for e in logs] == ["notify.watchdog_stopped"]
    assert calls == 5

    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(0.049 <= gap < 0.5 for gap in gaps), gaps
    await asyncio.sleep(0.15)  # three intervals: nothing more may arrive
    assert rx.pending() == []


async def test_watchdog_loop_returns_at_once_when_the_watchdog_is_off(
    path_socket: tuple[str, Receiver],
) -> None:
    address, rx = path_socket
    await asyncio.wait_for(Notifier({"NOTIFY_SOCKET": address}).watchdog_loop(lambda: True), 1)
    assert rx.pending() == []


async def test_unset_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    n = Notifier()  # reads os.environ
    assert not n.enabled
    assert n.watchdog_interval is None
    with capture_logs() as logs:
        n.ready()
        n.status("x")
        n.watchdog()
        n.stopping()
        await asyncio.wait_for(n.watchdog_loop(lambda: True), 1)
    assert logs == []


def test_reads_notify_socket_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, path_socket: tuple[str, Receiver]
) -> None:
    address, rx = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    Notifier().ready()
    assert rx.pending() == [b"READY=1"]


@pytest.mark.parametrize(
    "address",
    [
        "/nonexistent-dir/notify.sock",
        "@archiver-test-nobody-listens-",  # abstract; made unique per run below
        "/" + "x" * 200,  # longer than an AF_UNIX path may be
    ],
    ids=["missing-folder", "abstract-nobody-listens", "too-long"],
)
def test_an_unreachable_socket_never_raises_and_logs_once(address: str) -> None:
    if address.startswith("@"):
        address += uuid.uuid4().hex  # here, not in the id: every test process collects alike
    n = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
    assert n.enabled
    with capture_logs() as logs:
        n.ready()
        n.status("still here")
        n.watchdog()
        n.stopping()
    assert [(e["event"], e["log_level"], e["message"]) for e in logs] == [
        ("notify.failed", "warning", "READY")
    ]


def test_a_socket_that_is_not_a_path_logs_once_and_is_disabled() -> None:
    with capture_logs() as logs:
        n = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
        n.ready()
    assert not n.enabled
    assert [e["event"] for e in logs] == ["notify.failed"]


def test_a_full_receive_queue_never_blocks(path_socket: tuple[str, Receiver]) -> None:
    address, rx = path_socket
    n = Notifier({"NOTIFY_SOCKET": address})
    started = time.monotonic()
    with capture_logs() as logs:
        sent = sum(n.send("STATUS=" + "x" * 1000) for _ in range(5000))  # nobody reads
    assert time.monotonic() - started < 5
    assert 0 < sent < 5000  # the queue filled up; the rest were dropped, not waited for
    assert [e["event"] for e in logs] == ["notify.failed"]
    assert len(rx.pending()) == sent
