"""What a test can make go wrong: fault rules matched per request, and standing knobs.

A :class:`Fault` rewrites one kind of answer (a status, a delay, a cut or stalled body); the
knobs on :class:`FaultInjector` bend the platform as a whole (latency, a lying DELETE, a shared page
envelope, media still uploading). Any wire format consults the same object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Fault:
    """An injected fault; see :meth:`FaultInjector.inject`."""

    path: str
    method: str
    times: int | None
    status: int | None
    retry_after: str | None
    delay: float
    body: bytes | None
    content_type: str | None
    truncate_after: int | None
    content_length_delta: int
    query: Mapping[str, str] | None = None
    stall_after: int | None = None
    stall_for: float = 0.0
    hits: int = 0
    _registry: list[Fault] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    @property
    def active(self) -> bool:
        return self.times is None or self.hits < self.times

    @property
    def replaces_answer(self) -> bool:
        """Whether the fault answers instead of the server (else it only bends the answer)."""
        return self.status is not None or self.body is not None

    @property
    def bends_body(self) -> bool:
        """Whether the body must be streamed to cut, stall or mis-size it."""
        return (
            self.truncate_after is not None
            or self.content_length_delta != 0
            or self.stall_after is not None
        )

    def matches(self, method: str, path: str, query: Mapping[str, str] | None = None) -> bool:
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self.query is not None and any((query or {}).get(k) != v for k, v in self.query.items()):
            return False
        return self._pattern.search(path) is not None

    def remove(self) -> None:
        if self._registry is not None and self in self._registry:
            self._registry.remove(self)


class FaultInjector:
    """The fault rules in force (:attr:`faults`, first match wins), and the knobs."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.latency = 0.0  # seconds added to every answer (benchmarks: a WAN round trip)
        # the next N JSON list answers carry another request's envelope (page, num_pages,
        # total, page URIs): the real server builds it in one converter shared between
        # requests (spec 2.5)
        self.envelope_race = 0
        # DELETE answers 200 but the recording stays (a server that lies, or a replica lag)
        self.lying_deletes = False
        # redirect mode: SIDs whose storage object is still being uploaded (presigned URL 403)
        self.uploading: set[str] = set()

    def inject(
        self,
        *,
        path: str = ".*",
        method: str = "GET",
        times: int | None = 1,
        status: int | None = None,
        retry_after: str | None = None,
        delay: float = 0.0,
        body: bytes | None = None,
        content_type: str | None = None,
        truncate_after: int | None = None,
        content_length_delta: int = 0,
        query: Mapping[str, str] | None = None,
        stall_after: int | None = None,
        stall_for: float = 0.0,
    ) -> Fault:
        """Register a fault. The first active fault whose ``path`` regex is found in the
        request path (and whose method matches; ``"*"`` for any) applies:

        * ``delay``: sleep that long first;
        * ``status`` (or ``body``): answer that status (default 200) with ``body``,
          ``content_type`` and ``Retry-After`` instead of the real answer;
        * ``truncate_after``: send the real headers (full Content-Length), then only that
          many body bytes, then drop the connection;
        * ``content_length_delta``: advertise Content-Length + delta. Negative: the body is
          cut to the advertised length. Positive: the whole body is sent, then the
          connection is dropped;
        * ``query``: apply only to requests carrying these query parameters (``{"Page": "2"}``);
        * ``stall_after``/``stall_for``: send that many body bytes, then nothing for
          ``stall_for`` seconds (a stalled transfer), then the rest.
        """
        fault = Fault(
            path=path,
            method=method,
            times=times,
            status=status,
            retry_after=retry_after,
            delay=delay,
            body=body,
            content_type=content_type,
            truncate_after=truncate_after,
            content_length_delta=content_length_delta,
            query=dict(query) if query is not None else None,
            stall_after=stall_after,
            stall_for=stall_for,
            _registry=self.faults,
        )
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def take(self, method: str, path: str, query: Mapping[str, str] | None = None) -> Fault | None:
        """The first active rule for this request, counted as hit; None if none applies."""
        for fault in self.faults:
            if fault.active and fault.matches(method, path, query):
                fault.hits += 1
                return fault
        return None
