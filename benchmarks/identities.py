"""What per-agent NATS identities cost: start-up of `pas up` and the latency of a 1-task job, with this
checkout's code against another checkout's (the code before them), alternating in one run so both meet
the same machine load.

    PYTHONPATH=. python benchmarks/identities.py --before /tmp/pas-before [--rounds 3] [--jobs 100]

Each round and each side: `pas up --no-http` (embedded server, NATS users on: the default) is spawned in
a fresh directory; start-up = spawn -> its "agents up" line (every agent has claimed its id, registered
its endpoints and started its consumers); then, as the `client` user, `--jobs` sequential 1-task echo
jobs after 10 warm-up ones, submit -> terminal pas.run.<run>.status event (benchmarks.pas_common).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.pas_common import RunWatch, echo_task, one_job
from pas.transport import auth
from pas.transport.client import PasClient

ROOT = Path(__file__).resolve().parent.parent
UP = re.compile(rb"^pas: (\d+) agents up on (\S+)", re.M)
JOB: dict[str, Any] = {"title": "identities", "tasks": [echo_task("code")]}


async def one_side(code: Path, jobs: int) -> dict[str, Any]:
    """Start `pas up` from `code`, time its start, run the jobs, stop it."""
    with tempfile.TemporaryDirectory(prefix="pas-ident-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(code)}
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pas", "up", "--no-http", "--nats-port", "-1", "--data-dir", f"{tmp}/data",
            cwd=tmp, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        out = b""
        try:
            while (m := UP.search(out)) is None:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                if not line:
                    raise RuntimeError(f"pas up from {code} ended: {out.decode()[-2000:]}")
                out += line
            startup = time.perf_counter() - t0
            drain = asyncio.ensure_future(proc.stdout.read())  # keep its pipe from filling up
            agents, url = int(m.group(1)), m.group(2).decode()
            creds = auth.load_creds(Path(tmp) / "data" / "creds")["client"]
            client = await PasClient.connect(url, 10, creds=creds)
            client.user = None  # submit on pas.gateway.submit: the code before knows no pas.gateway.as.<user>.*
            watch = RunWatch(client.nc)
            lat = []
            try:
                for j in range(10 + jobs):
                    dt, status = await one_job(client, watch, f"id-{j:04d}", JOB)
                    assert status == "completed", status
                    if j >= 10:
                        lat.append(dt)
            finally:
                await client.close()
        finally:
            proc.terminate()
            await proc.wait()
        drain.cancel()
        lat.sort()
        return {"startup_s": startup, "agents": agents, "p50_ms": 1000 * statistics.median(lat),
                "p90_ms": 1000 * lat[int(0.9 * (len(lat) - 1))]}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="a checkout of the code before per-agent identities")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=100)
    args = ap.parse_args()
    sides = {"before": Path(args.before).resolve(), "per_agent": ROOT}
    got: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    for r in range(args.rounds):
        for name, code in (sides.items() if r % 2 == 0 else reversed(sides.items())):
            res = await one_side(code, args.jobs)
            got[name].append(res)
            print(f"round {r + 1} {name}: {json.dumps({k: round(v, 3) for k, v in res.items()})}", flush=True)
    summary = {name: {k: statistics.median(x[k] for x in runs) for k in ("startup_s", "p50_ms", "p90_ms")}
               for name, runs in got.items()}
    for k in ("startup_s", "p50_ms", "p90_ms"):
        summary.setdefault("ratio", {})[k] = summary["per_agent"][k] / summary["before"][k]
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
