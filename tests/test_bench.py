"""bench/: its helpers, and a quick end-to-end smoke run of two scenarios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.main import Bench, Run, measure, table

ROOT = Path(__file__).resolve().parent.parent


def test_table_ratios_are_archiver_over_contender(tmp_path: Path) -> None:
    b = Bench(tmp_path, concurrency=8, rounds=2)
    b.runs = [
        Run("1. short", "archiver sync", 100, 100_000_000, 2.0, 3.0, 50_000),
        Run("1. short", "archiver sync", 100, 100_000_000, 4.0, 3.0, 50_000),  # not the best
        Run("1. short", "bare aiohttp (limit)", 100, 100_000_000, 1.0, 1.0, 30_000),
    ]
    b.extra = [("5. ledger", "`archiver status`", "300 ms")]
    text = table(b)
    assert "| 1. short | archiver sync | 50.0 | 50.0 | 3.00 | 49 |" in text
    assert "| 1. short | bare aiohttp (limit) | 100.0 | 100.0 |" in text
    assert text.count("archiver sync") == 1  # best of the rounds only
    assert "| 0.50x | 100.0 |" in text
    assert "| 50.0, 25.0 |" in text  # every round's MB/s, not only the best
    assert "| 5. ledger | `archiver status` | 300 ms |" in text


def test_measure_reports_the_child_cost(tmp_path: Path) -> None:
    code = "b = bytearray(50 * 2**20); sum(range(3_000_000))"
    p = measure([sys.executable, "-c", code], log=tmp_path / "log")
    assert p.returncode == 0
    assert p.rss_kb > 50 * 1024
    assert p.cpu > 0 and p.wall >= p.cpu * 0.5


def test_quick_run_prints_the_table(tmp_path: Path) -> None:
    """Scenarios 1 and 5 at smoke sizes, end to end: simulator and contenders as processes."""
    p = subprocess.run(
        [str(ROOT / "bench" / "run"), "--quick", "--only", "15", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for row in (
        "| 1. many short calls, local | archiver sync |",
        "| 1. many short calls, local | bare aiohttp (limit) |",
        "| 1. many short calls, local | archiver sync, workers=2 |",
        "| 1. many short calls, local | bare + fsync (durable limit) |",
        "| 1. many short calls, local | bare + fsync + rename (atomic limit) |",
        "| 1. many short calls, local | naive sequential script |",
        "| 5. big ledger, nothing new | no-news pass",
        "| 5. big ledger, nothing new | `archiver status`",
    ):
        assert row in p.stdout, p.stdout[-3000:]
