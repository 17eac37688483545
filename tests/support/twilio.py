"""Talking to the Twilio-compatible simulators over real HTTP, as a client would: Basic auth
headers, JSON answers, and a listing walked by following ``next_page_uri``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from archiver.simulator import TwilioSimulator


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


@dataclass
class Answer:
    """A response read whole: status, headers, body (JSON decoded when it is JSON)."""

    status: int
    headers: dict[str, str]
    raw: bytes
    json: Any = None


@dataclass
class TwilioClient:
    """GETs and DELETEs against ``sim`` as ``user``/``password`` (default: its main account);
    ``path`` is relative to the account's base, a URI the API gave, or a full URL."""

    http: aiohttp.ClientSession
    sim: TwilioSimulator
    user: str = ""
    password: str = ""
    requests: list[str] = field(default_factory=list)

    def url(self, path: str, account: str | None = None) -> URL:
        if path.startswith("http"):
            return URL(path)
        if path.startswith("/"):  # a URI from the API: relative to the origin, prefix included
            return URL(self.sim.base_url).join(URL(path))
        return URL(f"{self.sim.account_base(account)}/{path}")

    def as_(self, user: str, password: str) -> TwilioClient:
        return TwilioClient(self.http, self.sim, user, password)

    async def call(
        self,
        method: str,
        path: str,
        *,
        account: str | None = None,
        params: dict[str, str] | None = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if auth:
            sent.update(
                basic(self.user or self.sim.account_sid, self.password or self.sim.auth_token)
            )
        url = self.url(path, account)
        self.requests.append(str(url))
        async with self.http.request(
            method, url, params=params, headers=sent, allow_redirects=False
        ) as resp:
            raw = await resp.read()
            decoded = await resp.json() if resp.content_type == "application/json" else None
            return Answer(resp.status, dict(resp.headers), raw, decoded)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Answer:
        return await self.call("DELETE", path, **kw)

    async def walk(
        self, path: str, params: dict[str, str], key: str = "recordings", **kw: Any
    ) -> list[dict[str, Any]]:
        """Every page of a listing, the first by ``params`` and the rest by ``next_page_uri``;
        returns the envelopes (each checked to be a 200)."""
        pages = []
        answer = await self.get(path, params=params, **kw)
        while True:
            assert answer.status == 200, answer.raw
            pages.append(answer.json)
            if answer.json["next_page_uri"] is None:
                return pages
            answer = await self.get(answer.json["next_page_uri"], **kw)
