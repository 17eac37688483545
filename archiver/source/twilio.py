"""The Twilio client (and SignalWire's, which serves the same API): Recordings as Twilio's
published API description (twilio/twilio-oai, ``twilio_api_v2010.json``) has them.

What differs from Restcomm, and what this client does about it:

* the list pages by cursor: ``next_page_uri`` keeps the filters and a ``PageToken`` that
  continues after the last recording seen, so inserts and deletions while paging shift
  nothing (``paging = "cursor"``, read by :class:`archiver.listing.CursorLister`); the page
  URI is relative to the origin and is followed only there (credentials never leave it);
* ``DateCreated>``/``DateCreated<`` filter whole GMT days; ``PageSize`` goes up to 1000;
* a recording whose ``status`` is ``deleted`` is never work (left out of the listing), one that
  is ``absent`` has no media and never will (an invalid item: reported, not retried), and
  ``processing``/``in-progress`` answer 404 for media until done (``MediaNotReady``, within
  ``source.media_grace``);
* media at ``…/Recordings/{sid}.wav`` needs Basic auth and may redirect to a storage host,
  which never gets the credentials (the Restcomm client's media path, shared);
* DELETE answers 204; a 429 (code 20429: too many concurrent requests) slows every request
  down and is retried, never charged to a recording.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode, urljoin

from archiver.errors import SourceProtocolError
from archiver.model import Account, InvalidItem, Item, Page
from archiver.source.restcomm import (
    RestcommClient,
    origin_of,
    parse_account,
    parse_json,
    parse_recording,
    platform_error,
    public_url,
)

API_VERSION = "2010-04-01"
MAX_PAGE_SIZE = 1000
MAX_ACCOUNT_PAGES = 1000  # a million accounts: a list that runs on is a broken server
NOT_READY = ("processing", "in-progress", "paused", "stopped")


class TwilioClient(RestcommClient):
    """One Twilio (or SignalWire) account: ``base_url`` is the API root before
    ``/2010-04-01`` (``https://api.twilio.com``, ``https://{space}.signalwire.com/api/laml``)."""

    api_version = API_VERSION
    paging = "cursor"

    def first_page_url(self, page_size: int, start: date | None, end: date | None) -> str:
        params: dict[str, str | int] = {"PageSize": min(page_size, MAX_PAGE_SIZE)}
        if start is not None:
            params["DateCreated>"] = start.isoformat()
        if end is not None:
            params["DateCreated<"] = end.isoformat()
        return f"{self.api_root}/Recordings.json?{urlencode(params)}"

    async def list_cursor(
        self, page_size: int, start: date | None, end: date | None, cursor: str | None
    ) -> Page:
        """The first page of the window (``cursor`` None) or the one ``cursor`` names."""
        url = self.first_page_url(page_size, start, end) if cursor is None else cursor
        status, text = await self._api("GET", url, "list page")
        if status != 200:
            raise SourceProtocolError(
                f"list page: {public_url(url)} answered HTTP {status}{platform_error(text)[1]}"
            )
        return self._parse_cursor_page(text, page_size)

    async def list_page(
        self, page: int, page_size: int, start_date: date | None, end_date: date | None = None
    ) -> Page:
        """The first page only (Twilio's ``Page`` is client state, not an offset)."""
        if page:
            raise SourceProtocolError("Twilio pages by cursor: use list_cursor")
        return await self.list_cursor(page_size, start_date, end_date, None)

    def _parse_cursor_page(self, text: str, page_size: int) -> Page:
        body = parse_json(text, "list page")
        if not isinstance(body, dict) or not isinstance(body.get("recordings"), list):
            raise SourceProtocolError("list page has no 'recordings' array")
        items: list[Item] = []
        for raw in body["recordings"]:
            if isinstance(raw, dict) and raw.get("status") == "deleted":
                continue  # never work: the platform has deleted it
            items.append(self._item(raw))
        following = self._next_page(body)
        page_no = body["page"] if isinstance(body.get("page"), int) else 0
        return Page(page_no, page_size, 0, 0, items, last=following is None, cursor=following)

    def _next_page(self, body: dict[str, Any]) -> str | None:
        """The absolute URL of the next page, only on the configured origin."""
        cursor = body.get("next_page_uri")
        if not (isinstance(cursor, str) and cursor and cursor != "null"):
            return None
        following = urljoin(self._origin + "/", cursor)
        if origin_of(following) != self._origin:
            raise SourceProtocolError(
                f"next_page_uri points at {origin_of(following)}, not {self._origin}: "
                "not followed (credentials never leave the configured origin)"
            )
        return following

    async def list_accounts(self) -> list[Account]:
        """Every account these credentials reach (``Accounts.json``: the main account and
        its sub-accounts), following ``next_page_uri`` page by page."""
        url: str | None = f"{self.base_url}/{API_VERSION}/Accounts.json?PageSize={MAX_PAGE_SIZE}"
        found: list[Account] = []
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_ACCOUNT_PAGES:
                raise SourceProtocolError(f"accounts list ran past {MAX_ACCOUNT_PAGES} pages")
            status, text = await self._api("GET", url, "accounts list")
            if status != 200:
                raise SourceProtocolError(
                    f"accounts list: {public_url(url)} answered HTTP {status}"
                    f"{platform_error(text)[1]}"
                )
            body = parse_json(text, "accounts list")
            if not isinstance(body, dict) or not isinstance(body.get("accounts"), list):
                raise SourceProtocolError("accounts list has no 'accounts' array")
            found += [parse_account(item) for item in body["accounts"]]
            url = self._next_page(body)
        return found

    def _item(self, raw: Any) -> Item:
        item = self.owned(parse_recording(raw, self.server_tz, self.account_sid))
        if isinstance(raw, dict) and raw.get("status") == "absent" and item.sid is not None:
            code = raw.get("error_code")
            return InvalidItem(
                item.sid, f"status 'absent': the platform has no media for it (code {code})", raw
            )
        return item
