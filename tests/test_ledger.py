"""The ledger on real SQLite files: states, watermark, durability, schema."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.errors import LedgerError
from archiver.ledger import SCHEMA_VERSION, Ledger
from archiver.model import InvalidItem, Recording

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(n: int, created: datetime = T0) -> Recording:
    return Recording(f"RE{n:032x}", "AC" + "1" * 32, None, created, 1.5, "wav", {"sid": n})


async def test_upsert_is_idempotent_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    async with Ledger(path) as ledger:
        assert await ledger.upsert_listed([rec(1), rec(2)], 1.0) == (2, 0, [])
        assert await ledger.upsert_listed([rec(2), rec(3)], 2.0) == (1, 0, [])
    async with Ledger(path) as ledger:
        assert (await ledger.counts())["discovered"] == 3
        row = await ledger.get(rec(1).sid)
        assert row is not None and row.source == {"sid": 1} and row.date_created == T0


async def test_state_machine_and_due_work(tmp_path: Path) -> None:
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        await ledger.upsert_listed([rec(i) for i in range(4)], 0.0)
        sids = [rec(i).sid for i in range(4)]
        await ledger.mark_archived(sids[0], key="k0", size=10, sha256="aa", now=1.0)
        await ledger.mark_verified(sids[0], 2.0)
        await ledger.mark_archived(sids[1], key="k1", size=10, sha256="bb", now=1.0)
        await ledger.mark_failed(sids[2], "boom", now=1.0, permanent=False, next_attempt_at=100.0)
        await ledger.mark_failed(sids[3], "never", now=1.0, permanent=True, next_attempt_at=None)
        due = {r.sid for r in await ledger.due(now=50.0, max_attempts=5)}
        assert due == {sids[1]}  # archived-not-verified is due; failures wait or are final
        due = {r.sid for r in await ledger.due(now=100.0, max_attempts=5)}
        assert due == {sids[1], sids[2]}
        assert {r.sid for r in await ledger.due(now=100.0, max_attempts=1)} == {sids[1]}
        counts = await ledger.counts()
        assert counts == {"discovered": 0, "archived": 1, "verified": 1, "failed": 2, "deleted": 0}
        failures = await ledger.failures()
        assert {f.last_error for f in failures} == {"boom", "never"}
        # verified only from archived: a stale update cannot promote a failed row
        await ledger.mark_verified(sids[2], 3.0)
        assert (await ledger.get(sids[2])).state == "failed"  # type: ignore[union-attr]
        left = await ledger.outstanding(now=50.0, max_attempts=5)
        assert (left.untried, left.unverified, left.waiting, left.permanent) == (0, 1, 1, 1)
        assert left.next_try_at == 100.0 and left.total == 3
        assert (await ledger.outstanding(now=50.0, max_attempts=1)).permanent == 2
        assert await ledger.retry_failed(None, 5.0) == 2
        assert (await ledger.counts())["discovered"] == 2
        assert (await ledger.outstanding(now=50.0, max_attempts=5)).untried == 2


async def test_a_deleted_recording_listed_again_is_verified_again(tmp_path: Path) -> None:
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        await ledger.upsert_listed([rec(1), rec(2)], 0.0)
        for n in (1, 2):
            sid = rec(n).sid
            await ledger.mark_archived(sid, key=f"k{n}", size=10, sha256="aa", now=1.0)
            await ledger.mark_verified(sid, 2.0)
            await ledger.mark_deleted(sid, 3.0)
        assert await ledger.upsert_listed([rec(1)], 4.0) == (0, 0, [rec(1).sid])
        assert (await ledger.get(rec(1).sid)).state == "verified"  # type: ignore[union-attr]
        assert (await ledger.get(rec(2).sid)).state == "deleted"  # type: ignore[union-attr]
        assert [r.sid for r in await ledger.deletable(10.0, 10)] == [rec(1).sid]


async def test_invalid_items_are_recorded_failed_with_reason(tmp_path: Path) -> None:
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        new, invalid, _relisted = await ledger.upsert_listed(
            [
                InvalidItem("../x", "sid '../x' is malformed", {"sid": "../x"}),
                InvalidItem(None, "not an object", {}),
            ],
            0.0,
        )
        assert (new, invalid) == (0, 1)
        row = await ledger.get("../x")
        assert row is not None and row.state == "failed" and row.permanent
        assert "malformed" in (row.last_error or "")
        assert await ledger.due(now=1e12, max_attempts=100) == []


async def test_watermark_only_moves_forward_and_each_account_has_its_own(tmp_path: Path) -> None:
    a, b = "AC" + "a" * 32, "AC" + "b" * 32
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        assert await ledger.watermark(a) is None
        assert await ledger.advance_watermark(a, T0) == T0
        assert await ledger.advance_watermark(a, T0 - timedelta(hours=1)) == T0
        assert await ledger.advance_watermark(a, T0 + timedelta(seconds=1)) == T0 + timedelta(
            seconds=1
        )
        assert await ledger.watermark(b) is None  # another account's is not moved
        assert await ledger.advance_watermark(b, T0 - timedelta(days=1)) == T0 - timedelta(days=1)
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        assert await ledger.watermark(a) == T0 + timedelta(seconds=1)
        assert await ledger.oldest_watermark() == T0 - timedelta(days=1)


async def test_schema_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    async with Ledger(path):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer than this archiver"):
        async with Ledger(path):
            pass


async def test_unusable_paths_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="ledger"):
        async with Ledger(junk):
            pass
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError, match="Not a directory"):
        async with Ledger(blocker / "sub" / "l.sqlite3"):
            pass


async def test_two_connections_opening_a_new_ledger_at_once_both_work(tmp_path: Path) -> None:
    # `status` (or the test harness) opening the ledger while the first `sync` creates it:
    # each migration re-reads the schema version under the write lock
    import asyncio

    path = tmp_path / "l.sqlite3"
    for _ in range(5):
        path.unlink(missing_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            ledgers = await asyncio.gather(
                *(stack.enter_async_context(Ledger(path)) for _ in range(4))
            )
            for n, ledger in enumerate(ledgers):
                await ledger.upsert_listed([rec(n)], 1.0)
        async with Ledger(path) as ledger:
            assert (await ledger.counts())["discovered"] == 4
        for extra in (tmp_path / "l.sqlite3-wal", tmp_path / "l.sqlite3-shm"):
            extra.unlink(missing_ok=True)


async def test_a_watermark_no_account_could_claim_is_adopted_by_the_configs_account(
    tmp_path: Path,
) -> None:
    # a schema-3 ledger whose recordings were all invalid items: the migration cannot tell
    # whose its one watermark was, so the first pass gives it to the config's account
    account = "AC" + "c" * 32
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        await ledger.set_meta("watermark", T0.isoformat())
        assert await ledger.adopt_watermark(account)
        assert await ledger.watermark(account) == T0
        assert await ledger.get_meta("watermark") is None
        assert not await ledger.adopt_watermark(account)  # once


async def test_per_account_counts_never_credit_one_account_with_anothers_rows(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from archiver.model import Account

    mine, theirs = "AC" + "1" * 32, "AC" + "2" * 32
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        await ledger.note_accounts([Account(mine)], "configured", 1.0, refreshed=False)
        await ledger.upsert_listed([rec(1), rec(2)], 1.0)
        totals = await ledger.counts()
        (only,) = await ledger.account_states(totals)  # one account, all rows its own
        assert (only.sid, only.states["discovered"]) == (mine, 2)
        # rows of an account the accounts table does not name (a rebuilt ledger, say)
        await ledger.upsert_listed([replace(rec(3), account_sid=theirs)], 2.0)
        states = {a.sid: a.states["discovered"] for a in await ledger.account_states(totals)}
        assert states == {mine: 2, theirs: 1}
