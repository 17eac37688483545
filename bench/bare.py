"""The transfer limit: fetch media URLs concurrently straight to files, nothing else.

No hashing, no ledger, no checks, no fsync: one aiohttp session with ``--concurrency``
connections, each body streamed to its own file. What archiver does on top of this is the cost
of its guarantees.

``--durable`` adds only what any archiver that promises "nothing lost" must pay the disk for
each recording, done in a worker thread like archiver does it: the file fsynced, a small
sidecar file written and fsynced next to it, and the folder fsynced. Still no hashing, ledger,
read-back or checks: the durable transfer limit.

``--atomic`` makes each durable file appear whole or not at all, as archiver's puts do: the
body and the sidecar are written to temp files, fsynced and renamed into place, then the
folder is fsynced (two creates and two renames more than ``--durable``, the same fsyncs). Still
no hashing, ledger, read-back or checks: the limit of any archiver whose copies can never be
seen half-written, even after a crash.

    python -m bench.bare --urls FILE --out DIR --concurrency 8 [--durable [--atomic]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp

CHUNK = 256 * 1024  # the same chunk size archiver streams with


SIDECAR = b'{"sidecar": "about 400 bytes in archiver"}\n' * 9


def make_durable(fh: Any, path: Path, final: Path | None = None) -> None:
    """fsync ``path`` (renamed to ``final`` when given), write and fsync a sidecar beside it
    (through a temp file and a rename when ``final`` is given), fsync the folder."""
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    if final is not None:
        os.replace(path, final)
        path = final
    side = path.with_name(path.name + ".json")
    side_tmp = side.with_name("." + side.name + ".tmp") if final is not None else side
    fd = os.open(side_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, SIDECAR)
        os.fsync(fd)
    finally:
        os.close(fd)
    if side_tmp != side:
        os.replace(side_tmp, side)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


async def fetch_all(
    urls: list[str], out: Path, concurrency: int, durable: bool = False, atomic: bool = False
) -> int:
    total = 0
    queue = iter(enumerate(urls))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal total
            for i, url in queue:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    final = out / f"{i}.bin"
                    path = out / f".{i}.bin.tmp" if atomic else final
                    fh = open(path, "wb")  # noqa: ASYNC230, SIM115
                    try:
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            fh.write(chunk)
                            total += len(chunk)
                    except BaseException:
                        fh.close()
                        raise
                if durable:
                    await asyncio.to_thread(make_durable, fh, path, final if atomic else None)
                else:
                    fh.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--urls", required=True, help="file with one media URL per line")
    p.add_argument("--out", required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--durable", action="store_true", help="fsync file, sidecar and folder")
    p.add_argument("--atomic", action="store_true", help="with --durable: temp files, renamed")
    args = p.parse_args(argv)
    urls = Path(args.urls).read_text().split()
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    total = asyncio.run(fetch_all(urls, out, args.concurrency, args.durable, args.atomic))
    print(f"fetched {len(urls)} files, {total} bytes")


if __name__ == "__main__":
    main()
