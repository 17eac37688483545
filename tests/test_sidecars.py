"""The sidecar is part of the archived copy: verified before every DELETE and by `verify`,
rewritten from the ledger when missing or damaged; a missing audio copy is archived again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from archiver.cli import main
from archiver.config import Config
from archiver.simulator import RestcommSimulator
from tests.support.archive import archive_copy, events, guard_deletes
from tests.support.config import cli_config, make_config
from tests.support.constants import NOW
from tests.support.harness import Harness


def sidecar_of(cfg: Config, sid: str) -> Path:
    copy = archive_copy(cfg, sid)
    assert copy is not None
    return Path(f"{copy}.json")


async def test_no_delete_while_a_sidecar_is_missing_or_wrong_and_it_is_restored(
    sim: RestcommSimulator, tmp_path: Path
) -> None:
    recs = sim.generate(3, start=NOW - timedelta(hours=2))
    cfg = make_config(sim, tmp_path, delete={"enabled": True, "min_age": "1h"})
    problems = guard_deletes(sim, cfg)  # fails if a DELETE comes before the sidecar exists
    h = Harness(cfg)
    await h.pass_()
    original = json.loads(sidecar_of(cfg, recs[1].sid).read_text())
    sidecar_of(cfg, recs[0].sid).unlink()
    doc = dict(original, sha256="0" * 64)
    sidecar_of(cfg, recs[1].sid).write_text(json.dumps(doc))  # a sidecar that lies
    h.clock = lambda: NOW.timestamp() + 7200
    result = await h.pass_()
    assert result.deleted == 1 and result.delete_skipped == 2
    assert sorted(sim.deleted) == [recs[2].sid]
    log = [e for e in events(cfg) if e["event"] in ("sidecar-restored", "delete-skipped")]
    assert {e["sid"] for e in log} == {recs[0].sid, recs[1].sid}
    restored = json.loads(sidecar_of(cfg, recs[1].sid).read_text())
    assert restored == original  # from the ledger, first archived_at kept
    h.clock = lambda: NOW.timestamp() + 7300
    result = await h.pass_()
    assert result.deleted == 2 and problems == []


async def test_verify_checks_sidecars_and_repair_mends_what_it_can(
    sim: RestcommSimulator, config_for: Callable[..., Config], capsys: object
) -> None:
    a, b, c = sim.generate(3, start=NOW - timedelta(hours=1))
    cfg = config_for(sim)
    await Harness(cfg).pass_()
    cli = cli_config(cfg, sim)
    sidecar_of(cfg, a.sid).write_text("{not json")
    copy_b = archive_copy(cfg, b.sid)
    assert copy_b is not None
    copy_b.unlink()
    assert await asyncio.to_thread(main, ["--config", str(cli), "verify"]) == 1
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert f"DRIFT {a.sid}" in out and "sidecar is not JSON" in out
    assert f"DRIFT {b.sid}" in out and "missing" in out
    assert "2 discrepancies" in out and "REPAIR" not in out
    assert await asyncio.to_thread(main, ["--config", str(cli), "verify", "--repair"]) == 1
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert f"REPAIR {a.sid}: sidecar rewritten" in out
    assert f"REPAIR {b.sid}: will be archived again" in out
    assert json.loads(sidecar_of(cfg, a.sid).read_text())["sha256"] == a.sha256()
    code = await asyncio.to_thread(main, ["--config", str(cli), "status"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert code == 1 and "need repair" in out
    later = Harness(cfg, clock=lambda: NOW.timestamp() + 60)
    result = await later.pass_()
    assert result.archived == 1 and result.ok
    assert await asyncio.to_thread(main, ["--config", str(cli), "verify", "--deep"]) == 0
    assert c.sid  # untouched throughout


async def test_a_deleted_recording_whose_copy_is_gone_is_marked_lost_not_forgotten(
    sim: RestcommSimulator, tmp_path: Path, capsys: object
) -> None:
    a, b = sim.generate(2, start=NOW - timedelta(hours=3))
    cfg = make_config(sim, tmp_path, delete={"enabled": True, "min_age": "0s"})
    first = await Harness(cfg).pass_()
    assert first.deleted == 2 and not sim.recordings  # the source has neither now
    copy_a = archive_copy(cfg, a.sid)
    assert copy_a is not None
    copy_a.unlink()  # the only copy left anywhere
    cli = cli_config(cfg, sim)
    assert await asyncio.to_thread(main, ["--config", str(cli), "verify", "--repair"]) == 1
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert f"REPAIR {a.sid}: LOST: deleted from the source" in out
    assert [e["sid"] for e in events(cfg) if e["event"] == "lost"] == [a.sid]
    code = await asyncio.to_thread(main, ["--config", str(cli), "status"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert code == 1 and a.sid in out and "lost: " in out  # said until an operator acts
    later = await Harness(cfg, clock=lambda: NOW.timestamp() + 3600).pass_()
    assert not later.ok and later.outstanding is not None and later.outstanding.permanent == 1
    assert b.sid  # its copy is whole: still deleted, nothing to say
