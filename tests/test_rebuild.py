"""`archiver ledger rebuild`: a lost ledger rebuilt from the archive's sidecars, through the
real CLI against the simulator. Nothing is lost, nothing counts as verified before a pass has
checked it again, and what cannot be used is named."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from archiver.simulator import RestcommSimulator
from tests.support.cli import no_traceback, run_cli
from tests.support.config import write_config
from tests.support.constants import NOW, TOKEN
from tests.support.s3 import S3Server, creds, s3_cli_config


def media_requests(sim: RestcommSimulator) -> int:
    return sum(1 for r in sim.requests if r.path.endswith((".wav", ".mp4")))


def sidecars(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*.json") if ".archiver-tmp" not in p.parts)


async def status(cfg: Path) -> tuple[int, dict[str, object]]:
    code, out, _err = await run_cli("--config", str(cfg), "status", "--json")
    return code, json.loads(out)


async def archived(tmp_path: Path, sim: RestcommSimulator, n: int) -> Path:
    """``n`` recordings archived by a sync through the CLI; its config file."""
    sim.generate(n, start=NOW - timedelta(hours=3))
    cfg = write_config(tmp_path, sim)
    code, out, err = await run_cli("--config", str(cfg), "sync")
    assert code == 0, out + err
    return cfg


async def lose_the_state(tmp_path: Path) -> None:
    for path in tmp_path.glob("l.sqlite3*"):
        path.unlink()


async def test_a_lost_ledger_is_rebuilt_and_the_next_pass_verifies_without_downloading(
    tmp_path: Path,
) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        cfg = await archived(tmp_path, sim, 25)
        await lose_the_state(tmp_path)  # the ledger and its journal are gone
        code, out, err = await run_cli("--config", str(cfg), "ledger", "rebuild")
        assert code == 0, out + err
        assert "25 rows from sidecars" in out and "0 without a sidecar" in out, out
        code, facts = await status(cfg)
        # rebuilt rows are archived, not verified: a pass checks every copy again first
        assert code == 1
        assert facts["states"] == {
            "discovered": 0,
            "archived": 25,
            "verified": 0,
            "failed": 0,
            "deleted": 0,
        }
        assert facts["watermark"] is None  # the next pass lists from start_time
        before = media_requests(sim)
        sim.generate(5, start=NOW - timedelta(hours=1))  # arrived while the state was lost
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, out + err
        assert media_requests(sim) - before == 5  # only the new ones are downloaded
        code, facts = await status(cfg)
        assert code == 0 and facts["states"]["verified"] == 30


async def test_what_cannot_be_used_is_named_and_archived_again_by_the_next_pass(
    tmp_path: Path,
) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        cfg = await archived(tmp_path, sim, 6)
        await lose_the_state(tmp_path)
        side = sidecars(tmp_path / "archive")
        assert len(side) == 6
        side[0].unlink()  # an orphan: audio without a sidecar
        side[1].write_text("{not json")
        doc = json.loads(side[2].read_text())
        side[2].write_text(json.dumps({**doc, "size": doc["size"] + 1}))  # disagrees
        code, out, err = await run_cli("--config", str(cfg), "ledger", "rebuild")
        assert code == 1, out + err  # done, but not all of it: the operator must look
        assert "3 rows from sidecars" in out and "1 without a sidecar" in out, out
        assert "2 unusable" in out and "not JSON" in out and "the audio has" in out, out
        assert str(side[0].name.removesuffix(".json")) in out
        no_traceback(err)
        code, out, err = await run_cli("--config", str(cfg), "sync")
        assert code == 0, out + err
        code, facts = await status(cfg)
        assert code == 0 and facts["states"]["verified"] == 6
        # every sidecar is whole again: the pass rewrote the damaged ones from the listing
        for path in sidecars(tmp_path / "archive"):
            assert json.loads(path.read_text())["size"] == path.with_suffix("").stat().st_size


async def test_rebuild_refuses_a_ledger_that_exists(tmp_path: Path) -> None:
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        cfg = await archived(tmp_path, sim, 2)
        ledger = tmp_path / "l.sqlite3"
        before = ledger.read_bytes()
        code, out, err = await run_cli("--config", str(cfg), "ledger", "rebuild")
        assert code == 2, out + err
        assert str(ledger) in err and "move it aside" in err, err
        assert ledger.read_bytes() == before
        no_traceback(err)


async def test_a_ledger_is_rebuilt_from_an_s3_archive(tmp_path: Path, moto_s3: S3Server) -> None:
    bucket = await moto_s3.create_bucket()
    async with RestcommSimulator(auth_token=TOKEN) as sim:
        sim.generate(8, start=NOW - timedelta(hours=3), ext_mp4_every=3)
        cfg = s3_cli_config(tmp_path, sim, moto_s3, bucket)
        env = creds(moto_s3)
        code, _out, err = await run_cli("--config", str(cfg), "sync", env=env)
        assert code == 0, err
        await lose_the_state(tmp_path)
        code, out, err = await run_cli("--config", str(cfg), "ledger", "rebuild", env=env)
        assert code == 0, out + err
        assert "8 rows from sidecars" in out and f"s3://{bucket}/calls/" in out, out
        before = media_requests(sim)
        code, out, err = await run_cli("--config", str(cfg), "sync", env=env)
        assert code == 0, out + err
        assert media_requests(sim) == before  # verified where they are, not downloaded again
        code, facts = await status(cfg)
        assert code == 0 and facts["states"]["verified"] == 8
