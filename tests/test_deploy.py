"""What operators rely on in the deployment files: the systemd unit, the Dockerfile and the
Kubernetes example. Fast, no network; scripts/check-deploy runs the real linters on them."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from archiver.cli import EXIT_CONFIG
from archiver.config import DaemonConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "archiver.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "config" / "kubernetes-sidecar.yaml"
EXAMPLE = ROOT / "config" / "archiver.example.toml"
DEFAULT_DRAIN = DaemonConfig().drain_timeout.total_seconds()


def under(path: str, folder: str) -> bool:
    return PurePosixPath(folder) in PurePosixPath(path).parents


# --- systemd ------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    """``Key`` -> every value it is given in [Service] and [Unit] (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {line!r}"
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key)
    assert values, f"{UNIT.name}: {key}= is not set"
    return values[-1]


def systemd_seconds(value: str) -> float:
    """The forms this unit uses: ``90``, ``90s``, ``2min``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def test_unit_is_type_notify_with_a_watchdog() -> None:
    s = unit_settings()
    assert one(s, "Type") == "notify"
    assert one(s, "NotifyAccess") == "main"
    assert systemd_seconds(one(s, "WatchdogSec")) >= 60


def test_unit_runs_the_daemon_and_does_not_loop_on_bad_config() -> None:
    s = unit_settings()
    assert shlex.split(one(s, "ExecStart")) == [
        "/opt/archiver/bin/archiver",
        "--config",
        "/etc/archiver/archiver.toml",
        "run",
    ]
    assert one(s, "Restart") == "on-failure"
    assert systemd_seconds(one(s, "RestartSec")) >= 1
    assert str(EXIT_CONFIG) in one(s, "RestartPreventExitStatus").split()


def test_unit_reload_sends_sighup_which_the_daemon_takes_as_reload() -> None:
    # the daemon installs a SIGHUP handler that re-reads secrets (tests/test_cli.py checks it)
    assert shlex.split(one(unit_settings(), "ExecReload")) == ["/bin/kill", "-HUP", "$MAINPID"]


def test_unit_stop_timeout_outlasts_the_drain() -> None:
    s = unit_settings()
    assert one(s, "KillSignal") == "SIGTERM"
    # the first SIGTERM drains for drain_timeout; SIGKILL must not come before it ends
    assert systemd_seconds(one(s, "TimeoutStopSec")) > DEFAULT_DRAIN + 30


def test_unit_state_and_credentials() -> None:
    s = unit_settings()
    assert one(s, "DynamicUser") == "yes"
    assert one(s, "StateDirectory") == "archiver"
    # the example config's defaults must land in the StateDirectory
    defaults = load_config(EXAMPLE, environ={}, overrides={"source": {"auth_token": "t0ken"}})
    assert under(defaults.ledger.path, "/var/lib/archiver")
    assert under(defaults.archive.path, "/var/lib/archiver")
    name, _, source = one(s, "LoadCredential").partition(":")
    assert (name, source) == ("auth_token", "/etc/archiver/auth_token")
    assert "${CREDENTIALS_DIRECTORY}/auth_token" in UNIT.read_text(encoding="utf-8")


def test_the_credential_line_documented_in_the_unit_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "auth_token").write_text("s3cret-token\n", encoding="utf-8")
    (tmp_path / "auth_token").chmod(0o400)  # as LoadCredential= leaves it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))  # as systemd sets it
    cfg = load_config(
        EXAMPLE,
        environ={},
        overrides={"source": {"auth_token_file": "${CREDENTIALS_DIRECTORY}/auth_token"}},
    )
    assert cfg.source.auth_token == "s3cret-token"


def test_unit_is_hardened() -> None:
    s = unit_settings()
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0077",
    }
    assert {k: one(s, k) for k in expected} == expected
    assert set(one(s, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "IPAddressDeny" not in s  # it must reach the platform and the archive


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def only(instructions: list[tuple[str, str]], word: str) -> str:
    found = [args for w, args in instructions if w == word]
    assert len(found) == 1, f"expected one {word} in the final stage, got {found}"
    return found[0]


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python() -> None:
    instructions = dockerfile_instructions()
    assert sum(word == "FROM" for word, _ in instructions) >= 2
    image = dict(
        re.findall(r"^(\w+)=(\S+)", "\n".join(a for w, a in instructions if w == "ARG"), re.M)
    )
    bases = [a.split()[0] for w, a in instructions if w == "FROM"]
    for base in bases:
        base = re.sub(r"\$\{(\w+)\}", lambda m: image[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    user = only(final_stage(), "USER")
    uid = user.partition(":")[0]
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric non-root uid (runAsNonRoot)"


def test_dockerfile_entrypoint_and_cmd_are_exec_form() -> None:
    stage = final_stage()
    assert json.loads(only(stage, "ENTRYPOINT")) == ["archiver"]
    assert json.loads(only(stage, "CMD")) == ["--config", "/etc/archiver/archiver.toml", "run"]
    assert only(stage, "STOPSIGNAL") == "SIGTERM"
    assert only(stage, "VOLUME") == "/var/lib/archiver"
    assert "PYTHONUNBUFFERED=1" in only(stage, "ENV").split()


def test_dockerfile_healthcheck_probes_healthz_with_python() -> None:
    healthcheck = only(final_stage(), "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :])
    assert command[:2] == ["python", "-c"]  # slim has no curl
    assert "http://127.0.0.1:9108/healthz" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")


def test_dockerignore_keeps_the_context_to_the_build_inputs() -> None:
    rules = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*"  # everything out (.venv, .git, caches, demo-output, tests) ...
    included = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "archiver"}  # ... but what is built
    copied = set()
    for word, args in dockerfile_instructions():
        if word == "COPY" and "--from" not in args:
            copied.update(p.rstrip("/") for p in args.split()[:-1])
    assert copied <= included, f"COPY needs {copied - included} in the build context"


# --- Kubernetes ---------------------------------------------------------------------------


def k8s_docs() -> dict[str, Any]:
    with K8S.open(encoding="utf-8") as fh:
        return {d["kind"]: d for d in yaml.safe_load_all(fh) if d}


def archiver_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["containers"] if c["name"] == "archiver"]
    return container


def k8s_archiver_toml() -> dict[str, Any]:
    return tomllib.loads(k8s_docs()["ConfigMap"]["data"]["archiver.toml"])


def test_k8s_probes_point_at_the_health_endpoints() -> None:
    pod = k8s_docs()["Deployment"]["spec"]["template"]["spec"]
    c = archiver_container(pod)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9108}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9108}
    # the kubelet probes the Pod IP: the server must not listen on 127.0.0.1 only
    assert k8s_archiver_toml()["server"]["listen"] == "0.0.0.0:9108"


def test_k8s_token_comes_from_a_secret_file() -> None:
    docs = k8s_docs()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    source = k8s_archiver_toml()["source"]
    assert "auth_token" not in source
    assert "Secret" not in docs  # applying a placeholder Secret would overwrite the real token
    token_path = PurePosixPath(source["auth_token_file"])
    mounts = {m["name"]: m for m in archiver_container(pod)["volumeMounts"]}
    for volume in pod["volumes"]:
        if "secret" in volume and volume["name"] in mounts:
            item_paths = {i["path"] for i in volume["secret"].get("items", [])}
            mount = PurePosixPath(mounts[volume["name"]]["mountPath"])
            if token_path.parent == mount and token_path.name in item_paths:
                assert volume["secret"]["secretName"] == "archiver-restcomm"
                assert mounts[volume["name"]]["readOnly"] is True
                return
    pytest.fail(f"auth_token_file {token_path} is not a file of a mounted Secret")


def test_k8s_config_loads_and_keeps_state_on_the_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = k8s_docs()
    config = tmp_path / "archiver.toml"
    config.write_text(docs["ConfigMap"]["data"]["archiver.toml"], encoding="utf-8")
    token = tmp_path / "auth_token"
    token.write_text("t0ken", encoding="utf-8")
    # the Secret volume's defaultMode: group-readable (fsGroup) is accepted, with a warning
    pod_spec = docs["Deployment"]["spec"]["template"]["spec"]
    [secret] = [v["secret"] for v in pod_spec["volumes"] if "secret" in v]
    token.chmod(secret["defaultMode"])
    # every key is known and valid (the token file's real path exists only in the Pod)
    cfg = load_config(config, environ={"ARCHIVER_SOURCE__AUTH_TOKEN_FILE": str(token)})

    pod = docs["Deployment"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in archiver_container(pod)["volumeMounts"]}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims[mounts["/var/lib/archiver"]] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert under(cfg.ledger.path, "/var/lib/archiver")
    assert under(cfg.archive.path, "/var/lib/archiver")
    assert pod["terminationGracePeriodSeconds"] > cfg.daemon.drain_timeout.total_seconds() + 30
    # one ledger, one writer: the old Pod must be gone before the new one opens the ledger
    assert docs["Deployment"]["spec"]["replicas"] == 1
    assert docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"


def test_k8s_archiver_container_is_locked_down() -> None:
    pod = k8s_docs()["Deployment"]["spec"]["template"]["spec"]
    c = archiver_container(pod)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert str(sc["runAsUser"]) == only(final_stage(), "USER").partition(":")[0]
    assert c["resources"]["limits"]["memory"] == "256Mi"
    assert "memory" in c["resources"]["requests"]
    # read-only root: the temp folder (S3 spooling) needs a writable volume
    assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_the_units_install_steps_put_archiver_where_it_starts_it() -> None:
    """The header's venv is the one ExecStart runs (the system Python is externally managed
    on current Debian and Ubuntu: pip install outside a venv is refused)."""
    header = UNIT.read_text().split("[Unit]", 1)[0]
    venv_line = next(line for line in header.splitlines() if "-m venv" in line)
    venv = venv_line.split("-m venv", 1)[1].split()[0]
    assert f"{venv}/bin/pip install" in header
    assert shlex.split(one(unit_settings(), "ExecStart"))[0] == f"{venv}/bin/archiver"
