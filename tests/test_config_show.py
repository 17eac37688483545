"""``archiver config show``: the config in effect after environment overrides and secret files,
as TOML (or JSON), every secret masked, each overridden value naming its source."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from archiver.config import load_config
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.constants import TOKEN


def _config_with_a_token_file(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return write_config(tmp_path, auth_token=None, auth_token_file=str(token))


async def test_toml_names_overrides_and_masks_the_token_from_its_file(tmp_path: Path) -> None:
    cfg = _config_with_a_token_file(tmp_path)
    env = {"ARCHIVER_SOURCE__PAGE_SIZE": "25", "ARCHIVER_DELETE__MIN_AGE": "2h"}
    code, out, err = await run_cli("--config", str(cfg), "config", "show", env=env)
    assert code == 0, err
    assert TOKEN not in out + err
    lines = out.splitlines()
    assert 'auth_token = "***"  # from source.auth_token_file' in lines
    assert "page_size = 25  # from ARCHIVER_SOURCE__PAGE_SIZE" in lines
    assert 'min_age = "2h"  # from ARCHIVER_DELETE__MIN_AGE' in lines
    assert "concurrency = 4" in lines  # a default, from nowhere in particular
    shown = tomllib.loads(out)
    # in the file's own spelling: what it shows loads back to the config in effect
    del shown["source"]["auth_token"]
    again = load_config(None, environ={}, overrides=shown)
    assert again == load_config(cfg, environ=env)


async def test_a_token_from_the_environment_is_masked_and_named(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, auth_token=None)
    env = {"ARCHIVER_SOURCE__AUTH_TOKEN": TOKEN}
    code, out, err = await run_cli("--config", str(cfg), "config", "show", env=env)
    assert code == 0, err
    assert TOKEN not in out + err
    assert 'auth_token = "***"  # from ARCHIVER_SOURCE__AUTH_TOKEN' in out.splitlines()


async def test_json(tmp_path: Path) -> None:
    cfg = _config_with_a_token_file(tmp_path)
    env = {"ARCHIVER_SOURCE__PAGE_SIZE": "25"}
    code, out, err = await run_cli("--config", str(cfg), "config", "show", "--json", env=env)
    assert code == 0, err
    assert TOKEN not in out + err
    doc = json.loads(out)
    assert doc["config"]["source"]["page_size"] == 25
    assert doc["config"]["source"]["auth_token"] == "***"
    assert doc["config"]["archive"]["path"] == str(tmp_path / "archive")
    assert doc["from"] == {
        "source.page_size": "ARCHIVER_SOURCE__PAGE_SIZE",
        "source.auth_token": "source.auth_token_file",
    }


async def test_a_bad_override_is_exit_2_naming_it(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    env = {"ARCHIVER_SOURCE__PAGE_SIZE": "many"}
    code, out, err = await run_cli("--config", str(cfg), "config", "show", env=env)
    assert code == 2 and out == ""
    assert "source.page_size" in err and "whole number" in err
