"""The docs say what the code does: docs/configuration.md lists every config key with the
default the dataclasses hold, the README keeps the two commands CI runs, the install steps
start what the systemd unit runs, and every link between the docs lands on a file and a
heading that exist."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver import config
from archiver.config import (
    Config,
    ServerConfig,
    format_duration,
    parse_duration,
    parse_size,
    parse_timestamp,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
EXAMPLE = ROOT / "config" / "archiver.example.toml"
SIZE_KEYS = config._SIZE_KEYS  # an int default read with a unit: the dataclass cannot tell

ROW = re.compile(
    r"^\| `(?P<key>[a-z_]+)` \| (?P<type>[a-z]+) \| `(?P<default>[^`]*)` \| (?P<meaning>.*) \|$"
)
HEADING = re.compile(r"^## \[(?P<section>[a-z_]+)\]$")


# --- the configuration reference --------------------------------------------------------


def sections() -> dict[str, dict[str, Any]]:
    """Section -> key -> dataclass default, walked from ``archiver.config.Config``."""
    found: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(Config):
        cls = section.default_factory  # type: ignore[misc]
        body = cls()
        found[section.name] = {f.name: getattr(body, f.name) for f in dataclasses.fields(cls)}
    return found


def kind(key: str, default: Any) -> str:
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, timedelta):
        return "duration"
    if isinstance(default, datetime):
        return "time"
    if isinstance(default, int):
        return "size" if key in SIZE_KEYS else "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, list | tuple):
        return "list"
    return "string"


def render(key: str, value: Any) -> str:
    """A default as TOML, for a key the example config does not spell out as its default."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return json.dumps(format_duration(value))
    if isinstance(value, datetime):
        return json.dumps(value.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    if isinstance(value, int) and key in SIZE_KEYS:
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if value and value % size == 0:
                return json.dumps(f"{value // size}{unit}")
        return json.dumps(f"{value}B")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render(key, v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def read_back(key: str, default: Any, literal: str) -> Any:
    """``literal`` (TOML) as the loader reads it for a key with ``default``."""
    value = tomllib.loads(f"v = {literal}")["v"]
    if isinstance(default, timedelta):
        return parse_duration(value, key)
    if isinstance(default, datetime):
        return parse_timestamp(value, key)
    if key in SIZE_KEYS:
        return parse_size(value, key)
    if isinstance(default, float) and type(value) is int:
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if type(value) is not type(default):
        return (type(value).__name__, value)  # never equal to the default
    return value


def example_literals() -> dict[tuple[str, str], str]:
    """(section, key) -> the value as the example config writes it."""
    found: dict[tuple[str, str], str] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        if m := re.fullmatch(r"\[([a-z_]+)\]", line):
            section = m.group(1)
        elif m := re.fullmatch(r"([a-z_]+) = (.+)", line):
            found[(section, m.group(1))] = m.group(2)
    return found


def expected_default(section: str, key: str, default: Any) -> str:
    """The example's spelling where it holds the default; otherwise :func:`render`."""
    literal = example_literals().get((section, key))
    if literal is not None and read_back(key, default, literal) == default:
        return literal
    return render(key, default)


def reference_problems(text: str) -> list[str]:
    """Every way ``text`` (docs/configuration.md) disagrees with the dataclasses."""
    problems: list[str] = []
    documented: dict[str, dict[str, re.Match[str]]] = {}
    section = None
    for line in text.splitlines():
        if heading := HEADING.match(line):
            section = heading.group("section")
            if section in documented:
                problems.append(f"[{section}] has two headings")
            documented.setdefault(section, {})
        elif line.startswith("## "):
            section = None  # a section of prose: its tables are not the reference
        elif section and (row := ROW.match(line)):
            key = row.group("key")
            if key in documented[section]:
                problems.append(f"{section}.{key} is documented twice")
            documented[section][key] = row
        elif section and line.startswith("| `"):
            problems.append(f"[{section}]: a row the reference cannot read: {line[:60]!r}")
    code = sections()
    for name in documented.keys() - code.keys():
        problems.append(f"[{name}] is documented but is no section of Config")
    for name, keys in code.items():
        if name not in documented:
            problems.append(f"[{name}] has no '## [{name}]' table")
            continue
        rows = documented[name]
        for key in rows.keys() - keys.keys():
            problems.append(f"{name}.{key} is documented but does not exist")
        for key, default in keys.items():
            row = rows.get(key)
            if row is None:
                problems.append(f"{name}.{key} is not documented")
                continue
            want = expected_default(name, key, default)
            if row.group("default") != want:
                problems.append(
                    f"{name}.{key}: documented default {row.group('default')} != {want}"
                )
            if row.group("type") != kind(key, default):
                problems.append(f"{name}.{key}: type {row.group('type')} != {kind(key, default)}")
            if not row.group("meaning").strip():
                problems.append(f"{name}.{key}: no meaning given")
    return problems


def test_the_reference_documents_every_key_with_its_default() -> None:
    assert reference_problems(REFERENCE.read_text()) == []


def test_every_documented_default_is_read_back_as_the_code_default() -> None:
    for name, keys in sections().items():
        for key, default in keys.items():
            assert read_back(key, default, expected_default(name, key, default)) == default, key


def test_the_rendering_is_what_the_loader_reads() -> None:
    # the fallback for keys the example does not spell out: each form reads back as itself
    for key, value in [
        ("lookback", timedelta(minutes=15)),
        ("poll_interval", timedelta(seconds=90)),
        ("start_time", datetime(2020, 1, 1, tzinfo=UTC)),
        ("part_size", 16 * 2**20),
        ("multipart_threshold", 1000),
        ("enabled", False),
        ("page_size", 100),
        ("max_requests_per_second", 0.5),
        ("path", "/var/lib/x"),
    ]:
        assert read_back(key, value, render(key, value)) == value, key


def without_row(text: str, key: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith(f"| `{key}` |"))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: without_row(t, "lookback"), "source.lookback is not documented"),
        (
            lambda t: t.replace('| `"15m"` | Overlap', '| `"10m"` | Overlap'),
            'source.lookback: documented default "10m" != "15m"',
        ),
        (
            lambda t: t.replace("| `page_size` | integer |", "| `page_size` | string |"),
            "source.page_size: type string != integer",
        ),
        (
            lambda t: t.replace(
                '| `path` | string | `"/var/lib/archiver/ledger.sqlite3"`',
                '| `path` | string | `"/var/lib/archiver/ledger.sqlite3"` | x |\n'
                "| `wal_mode` | boolean | `true`",
            ),
            "ledger.wal_mode is documented but does not exist",
        ),
        (lambda t: t.replace("## [log]", "## [logging]"), "[log] has no '## [log]' table"),
    ],
)
def test_the_reference_check_catches_drift(edit: Any, expected: str) -> None:
    text = REFERENCE.read_text()
    edited = edit(text)
    assert edited != text
    assert expected in reference_problems(edited)


def test_the_environment_overrides_are_documented() -> None:
    text = REFERENCE.read_text()
    assert "ARCHIVER_CONFIG" in text and "ARCHIVER_<SECTION>__<KEY>" in text
    named = set(re.findall(r"\bARCHIVER_[A-Z]+__[A-Z_]+\b", text))
    assert named
    assert set(config.environ_overrides({n: "" for n in named}).values()) == named
    for name in named:  # each example names a real key
        section, _, key = name.removeprefix("ARCHIVER_").lower().partition("__")
        assert key in sections()[section], name


# --- the README and the links between the docs ------------------------------------------

README = ROOT / "README.md"
DEMO = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/archiver demo"


def test_the_readme_keeps_the_two_commands_ci_relies_on() -> None:
    block = README.read_text().split("## Two commands on a fresh machine", 1)[1].split("```")[1]
    commands = [ln for ln in block.splitlines() if ln and not ln.startswith(("sh", "#"))]
    assert commands == [DEMO, "scripts/test"]
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec scripts/test")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


DOC_FILES = [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_lands(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        landed = (doc.parent / file).resolve() if file else doc
        assert landed.exists(), f"{doc.name}: {target} is missing"
        if anchor:
            assert landed.suffix == ".md", target
            assert anchor in anchors(landed), f"{doc.name}: {target}: no such heading"


def test_the_docs_folder_is_linked_from_the_readme() -> None:
    readme = README.read_text()
    for doc in DOCS.glob("*.md"):
        assert f"](docs/{doc.name}" in readme, f"README links no {doc.name}"


def test_the_getting_started_steps_install_what_the_unit_starts() -> None:
    steps = (DOCS / "getting-started.md").read_text()
    unit = (ROOT / "systemd" / "archiver.service").read_text()
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    binary, *args = shlex.split(exec_start.removeprefix("ExecStart="))
    venv = binary.removesuffix("/bin/archiver")
    assert f"python3 -m venv {venv}\n" in steps and f"{venv}/bin/pip install ." in steps
    config = args[args.index("--config") + 1]
    assert f"config/archiver.example.toml {config}" in steps  # the config where the unit reads it
    assert "cp systemd/archiver.service /etc/systemd/system/" in steps
    credential = next(ln for ln in unit.splitlines() if ln.startswith("LoadCredential="))
    name, _, source = credential.removeprefix("LoadCredential=").partition(":")
    assert f"/dev/stdin {source} " in steps  # the token where the unit takes it from
    assert f'auth_token_file = "${{CREDENTIALS_DIRECTORY}}/{name}"' in steps
    assert f"CREDENTIALS_DIRECTORY={Path(source).parent} {binary} --config {config}" in steps


def yaml_blocks(doc: Path) -> list[Any]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.DOTALL)]


def test_the_alert_rules_parse_and_the_down_alert_watches_the_documented_job() -> None:
    (rules,) = yaml_blocks(DOCS / "operating.md")
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"ArchiverDown", "ArchiverNoProgress", "ArchiverFailures"} <= alerts.keys()
    (job,) = set(re.findall(r'up\{job="([^"]+)"\}', alerts["ArchiverDown"]["expr"]))
    (prometheus,) = yaml_blocks(DOCS / "getting-started.md")
    jobs = [s["job_name"] for s in prometheus["scrape_configs"]]
    assert jobs == [job]
    target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == ServerConfig().listen  # what the default config serves
