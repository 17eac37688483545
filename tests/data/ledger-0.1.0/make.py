"""How ledger.sqlite3 and its journal here were written, by archiver 0.1.0 (schema 3):

    git checkout <0.1.0> && PYTHONPATH=. .venv/bin/python tests/data/ledger-0.1.0/make.py OUT

seed 11, 12 recordings from 2026-11-20 09:00 UTC, 5 minutes apart, one sync. Kept so the
migration test opens a ledger the release really wrote (tests/test_accounts.py).
"""
import asyncio, shutil, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from archiver.simulator import RestcommSimulator
from tests.support.cli import run_cli
from tests.support.config import write_config

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

async def main(out: Path) -> None:
    work = Path("/tmp/fix/work"); shutil.rmtree(work, ignore_errors=True); work.mkdir()
    async with RestcommSimulator(seed=11) as sim:
        sim.store.generate(12, start=START, spacing=timedelta(minutes=5))
        cfg = write_config(work, sim, start_time=START - timedelta(days=1), auth_token=sim.auth_token)
        code, o, e = await run_cli("--config", str(cfg), "sync")
        print(code, o, e)
        assert code == 0
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "l.sqlite3", out / "ledger.sqlite3")
    shutil.copy(work / "l.sqlite3.audit.jsonl", out / "ledger.sqlite3.audit.jsonl")

asyncio.run(main(Path(sys.argv[1])))
