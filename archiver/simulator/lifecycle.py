"""Start, stop and ``async with`` for every platform's simulator, written once."""

from __future__ import annotations

from typing import Self

from archiver.simulator.app import SimServer
from archiver.simulator.media import MediaHost


class Served:
    """A simulator served by ``self.server`` with its media on ``self.media``; a platform
    says where its API root is (:meth:`_root`)."""

    server: SimServer
    media: MediaHost
    base_url: str

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
