"""The naive script: a sequential loop over the listing that downloads and writes each file.

What one writes in an afternoon with the standard library: page through the list, then for
each recording GET its media and copy it to a file. One request at a time, a new connection
each time, no checks.

    python -m bench.naive --base-url URL --account-sid AC.. --auth-token T --out DIR
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import urllib.request
from pathlib import Path

PAGE_SIZE = 1000


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--account-sid", required=True)
    p.add_argument("--auth-token", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    root = f"{args.base_url}/2012-04-24/Accounts/{args.account_sid}"
    token = base64.b64encode(f"{args.account_sid}:{args.auth_token}".encode()).decode()
    auth = {"Authorization": f"Basic {token}"}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recordings = []
    page = 0
    while True:
        url = f"{root}/Recordings.json?Page={page}&PageSize={PAGE_SIZE}"
        with opener.open(urllib.request.Request(url, headers=auth)) as resp:
            body = json.load(resp)
        recordings += body["recordings"]
        if len(body["recordings"]) < PAGE_SIZE or page >= int(body["num_pages"]):
            break
        page += 1
    total = 0
    for rec in recordings:
        url = f"{root}/Recordings/{rec['sid']}.wav"
        with (
            opener.open(urllib.request.Request(url, headers=auth)) as resp,
            open(out / f"{rec['sid']}.wav", "wb") as fh,
        ):
            shutil.copyfileobj(resp, fh, 256 * 1024)
            total += fh.tell()
    print(f"fetched {len(recordings)} files, {total} bytes")


if __name__ == "__main__":
    main()
