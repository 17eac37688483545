"""Config: the example loads, overrides apply, and every mistake names its key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.cli import main
from archiver.config import Config, load_config, parse_duration, parse_size
from archiver.errors import ConfigError
from tests.support.config import write_config

EXAMPLE = Path(__file__).parent.parent / "config" / "archiver.example.toml"


def test_example_config_loads_with_a_token_and_documents_every_key() -> None:
    cfg = load_config(EXAMPLE, environ={"ARCHIVER_SOURCE__AUTH_TOKEN": "secret"})
    assert cfg.source.lookback == timedelta(minutes=15)
    assert cfg.source.poll_interval == timedelta(seconds=60)
    assert cfg.archive.multipart_threshold == 64 * 2**20
    text = EXAMPLE.read_text()
    import dataclasses

    from archiver.config import SECTIONS

    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for f in dataclasses.fields(cls):
            assert f"\n{f.name} = " in text, f"{section}.{f.name} is not documented"


def test_environment_overrides_and_types(tmp_path: Path) -> None:
    cfg = load_config(
        write_config(tmp_path),
        environ={
            "ARCHIVER_SOURCE__PAGE_SIZE": "250",
            "ARCHIVER_SOURCE__LOOKBACK": "2h",
            "ARCHIVER_ARCHIVE__LEGAL_HOLD": "true",
            "ARCHIVER_CONFIG": "ignored",
        },
    )
    assert cfg.source.page_size == 250
    assert cfg.source.lookback == timedelta(hours=2)
    assert cfg.archive.legal_hold is True


def test_secret_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    (tmp_path / "token").chmod(0o600)  # readable by everyone is refused (test_modes.py)
    path = write_config(tmp_path, auth_token=None, auth_token_file=tmp_path / "token")
    cfg = load_config(path, environ={})
    assert cfg.source.auth_token == "from-file"
    assert "from-file" not in repr(cfg)


@pytest.mark.parametrize(
    ("edit", "env", "key"),
    [
        ({"page_size": "many"}, {}, "source.page_size"),
        ({"ledger": {"paht": "x"}}, {}, "ledger.paht"),
        ({}, {"ARCHIVER_SOURCE__LOOKBACK": "soon"}, "source.lookback"),
        ({}, {"ARCHIVER_SOURCE__PAGE_SIZE": "0"}, "source.page_size"),
        ({}, {"ARCHIVER_SORCE__X": "1"}, "sorce"),
        (
            {"auth_token": None, "auth_token_file": "/nonexistent/tok"},
            {},
            "source.auth_token_file",
        ),
        ({"auth_token": None}, {}, "source.auth_token"),
        ({"base_url": "ftp://x"}, {}, "source.base_url"),
        ({"base_url": "http://cpaas.example.com/restcomm"}, {}, "source.base_url"),
        ({"archive": {"key_template": "{account_sid}/{nope}.wav"}}, {}, "archive.key_template"),
        ({"archive": {"backend": "tape"}}, {}, "archive.backend"),
        ({"archive": {"object_lock_mode": "COMPLIANCE"}}, {}, "archive.retention_days"),
    ],
)
def test_mistakes_name_the_key(
    tmp_path: Path, edit: dict[str, Any], env: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, **edit), environ=env)
    assert info.value.key == key, str(info.value)
    assert key in str(info.value)


def test_plain_http_is_for_this_machine_or_an_explicit_choice(tmp_path: Path) -> None:
    def load(base_url: str, **source: Any) -> Config:
        return load_config(write_config(tmp_path, base_url=base_url, **source), environ={})

    for host in ("127.0.0.1", "localhost", "[::1]", "127.0.0.53"):
        assert load(f"http://{host}:9/restcomm").source.base_url.startswith("http://")
    remote = "http://10.0.0.7:8080/restcomm"
    with pytest.raises(ConfigError, match="in clear text") as info:
        load(remote)
    assert info.value.key == "source.base_url"
    assert load(remote, allow_insecure_http=True).source.allow_insecure_http
    assert load("https://10.0.0.7/restcomm").source.base_url.startswith("https")


def test_durations_and_sizes() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_size("16MiB") == 16 * 2**20
    with pytest.raises(ConfigError):
        parse_duration("-5s")
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_cli_bad_config_exits_2_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, bogus={})  # a section archiver does not know
    assert main(["--config", str(cfg), "sync"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err
    assert not (tmp_path / "l.sqlite3").exists() and not (tmp_path / "archive").exists()
    assert main(["--config", str(tmp_path / "missing.toml"), "sync"]) == 2


def test_s3_sizes_combine_as_aws_cli_lets_them(tmp_path: Path) -> None:
    """A threshold below the part size is accepted; a part below S3's 5 MiB is not."""
    s3 = {"backend": "s3", "bucket": "b", "path": None}
    cfg = load_config(
        write_config(tmp_path, archive={**s3, "multipart_threshold": "5MiB"}), environ={}
    )
    assert (cfg.archive.multipart_threshold, cfg.archive.part_size) == (5 * 2**20, 16 * 2**20)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, archive={**s3, "part_size": "1MiB"}), environ={})
    assert info.value.key == "archive.part_size"
