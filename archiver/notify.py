"""The systemd notify protocol (``sd_notify``), written directly: no libsystemd.

systemd passes ``NOTIFY_SOCKET`` (a file-system path, or ``@name`` for an abstract socket) to a
``Type=notify`` service; the service sends newline-separated ``KEY=VALUE`` datagrams to it:
``READY=1`` once started, ``STATUS=...`` for ``systemctl status``, ``STOPPING=1`` on shutdown and
``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` (with ``WatchdogSec=``), or the service is killed
and restarted. ``WATCHDOG_PID``, when set, names the one process the watchdog is meant for.

Notification is best effort: a send never blocks and never raises into the daemon; the first
failure is logged as ``notify.failed`` and later ones are silent. Without ``NOTIFY_SOCKET``
(a terminal, Docker, Kubernetes) every method is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("archiver.notify")


class Notifier:
    """Sends ``sd_notify`` datagrams to the socket named by ``NOTIFY_SOCKET``.

    ``environ`` defaults to ``os.environ``; tests pass their own mapping.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._failed = False  # notify.failed is logged at most once
        self._address: str | None = None
        raw = env.get("NOTIFY_SOCKET", "")
        if raw.startswith("/"):
            self._address = raw
        elif raw.startswith("@") and len(raw) > 1:
            self._address = "\0" + raw[1:]  # Linux abstract namespace: a leading NUL byte
        elif raw:
            # e.g. "vsock:..." (systemd >= 253): not a socket this process can reach
            self._log_failure(f"unsupported NOTIFY_SOCKET {raw!r}")
        self._watchdog_interval = self._parse_watchdog(env) if self._address else None

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> float | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        pid = env.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            return None  # the watchdog is meant for another process (e.g. our parent)
        return usec / 1_000_000 / 2  # pet twice per period, as sd_watchdog_enabled(3) advises

    @property
    def enabled(self) -> bool:
        """True when ``NOTIFY_SOCKET`` names a socket this process can send to."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None if off."""
        return self._watchdog_interval

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        # a newline would start a new KEY=VALUE assignment
        self.send("STATUS=" + " ".join(text.splitlines()))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def send(self, message: str) -> bool:
        """Send one datagram; True if it was sent. Never raises, never blocks."""
        if self._address is None:
            return False
        try:
            # a socket per message, as sd_notify does: nothing to close or leak between sends
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a full receive queue is EAGAIN, not a stalled daemon
                sock.sendto(message.encode("utf-8"), self._address)
        except (OSError, ValueError) as exc:
            self._log_failure(str(exc), message=message.partition("=")[0])
            return False
        return True

    def _log_failure(self, error: str, **fields: str) -> None:
        if not self._failed:
            self._failed = True
            log.warning("notify.failed", error=error, **fields)

    async def watchdog_loop(self, alive: Callable[[], bool]) -> None:
        """Send ``WATCHDOG=1`` every ``watchdog_interval`` while ``alive()`` is true.

        Returns at once when the watchdog is off, and for good as soon as ``alive()`` is false:
        systemd then kills and restarts the service after ``WatchdogSec``. Run it as a task in
        the daemon's event loop, so a blocked loop also stops the pings.
        """
        interval = self._watchdog_interval
        if interval is None:
            return
        while alive():
            self.watchdog()
            await asyncio.sleep(interval)
        log.warning("notify.watchdog_stopped", reason="alive() returned False")
