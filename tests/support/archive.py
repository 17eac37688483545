"""What a test asserts of a local archive and its audit journal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from archiver.config import Config, journal_path
from archiver.simulator import RestcommSimulator, SimRecording

MEDIA = (".wav", ".mp4")


def archived_files(cfg: Config) -> dict[str, Path]:
    """SID -> archived media file (temp files left out)."""
    root = Path(cfg.archive.path)
    return {
        p.stem: p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in MEDIA and ".archiver-tmp" not in p.parts
    }


def assert_archive_matches(sim: RestcommSimulator, cfg: Config) -> None:
    """Every recording of ``sim`` archived once with its bytes, nothing else, no temp file."""
    files = archived_files(cfg)
    assert set(files) == set(sim.recordings), (
        f"missing {sorted(set(sim.recordings) - set(files))[:5]}, "
        f"extra {sorted(set(files) - set(sim.recordings))[:5]}"
    )
    for sid, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sim.recordings[sid].sha256()
    assert not list((Path(cfg.archive.path) / ".archiver-tmp").iterdir())


def archive_copy(cfg: Config, sid: str) -> Path | None:
    """The archived media file of ``sid`` (not its sidecar), if there is one."""
    hits = [p for p in Path(cfg.archive.path).rglob(f"{sid}.*") if p.suffix != ".json"]
    return hits[0] if hits else None


def guard_deletes(sim: RestcommSimulator, cfg: Config) -> list[str]:
    """Fail the moment the simulator gets a DELETE for a recording not verified in the archive."""
    problems: list[str] = []

    def on_delete(rec: SimRecording) -> None:
        copy = archive_copy(cfg, rec.sid)
        if copy is None:
            problems.append(f"{rec.sid}: deleted with no archived copy")
        elif hashlib.sha256(copy.read_bytes()).hexdigest() != rec.sha256():
            problems.append(f"{rec.sid}: deleted with a wrong archived copy")
        if not Path(f"{copy}.json").exists():
            problems.append(f"{rec.sid}: deleted before its sidecar was written")

    sim.on_delete = on_delete
    return problems


def events(cfg: Config) -> list[dict[str, object]]:
    """The audit journal's lines, parsed."""
    path = Path(journal_path(cfg))
    return [json.loads(line) for line in path.read_text().splitlines()]
