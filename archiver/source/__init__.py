"""Recording sources behind one small interface; :func:`open_source` is the only factory."""

from __future__ import annotations

import os

from archiver.config import SourceConfig, parse_timezone
from archiver.hooks import NO_HOOKS, Hooks
from archiver.source.base import Media, Source

__all__ = ["Media", "Source", "open_source"]


def open_source(cfg: SourceConfig, hooks: Hooks = NO_HOOKS) -> Source:
    """The client for ``cfg``'s account on its platform; enter it with ``async with``."""
    from archiver.source.restcomm import RestcommClient
    from archiver.source.twilio import TwilioClient

    kind = RestcommClient if cfg.platform == "restcomm" else TwilioClient  # SignalWire: Twilio's
    return kind(
        cfg.base_url,
        cfg.account_sid,
        cfg.auth_token,
        timeout=cfg.request_timeout.total_seconds(),
        server_tz=parse_timezone(cfg.server_timezone, "source.server_timezone"),
        max_requests_per_second=cfg.max_requests_per_second,
        connections=max(cfg.concurrency * 2, 4),
        token_file=os.path.expandvars(cfg.auth_token_file) if cfg.auth_token_file else None,
        hooks=hooks,
    )
