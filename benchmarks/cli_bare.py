"""The yardstick of the read-only `pas` commands: the same NATS requests, made by a bare nats-py script.

    python benchmarks/cli_bare.py --url nats://127.0.0.1:4222 --creds .pas/creds agents
    python benchmarks/cli_bare.py --url URL --creds DIR status RUN_ID
    python benchmarks/cli_bare.py --url URL --creds DIR runs [--limit 20]

It connects as the `client` user (DIR/client.json, what `pas up` writes in <data_dir>/creds; no --creds:
no user), then makes what `pas agents`, `pas status RUN_ID` and `pas runs` make:

- agents: for each of the KV buckets pas_agents, pas_models, pas_breakers, list the keys and get each one;
- status: one request on pas.gateway.status with {"run_id": RUN_ID};
- runs: one request on pas.gateway.runs with {"limit": N}.

It prints the raw replies (one JSON document) and exits 0, or prints the error and exits 1. It imports
nothing of pas on purpose (the subject and bucket names are written out here, as a user's script would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import nats
from nats.js.errors import BucketNotFoundError, NoKeysError

BUCKETS = ("pas_agents", "pas_models", "pas_breakers")
STATUS = "pas.gateway.status"
RUNS = "pas.gateway.runs"
"""Written out, not imported (tests/test_names.py checks them against pas.protocol.subjects)."""


def connect_options(creds: str | None) -> dict[str, Any]:
    if not creds:
        return {}
    p = Path(creds)
    d = json.loads((p / "client.json" if p.is_dir() else p).read_text())
    return {"user": d["user"], "password": d["password"], "inbox_prefix": f"_INBOX.{d['user']}"}


async def agents(nc: Any) -> dict[str, Any]:
    js = nc.jetstream()
    out: dict[str, Any] = {}
    for bucket in BUCKETS:
        entries: dict[str, Any] = {}
        try:
            kv = await js.key_value(bucket)
            for key in await kv.keys():
                e = await kv.get(key)
                if e.value:
                    entries[key] = json.loads(e.value)
        except (BucketNotFoundError, NoKeysError):
            pass
        out[bucket] = entries
    return out


async def request(nc: Any, subject: str, body: dict[str, Any], timeout_s: float) -> Any:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout_s)
    if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
        raise RuntimeError(f"{subject}: {msg.headers.get('Nats-Service-Error-Code')} {msg.data.decode()}")
    return json.loads(msg.data) if msg.data else {}


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="nats://127.0.0.1:4222")
    ap.add_argument("--creds", help="the creds directory of `pas up` (its client.json), or one <user>.json file")
    ap.add_argument("--timeout", type=float, default=5.0)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("agents")
    st = sub.add_parser("status")
    st.add_argument("run_id")
    rs = sub.add_parser("runs")
    rs.add_argument("--limit", type=int, default=20)
    args = ap.parse_args(argv)

    nc = await nats.connect(args.url, connect_timeout=args.timeout, allow_reconnect=False,
                            **connect_options(args.creds))
    try:
        if args.cmd == "agents":
            out = await agents(nc)
        elif args.cmd == "status":
            out = await request(nc, STATUS, {"run_id": args.run_id}, args.timeout)
        else:
            out = await request(nc, RUNS, {"limit": args.limit}, args.timeout)
    except Exception as e:  # a yardstick: say what failed, exit 1
        print(f"cli_bare: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
