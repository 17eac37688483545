"""The archiver config for a test: one builder (:func:`settings`) of its sections, written as
TOML by :func:`write_config` (for the CLI) or loaded in-process by :func:`make_config`.

Keys are those of ``config/archiver.example.toml`` (``archiver/config.py`` validates them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from archiver.config import SECTIONS, Config, load_config
from archiver.simulator import RestcommSimulator, SignalWireSimulator, TwilioSimulator
from tests.support.constants import NOW, TOKEN

NO_SOURCE = "http://127.0.0.1:9/restcomm"  # nothing listens on port 9 (discard)
NO_ACCOUNT = "AC" + "0" * 32


Simulator = RestcommSimulator | TwilioSimulator


def platform_of(sim: Simulator) -> str:
    """The ``source.platform`` that speaks ``sim``'s API."""
    if isinstance(sim, SignalWireSimulator):
        return "signalwire"
    return "twilio" if isinstance(sim, TwilioSimulator) else "restcomm"


def settings(folder: Path, sim: Simulator | None = None, **given: Any) -> dict[str, dict[str, Any]]:
    """The sections of a test's config: the defaults below, then ``given``.

    A keyword that names a section (``archive={...}``, ``delete={...}``), or whose value is a
    mapping, is a section: its keys are merged over the defaults; ``None`` for a section leaves
    it out. Any other keyword is a ``[source]`` key. A key whose value is ``None`` is left out
    (``auth_token=None`` for a config that names only ``auth_token_file``).

    Defaults: the simulator's address (else an address where nothing listens), ``TOKEN``, pages
    of 10, recordings from two days before ``NOW``, a 1 s poll; the archive and the ledger in
    ``folder``; a 5 s drain; no metrics port (a test that needs one asks for it).
    """
    sections: dict[str, dict[str, Any]] = {
        "source": {
            **({"platform": platform_of(sim)} if sim is not None else {}),
            "base_url": sim.base_url if sim else NO_SOURCE,
            "account_sid": sim.account_sid if sim else NO_ACCOUNT,
            "auth_token": TOKEN,
            "page_size": 10,
            "start_time": NOW - timedelta(days=2),
            "poll_interval": "1s",
        },
        "archive": {"path": folder / "archive"},
        "ledger": {"path": folder / "l.sqlite3"},
        "daemon": {"drain_timeout": "5s"},
        "server": {"listen": ""},
    }
    for name, value in given.items():
        if name in SECTIONS or isinstance(value, Mapping):
            if value is None:
                sections.pop(name, None)
            else:
                sections.setdefault(name, {}).update(value)
        else:
            sections["source"][name] = value
    return {
        name: {k: _plain(v) for k, v in body.items() if v is not None}
        for name, body in sections.items()
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text of flat sections (a JSON string, number, boolean or list is TOML as well)."""
    lines: list[str] = []
    for name, body in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in body.items()]
    return "\n".join(lines) + "\n"


def write_config(
    folder: Path, sim: Simulator | None = None, *, name: str = "archiver.toml", **given: Any
) -> Path:
    """``folder/name``: the config file of :func:`settings` ``(folder, sim, **given)``."""
    path = folder / name
    path.write_text(toml(settings(folder, sim, **given)))
    return path


def make_config(
    sim: Simulator, tmp: Path, delete: dict[str, Any] | None = None, **source: Any
) -> Config:
    """An in-process config for a :class:`~tests.support.harness.Harness` over ``sim``:
    recordings from three days before ``NOW``, 4 transfers at a time, local archive."""
    given: dict[str, Any] = {
        "auth_token": sim.auth_token,
        "start_time": NOW - timedelta(days=3),
        "concurrency": 4,
        **source,
    }
    return load_config(
        None,
        environ={},
        overrides=settings(
            tmp, sim, ledger={"path": tmp / "ledger.sqlite3"}, delete=delete or {}, **given
        ),
    )


def cli_config(cfg: Config, sim: RestcommSimulator) -> Path:
    """A config file for the CLI with the same source, archive and ledger as ``cfg``."""
    return write_config(
        Path(cfg.ledger.path).parent,
        sim,
        name="cli.toml",
        auth_token=sim.auth_token,
        start_time=cfg.source.start_time,
        page_size=cfg.source.page_size,
        archive={"path": cfg.archive.path},
        ledger={"path": cfg.ledger.path},
    )
