"""archiver demo: the bundled simulator archived into a local folder."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from archiver import logs
from archiver.cli.passes import cmd_sync
from archiver.config import (
    load_config,
)
from archiver.lock import WriterLock

log = structlog.get_logger("archiver.cli")


def _simulator(platform: str, recordings: int, now: datetime, subaccounts: int = 0) -> Any:
    """The bundled simulator of ``platform``, with ``recordings`` over the last three hours
    (in each of ``subaccounts`` sub-accounts too)."""
    from archiver.simulator import RestcommSimulator, SignalWireSimulator, TwilioSimulator

    spacing = timedelta(seconds=max(3 * 10_800 // max(recordings, 1), 1))
    start = now - timedelta(hours=3)
    if platform == "restcomm":
        restcomm = RestcommSimulator()
        for owner in _owners(restcomm, subaccounts):
            restcomm.generate(
                recordings,
                start=start,
                spacing=spacing,
                same_second_every=3,  # same-second groups straddle page boundaries, as in life
                ext_mp4_every=25,
                account_sid=owner,
            )
        return restcomm
    twilio = TwilioSimulator() if platform == "twilio" else SignalWireSimulator()
    for owner in _owners(twilio, subaccounts):
        twilio.generate(
            recordings, start=start, spacing=spacing, same_second_every=3, account_sid=owner
        )
    return twilio


def _owners(sim: Any, subaccounts: int) -> list[str | None]:
    return [None, *(sim.add_subaccount(f"customer {i + 1}").sid for i in range(subaccounts))]


async def cmd_demo(
    recordings: int, out: str, platform: str = "restcomm", subaccounts: int = 0
) -> int:
    out_dir = Path(out).resolve()
    reused = (out_dir / "ledger.sqlite3").exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)
    sim = _simulator(platform, recordings, now, subaccounts)
    async with sim:
        settings: dict[str, dict[str, Any]] = {
            "source": {
                "platform": platform,
                "base_url": sim.base_url,
                "account_sid": sim.account_sid,
                "auth_token": sim.auth_token,
                "page_size": 50,
                "start_time": (now - timedelta(days=1)).isoformat(),
                "subaccounts": subaccounts > 0,
            },
            "archive": {"backend": "local", "path": str(out_dir / "recordings")},
            "ledger": {"path": str(out_dir / "ledger.sqlite3")},
        }
        cfg = load_config(None, environ={}, overrides=settings)
        config_file = out_dir / "archiver.toml"
        config_file.write_text(_toml(settings))
        logs.register_secret(cfg.source.auth_token)
        accounts = f" and {subaccounts} sub-accounts, each" if subaccounts else ","
        print(
            f"simulator    {platform} at {sim.base_url} (account {sim.account_sid}"
            f"{accounts} {recordings} recordings)"
        )
        if reused:
            print(
                f"reusing      the ledger and archive of an earlier demo in {out_dir} "
                "(remove the folder, or pass --out, for a fresh start)"
            )
        with WriterLock(cfg.ledger.path, "demo"):
            code = await cmd_sync(cfg)
    # the command as it runs here, so it works as printed even outside an activated venv
    me = f"{shlex.quote(sys.executable)} -m archiver"
    print(f"archive      {out_dir / 'recordings'}")
    print(f"ledger       {out_dir / 'ledger.sqlite3'}")
    print(f"status       {me} status --config {shlex.quote(str(config_file))}")
    return code


def _toml(settings: dict[str, dict[str, Any]]) -> str:
    lines = ["# written by 'archiver demo' (the simulator it names is gone once demo exits)"]
    for section, values in settings.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"
