"""The neutral model: what a source lists, as the pass, the ledger and the archive see it.

Plain frozen data, importing nothing of ours, so every layer (sources, ledger, pass, CLI)
can share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Recording:
    """One listed recording, parsed and checked. ``source`` is the item exactly as listed."""

    sid: str
    account_sid: str
    call_sid: str | None
    date_created: datetime
    duration: float
    ext: str
    source: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class InvalidItem:
    """A listed item that can never be archived, kept so it is reported, not lost."""

    sid: str | None
    reason: str
    source: Mapping[str, Any] = field(repr=False, compare=False)


Item = Recording | InvalidItem


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first. ``last``: the source says nothing follows."""

    page: int
    page_size: int
    total: int
    num_pages: int
    items: list[Item]
    last: bool
    cursor: str | None = None  # where the next page is, for a source that pages by cursor


ACTIVE = "active"


@dataclass(frozen=True)
class Account:
    """An account the credentials reach, as the platform's accounts list names it."""

    sid: str
    status: str = ACTIVE  # the platform's word: active, suspended, closed, uninitialized…
    friendly_name: str = ""
    owner_sid: str | None = None  # the account it is a sub-account of, when the list says

    @property
    def active(self) -> bool:
        return self.status.lower() == ACTIVE
