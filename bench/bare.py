"""The transfer limit: fetch media URLs concurrently straight to files, nothing else.

No hashing, no ledger, no checks, no fsync: one aiohttp session with ``--concurrency``
connections, each body streamed to its own file. What archiver does on top of this is the cost
of its guarantees.

    python -m bench.bare --urls FILE --out DIR --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import aiohttp

CHUNK = 256 * 1024  # the same chunk size archiver streams with


async def fetch_all(urls: list[str], out: Path, concurrency: int) -> int:
    total = 0
    queue = iter(enumerate(urls))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal total
            for i, url in queue:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    with open(out / f"{i}.bin", "wb") as fh:  # noqa: ASYNC230
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            fh.write(chunk)
                            total += len(chunk)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--urls", required=True, help="file with one media URL per line")
    p.add_argument("--out", required=True)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    urls = Path(args.urls).read_text().split()
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    total = asyncio.run(fetch_all(urls, out, args.concurrency))
    print(f"fetched {len(urls)} files, {total} bytes")


if __name__ == "__main__":
    main()
