"""The architecture in docs/how-it-works.md is the one in the code: import rules checked by
import-linter (contracts in pyproject.toml), and every module placed in the picture."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT / "docs" / "how-it-works.md"
LINT = Path(sys.executable).with_name("lint-imports")
OUTSIDE_THE_LAYERS = {"__init__", "__main__", "simulator"}  # the package, its entry, a tool


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def contracts() -> list[dict[str, object]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: list[dict[str, object]] = doc["tool"]["importlinter"]["contracts"]
    return found


def test_the_import_rules_hold() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(contracts())} kept, 0 broken" in done.stdout


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    # the check can fail: the pass importing the metrics library breaks two contracts
    shutil.copytree(
        ROOT / "archiver", tmp_path / "archiver", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    sync = tmp_path / "archiver" / "sync.py"
    sync.write_text(
        sync.read_text().replace(
            "import structlog\n", "import structlog\n\nfrom archiver import metrics  # noqa\n", 1
        )
    )
    done = lint(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "archiver.sync -> archiver.metrics" in done.stdout


def test_every_module_has_its_place_in_the_layers() -> None:
    layers = next(c for c in contracts() if c["id"] == "layers")["layers"]
    assert isinstance(layers, list)
    placed = {
        name.strip().removeprefix("archiver.") for layer in layers for name in layer.split("|")
    }
    modules = {p.stem for p in (ROOT / "archiver").glob("*.py")}
    modules |= {p.name for p in (ROOT / "archiver").iterdir() if (p / "__init__.py").exists()}
    assert modules - OUTSIDE_THE_LAYERS == placed - OUTSIDE_THE_LAYERS
    assert not placed & OUTSIDE_THE_LAYERS


def picture(doc: str) -> str:
    """The "## Architecture" section of ``doc``, up to the next heading of its level."""
    section = doc[doc.index("\n## Architecture\n") + 1 :]
    return section.split("\n## ", 1)[0]


def layers_missing(doc: str) -> list[str]:
    """The layers of the contract that the picture in ``doc`` does not draw, one line each."""
    layers = next(c for c in contracts() if c["id"] == "layers")["layers"]
    assert isinstance(layers, list)
    drawn = picture(doc)
    missing = []
    for layer in layers:
        names = " ".join(n.strip().removeprefix("archiver.") for n in layer.split("|"))
        if names not in drawn:
            missing.append(names)
    return missing


def test_the_docs_draw_the_same_layers() -> None:
    assert layers_missing(PICTURE.read_text()) == [], "docs/how-it-works.md's architecture"


def test_a_module_missing_from_the_picture_is_caught() -> None:
    doc = PICTURE.read_text()
    edited = doc.replace("audit copies ", "audit        ", 1)
    assert edited != doc
    assert layers_missing(edited) == ["audit copies"]
    # a name drawn only outside the section does not count
    moved = edited + "\n## Elsewhere\n\naudit copies\n"
    assert layers_missing(moved) == ["audit copies"]
