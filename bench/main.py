"""Benchmark archiver against the transfer limit and the alternatives: ``bench/run [--quick]``.

Every contender runs as its own process on the same data in the same run, alternating, against
one Restcomm simulator process and one S3 server process, moto (lenient) or SeaweedFS (strict),
all on free 127.0.0.1 ports, stopped by PID: started with the test suite's helpers
(``tests/support``). CPU seconds and peak RSS come from ``wait4`` on the contender's process (its
children included); the servers' CPU is read from ``/proc`` around each run.

Contenders: ``archiver --config X sync`` (the real CLI); the transfer limit (``bench.bare``:
aiohttp straight to files, no hashing, no ledger, no fsync); the durable transfer limit (the same
with file, sidecar and folder fsynced in a worker thread: what the disk charges any archiver
that promises nothing is lost); the atomic limit (the same through temp files renamed into
place, as every archiver put is: what the disk charges for copies never seen half-written);
``archiver`` with ``source.workers = 2`` beside one process; ``curl`` in parallel through
``xargs -P``; the naive script (``bench.naive``: a sequential loop); for S3, ``rclone copy`` and
archiver as it was before the checksum probe (``verify_after_put = "always"``, a pool of 10), so
before and after are measured in one run. Every row gives the contender's CPU per recording.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support import s3
from tests.support.config import write_config
from tests.support.process import (
    StartFailed,
    clean_env,
    die_with_parent,
    free_port,
    opener,
    read_fields,
    start,
    stop,
    wait_until,
)
from tests.support.s3 import S3Server, creds, delete_bucket

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ARCHIVER = str(Path(PY).parent / "archiver")
MB = 1e6
KB = 1024
ACCOUNT = "ACae6e420f425248d6a26948c17a9e2acf"
TOKEN = "bench-token"
START_TIMEOUT = 30.0  # seconds the simulator may take to print its address
# archiver as before the checksum probe and the sized pool, for the comparison in one run
BEFORE = "archiver sync, HEAD after put, pool 10"
WORKERS = 2  # the `source.workers` measured beside one process
TWO = f"archiver sync, workers={WORKERS}"
ATOMIC = "bare + fsync + rename (atomic limit)"


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """One contender's run: what it moved and what it cost."""

    scenario: str
    contender: str
    files: int
    nbytes: int
    wall: float
    cpu: float
    rss_kb: int
    server_cpu: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.files / self.wall if self.wall else 0.0

    @property
    def mbps(self) -> float:
        return self.nbytes / MB / self.wall if self.wall else 0.0

    @property
    def cpu_ms(self) -> float:
        """The contender's own CPU (user + sys) per recording, in milliseconds."""
        return 1000 * self.cpu / self.files if self.files else 0.0


@dataclass
class Proc:
    wall: float
    cpu: float
    rss_kb: int
    returncode: int
    output: str


def measure(argv: list[str], *, env: dict[str, str] | None = None, log: Path) -> Proc:
    """Run ``argv`` to completion; wall time, CPU (user+sys) and peak RSS of it and its children."""
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Proc(
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        proc.returncode,
        log.read_text(errors="replace"),
    )


def proc_cpu(pid: int) -> float:
    """User+system CPU seconds of a running process (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def files_in(path: Path) -> tuple[int, int]:
    """(files, bytes) of audio under ``path`` (sidecars, temp and ledger files left out)."""
    n = size = 0
    for p in path.rglob("*"):
        if p.is_file() and p.suffix not in (".json", ".part", ".sqlite3", ".jsonl"):
            n += 1
            size += p.stat().st_size
    return n, size


# --------------------------------------------------------------------------- servers


@dataclass
class Simulator:
    proc: subprocess.Popen[bytes]
    base_url: str
    oldest: datetime
    sids: list[tuple[str, str]] = field(default_factory=list)  # (sid, ext)

    @property
    def root(self) -> str:
        return f"{self.base_url}/2012-04-24/Accounts/{ACCOUNT}"

    def media_url(self, sid: str, ext: str) -> str:
        return f"{self.root}/Recordings/{sid}.{ext}"


@contextlib.contextmanager
def simulator(n: int, size: int, work: Path, latency: float = 0.0) -> Iterator[Simulator]:
    """``python -m archiver.simulator`` in its own process, with ``n`` recordings of ``size``."""
    argv = [PY, "-m", "archiver.simulator", "--host", "127.0.0.1", "--port", str(free_port())]
    argv += ["--recordings", str(n), "--size", str(size), "--spacing", "1"]
    argv += ["--latency", str(latency)]
    argv += ["--account-sid", ACCOUNT, "--auth-token", TOKEN]
    log = work / f"simulator-{n}x{size}.log"
    proc = start(argv, log=log)
    try:
        wait_until(
            proc,
            lambda: {"base_url", "oldest"} <= read_fields(log).keys(),
            timeout=START_TIMEOUT,
            what="the simulator",
            log=log,
        )
        info = read_fields(log)
        sim = Simulator(proc, info["base_url"], datetime.fromisoformat(info["oldest"]))
        sim.sids = list_sids(sim)
        assert len(sim.sids) == n, f"the simulator lists {len(sim.sids)} of {n} recordings"
        yield sim
    finally:
        stop(proc)


def list_sids(sim: Simulator) -> list[tuple[str, str]]:
    auth = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    out: list[tuple[str, str]] = []
    page = 0
    while True:
        req = urllib.request.Request(
            f"{sim.root}/Recordings.json?Page={page}&PageSize=1000",
            headers={"Authorization": f"Basic {auth}"},
        )
        with opener().open(req, timeout=60) as resp:
            body = json.load(resp)
        for r in body["recordings"]:
            ext = "mp4" if str(r.get("file_uri", "")).endswith(".mp4") else "wav"
            out.append((r["sid"], ext))
        if len(body["recordings"]) < 1000:
            return out
        page += 1


@dataclass
class Store:
    """An S3 server the benchmark writes into (moto or SeaweedFS, from tests/support/s3.py)."""

    server: S3Server

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def pid(self) -> int:
        return self.server.pid

    def reset(self, bucket: str) -> None:
        """``bucket`` empty: deleted with everything in it, then created again."""
        left = delete_bucket(self.server, bucket)
        if left is not None:
            raise RuntimeError(f"{self.name}: bucket {bucket} could not be emptied: {left}")
        client = self.server.sync_client()
        try:
            client.create_bucket(Bucket=bucket)
        finally:
            client.close()

    def count(self, bucket: str, prefix: str) -> tuple[int, int]:
        n = size = 0
        client = self.server.sync_client()
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    # sidecars, and archiver's probes under <prefix>.archiver/
                    if not obj["Key"].endswith(".json") and "/.archiver/" not in "/" + obj["Key"]:
                        n += 1
                        size += obj["Size"]
        finally:
            client.close()
        return n, size

    def env(self) -> dict[str, str]:
        """The environment of a contender: the server's credentials, and rclone's remote."""
        s = self.server
        remote = {
            "TYPE": "s3",
            "PROVIDER": "Other",
            "ENDPOINT": s.endpoint_url,
            "ACCESS_KEY_ID": s.access_key,
            "SECRET_ACCESS_KEY": s.secret_key,
            "REGION": s.region,
            "FORCE_PATH_STYLE": "true",
        }
        return clean_env(**creds(s), **{f"RCLONE_CONFIG_STORE_{k}": v for k, v in remote.items()})

    def archive(self, bucket: str, spool: Path, prefix: str = "") -> dict[str, Any]:
        return {
            "backend": "s3",
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": self.server.endpoint_url,
            "region": self.server.region,
            "addressing_style": "path",
            "spool_dir": str(spool),
        }


# --------------------------------------------------------------------------- contenders


def archiver_config(
    work: Path,
    sim: Simulator,
    concurrency: int,
    archive: dict[str, Any],
    name: str,
    workers: int = 1,
) -> Path:
    """The config file of an ``archiver sync`` contender (tests/support/config.py writes it)."""
    return write_config(
        work,
        name=f"{name}.toml",
        base_url=sim.base_url,
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        start_time=sim.oldest - timedelta(days=1),
        page_size=1000,
        concurrency=concurrency,
        workers=workers,
        poll_interval=None,
        archive={"path": None, **archive},
        ledger={"path": work / f"{name}.sqlite3"},
        daemon=None,
        log={"format": "json"},
    )


class Bench:
    def __init__(self, work: Path, concurrency: int, rounds: int) -> None:
        self.work = work
        self.c = concurrency
        self.rounds = rounds
        self.runs: list[Run] = []
        self.extra: list[tuple[str, str, str]] = []  # (scenario, what, value) for scenario 5
        self.notes: list[str] = []

    def _server_cpu(self, pids: list[int]) -> float:
        return sum(proc_cpu(p) for p in pids)

    def record(
        self,
        scenario: str,
        contender: str,
        argv: list[str],
        out: Path,
        *,
        env: dict[str, str] | None = None,
        servers: list[int],
        count: Callable[[], tuple[int, int]] | None = None,
        expect: int,
    ) -> Run | None:
        os.sync()  # the previous run's dirty pages are not this run's cost
        before = self._server_cpu(servers)
        log = self.work / f"{scenario[:2].strip()}-{contender.split()[0]}-{len(self.runs)}.log"
        p = measure(argv, env=env or clean_env(), log=log)
        server_cpu = self._server_cpu(servers) - before
        files, nbytes = count() if count else files_in(out)
        if p.returncode != 0 or files != expect:
            self.notes.append(
                f"{scenario} / {contender}: exit {p.returncode}, {files} of {expect} files "
                f"(log: {p.output[-300:].strip()!r})"
            )
            return None
        run = Run(scenario, contender, files, nbytes, p.wall, p.cpu, p.rss_kb, server_cpu)
        self.runs.append(run)
        print(
            f"  {contender:<28} {run.rate:8.1f} rec/s {run.mbps:8.1f} MB/s "
            f"cpu {run.cpu:6.2f}s rss {run.rss_kb / 1024:6.1f} MB  server cpu {server_cpu:5.2f}s",
            flush=True,
        )
        return run

    # -- contenders on one simulator -------------------------------------------------------

    def local_contenders(
        self, scenario: str, sim: Simulator, *, naive: bool
    ) -> dict[str, Callable[[Path], tuple[list[str], Path]]]:
        urls = self.work / "urls.txt"
        urls.write_text("\n".join(sim.media_url(s, e) for s, e in sim.sids) + "\n")

        def archiver(out: Path, workers: int = 1) -> tuple[list[str], Path]:
            archive = {"backend": "local", "path": str(out)}
            cfg = archiver_config(self.work, sim, self.c, archive, out.name, workers)
            return [ARCHIVER, "--config", str(cfg), "sync"], out

        def archiver_workers(out: Path) -> tuple[list[str], Path]:
            return archiver(out, WORKERS)

        def bare(out: Path) -> tuple[list[str], Path]:
            argv = [PY, "-m", "bench.bare", "--urls", str(urls), "--out", str(out)]
            return [*argv, "--concurrency", str(self.c)], out

        def bare_durable(out: Path) -> tuple[list[str], Path]:
            argv, _ = bare(out)
            return [*argv, "--durable"], out

        def bare_atomic(out: Path) -> tuple[list[str], Path]:
            argv, _ = bare(out)
            return [*argv, "--durable", "--atomic"], out

        def curl(out: Path) -> tuple[list[str], Path]:
            out.mkdir(parents=True)
            # a batch of URLs per curl process (one connection each, kept alive), so that
            # process start-up does not dominate; xargs runs `concurrency` of them at a time
            per = max(1, -(-len(sim.sids) // (self.c * 4)))
            args = self.work / "curl-args.txt"
            args.write_text(
                "".join(
                    f"-o\n{out / f'{i}.bin'}\n{sim.media_url(s, e)}\n"
                    for i, (s, e) in enumerate(sim.sids)
                )
            )
            return [
                "xargs",
                "-a",
                str(args),
                "-d",
                "\\n",
                "-P",
                str(self.c),
                "-n",
                str(3 * per),
                "curl",
                "-sS",
                "--fail",
                "--noproxy",
                "*",
            ], out

        def naive_(out: Path) -> tuple[list[str], Path]:
            return [
                PY,
                "-m",
                "bench.naive",
                "--base-url",
                sim.base_url,
                "--account-sid",
                ACCOUNT,
                "--auth-token",
                TOKEN,
                "--out",
                str(out),
            ], out

        contenders: dict[str, Callable[[Path], tuple[list[str], Path]]] = {
            "archiver sync": archiver,
            TWO: archiver_workers,
            "bare aiohttp (limit)": bare,
            "bare + fsync (durable limit)": bare_durable,
            ATOMIC: bare_atomic,
        }
        if shutil.which("curl"):
            contenders[f"curl, xargs -P {self.c}"] = curl
        else:
            self.notes.append("curl not installed: its rows are missing")
        if naive:
            contenders["naive sequential script"] = naive_
        return contenders

    def run_local(
        self, scenario: str, n: int, size: int, *, naive: bool, latency: float = 0.0
    ) -> None:
        print(f"{scenario}: {n} x {size / KB:.0f} KiB", flush=True)
        with simulator(n, size, self.work, latency) as sim:
            contenders = self.local_contenders(scenario, sim, naive=naive)
            names = list(contenders)
            for r in range(self.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    out = self.work / f"out-{len(self.runs)}-{r}"
                    argv, path = contenders[name](out)
                    self.record(scenario, name, argv, path, servers=[sim.proc.pid], expect=n)
                    # Outputs stay until the whole run ends: on a file system without a journal
                    # ext4 skips inodes freed in the last minutes when it allocates new ones,
                    # so deleting one contender's files would slow the next one's creates.

    def run_s3(self, scenario: str, n: int, size: int, store: Store) -> None:
        """archiver as it is, archiver as it was (a HeadObject after every put, botocore's pool
        of 10: three requests per recording), and rclone copy, into the same server."""
        print(f"{scenario}: {n} x {size / KB:.0f} KiB into {store.name}", flush=True)
        env = store.env()
        rclone = shutil.which("rclone")
        if rclone is None:
            note = "rclone not installed (apt-get install rclone): its rows are missing"
            if note not in self.notes:  # once, however many stores
                self.notes.append(note)
        with simulator(n, size, self.work) as sim:
            # rclone copies the same recordings from local disk: fetch them once, untimed
            src = self.work / "rclone-src"
            urls = self.work / "urls.txt"
            urls.write_text("\n".join(sim.media_url(s, e) for s, e in sim.sids) + "\n")
            subprocess.run(
                [PY, "-m", "bench.bare", "--urls", str(urls), "--out", str(src)],
                check=True,
                capture_output=True,
                env=clean_env(),
            )
            for r in range(self.rounds):
                names = ["archiver sync", TWO, BEFORE, "rclone copy"]
                for name in names if r % 2 == 0 else names[::-1]:
                    bucket = "bench"
                    store.reset(bucket)
                    if name in ("archiver sync", TWO, BEFORE):
                        out = self.work / f"s3-{len(self.runs)}-{r}"
                        archive = store.archive(bucket, self.work, prefix="archiver/")
                        if name == BEFORE:
                            archive |= {"verify_after_put": "always", "max_pool_connections": 10}
                        workers = WORKERS if name == TWO else 1
                        cfg = archiver_config(self.work, sim, self.c, archive, out.name, workers)
                        argv = [ARCHIVER, "--config", str(cfg), "sync"]
                        prefix = "archiver/"
                    elif rclone is not None:
                        argv = [
                            "env",
                            "-u",
                            "AWS_CA_BUNDLE",
                            rclone,
                            "copy",
                            str(src),
                            f"store:{bucket}/rclone",
                            "--transfers",
                            str(self.c),
                            "--checkers",
                            str(self.c),
                        ]
                        prefix = "rclone/"
                    else:
                        continue
                    self.record(
                        scenario,
                        name,
                        argv,
                        src,
                        env=env,
                        servers=[sim.proc.pid, store.pid],
                        count=lambda p=prefix, bk=bucket: store.count(bk, p),  # type: ignore[misc]
                        expect=n,
                    )
            store.reset("bench")
            shutil.rmtree(src, ignore_errors=True)

    def run_big(self, scenario: str, size: int, store: Store) -> None:
        print(f"{scenario}: 1 x {size / 2**20:.0f} MiB", flush=True)
        env = store.env()
        with simulator(1, size, self.work) as sim:
            out = self.work / "big-local"
            cfg = archiver_config(
                self.work, sim, self.c, {"backend": "local", "path": str(out)}, out.name
            )
            self.record(
                scenario,
                "archiver sync -> local",
                [ARCHIVER, "--config", str(cfg), "sync"],
                out,
                servers=[sim.proc.pid],
                expect=1,
            )
            shutil.rmtree(out, ignore_errors=True)
            store.reset("bench")
            cfg = archiver_config(
                self.work,
                sim,
                self.c,
                store.archive("bench", self.work),
                "big-s3",
            )
            self.record(
                scenario,
                "archiver sync -> S3",
                [ARCHIVER, "--config", str(cfg), "sync"],
                out,
                env=env,
                servers=[sim.proc.pid, store.pid],
                count=lambda: store.count("bench", ""),
                expect=1,
            )
            store.reset("bench")

    def run_ledger(self, scenario: str, rows: int) -> None:
        print(f"{scenario}: a ledger of {rows:,} rows", flush=True)
        with simulator(100, 2000, self.work) as sim:
            ledger = self.work / "big-ledger.sqlite3"
            t = time.perf_counter()
            build_ledger(ledger, rows, sim)
            build_journal(Path(f"{ledger}.audit.jsonl"), ledger, rows)
            print(f"  ledger and journal built in {time.perf_counter() - t:.1f}s", flush=True)
            archive = self.work / "big-ledger-archive"
            cfg = archiver_config(
                self.work, sim, self.c, {"backend": "local", "path": str(archive)}, "big-ledger"
            )
            code = (
                "import asyncio, json, sys; from bench.nonews import main; "
                "print(json.dumps(asyncio.run(main(sys.argv[1], 5))))"
            )
            p = subprocess.run(
                [PY, "-c", code, str(cfg)],
                capture_output=True,
                text=True,
                env=clean_env(),
                cwd=ROOT,
                check=False,
            )
            if p.returncode != 0:
                self.notes.append(f"{scenario}: no-news pass failed: {p.stderr[-500:]}")
            else:
                r = json.loads(p.stdout.strip().splitlines()[-1])
                self.extra.append(
                    (
                        scenario,
                        "no-news pass, outside the HTTP call (median of 5)",
                        f"{r['outside_ms']:.1f} ms (HTTP {r['http_ms']:.1f} ms, "
                        f"pass {r['pass_ms']:.1f} ms)",
                    )
                )
                print(f"  no-news pass: {r}", flush=True)
            self.median_wall(
                scenario,
                cfg,
                "sync",
                f"`archiver sync` finding nothing new, {2 * rows:,}-line journal",
                ok=(0,),
            )
            self.median_wall(scenario, cfg, "status", "`archiver status`", ok=(0, 1))

    def median_wall(
        self, scenario: str, cfg: Path, command: str, what: str, *, ok: tuple[int, ...]
    ) -> None:
        """``archiver COMMAND`` three times; its median process wall time as a row."""
        walls = []
        for _ in range(3):
            pr = measure(
                [ARCHIVER, "--config", str(cfg), command],
                env=clean_env(),
                log=self.work / f"{command}.log",
            )
            if pr.returncode not in ok:
                self.notes.append(f"{scenario}: {command} exited {pr.returncode}: {pr.output}")
            walls.append(pr.wall)
        self.extra.append(
            (
                scenario,
                f"{what} (process wall, median of 3)",
                f"{statistics.median(walls) * 1000:.0f} ms",
            )
        )
        print(f"  {command}: {[round(w, 3) for w in walls]} s", flush=True)


def build_ledger(path: Path, rows: int, sim: Simulator) -> None:
    """``rows`` verified rows of the configured account (the simulator's recordings among
    them) and a current watermark."""
    from archiver.ledger import Ledger

    async def schema() -> None:
        async with Ledger(path):
            pass

    asyncio.run(schema())
    db = sqlite3.connect(path)
    now = time.time()
    source = json.dumps(
        {
            "sid": "x",
            "uri": "/restcomm/2012-04-24/Accounts/AC/Recordings/x.json",
            "duration": "10.0",
            "status": "completed",
            "api_version": "2012-04-24",
            "file_uri": "http://internal.invalid:8080/x.wav",
        }
    )
    base = sim.oldest.timestamp() - rows  # one second apart, older than the simulator's
    sim_rows = {sid for sid, _ in sim.sids}

    def gen() -> Iterator[tuple[Any, ...]]:
        for i in range(rows - len(sim_rows)):
            yield (f"RE{i:032x}", base + i, source, now, ACCOUNT)
        for j, sid in enumerate(sorted(sim_rows)):
            yield (sid, sim.oldest.timestamp() + j, source, now, ACCOUNT)

    with db:
        db.executemany(
            "INSERT INTO recordings (sid, account_sid, call_sid, date_created, created_epoch, "
            "duration, ext, source, state, size, sha256, archive_key, discovered_at, "
            "archived_at, verified_at, updated_at) VALUES (?1, ?5, NULL, "
            "strftime('%Y-%m-%dT%H:%M:%S+00:00', ?2, 'unixepoch'), ?2, 10.0, 'wav', ?3, "
            "'verified', 160000, 'ab', 'k/' || ?1, ?4, ?4, ?4, ?4)",
            gen(),
        )
        newest = datetime.now(UTC).isoformat()
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('watermark', ?)", (newest,))
    db.close()


def build_journal(path: Path, ledger: Path, rows: int) -> None:
    """The audit journal such a ledger comes with: two lines (archived, verified) per row."""
    from archiver.audit import Journal

    async def write() -> str:
        async with Journal(path) as journal:
            for i in range(rows):
                sid = f"RE{i:032x}"
                journal.append("archived", sid=sid, key=f"k/{sid}", size=160000, sha256="ab")
                journal.append("verified", sid=sid, key=f"k/{sid}", size=160000, sha256="ab")
            return journal.head.encode()

    head = asyncio.run(write())
    with contextlib.closing(sqlite3.connect(ledger)) as db, db:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('audit_head', ?)", (head,))


# --------------------------------------------------------------------------- report


def filesystem(path: Path) -> str:
    """Type and mount options of the file system holding ``path`` (from /proc/mounts)."""
    best, found = "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mount, kind, options, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best):
                best, found = mount, f"{kind} ({options})"
    return found


def fsync_rate(work: Path, size: int = 160 * KB, files: int = 400, threads: int = 4) -> float:
    """Files of ``size`` created, written and fsynced per second in ``work`` by ``threads``
    threads: how many durable writes the disk takes, whatever writes them."""
    folder = work / "fsync-probe"
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)

    def one(i: int) -> None:
        fd = os.open(folder / f"{i}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    os.sync()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(files)))
    return files / (time.perf_counter() - started)


def machine(work: Path) -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for pkg in ("aiohttp", "aiobotocore", "aiosqlite", "moto"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{pkg} {metadata.version(pkg)}")
    for tool, flag in (("curl", "--version"), ("rclone", "version")):
        if shutil.which(tool):
            first = subprocess.run([tool, flag], capture_output=True, text=True).stdout
            versions.append(" ".join(first.split()[:2]))
    return {
        "cpus": f"{os.cpu_count()} (nproc), {cpu}",
        "memory": f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "work folder": f"{work}, {filesystem(work)}",
        "disk": f"{fsync_rate(work):.0f} files of 160 KiB created, written and fsynced per "
        "second by 4 threads",
    }


def table(b: Bench) -> str:
    """The best run of each contender per scenario, archiver's ratio to it, and every round's
    MB/s (how much the machine moved between rounds: a ratio inside that spread is noise)."""
    best: dict[tuple[str, str], Run] = {}
    rounds: dict[tuple[str, str], list[float]] = {}
    for run in b.runs:
        key = (run.scenario, run.contender)
        rounds.setdefault(key, []).append(run.mbps)
        if key not in best or run.rate > best[key].rate:
            best[key] = run
    lines = [
        "| scenario | contender | recordings/s | MB/s | CPU s | peak RSS MB | server CPU s "
        "| archiver ÷ this | MB/s of each round | CPU ms per recording |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (scenario, contender), run in best.items():
        mine = best.get((scenario, "archiver sync"))
        ratio = f"{mine.rate / run.rate:.2f}x" if mine and contender != "archiver sync" else ""
        each = ", ".join(f"{r:.1f}" for r in rounds[(scenario, contender)])
        lines.append(
            f"| {scenario} | {contender} | {run.rate:.1f} | {run.mbps:.1f} | {run.cpu:.2f} | "
            f"{run.rss_kb / 1024:.0f} | {run.server_cpu:.2f} | {ratio} | {each} | "
            f"{run.cpu_ms:.2f} |"
        )
    for scenario, what, value in b.extra:
        lines.append(f"| {scenario} | {what} | {value} | | | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="benchmark archiver against the limit and others")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    p.add_argument("--concurrency", type=int, default=8, help="for every contender")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per scenario")
    p.add_argument("--only", default="12345", help="scenarios to run, e.g. 13")
    p.add_argument("--results", default="", help="write the report (markdown) here")
    p.add_argument(
        "--work",
        default="",
        help="work folder (default: a temp folder, removed); on ext4 without a journal, use a "
        "folder where nothing was deleted in the last minutes: ext4 then skips recently freed "
        "inodes one by one on every create",
    )
    args = p.parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (1 if quick else 2)
    sizes = {
        "s1": (40, 160 * KB) if quick else (2000, 160 * KB),
        "s1b": (40, 160 * KB) if quick else (500, 160 * KB),
        "s2": (2, 4 * 2**20) if quick else (10, 100 * 2**20),
        "s3": (20, 160 * KB) if quick else (2000, 160 * KB),
        "s4": 16 * 2**20 if quick else 2**30,
        "s5": 20_000 if quick else 1_000_000,
    }
    started = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="archiver-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)  # `python -m bench.*` from the project
    # Byte-compile once, as an installed package is: with PYTHONDONTWRITEBYTECODE set (as here)
    # an editable install would otherwise compile its modules again in every contender's run.
    subprocess.run([PY, "-m", "compileall", "-q", "archiver", "bench"], check=True)
    b = Bench(work, args.concurrency, rounds)
    info = machine(work)
    for k, v in info.items():
        print(f"{k:<12} {v}")
    try:
        if "1" in args.only:
            n, size = sizes["s1"]
            b.run_local("1. many short calls, local", n, size, naive=True)
            # the same over a network: every request 20 ms away, as a platform in another
            # data centre would be; what a sequential loop really costs in production
            n, size = sizes["s1b"]
            b.run_local("1b. short calls, 20 ms away", n, size, naive=True, latency=0.02)
        if "2" in args.only:
            n, size = sizes["s2"]
            b.run_local("2. long calls, local", n, size, naive=True)
        if "3" in args.only or "4" in args.only:
            with s3.moto(work) as moto:
                if "3" in args.only:
                    n, size = sizes["s3"]
                    b.run_s3("3. many short calls, S3 (moto)", n, size, Store(moto))
                if "4" in args.only:
                    b.run_big("4. one big recording", sizes["s4"], Store(moto))
        if "3" in args.only:
            # the same into a strict store (SigV4, checksums checked), beside moto in one run
            (work / "seaweedfs").mkdir(exist_ok=True)
            try:
                with s3.seaweedfs(work / "seaweedfs") as weed:
                    n, size = sizes["s3"]
                    b.run_s3("3b. many short calls, S3 (SeaweedFS)", n, size, Store(weed))
            except StartFailed as exc:
                b.notes.append(f"3b: SeaweedFS did not start: {str(exc)[-500:]}")
        if "5" in args.only:
            b.run_ledger("5. big ledger, nothing new", sizes["s5"])
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    report = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (--quick)' if quick else ''}, "
        f"concurrency {args.concurrency}, best of {rounds} alternating round(s), "
        f"{elapsed:.0f} s in all.",
        "",
        *(f"* {k}: {v}" for k, v in info.items()),
        "",
        table(b),
    ]
    if b.notes:
        report += ["", "Problems:", *(f"* {n}" for n in b.notes)]
    text = "\n".join(report)
    print()
    print(text)
    if args.results:
        Path(args.results).write_text(text + "\n")
    return 1 if b.notes else 0


if __name__ == "__main__":
    raise SystemExit(main())
