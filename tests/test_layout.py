"""The test tree's own rules, checked so they cannot drift: helpers live in ``tests/support``
(a package), fixtures only in ``tests/conftest.py``, and no test module, helper or benchmark
imports ``tests.conftest`` or a test module (pytest hands fixtures over by name)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def python_files() -> list[Path]:
    return sorted([*TESTS.rglob("*.py"), *(ROOT / "bench").rglob("*.py")])


def imported(tree: ast.AST) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, with ``from pkg import mod``
    counted as ``pkg.mod`` (it may import a module)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and len(parts) > 1 and parts[1].startswith(("test_", "conftest"))


def is_fixture(node: ast.AST) -> bool:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if ast.unparse(target) == "pytest.fixture":
            return True
    return False


def autouse(node: ast.AST) -> bool:
    return is_fixture(node) and any(
        isinstance(d, ast.Call) and any(k.arg == "autouse" for k in d.keywords)
        for d in node.decorator_list  # type: ignore[attr-defined]
    )


def test_nothing_imports_conftest_or_a_test_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in python_files()
        for name in imported(ast.parse(path.read_text(), str(path)))
        if is_test_module(name)
    ]
    assert not offenders, "move the helper to tests/support/: " + "; ".join(offenders)


def test_helpers_are_a_package_and_fixtures_are_only_in_conftest() -> None:
    support = TESTS / "support"
    assert (support / "__init__.py").is_file()
    loose = [p.name for p in TESTS.glob("*.py") if not p.name.startswith(("test_", "conftest"))]
    assert loose == ["__init__.py"], f"helpers belong in tests/support/: {loose}"
    for path in sorted(support.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert not [n for n in tree.body if is_fixture(n)], f"{path.name}: fixtures go in conftest"
    conftest = ast.parse((TESTS / "conftest.py").read_text())
    public = [
        n.name
        for n in conftest.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not is_fixture(n)
        and not n.name.startswith("_")
    ]
    assert not public, f"conftest.py holds fixtures only; move {public} to tests/support/"


def test_one_autouse_fixture_isolates_the_environment() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.name}"  # type: ignore[attr-defined]
        for path in python_files()
        for node in ast.parse(path.read_text()).body
        if autouse(node)
    ]
    assert found == ["tests/conftest.py:_isolated_env"], found
