"""Count the sequential round trips of a 1-task echo job, nearly free of CPU noise: every agent
connection (and every js_chain hop) goes through a local TCP proxy that holds each chunk for D ms
in each direction, so latency / (2 D) is the number of round trips to the server on the critical
path. Set against js_chain (6 hops, one acknowledged append each) measured through the same proxy.

    PYTHONPATH=. python scripts/count_round_trips.py [--delay-ms 5] [--jobs 15]

Under such a delay CPU per message no longer matters; what is left is the number of waits. The
ratio printed is what `pas.latency` / `js_chain.p50` would be on a network where each hop costs
D ms, far above the CPU cost of a message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from pathlib import Path

import nats

from benchmarks import floors
from benchmarks.pas_common import RunWatch, echo_task, one_job
from pas.config.model import load_config
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from pas.transport.server import EmbeddedServer

JOB = {"title": "round trips", "tasks": [echo_task("code")]}


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy r to w, each chunk held delay_s (order kept, no throttling)."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def out() -> None:
        while True:
            due, data = await q.get()
            if not data:
                return
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            w.write(data)
            await w.drain()

    sender = asyncio.ensure_future(out())
    try:
        while data := await r.read(65536):
            q.put_nowait((loop.time() + delay_s, data))
    finally:
        q.put_nowait((0.0, b""))
        with contextlib.suppress(Exception):
            await sender
        w.close()


async def _proxy(port: int, delay_s: float) -> asyncio.Server:
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(_pipe(cr, sw, delay_s), _pipe(sr, cw, delay_s), return_exceptions=True)

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def main(delay_ms: float, jobs: int) -> None:
    d = delay_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        srv = EmbeddedServer(Path(tmp) / "nats", port=-1)
        srv.start()
        proxy = await _proxy(int(srv.url.rsplit(":", 1)[1]), d)
        try:
            url = f"nats://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
            chain = await floors.js_chain(url, n=jobs, warmup=3)
            floor = statistics.median(chain.latencies_s)
            async with Stack(load_config(), url=url, name="round-trips"):
                nc = await nats.connect(srv.url)  # the client itself is not delayed
                watch = RunWatch(nc)
                lat = []
                for j in range(3 + jobs):
                    dt, status = await one_job(PasClient(nc, timeout_s=60), watch, f"rt{j:04d}", JOB, 120)
                    if status != "completed":
                        raise SystemExit(f"job {j} ended {status}")
                    if j >= 3:
                        lat.append(dt)
                await watch.close()
                await nc.close()
            p50 = statistics.median(lat)
            print(f"delay {delay_ms:g} ms each way: js_chain p50 {floor * 1000:.1f} ms = {floor / (2 * d):.1f} "
                  f"round trips; 1-task job p50 {p50 * 1000:.1f} ms = {p50 / (2 * d):.1f} round trips; "
                  f"ratio {p50 / floor:.2f}")
        finally:
            proxy.close()
            srv.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--jobs", type=int, default=15)
    a = ap.parse_args()
    asyncio.run(main(a.delay_ms, a.jobs))
