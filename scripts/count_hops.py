"""Count what one 1-task echo job costs the bus, against a fresh nats-server and in-process agents
at default settings: messages the server received (its /varz in_msgs, the counting's own requests
included), queue deliveries (sum of every durable consumer's delivered count), stream writes (sum of
every stream's last sequence, KV buckets included), KV reads (direct gets and $JS.API.STREAM.MSG.GET
requests seen on the bus) and JetStream API requests by kind.

    PYTHONPATH=. python scripts/count_hops.py [--jobs N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats

from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from pas.transport.server import EmbeddedServer


async def totals(js: Any) -> tuple[int, dict[str, int], int]:
    streams = await js.streams_info()
    writes = {si.config.name: si.state.last_seq for si in streams}
    delivered = 0
    for si in streams:
        for ci in await js.consumers_info(si.config.name):
            delivered += ci.delivered.consumer_seq
    return delivered, writes, sum(writes.values())


def in_msgs(varz: str) -> int:
    """Messages the server has received so far."""
    with urllib.request.urlopen(varz, timeout=5) as r:
        return int(json.load(r)["in_msgs"])


async def one_job(nc: Any, client: PasClient, run_id: str) -> None:
    """Submit and wait for the terminal status event only (no status requests: they read KV too)."""
    done = asyncio.Event()

    async def cb(m: Any) -> None:
        if json.loads(m.data).get("status") in wire.TERMINAL_RUN:
            done.set()

    sub = await nc.subscribe(S.run_status(run_id), cb=cb)
    await client.submit({"title": "count", "run_id": run_id, "tasks": [
        {"lane": "code", "instruction": "hi", "executor": "echo"}]})
    await asyncio.wait_for(done.wait(), 60)
    await sub.unsubscribe()


async def main(jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = EmbeddedServer(Path(tmp) / "nats", port=-1, extra_args=["-m", "-1"])
        srv.start()
        ports = json.loads(next((Path(tmp) / "nats" / "ports").glob("*.ports")).read_text())
        varz = f"{ports['monitoring'][0]}/varz"
        try:
            cfg = load_config()
            async with Stack(cfg, url=srv.url) as _st:
                nc = await nats.connect(srv.url)
                js = nc.jetstream()
                api: collections.Counter[str] = collections.Counter()

                async def on_api(m: Any) -> None:
                    parts = m.subject.split(".")
                    api[".".join(parts[2:4]) if parts[2] in ("STREAM", "CONSUMER", "DIRECT") else parts[2]] += 1

                async with PasClient(nc) as client:
                    await client.submit({"title": "warm", "run_id": "warm", "tasks": [
                        {"lane": "code", "instruction": "hi", "executor": "echo"}]})
                    await client.wait("warm", timeout_s=60)
                    await asyncio.sleep(0.5)
                    d0, w0, t0 = await totals(js)
                    m0 = in_msgs(varz)
                    sub = await nc.subscribe(S.JS_API_ALL, cb=on_api)
                    await nc.flush()
                    started = time.monotonic()
                    for i in range(jobs):
                        await one_job(nc, client, f"count{i}")
                    took = time.monotonic() - started
                    await asyncio.sleep(0.5)
                    await sub.unsubscribe()
                    await nc.flush()
                    d1, w1, t1 = await totals(js)
                    m1 = in_msgs(varz)
                await nc.close()
            # The counting (consumer/stream info) requests are our own: taken out below.
            reads = api["DIRECT.GET"] + api["STREAM.MSG"]
            print(f"per 1-task job ({jobs} job(s), {took / jobs * 1000:.1f} ms each, incl. client waits):")
            print(f"  messages in:      {(m1 - m0) / jobs:g}")
            print(f"  queue deliveries: {(d1 - d0) / jobs:g}")
            print(f"  stream writes:    {(t1 - t0) / jobs:g}  " + ", ".join(
                f"{k}={(w1[k] - w0.get(k, 0)) / jobs:g}" for k in sorted(w1) if w1[k] != w0.get(k, 0)))
            print(f"  KV reads:         {reads / jobs:g}  (direct gets {api['DIRECT.GET'] / jobs:g}, "
                  f"MSG.GET {api['STREAM.MSG'] / jobs:g})")
            print("  JS API requests:  " + ", ".join(f"{k}={v / jobs:g}" for k, v in sorted(api.items())))
        finally:
            srv.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5)
    asyncio.run(main(ap.parse_args().jobs))
