"""The simulator stays beside the core: the core never imports it (only the CLI, lazily, inside
its commands), and it imports nothing of the core."""

from __future__ import annotations

import ast
from pathlib import Path

import archiver

PACKAGE = Path(archiver.__file__).parent
SIMULATOR = PACKAGE / "simulator"


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def test_only_the_cli_imports_the_simulator_and_only_lazily() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for module, at_top in imports(path):
            if module.startswith("archiver.simulator"):
                assert path.name == "cli.py" and not at_top, f"{path.name} imports {module}"


def test_the_simulator_imports_nothing_of_the_core() -> None:
    for path in sorted(SIMULATOR.glob("*.py")):
        for module, _ in imports(path):
            if module == "archiver" or module.startswith("archiver."):
                assert module.startswith("archiver.simulator"), f"{path.name} imports {module}"
