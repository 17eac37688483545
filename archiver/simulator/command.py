"""``archiver simulator`` (and ``python -m archiver.simulator``): serve the simulator of one
platform (Restcomm, Twilio or SignalWire) on loopback with recordings made up to now and
optional faults, until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from datetime import UTC, datetime, timedelta

from archiver.simulator.restcomm import RestcommSimulator
from archiver.simulator.store import SimRecording
from archiver.simulator.twilio import SignalWireSimulator, TwilioSimulator

PLATFORMS = ("restcomm", "twilio", "signalwire")
Simulator = RestcommSimulator | TwilioSimulator


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    args = _parser(prog).parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


def _parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a simulator of the Restcomm, Twilio or SignalWire Recordings API "
        "on loopback, with recordings created up to now and optional faults, to try configs "
        "and alerts before production. It prints the base_url, account_sid and auth_token to "
        "put in [source] (for SignalWire: the project ID and API token).",
        epilog="examples: archiver simulator --port 8099 --recordings 1000 --html-every 50\n"
        "          archiver simulator --platform twilio --subaccounts 3 --concurrency-limit 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--platform", choices=PLATFORMS, default="restcomm")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--recordings", type=int, default=300)
    parser.add_argument("--size", type=int, default=16_044, help="body bytes per recording")
    parser.add_argument(
        "--spacing", type=float, default=7.0, help="seconds between recordings' date_created"
    )
    parser.add_argument(
        "--same-second-every", type=int, default=1, help="recordings sharing one date_created"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every answer (a WAN)"
    )
    parser.add_argument("--account-sid", default=None, help="default: the platform's own")
    parser.add_argument("--auth-token", default="sim-token")
    parser.add_argument("--media-mode", choices=("direct", "redirect", "proxy"), default="direct")
    parser.add_argument(
        "--html-every",
        type=int,
        default=0,
        metavar="N",
        help="every Nth recording's media is an HTML error page, once (a proxy hiccup)",
    )
    parser.add_argument(
        "--fail-every",
        type=int,
        default=0,
        metavar="N",
        help="every Nth recording's media answers 503, always (failures to alert on)",
    )
    parser.add_argument(
        "--subaccounts",
        type=int,
        default=0,
        metavar="N",
        help="N active sub-accounts, each with --recordings of its own (archive them all with "
        "[source] subaccounts = true)",
    )
    parser.add_argument(
        "--concurrency-limit",
        type=int,
        default=None,
        metavar="N",
        help="twilio/signalwire: more than N requests at once for one account answer 429 "
        "(code 20429)",
    )
    return parser


def _simulator(args: argparse.Namespace) -> Simulator:
    if args.platform == "restcomm":
        if args.concurrency_limit is not None:
            raise SystemExit("--concurrency-limit is for twilio/signalwire")
        if args.account_sid is None:
            return RestcommSimulator(
                auth_token=args.auth_token, seed=args.seed, media_mode=args.media_mode
            )
        return RestcommSimulator(
            args.account_sid, args.auth_token, seed=args.seed, media_mode=args.media_mode
        )
    kind = TwilioSimulator if args.platform == "twilio" else SignalWireSimulator
    return kind(
        args.account_sid,
        args.auth_token,
        seed=args.seed,
        media_mode=args.media_mode,
        concurrency_limit=args.concurrency_limit,
    )


async def _serve_forever(args: argparse.Namespace) -> None:
    sim = _simulator(args)
    sim.latency = args.latency
    spacing = timedelta(seconds=args.spacing)
    groups = math.ceil(args.recordings / max(args.same_second_every, 1))
    start = datetime.now(UTC).replace(microsecond=0) - spacing * groups
    owners: list[str | None] = [None]
    owners += [sim.add_subaccount(f"sub-account {i}").sid for i in range(args.subaccounts)]
    for owner in owners:
        recs = sim.generate(
            args.recordings,
            start=start,
            spacing=spacing,
            size=args.size,
            same_second_every=args.same_second_every,
            account_sid=owner,
        )
        _inject_media_faults(sim, recs, args.fail_every, args.html_every)
    base_url = await sim.start(args.host, args.port)
    print(f"platform:     {args.platform}", flush=True)
    print(f"base_url:     {base_url}", flush=True)
    print(f"account_sid:  {sim.account_sid}", flush=True)
    print(f"auth_token:   {sim.auth_token}", flush=True)
    print(f"recordings:   {len(sim.recordings)}", flush=True)
    print(f"storage:      {sim.storage_origin}", flush=True)
    for account in sim.store.accounts.values():
        if account.owner_sid is not None:
            print(f"subaccount:   {account.sid} ({account.auth_token})", flush=True)
    print(f"oldest:       {start.isoformat()}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def _inject_media_faults(
    sim: Simulator, recs: list[SimRecording], fail_every: int, html_every: int
) -> None:
    """Every ``fail_every``-th media answers 503 for good; every ``html_every``-th (of the
    rest) is an HTML error page once."""
    for i, rec in enumerate(recs, start=1):
        # Restcomm's media ends in .wav/.mp4; Twilio's has no extension, .wav or .mp3
        path = (
            rf"{rec.sid}\." if isinstance(sim, RestcommSimulator) else rf"/{rec.sid}(\.wav|\.mp3)?$"
        )
        if fail_every and i % fail_every == 0:
            sim.inject(path=path, status=503, times=None)
        elif html_every and i % html_every == 0:
            sim.inject(
                path=path,
                status=200,
                body=b"<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
                times=1,
            )
