"""How ledger.sqlite3 and its journal here were written, by archiver 0.1.0 (schema 3):

    git checkout ae2ed00 && PYTHONPATH=. .venv/bin/python tests/data/ledger-0.1.0/make.py OUT

Seed 11, 12 recordings from 2026-11-20 09:00 UTC, 5 minutes apart, one sync. Kept so the
migration test opens a ledger the release really wrote (tests/test_accounts.py).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli
from tests.support.config import write_config

SEED = 11
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
COUNT, SPACING = 12, timedelta(minutes=5)


async def main(out: Path) -> None:
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    async with RestcommSimulator(seed=SEED) as sim:
        sim.generate(COUNT, start=START, spacing=SPACING)
        cfg = write_config(
            work, sim, start_time=START - timedelta(days=1), auth_token=sim.auth_token
        )
        code, stdout, stderr = await run_cli("--config", str(cfg), "sync")
        if code != 0:
            raise SystemExit(f"sync exited {code}: {stdout}{stderr}")
    shutil.copy(work / "l.sqlite3", out / "ledger.sqlite3")
    shutil.copy(work / "l.sqlite3.audit.jsonl", out / "ledger.sqlite3.audit.jsonl")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
