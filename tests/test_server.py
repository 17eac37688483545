"""/metrics, /healthz and /readyz scraped over HTTP while the daemon works."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from archiver.config import Config
from archiver.daemon import Daemon
from archiver.metrics import REGISTRY
from archiver.server import Health, HealthServer
from archiver.simulator import RestcommSimulator
from tests.support.constants import NOW
from tests.support.harness import Harness


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_and_health_follow_the_daemon(
    sim: RestcommSimulator, config_for: Callable[..., Config]
) -> None:
    sim.generate(24, start=NOW - timedelta(hours=2), size=40_000)
    bad = sim.generate(1, start=NOW - timedelta(minutes=3))[0]
    sim.inject(
        path=rf"{bad.sid}\.wav", status=200, body=b"<html/>", times=None, content_type="text/html"
    )
    sim.inject(path=r"\.wav", delay=0.02, times=None)
    cfg = config_for(sim, poll_interval="30s")
    health = Health(stall_timeout=60, failure_grace=0.5)
    async with (
        HealthServer("127.0.0.1:0", health) as server,
        aiohttp.ClientSession() as http,
        Harness(cfg).syncer() as syncer,
    ):
        url = f"http://127.0.0.1:{server.port}"

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            async with http.get(f"{url}/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                return samples(await r.text())

        before = await scrape()
        daemon = Daemon(syncer, poll_interval=30, max_backoff=60, health=health)
        stopping = asyncio.Event()
        task = asyncio.ensure_future(daemon.run(stopping))
        saw_in_flight = 0.0
        for _ in range(300):
            m = await scrape()
            saw_in_flight = max(saw_in_flight, value(m, "archiver_in_flight_transfers"))
            if daemon.passes:
                break
            await asyncio.sleep(0.01)
        after = await scrape()
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200 and (await r.json())["alive"] is True
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert saw_in_flight >= 1
        assert delta("archiver_archived_recordings_total") == 24
        assert delta("archiver_archived_bytes_total") == 24 * 40_000
        assert delta("archiver_failures_total", reason="MediaDamaged") == 1
        assert delta("archiver_passes_total", outcome="failures") == 1
        assert delta("archiver_source_requests_total", status="200") >= 25
        assert value(after, "archiver_recordings", state="verified") == 24
        assert value(after, "archiver_recordings", state="failed") == 1
        assert value(after, "archiver_outstanding_recordings", kind="failed_waiting") == 1
        assert value(after, "archiver_outstanding_recordings", kind="untried") == 0
        assert value(after, "archiver_last_scan_complete") == 1
        assert ("archiver_recordings_needing_repair", ()) in after  # exported, refreshed
        assert value(after, "archiver_recordings_needing_repair") == 0
        newest = max(r.date_created for r in sim.recordings.values())
        assert value(after, "archiver_watermark_timestamp_seconds") == newest.timestamp()
        assert value(after, "archiver_archive_lag_seconds") > 0
        assert value(after, "archiver_pass_duration_seconds_count") >= 1
        assert syncer.journal is not None
        assert value(after, "archiver_audit_journal_bytes") == syncer.journal.path.stat().st_size

        # the source starts rejecting us: the loop lives on, readiness goes after the grace
        sim.auth_token = "rotated"
        daemon.poll_interval = 0.05
        stopping.set()
        await task
        stopping = asyncio.Event()
        task = asyncio.ensure_future(daemon.run(stopping))
        for _ in range(200):
            await asyncio.sleep(0.02)
            if daemon.consecutive_failures >= 1 and not health.ready():
                break
        async with http.get(f"{url}/readyz") as r:
            body = await r.json()
            assert r.status == 503 and "SourceAuthError" in body["last_error"]
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200
        stopping.set()
        await task


def test_stalled_loop_is_not_alive() -> None:
    now = [1000.0]
    health = Health(stall_timeout=60, failure_grace=60, clock=lambda: now[0])
    health.ledger_open = True
    health.progress()
    assert health.alive() and health.ready()
    now[0] += 61
    assert not health.alive()
    health.pass_failed("boom")
    assert health.alive() and health.ready()
    now[0] += 61
    assert not health.ready()
    health.pass_ok()
    assert health.ready()


def test_every_metric_the_documented_alerts_use_is_exported() -> None:
    # the alert rules are copied by operators as they stand: each series must exist
    doc = (Path(__file__).parent.parent / "docs" / "operating.md").read_text()
    rules = doc.split("Alert rules to start from:", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"\barchiver_[a-z_]+", rules))
    exported = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    assert len(named) >= 4 and named <= exported, named - exported
