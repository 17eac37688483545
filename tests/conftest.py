"""Shared fixtures: the Restcomm simulator over real HTTP, real SQLite files, a clean env."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from archiver import retry
from archiver.audit import Journal
from archiver.config import Config, journal_path, load_config
from archiver.ledger import Ledger
from archiver.metrics import PrometheusHooks
from archiver.simulator import RestcommSimulator
from archiver.source import open_source
from archiver.storage.local import LocalStorage
from archiver.sync import Syncer

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ARCHIVER_* or AWS_* from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("ARCHIVER_", "AWS_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    retry.set_testing(True)
    yield
    retry.set_testing(False)
    structlog.reset_defaults()  # a CLI test may have bound logging to a captured stream


@pytest.fixture
async def sim() -> AsyncIterator[RestcommSimulator]:
    async with RestcommSimulator(seed=7) as s:
        yield s


def make_config(
    sim: RestcommSimulator, tmp: Path, delete: dict[str, Any] | None = None, **source: Any
) -> Config:
    src: dict[str, Any] = {
        "base_url": sim.base_url,
        "account_sid": sim.account_sid,
        "auth_token": sim.auth_token,
        "page_size": 10,
        "start_time": (NOW - timedelta(days=3)).isoformat(),
        "concurrency": 4,
    }
    src.update(source)
    return load_config(
        None,
        environ={},
        overrides={
            "source": src,
            "archive": {"backend": "local", "path": str(tmp / "archive")},
            "ledger": {"path": str(tmp / "ledger.sqlite3")},
            "delete": delete or {},
        },
    )


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[..., Config]:
    def build(sim: RestcommSimulator, **source: Any) -> Config:
        return make_config(sim, tmp_path, **source)

    return build


class Harness:
    """Opens client, storage and ledger for one config, like the CLI does."""

    def __init__(self, cfg: Config, clock: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or (lambda: NOW.timestamp())
        self.hooks = PrometheusHooks()  # as the CLI wires it: the metrics tests read them

    @contextlib.asynccontextmanager
    async def syncer(self, syncer_class: type[Syncer] = Syncer) -> AsyncIterator[Syncer]:
        """A Syncer over freshly opened ledger, client, local storage and journal."""
        async with (
            Ledger(self.cfg.ledger.path) as ledger,
            open_source(self.cfg.source, self.hooks) as client,
            LocalStorage(self.cfg.archive.path) as storage,
            Journal(journal_path(self.cfg), clock=lambda: self.clock()) as journal,
        ):
            yield syncer_class(
                self.cfg,
                client,
                storage,
                ledger,
                clock=self.clock,
                journal=journal,
                hooks=self.hooks,
            )

    async def pass_(self, **kw: Any) -> Any:
        async with self.syncer() as syncer:
            return await syncer.run_pass(**kw)

    async def ledger_rows(self) -> dict[str, Any]:
        async with (
            Ledger(self.cfg.ledger.path) as ledger,
            ledger.db.execute("SELECT sid, state, sha256, last_error FROM recordings") as c,
        ):
            return {r[0]: r[1:] for r in await c.fetchall()}

    async def watermark(self) -> datetime | None:
        async with Ledger(self.cfg.ledger.path) as ledger:
            return await ledger.watermark()


def cli_config(cfg: Config, sim: RestcommSimulator) -> Path:
    """A TOML file for the CLI with the same source, archive and ledger as ``cfg``."""
    p = Path(cfg.ledger.path).parent / "cli.toml"
    p.write_text(
        f'[source]\nbase_url = "{sim.base_url}"\naccount_sid = "{sim.account_sid}"\n'
        f'auth_token = "{sim.auth_token}"\nstart_time = "{cfg.source.start_time.isoformat()}"\n'
        f'[archive]\npath = "{cfg.archive.path}"\n[ledger]\npath = "{cfg.ledger.path}"\n'
        '[server]\nlisten = ""\n'
    )
    return p
