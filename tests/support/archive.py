"""What a test asserts of a local archive and its audit journal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from archiver.config import Config, journal_path
from archiver.simulator import RestcommSimulator, SimRecording, TwilioSimulator

MEDIA = (".wav", ".mp4")
Simulator = RestcommSimulator | TwilioSimulator


def archived_files(cfg: Config) -> dict[str, Path]:
    """SID -> archived media file (temp files left out)."""
    root = Path(cfg.archive.path)
    return {
        p.stem: p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in MEDIA and ".archiver-tmp" not in p.parts
    }


def served_sha256(sim: Simulator, rec: SimRecording) -> str:
    """The SHA-256 of the media ``sim`` serves for ``rec`` (Twilio's is a rendition of it)."""
    if isinstance(sim, TwilioSimulator):
        return sim.media_body(rec).sha256()
    return rec.sha256()


def assert_archive_matches(sim: Simulator, cfg: Config) -> None:
    """Every recording of ``sim`` archived once with its bytes, nothing else, no temp file."""
    files = archived_files(cfg)
    assert set(files) == set(sim.recordings), (
        f"missing {sorted(set(sim.recordings) - set(files))[:5]}, "
        f"extra {sorted(set(files) - set(sim.recordings))[:5]}"
    )
    for sid, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == served_sha256(
            sim, sim.recordings[sid]
        )
    assert not list((Path(cfg.archive.path) / ".archiver-tmp").iterdir())


def archive_copy(cfg: Config, sid: str) -> Path | None:
    """The archived media file of ``sid`` (not its sidecar), if there is one."""
    hits = [p for p in Path(cfg.archive.path).rglob(f"{sid}.*") if p.suffix != ".json"]
    return hits[0] if hits else None


def guard_deletes(sim: Simulator, cfg: Config) -> list[str]:
    """Fail the moment the simulator gets a DELETE for a recording not verified in the archive."""
    problems: list[str] = []

    def on_delete(rec: SimRecording) -> None:
        copy = archive_copy(cfg, rec.sid)
        if copy is None:
            problems.append(f"{rec.sid}: deleted with no archived copy")
        elif hashlib.sha256(copy.read_bytes()).hexdigest() != served_sha256(sim, rec):
            problems.append(f"{rec.sid}: deleted with a wrong archived copy")
        if not Path(f"{copy}.json").exists():
            problems.append(f"{rec.sid}: deleted before its sidecar was written")

    sim.on_delete = on_delete
    return problems


def events(cfg: Config) -> list[dict[str, object]]:
    """The audit journal's lines, parsed."""
    path = Path(journal_path(cfg))
    return [json.loads(line) for line in path.read_text().splitlines()]
