"""Start, stop and ``async with`` for every platform's simulator, written once."""

from __future__ import annotations

from typing import Self

from archiver.simulator.app import SimServer
from archiver.simulator.media import MediaHost
from archiver.simulator.store import ACCOUNT_STATUSES, Account, RecordingStore


class Served:
    """A simulator served by ``self.server`` with its media on ``self.media``; a platform
    says where its API root is (:meth:`_root`)."""

    server: SimServer
    media: MediaHost
    store: RecordingStore
    base_url: str

    def add_subaccount(
        self,
        friendly_name: str = "",
        *,
        status: str = "active",
        owner_sid: str | None = None,
        auth_token: str | None = None,
    ) -> Account:
        """A sub-account of ``owner_sid`` (default: the main account), with its own token."""
        return self.store.add_account(
            owner_sid=owner_sid or self.store.account_sid,
            friendly_name=friendly_name,
            status=status,
            auth_token=auth_token,
        )

    def set_account_status(self, account_sid: str, status: str) -> None:
        """``active``, ``suspended`` or ``closed``."""
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"unknown account status {status!r}")
        self.store.accounts[account_sid].status = status

    def _root(self, api_origin: str) -> str:
        """The platform's ``base_url`` on ``api_origin`` (the API listener's origin)."""
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on loopback (``port`` 0: a free one); returns :attr:`base_url`."""
        api_origin, self.media.origin = await self.server.start(host, port)
        self.base_url = self._root(api_origin)
        return self.base_url

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
