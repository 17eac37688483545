"""Configuration: defaults in one place, TOML, environment overrides, secret files, validation.

Every key lives in one of the section dataclasses below, with its default. Loading order:
TOML file, then ``ARCHIVER_<SECTION>__<KEY>`` environment variables, then ``*_file`` secrets.
Every mistake raises :class:`ConfigError` naming the key and the fix; nothing is touched before
the whole config is valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import stat
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from archiver.errors import ConfigError
from archiver.modes import parse_mode

ENV_PREFIX = "ARCHIVER_"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
}
PLATFORMS = ("restcomm", "twilio", "signalwire")
ACCOUNT_SID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{1,63}$")  # SignalWire: a UUID


def parse_duration(value: str | int | float, key: str = "duration") -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``250ms``; a bare number is seconds."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration like '90s', '15m', '2h', '7d', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(
                key, f"expected a duration like '90s', '15m', '2h', '7d', got {value!r}"
            )
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    if seconds < 0:
        raise ConfigError(key, f"a duration cannot be negative, got {value!r}")
    return timedelta(seconds=seconds)


def parse_size(value: str | int, key: str = "size") -> int:
    """``64MiB``, ``16MiB``, ``500KB``; a bare number is bytes."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a size like '64MiB', got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ConfigError(key, f"expected a size like '64MiB' or '500KB', got {value!r}")
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"]
    if n < 0:
        raise ConfigError(key, f"a size cannot be negative, got {value!r}")
    return n


def parse_timestamp(value: str | datetime, key: str = "time") -> datetime:
    """An ISO-8601 instant; a date alone means midnight UTC; no offset means UTC."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                key, f"expected an ISO-8601 time like '2020-01-01T00:00:00Z', got {value!r}"
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_listen(value: str) -> tuple[str, int] | None:
    """``host:port`` (``[::1]:9108`` for IPv6); empty disables the endpoint."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ConfigError(
            "server.listen", f"expected 'host:port' like '127.0.0.1:9108', got {value!r}"
        )
    return host.strip("[]"), int(port)


def parse_timezone(value: str, key: str) -> tzinfo | None:
    """``""`` (learn from the server), ``+09:00``, ``UTC`` or an IANA name like ``Asia/Tokyo``."""
    text = value.strip()
    if not text:
        return None
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            key, f"unknown time zone {value!r}: use '+09:00', 'UTC' or an IANA name"
        ) from None


@dataclass(frozen=True)
class SourceConfig:
    platform: str = "restcomm"  # or "twilio", "signalwire" (Twilio's API under another root)
    base_url: str = ""
    account_sid: str = ""
    auth_token: str = field(default="", repr=False)
    auth_token_file: str = ""
    page_size: int = 100
    start_time: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    lookback: timedelta = timedelta(minutes=15)
    poll_interval: timedelta = timedelta(seconds=60)
    concurrency: int = 4
    # processes that copy recordings (download, store, read back); this one lists and commits
    workers: int = 1
    server_timezone: str = ""
    request_timeout: timedelta = timedelta(seconds=60)
    max_attempts: int = 10
    media_grace: timedelta = timedelta(hours=1)
    max_requests_per_second: float = 0.0
    reconcile_interval: timedelta = timedelta(hours=24)
    reconcile_window: timedelta = timedelta(days=7)
    # which accounts to archive with these credentials: `accounts` names them (default: the
    # account_sid alone); `subaccounts` adds every active sub-account of account_sid,
    # discovered again every `accounts_refresh`
    accounts: tuple[str, ...] = ()
    subaccounts: bool = False
    accounts_refresh: timedelta = timedelta(hours=1)
    # Basic auth over plain http:// to a host that is not this machine sends the token in clear
    allow_insecure_http: bool = False


@dataclass(frozen=True)
class ArchiveConfig:
    backend: str = "local"
    path: str = "/var/lib/archiver/recordings"
    key_template: str = "{account_sid}/{date_created:%Y/%m/%d}/{sid}.{ext}"
    # s3 backend
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"
    addressing_style: str = "auto"
    storage_class: str = "STANDARD"
    sse: str = ""
    kms_key_id: str = ""
    object_lock_mode: str = ""
    retention_days: int = 0
    legal_hold: bool = False
    multipart_threshold: int = 64 * 2**20
    part_size: int = 16 * 2**20
    # s3 bodies above multipart_threshold are spooled here before upload ("" = system temp dir)
    spool_dir: str = ""
    # s3: new objects go up with If-None-Match: * when the store honours it (the first put probes)
    conditional_put: bool = True
    # s3: "auto" skips the HeadObject after a PutObject the store checked against our SHA-256
    # (probed: the store refuses a wrong checksum); "always" sends it after every put
    verify_after_put: str = "auto"
    # s3: connections kept open to the store; 0 = 2 x source.concurrency (at least 10), filled in
    # by load_config
    max_pool_connections: int = 0
    # local: modes of what the archive creates, whatever the umask (octal strings)
    file_mode: str = "0600"
    dir_mode: str = "0700"


@dataclass(frozen=True)
class LedgerConfig:
    path: str = "/var/lib/archiver/ledger.sqlite3"


@dataclass(frozen=True)
class DeleteConfig:
    enabled: bool = False
    min_age: timedelta = timedelta(hours=24)
    max_per_pass: int = 500
    dry_run: bool = False


@dataclass(frozen=True)
class AuditConfig:
    journal: str = ""  # "" means next to the ledger: <ledger.path>.audit.jsonl
    manifests: bool = True


@dataclass(frozen=True)
class DaemonConfig:
    drain_timeout: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:9108"
    stall_timeout: timedelta = timedelta(minutes=15)
    ready_failure_grace: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"


def journal_path(cfg: Config) -> str:
    return cfg.audit.journal or f"{cfg.ledger.path}.audit.jsonl"


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    delete: DeleteConfig = field(default_factory=DeleteConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    log: LogConfig = field(default_factory=LogConfig)


SECTIONS: dict[str, type[Any]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Config)
}
_SECRET_FILES = {("source", "auth_token_file"): "auth_token"}
_DURATION_KEYS = {
    "lookback",
    "min_age",
    "reconcile_interval",
    "reconcile_window",
    "stall_timeout",
    "ready_failure_grace",
    "poll_interval",
    "request_timeout",
    "media_grace",
    "drain_timeout",
    "max_backoff",
    "accounts_refresh",
}
_SIZE_KEYS = {"multipart_threshold", "part_size"}


def _convert(section: str, key: str, default: Any, value: Any, from_env: bool) -> Any:
    name = f"{section}.{key}"
    if key in _DURATION_KEYS:
        return parse_duration(value, name)
    if key in _SIZE_KEYS:
        return parse_size(value, name)
    if isinstance(default, datetime):
        return parse_timestamp(value, name)
    if isinstance(default, tuple):
        return _string_list(name, value, from_env)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if from_env and str(value).lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return str(value).lower() in {"1", "true", "yes", "on"}
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and re.fullmatch(r"-?\d+", str(value).strip()):
            return int(str(value).strip())
        raise ConfigError(name, f"expected a whole number, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(str(value))
            except ValueError:
                pass
        raise ConfigError(name, f"expected a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ConfigError(name, f"expected a string (in quotes), got {value!r}")
    raise AssertionError(f"no converter for {name}")  # pragma: no cover - a programming error


def _string_list(name: str, value: Any, from_env: bool) -> tuple[str, ...]:
    """A TOML array of strings; from the environment, a comma-separated list."""
    if from_env and isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(name, f'expected a list of strings like ["AC…", "AC…"], got {value!r}')
    return tuple(value)


def _unknown(kind: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
    return ConfigError(name, f"unknown {kind}; {hint}")


def environ_overrides(env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """The ``ARCHIVER_<SECTION>__<KEY>`` variables in ``env``: (section, key) -> the name."""
    found: dict[tuple[str, str], str] = {}
    for name in env:
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "ARCHIVER_CONFIG":
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in SECTIONS:
            raise _unknown("section in environment variable " + name, section, list(SECTIONS))
        found[(section, key)] = name
    return found


# keys whose value is never shown (config show) or logged; any *_file secret's target is one
_SECRET_NAME = re.compile(r"token|secret|password|access_key", re.IGNORECASE)


def is_secret(section: str, key: str) -> bool:
    if (section, key) in {(sec, target) for (sec, _), target in _SECRET_FILES.items()}:
        return True
    return bool(_SECRET_NAME.search(key)) and not key.endswith("_file")


def secret_file_of(section: str, key: str) -> str | None:
    """The ``*_file`` key that may hold ``section.key``'s value, if there is one."""
    return next((f for (sec, f), t in _SECRET_FILES.items() if (sec, t) == (section, key)), None)


def format_duration(value: timedelta) -> str:
    """The shortest spelling :func:`parse_duration` reads back: ``15m``, ``90s``, ``250ms``."""
    ms = round(value / timedelta(milliseconds=1))
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


PlainValue = str | int | float | bool | list[str]


def plain_values(cfg: Config) -> dict[str, dict[str, PlainValue]]:
    """``cfg`` as plain values, section by section, in the spelling its config file takes
    (durations ``15m``, times ISO-8601); secrets as they are: mask before showing."""
    out: dict[str, dict[str, PlainValue]] = {}
    for section in SECTIONS:
        body = getattr(cfg, section)
        values: dict[str, PlainValue] = {}
        for f in dataclasses.fields(body):
            value = getattr(body, f.name)
            if isinstance(value, timedelta):
                value = format_duration(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            values[f.name] = value
        out[section] = values
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Load, override and validate. ``path=None`` starts from the defaults only."""
    env = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("--config", f"file {str(p)!r} does not exist") from None
        except PermissionError:
            raise ConfigError("--config", f"file {str(p)!r} is not readable") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{p} is not valid TOML: {exc}") from None
        for section, body in data.items():
            if section not in SECTIONS:
                raise _unknown("section", section, list(SECTIONS))
            if not isinstance(body, dict):
                raise ConfigError(section, "expected a [section] table")
            raw[section] = dict(body)
    for section, body in (overrides or {}).items():
        raw.setdefault(section, {}).update(body)

    env_values = {where: env[name] for where, name in environ_overrides(env).items()}

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        defaults = cls()
        known = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.get(section, {}).items():
            if key not in known:
                raise _unknown("key", f"{section}.{key}", list(known))
            values[key] = _convert(section, key, known[key], value, from_env=False)
        for (sec, key), value in env_values.items():
            if sec != section:
                continue
            if key not in known:
                raise _unknown(
                    f"key (from {ENV_PREFIX}{sec.upper()}__{key.upper()})",
                    f"{sec}.{key}",
                    list(known),
                )
            values[key] = _convert(section, key, known[key], value, from_env=True)
        for (sec, file_key), target in _SECRET_FILES.items():
            if sec != section or not values.get(file_key):
                continue
            secret_path = os.path.expandvars(values[file_key])
            try:
                secret = Path(secret_path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"{sec}.{file_key}",
                    f"cannot read secret file {secret_path!r} ({exc.strerror}); "
                    f"fix the path or set {sec}.{target} instead",
                ) from None
            if values.get(target):
                raise ConfigError(
                    f"{sec}.{file_key}", f"set either {target} or {file_key}, not both"
                )
            mode = os.stat(secret_path).st_mode
            if mode & 0o004:  # world-readable: refused (a group is a deliberate choice)
                raise ConfigError(
                    f"{sec}.{file_key}",
                    f"secret file {secret_path!r} is readable by everyone "
                    f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {secret_path}",
                )
            values[target] = secret
        built[section] = cls(**values)
    cfg = Config(**built)
    validate(cfg)
    return _derived(cfg)


DEFAULT_MIN_POOL_CONNECTIONS = 10  # botocore's own default


def _derived(cfg: Config) -> Config:
    """Fill in the values whose default depends on another section."""
    if cfg.archive.max_pool_connections:
        return cfg
    # at most 2 x concurrency transfers are in flight, one request each at a time
    pool = max(DEFAULT_MIN_POOL_CONNECTIONS, 2 * cfg.source.concurrency)
    archive = dataclasses.replace(cfg.archive, max_pool_connections=pool)
    return dataclasses.replace(cfg, archive=archive)


def _template_fields(template: str) -> set[str]:
    return {
        name.split(".")[0].split("[")[0]
        for _, name, _, _ in string.Formatter().parse(template)
        if name is not None
    }


KEY_FIELDS = {"account_sid", "sid", "call_sid", "date_created", "ext"}


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(cfg: Config) -> None:
    """Raise ConfigError for the first wrong value, naming the key and the fix."""
    _validate_base_url(cfg.source)
    _validate_source(cfg.source)
    _validate_archive(cfg.archive)
    _validate_modes(cfg.archive)
    parse_listen(cfg.server.listen)
    if cfg.delete.max_per_pass < 0:
        raise ConfigError("delete.max_per_pass", "must be 0 or more")

    if not cfg.ledger.path:
        raise ConfigError("ledger.path", "is required, e.g. '/var/lib/archiver/ledger.sqlite3'")
    if cfg.log.level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError("log.level", "must be 'debug', 'info', 'warning' or 'error'")
    if cfg.log.format not in {"auto", "json", "console"}:
        raise ConfigError("log.format", "must be 'auto', 'json' or 'console'")


def _validate_base_url(s: SourceConfig) -> None:
    if s.platform not in PLATFORMS:
        raise ConfigError(
            "source.platform", f"must be one of {', '.join(PLATFORMS)}, got {s.platform!r}"
        )
    parts = urlsplit(s.base_url)
    if not s.base_url:
        raise ConfigError(
            "source.base_url", "is required, e.g. 'https://cpaas.example.com/restcomm'"
        )
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(
            "source.base_url",
            f"expected an http(s) URL like 'https://host/restcomm', got {s.base_url!r}",
        )
    version = "2012-04-24" if s.platform == "restcomm" else "2010-04-01"
    if version in parts.path:
        raise ConfigError("source.base_url", f"give everything before /{version}, not the API path")
    if parts.username or parts.password:
        raise ConfigError("source.base_url", "must not carry credentials; use source.auth_token")
    if parts.scheme == "http" and not _loopback(parts.hostname or "") and not s.allow_insecure_http:
        raise ConfigError(
            "source.base_url",
            f"is plain http:// to {parts.hostname}, which would send the auth token in clear "
            "text: use https://, or set source.allow_insecure_http = true for a network you "
            "trust (a sidecar next to the platform)",
        )


def _validate_source(s: SourceConfig) -> None:
    if not ACCOUNT_SID.match(s.account_sid):
        raise ConfigError(
            "source.account_sid", "is required: the account SID, e.g. 'AC…' (letters and digits)"
        )
    if not s.auth_token:
        raise ConfigError(
            "source.auth_token",
            "is required: set auth_token, auth_token_file or ARCHIVER_SOURCE__AUTH_TOKEN",
        )
    if not 1 <= s.page_size <= 1000:
        raise ConfigError("source.page_size", f"must be between 1 and 1000, got {s.page_size}")
    if not 1 <= s.concurrency <= 256:
        raise ConfigError("source.concurrency", f"must be between 1 and 256, got {s.concurrency}")
    if not 1 <= s.workers <= 64:
        raise ConfigError("source.workers", f"must be between 1 and 64, got {s.workers}")
    if s.workers > s.concurrency:
        raise ConfigError(
            "source.workers",
            f"must be at most source.concurrency ({s.concurrency}): each worker process "
            f"holds at least one of its downloads, got {s.workers}",
        )
    if s.poll_interval <= timedelta(0):
        raise ConfigError("source.poll_interval", "must be more than 0s")
    if s.request_timeout <= timedelta(0):
        raise ConfigError("source.request_timeout", "must be more than 0s")
    if s.max_attempts < 1:
        raise ConfigError("source.max_attempts", "must be at least 1")
    if s.max_requests_per_second < 0:
        raise ConfigError("source.max_requests_per_second", "must be 0 (no cap) or more")
    parse_timezone(s.server_timezone, "source.server_timezone")
    _validate_accounts(s)


MAX_ACCOUNTS = 10_000


def _validate_accounts(s: SourceConfig) -> None:
    seen: set[str] = set()
    for i, sid in enumerate(s.accounts):
        if not ACCOUNT_SID.match(sid):
            raise ConfigError(
                f"source.accounts[{i}]", f"is not an account SID (letters, digits, '-'): {sid!r}"
            )
        if sid in seen:
            raise ConfigError(f"source.accounts[{i}]", f"names {sid} twice")
        seen.add(sid)
    if len(s.accounts) > MAX_ACCOUNTS:
        raise ConfigError("source.accounts", f"names more than {MAX_ACCOUNTS} accounts")
    if s.accounts_refresh < timedelta(minutes=1):
        raise ConfigError("source.accounts_refresh", "must be at least 1m")


def _validate_key_template(a: ArchiveConfig) -> None:
    try:
        names = _template_fields(a.key_template)
    except ValueError as exc:
        raise ConfigError("archive.key_template", f"is not a valid template: {exc}") from None
    unknown = names - KEY_FIELDS
    if unknown:
        raise ConfigError(
            "archive.key_template",
            f"unknown field {sorted(unknown)[0]!r}; use {', '.join(sorted(KEY_FIELDS))}",
        )
    if "sid" not in names:
        raise ConfigError("archive.key_template", "must contain {sid} so every key is unique")
    if a.key_template.startswith("/") or ".." in a.key_template.split("/"):
        raise ConfigError("archive.key_template", "must be a relative path without '..'")


def _validate_archive(a: ArchiveConfig) -> None:
    if a.backend not in {"local", "s3"}:
        raise ConfigError("archive.backend", f"must be 'local' or 's3', got {a.backend!r}")
    _validate_key_template(a)
    if a.backend == "local" and not a.path:
        raise ConfigError("archive.path", "is required for backend 'local'")
    if a.backend == "s3" and not a.bucket:
        raise ConfigError("archive.bucket", "is required for backend 's3'")
    if a.addressing_style not in {"auto", "path", "virtual"}:
        raise ConfigError("archive.addressing_style", "must be 'auto', 'path' or 'virtual'")
    if a.sse not in {"", "AES256", "aws:kms"}:
        raise ConfigError("archive.sse", "must be '', 'AES256' or 'aws:kms'")
    if a.kms_key_id and a.sse != "aws:kms":
        raise ConfigError("archive.kms_key_id", "only applies with sse = 'aws:kms'")
    if a.object_lock_mode not in {"", "GOVERNANCE", "COMPLIANCE"}:
        raise ConfigError("archive.object_lock_mode", "must be '', 'GOVERNANCE' or 'COMPLIANCE'")
    if a.object_lock_mode and a.retention_days <= 0:
        raise ConfigError("archive.retention_days", "must be more than 0 with object_lock_mode set")
    if a.verify_after_put not in {"auto", "always"}:
        raise ConfigError(
            "archive.verify_after_put",
            f"must be 'auto' (no HeadObject where the store checks our checksum) or 'always', "
            f"got {a.verify_after_put!r}",
        )
    if not 0 <= a.max_pool_connections <= 1024:
        raise ConfigError(
            "archive.max_pool_connections",
            f"must be between 1 and 1024, or 0 for 2 x source.concurrency; got "
            f"{a.max_pool_connections}",
        )
    if a.part_size < 5 * 2**20:
        raise ConfigError("archive.part_size", "must be at least 5MiB (the S3 minimum)")
    if a.multipart_threshold < 0:
        raise ConfigError("archive.multipart_threshold", "must be 0 or more")
    # a threshold below part_size is fine, as aws-cli and boto3 allow: a body between the
    # two goes up as a multipart upload of one part of its own size


def _validate_modes(a: ArchiveConfig) -> None:
    for key, text, needs, never in (
        ("archive.file_mode", a.file_mode, 0o600, 0o7113),
        ("archive.dir_mode", a.dir_mode, 0o700, 0o7002),
    ):
        try:
            mode = parse_mode(text)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if mode & needs != needs or mode & never:
            raise ConfigError(
                key,
                f"{text!r} must give the owner {'rw' if needs == 0o600 else 'rwx'} and never "
                f"{'execute or ' if needs == 0o600 else ''}write to others, e.g. "
                f"'{needs:04o}' (private) or '{needs | (needs >> 3) & 0o050:04o}' (group read)",
            )


def secret_file_warnings(cfg: Config) -> list[str]:
    """Secret files readable by their group (accepted: a group, as Kubernetes' fsGroup gives,
    is a deliberate choice; readable by everyone is refused by :func:`load_config`)."""
    found: list[str] = []
    if cfg.source.auth_token_file:
        path = os.path.expandvars(cfg.source.auth_token_file)
        try:
            if os.stat(path).st_mode & 0o040:
                found.append(path)
        except OSError:
            pass  # read a moment ago; gone now is for the next load to say
    return found
