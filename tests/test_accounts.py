"""Every account of a parent, on every platform: sub-accounts discovered and archived through
the real CLI, each with its own watermark, status and metrics; one account's outage never
stops the others; a backlog in one does not starve the rest; the release's ledger migrates."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.config import load_config
from archiver.errors import ConfigError
from archiver.ledger import SCHEMA_VERSION, Ledger
from archiver.metrics import REGISTRY, refresh_from_ledger
from archiver.simulator import RestcommSimulator, TwilioSimulator
from archiver.simulator.store import SimRecording
from tests.support.cli import run_cli
from tests.support.config import make_config, settings, write_config
from tests.support.constants import NOW
from tests.support.harness import Harness

DATA = Path(__file__).parent / "data" / "ledger-0.1.0"
Simulator = RestcommSimulator | TwilioSimulator


def config(tmp_path: Path, sim: Simulator, **given: Any) -> Path:
    platform = "restcomm"
    if isinstance(sim, TwilioSimulator):
        platform = "signalwire" if "/api/laml" in sim.base_url else "twilio"
    return write_config(tmp_path, sim, platform=platform, auth_token=sim.auth_token, **given)


def stored(tmp_path: Path) -> dict[str, str]:
    """Archived media: SID -> the account folder it is in."""
    return {
        p.stem: p.relative_to(tmp_path / "archive").parts[0]
        for p in (tmp_path / "archive").rglob("*")
        if p.suffix in (".wav", ".mp4") and ".archiver-tmp" not in p.parts
    }


def make(sim: Simulator, n: int, owner: str | None = None, hours: float = 3) -> list[SimRecording]:
    return list(sim.generate(n, start=NOW - timedelta(hours=hours), account_sid=owner))


async def status(cfg: Path) -> tuple[int, dict[str, Any]]:
    code, out, err = await run_cli("--config", str(cfg), "status", "--json")
    assert "Traceback" not in err
    return code, json.loads(out)


def by_sid(facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["sid"]: a for a in facts["accounts"]}


# ------------------------------------------------------------------ discovery, per platform


async def test_a_restcomm_parent_archives_every_active_sub_account(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    one, two = sim.add_subaccount("one"), sim.add_subaccount("two")
    closed = sim.add_subaccount("closed", status="closed")
    mine, first, second = make(sim, 3), make(sim, 4, one.sid), make(sim, 2, two.sid, hours=1)
    make(sim, 2, closed.sid)
    cfg = config(tmp_path, sim, subaccounts=True)
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    assert "accounts     3 listed, 0 unreachable" in out
    expected = {r.sid: r.account_sid for r in mine + first + second}
    assert stored(tmp_path) == expected  # each under its owner's account_sid; not the closed
    code, facts = await status(cfg)
    assert code == 0
    accounts = by_sid(facts)
    assert accounts[closed.sid]["status"] == "closed"
    assert accounts[closed.sid]["watermark"] is None
    for owner, recs in ((sim.account_sid, mine), (one.sid, first), (two.sid, second)):
        newest = max(r.date_created for r in recs)
        assert accounts[owner]["watermark"] == newest.isoformat()  # each its own
        assert accounts[owner]["states"]["verified"] == len(recs)
    assert facts["watermark"] == min(a["watermark"] for a in accounts.values() if a["watermark"])
    code, out, _err = await run_cli("--config", str(cfg), "status")
    table = {line.split()[0]: line for line in out.splitlines() if line.startswith("  AC")}
    assert table[one.sid].split()[1:3] == ["one", "4"]  # name, verified
    assert "closed: not archived now" in table[closed.sid]
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0 and "archived 0" in out, out + err  # nothing repeated


async def test_twilio_and_signalwire_archive_and_delete_in_every_active_sub_account(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    sim = twilio_sim
    one = sim.add_subaccount("one")
    suspended = sim.add_subaccount("suspended", status="suspended")
    mine, theirs = make(sim, 3, hours=30), make(sim, 5, one.sid, hours=2)
    kept = make(sim, 2, suspended.sid)
    cfg = config(tmp_path, sim, subaccounts=True, delete={"enabled": True, "min_age": "0s"})
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    assert stored(tmp_path) == {r.sid: r.account_sid for r in mine + theirs}
    # each deleted through its owner's own URL (DELETE 204), only after its verification
    assert set(sim.recordings) == {r.sid for r in kept}
    deletes = [q.path for q in sim.requests if q.method == "DELETE"]
    assert sorted(p.split("/Accounts/")[1].split("/")[0] for p in deletes) == sorted(
        r.account_sid for r in mine + theirs
    )
    code, facts = await status(cfg)
    accounts = by_sid(facts)
    assert accounts[one.sid]["states"]["deleted"] == 5
    assert accounts[suspended.sid]["status"] == "suspended"


async def test_accounts_named_in_the_config_are_archived_with_the_parents_credentials(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    one, other = sim.add_subaccount("one"), sim.add_subaccount("not named")
    make(sim, 2)
    named = make(sim, 3, one.sid)
    make(sim, 2, other.sid)
    cfg = config(tmp_path, sim, accounts=[one.sid])  # exactly these: not the parent itself
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    assert stored(tmp_path) == {r.sid: one.sid for r in named}
    lists = [q for q in sim.requests if q.path.endswith("/Recordings.json")]
    assert lists and all(q.authorized for q in lists)  # the parent's credentials reach it
    assert {q.path.split("/Accounts/")[1].split("/")[0] for q in lists} == {one.sid}


# ------------------------------------------------------------------ one account's outage


async def test_an_unreachable_account_is_reported_and_never_stops_the_others(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    sim = twilio_sim
    ok, closed = sim.add_subaccount("ok"), sim.add_subaccount("closed", status="closed")
    archived = make(sim, 2) + make(sim, 3, ok.sid)
    make(sim, 2, closed.sid)
    cfg = config(tmp_path, sim, accounts=[sim.account_sid, ok.sid, closed.sid])
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 1, out + err  # not 3: the others were archived
    assert f"account {closed.sid}:" in out and "not active" in out and "20005" in out
    assert stored(tmp_path) == {r.sid: r.account_sid for r in archived}
    code, facts = await status(cfg)
    assert code == 1
    problem = by_sid(facts)[closed.sid]["problem"]
    assert "not active" in problem and "20005" in problem
    assert by_sid(facts)[closed.sid]["scan_complete"] is False
    assert facts["last_pass"]["account_problems"] == {closed.sid: problem}


async def test_an_account_closed_between_listing_and_download_waits_uncharged(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    sim = twilio_sim
    sub = sim.add_subaccount("closing")
    waiting = make(sim, 4, sub.sid)
    mine = make(sim, 3)
    not_active = json.dumps({"code": 20005, "message": "Account not active", "status": 401})
    fault = sim.inject(
        path=rf"/Accounts/{sub.sid}/Recordings/[^/]+\.wav$",
        times=None,
        status=401,
        body=not_active.encode(),
        content_type="application/json",
    )
    cfg = config(tmp_path, sim, subaccounts=True, concurrency=1)
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 1, out + err
    assert stored(tmp_path) == {r.sid: r.account_sid for r in mine}
    # the first 401 takes the account out of this pass's turn: at most the two transfers in
    # flight at once (2 x concurrency) meet it, never all four
    assert 1 <= fault.hits <= 2
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        for rec in waiting:
            row = await ledger.get(rec.sid)
            assert row is not None and row.state == "discovered" and row.attempts == 0
    fault.remove()  # the account is back
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    assert set(stored(tmp_path)) == {r.sid for r in mine + waiting}


async def test_rejected_credentials_stop_the_pass_for_every_account(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    sub = twilio_sim.add_subaccount("one")
    make(twilio_sim, 2, sub.sid)
    cfg = config(tmp_path, twilio_sim, subaccounts=True)
    cfg.write_text(cfg.read_text().replace(twilio_sim.auth_token, "wrong-token"))
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 3, out + err
    assert "credentials rejected" in out + err and "Traceback" not in err


# ------------------------------------------------------------------ sharing and refresh


async def test_a_backlog_in_one_account_does_not_starve_the_others(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    busy, quiet = sim.add_subaccount("busy"), sim.add_subaccount("quiet")
    make(sim, 40, busy.sid, hours=20)  # older, so oldest-first alone would take them first
    few = make(sim, 3, quiet.sid, hours=1)
    cfg = config(tmp_path, sim, accounts=[busy.sid, quiet.sid], concurrency=1)
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    media = [q.path.rsplit("/", 1)[1].split(".")[0] for q in sim.requests if ".wav" in q.path]
    turns = [media.index(r.sid) for r in few]
    assert max(turns) < 8, media  # they take turns: the third is at most the sixth fetch


async def test_a_new_sub_account_is_picked_up_at_the_next_refresh(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    clock = [NOW.timestamp()]
    cfg = make_config(sim, tmp_path, subaccounts=True, accounts_refresh="1h")
    h = Harness(cfg, clock=lambda: clock[0])
    make(sim, 2)
    await h.pass_()
    late = sim.add_subaccount("opened later")
    theirs = make(sim, 2, late.sid)
    clock[0] += 30 * 60
    result = await h.pass_()
    assert set(result.accounts) == {sim.account_sid}  # not yet: the list is half an hour old
    clock[0] += 31 * 60
    result = await h.pass_()
    assert set(result.accounts) == {sim.account_sid, late.sid} and result.ok
    rows = await h.ledger_rows()
    assert all(rows[r.sid][0] == "verified" for r in theirs)
    assert await h.watermark(late.sid) == max(r.date_created for r in theirs)
    del sim.store.accounts[late.sid]  # the platform no longer lists it
    clock[0] += 61 * 60
    result = await h.pass_()
    assert set(result.accounts) == {sim.account_sid}
    async with Ledger(cfg.ledger.path) as ledger:
        (gone,) = [a for a in await ledger.account_states() if a.sid == late.sid]
    assert (gone.status, gone.friendly_name) == ("unlisted", "opened later")
    assert gone.states["verified"] == 2  # its archived recordings stay in the ledger


async def test_metrics_carry_an_account_label_bounded_troubled_first(
    tmp_path: Path, sim: RestcommSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = [sim.add_subaccount(f"s{i}") for i in range(3)]
    for owner in [sim.account_sid, *(s.sid for s in subs)]:
        make(sim, 1, owner)  # four accounts, one recording each
    sick = subs[1]
    sim.inject(path=rf"/Accounts/{sick.sid}/Recordings/[^/]+\.wav$", times=None, status=404)
    cfg = make_config(sim, tmp_path, subaccounts=True, media_grace="0s", max_attempts=1)
    await Harness(cfg).pass_()
    monkeypatch.setattr("archiver.metrics.MAX_ACCOUNT_SERIES", 2)
    async with Ledger(cfg.ledger.path) as ledger:
        await refresh_from_ledger(ledger, NOW.timestamp(), cfg.source.max_attempts)

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert sample("archiver_account_outstanding_recordings", account=sick.sid) == 1
    assert sample("archiver_account_recordings", account=sick.sid, state="failed") == 1
    assert sample("archiver_account_up", account=sick.sid) == 1  # listed fine
    named = [
        a
        for a in [sim.account_sid, *(s.sid for s in subs)]
        if sample("archiver_account_up", account=a) is not None
    ]
    assert len(named) == 2 and sick.sid in named  # the troubled account keeps its series
    assert sample("archiver_account_recordings", account="_other", state="verified") == 2


# ------------------------------------------------------------------ config and migration


def test_accounts_config_is_validated_with_the_key_named(tmp_path: Path) -> None:
    def load(**source: Any) -> Any:
        return load_config(None, environ={}, overrides=settings(tmp_path, None, **source))

    good = "AC" + "1" * 32
    assert load(accounts=[good]).source.accounts == (good,)
    with pytest.raises(ConfigError, match=r"source\.accounts\[1\].*not an account SID"):
        load(accounts=[good, "../etc"])
    with pytest.raises(ConfigError, match=r"source\.accounts\[1\].*twice"):
        load(accounts=[good, good])
    with pytest.raises(ConfigError, match=r"source\.accounts.*list of strings"):
        load(accounts=good)
    with pytest.raises(ConfigError, match=r"source\.accounts_refresh"):
        load(accounts_refresh="10s")
    env = {"ARCHIVER_SOURCE__ACCOUNTS": f"{good}, AC{'2' * 32}"}
    cfg = load_config(None, environ=env, overrides=settings(tmp_path, None))
    assert cfg.source.accounts == (good, "AC" + "2" * 32)


async def test_a_ledger_written_by_release_0_1_0_is_migrated_in_place(tmp_path: Path) -> None:
    shutil.copy(DATA / "ledger.sqlite3", tmp_path / "l.sqlite3")
    shutil.copy(DATA / "ledger.sqlite3.audit.jsonl", tmp_path / "l.sqlite3.audit.jsonl")
    with sqlite3.connect(tmp_path / "l.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        (old_watermark,) = db.execute("SELECT value FROM meta WHERE key='watermark'").fetchone()
    # the simulator that release archived from (make.py), with two recordings made since
    async with RestcommSimulator(seed=11) as sim:
        made = sim.generate(12, start=NOW.replace(day=20, hour=9), spacing=timedelta(minutes=5))
        assert max(r.date_created for r in made).isoformat() == old_watermark
        later = sim.generate(2, start=max(r.date_created for r in made) + timedelta(hours=1))
        cfg = config(tmp_path, sim, start_time=NOW.replace(day=19, hour=9))
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, out + err
        assert "archived 2," in out  # the 12 already archived are not fetched again
        assert {q.path.rsplit("/", 1)[1][:34] for q in sim.requests if ".wav" in q.path} == {
            r.sid for r in later
        }
    with sqlite3.connect(tmp_path / "l.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT COUNT(*) FROM meta WHERE key='watermark'").fetchone() == (0,)
    code, facts = await status(cfg)
    assert code == 0 and facts["states"]["verified"] == 14
    (account,) = facts["accounts"]
    assert account["sid"] == sim.account_sid
    assert account["watermark"] == max(r.date_created for r in later).isoformat()
    code, out, err = await run_cli("--config", str(cfg), "audit", "verify", "--journal-only")
    assert code == 0, out + err  # the release's journal chain goes on unbroken


async def test_check_reaches_every_account_and_names_the_unreachable_one(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    ok = twilio_sim.add_subaccount("ok")
    twilio_sim.add_subaccount("suspended", status="suspended")
    closed = twilio_sim.add_subaccount("closed", status="closed")
    cfg = config(
        tmp_path, twilio_sim, subaccounts=True, accounts=[twilio_sim.account_sid, closed.sid]
    )
    code, out, err = await run_cli("--config", str(cfg), "check")
    assert code == 1, out + err
    assert "accounts     1 active sub-accounts listed; 2 not archived (closed, suspended)" in out
    assert f"account {ok.sid}: ok" in out
    assert f"account {closed.sid}:" in out and "not active" in out


async def test_a_dry_run_lists_every_account_and_writes_nothing(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    sub = sim.add_subaccount("one")
    make(sim, 2)
    make(sim, 3, sub.sid)
    cfg = config(tmp_path, sim, subaccounts=True)
    code, out, err = await run_cli("--config", str(cfg), "sync", "--dry-run")
    assert code == 1, out + err  # five recordings would be archived: not done yet
    assert "dry run      would archive 5 " in out, out
    assert "listed       5 since" in out, out
    assert not (tmp_path / "archive").exists() or not stored(tmp_path)
    assert not any(q.method == "DELETE" or ".wav" in q.path for q in sim.requests)


async def test_an_account_whose_media_keeps_failing_is_its_own_outage(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    sick, fine = sim.add_subaccount("sick"), sim.add_subaccount("fine")
    stuck = make(sim, 4, sick.sid)
    archived = make(sim, 5, fine.sid)
    sim.inject(path=rf"/Accounts/{sick.sid}/Recordings/[^/]+\.wav$", times=None, status=503)
    cfg = config(tmp_path, sim, accounts=[sick.sid, fine.sid], concurrency=1)
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 1, out + err  # not 3: one account of two is down
    assert f"account {sick.sid}: 3 recordings in a row failed" in out, out
    assert stored(tmp_path) == {r.sid: fine.sid for r in archived}
    async with Ledger(tmp_path / "l.sqlite3") as ledger:
        for rec in stuck:  # none charged: an outage spends no attempt
            row = await ledger.get(rec.sid)
            assert row is not None and row.attempts == 0 and row.state == "discovered"
    sim.clear_faults()
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err


async def test_when_every_account_with_work_is_down_the_pass_stops(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    one, two = sim.add_subaccount("one"), sim.add_subaccount("two")
    make(sim, 3, one.sid)
    make(sim, 3, two.sid)
    sim.inject(path=r"/Recordings/[^/]+\.wav$", times=None, status=503)
    cfg = config(tmp_path, sim, accounts=[one.sid, two.sid], concurrency=1)
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 3, out + err
    assert "charged none of them" in out + err


async def test_an_accounts_list_it_may_not_read_is_reported_and_the_last_list_used(
    tmp_path: Path, sim: RestcommSimulator
) -> None:
    sub = sim.add_subaccount("one")
    mine, theirs = make(sim, 2), make(sim, 2, sub.sid)
    cfg = config(tmp_path, sim, subaccounts=True, accounts_refresh="1m")
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    # a role without RestComm:Read:Accounts: 403 on the accounts list, recordings still fine
    sim.inject(path=r"/2012-04-24/Accounts(\.json)?$", times=None, status=403)
    later = make(sim, 1, sub.sid, hours=0.5)
    async with Ledger(tmp_path / "l.sqlite3") as ledger:  # the list is due again
        await ledger.db.execute("UPDATE meta SET value='0' WHERE key='accounts_refreshed_at'")
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 1, out + err  # the account set could not be checked: not a clean pass
    assert "accounts     accounts list: AccountUnavailable: " in out
    assert set(stored(tmp_path)) == {r.sid for r in mine + theirs + later}
    code, facts = await status(cfg)
    assert code == 1 and "403" in facts["last_pass"]["accounts_problem"]


async def test_a_row_of_an_account_no_longer_archived_never_stops_the_configs_own(
    tmp_path: Path, twilio_sim: TwilioSimulator
) -> None:
    sim = twilio_sim
    sub = sim.add_subaccount("former customer")
    left = make(sim, 2, sub.sid)
    sim.set_status(left[0], "processing")  # not ready: listed, still due after the pass
    sim.set_status(left[1], "processing")
    code, out, err = await run_cli(
        "--config", str(config(tmp_path, sim, subaccounts=True, media_grace="1h")), "sync"
    )
    assert code == 1, out + err
    sim.set_account_status(sub.sid, "closed")  # gone, and no longer in the config
    mine = make(sim, 3)
    cfg = config(tmp_path, sim)
    code, out, err = await run_cli("--config", str(cfg), "retry")  # due again at once
    assert code == 0, out + err
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 1, out + err  # not 3: the config's own account was archived
    assert f"account {sub.sid}:" in out and "not active" in out
    assert {r.sid for r in mine} <= set(stored(tmp_path))
