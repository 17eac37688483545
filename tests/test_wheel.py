"""The distribution: a wheel built from this tree installs and runs the main job (the demo,
with the bundled simulator) from a fresh virtual environment, outside the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCES = (
    ".git",
    ".venv",
    "build",
    "*.egg-info",
    "__pycache__",
    "*_cache",
    ".hypothesis",
    "demo-*",
)


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_installs_and_runs_the_demo_from_a_fresh_venv(tmp_path: Path) -> None:
    # built from a copy: a build/ folder left in the tree could carry stale modules
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    wheels = tmp_path / "wheels"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        wheels,
        src,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("archiver-*.whl")
    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    # the dependencies come from the test environment's site-packages (a path only: its own
    # editable install of this tree is a .pth there, which a plain path entry never runs)
    deps = sysconfig.get_paths()["purelib"]
    site = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    ).strip()
    Path(site, "test-deps.pth").write_text(deps + "\n")
    env = {"PATH": f"{fresh / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    where = run(
        python,
        "-c",
        "import archiver.simulator; print(archiver.simulator.__file__)",
        cwd=tmp_path,
        env=env,
    )
    assert where.startswith(str(fresh)), where  # the installed wheel, not this tree
    assert run(fresh / "bin" / "archiver", "--version", cwd=tmp_path, env=env).startswith(
        "archiver "
    )
    out = run(
        fresh / "bin" / "archiver",
        "demo",
        "--recordings",
        "20",
        "--out",
        "demo",
        cwd=tmp_path,
        env=env,
    )
    assert "archived 20, verified 20, failed 0" in out, out
    assert (
        len(list((tmp_path / "demo").rglob("*.wav")))
        + len(list((tmp_path / "demo").rglob("*.mp4")))
        == 20
    )
