"""Count what a job costs the bus, against a fresh nats-server and in-process agents at default
settings: messages the server received (its /varz in_msgs) and, of them, the background, which comes
with time, not work: heartbeats and agent states (seen by subject) and the pull requests idle consumers
renew (their rate measured over one expiry just before, the programmers' left out, pro-rated); queue
deliveries (sum of every durable consumer's delivered count), stream writes (sum of every
stream's last sequence, KV buckets included), KV reads (direct gets and MSG.GET requests seen on the
bus), JetStream API requests by kind, and every message seen on the bus by subject (ids replaced by
<run>, <job>, <task>, numbers by #), so each one left can be named.

    PYTHONPATH=. python scripts/count_hops.py [--jobs N] [--lane-tasks N] [--quiet]

--jobs N: N sequential 1-task echo jobs (the per-job figures). --lane-tasks N: then one job of N echo
tasks in one lane, and the messages per task of it beyond a 1-task job's ((lane - job) / (N - 1)).
Also used by tests/test_hops.py, which asserts the targets (issue 21: <= 40 messages before a 1-task
job's terminal event, <= 8 per task in a lane).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from pas.config.model import PasConfig, load_config
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from pas.transport.connection import connect as pas_connect
from pas.transport.server import EmbeddedServer


@dataclass
class Counts:
    """What one measured stretch (jobs jobs of `tasks` tasks each) cost, per job."""

    jobs: int
    tasks: int
    ms: float = 0.0
    messages: float = 0.0
    background: float = 0.0  # of messages: what an idle stack sends in as long (heartbeats, idle pulls)
    deliveries: float = 0.0
    writes: float = 0.0
    by_stream: dict[str, float] = field(default_factory=dict)
    api: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)

    @property
    def work(self) -> float:
        """Messages per job that the work sent in: all of them but the background."""
        return self.messages - self.background

    def lines(self, title: str) -> list[str]:
        reads = self.api.get("DIRECT.GET", 0) + self.api.get("STREAM.MSG", 0)
        out = [f"{title} ({self.jobs} job(s) of {self.tasks} task(s), {self.ms:.1f} ms each, incl. client waits):",
               f"  messages in:      {self.messages:.1f}  (of which background: {self.background:.1f}, heartbeats and "
               f"idle pulls; work: {self.work:.1f})",
               f"  queue deliveries: {self.deliveries:g}",
               f"  stream writes:    {self.writes:g}  " + ", ".join(f"{k}={v:g}" for k, v in sorted(self.by_stream.items())),
               f"  KV reads:         {reads:g}",
               "  JS API requests:  " + ", ".join(f"{k}={v:g}" for k, v in sorted(self.api.items())),
               "  seen on the bus (client and server messages), by subject:"]
        out += [f"    {n:8.2f}  {s}" for s, n in sorted(self.seen.items(), key=lambda kv: (-kv[1], kv[0]))]
        return out


async def totals(js: Any) -> tuple[int, dict[str, int]]:
    streams = await js.streams_info()
    writes = {si.config.name: si.state.last_seq for si in streams}
    delivered = 0
    for si in streams:
        for ci in await js.consumers_info(si.config.name):
            delivered += ci.delivered.consumer_seq
    return delivered, writes


def in_msgs(varz: str) -> int:
    """Messages the server has received so far."""
    with urllib.request.urlopen(varz, timeout=5) as r:
        return int(json.load(r)["in_msgs"])


IDLE_S = 2.0  # one expiry of every idle pull request (pas.transport.pull): each loop renews once in it


async def renewals_per_s(tap: Any, seconds: float) -> float:
    """The pull requests an idle stack renews per second (every consumer's loop, once per expiry), the
    programmers' left out: during a job they pull for work, not idly (counted as work, an overcount at most)."""
    pulls = 0
    prog = S.js_next(S.STREAM_WORK, "prog-")

    async def count(m: Any) -> None:
        nonlocal pulls
        pulls += not m.subject.startswith(prog)

    sub = await tap.subscribe(S.js_next("*", "*"), cb=count)
    await tap.flush()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    await sub.unsubscribe()
    return pulls / (time.monotonic() - t0)


_NUMBER = re.compile(r"^\d+$")
_RANDOM = re.compile(r"^[A-Za-z0-9]{16,}$")  # inbox and reply tokens


def shape(subject: str, run_ids: set[str]) -> str:
    """A subject with its ids, numbers and random tokens replaced, for counting by kind."""
    out = []
    for tok in subject.split("."):
        if tok in run_ids:
            tok = "<run>"
        elif re.fullmatch(r"[a-z]+-\d+-\d+", tok):
            tok = "<task>"
        elif re.fullmatch(r"(code|models|data|devsecops|docs)-\d+", tok):
            tok = "<job>"
        elif _NUMBER.match(tok):
            tok = "#"
        elif _RANDOM.match(tok):
            tok = "*"
        out.append(tok)
    return ".".join(out)


def job_spec(run_id: str, tasks: int) -> dict[str, Any]:
    return {"title": "count", "run_id": run_id,
            "tasks": [{"lane": "code", "instruction": f"hi {i}", "executor": "echo"} for i in range(tasks)]}


async def one_job(nc: Any, client: PasClient, run_id: str, tasks: int) -> None:
    """Submit and wait for the terminal status event only (no status requests: they read KV too)."""
    done = asyncio.Event()

    async def cb(m: Any) -> None:
        ev = wire.run_event(m.subject, m.data)
        if ev is not None and ev.status in wire.TERMINAL_RUN:
            done.set()

    sub = await nc.subscribe(S.run_status(run_id), cb=cb)
    await client.submit(job_spec(run_id, tasks))
    await asyncio.wait_for(done.wait(), 60 + tasks / 10)
    await sub.unsubscribe()


async def stretch(nc: Any, js: Any, client: PasClient, varz: str, prefix: str, jobs: int, tasks: int) -> Counts:
    """Run `jobs` jobs of `tasks` tasks one after another and count what they cost, per job."""
    seen: collections.Counter[str] = collections.Counter()
    api: collections.Counter[str] = collections.Counter()
    run_ids = {f"{prefix}{i}" for i in range(jobs)}
    api_head = S.JS_API_ALL[:-1]

    async def on_any(m: Any) -> None:
        seen[shape(m.subject, run_ids)] += 1
        if m.subject.startswith(api_head):
            parts = m.subject.split(".")
            api[".".join(parts[2:4]) if parts[2] in ("STREAM", "CONSUMER", "DIRECT") else parts[2]] += 1

    tap = await pas_connect(nc.connected_url.geturl())
    await asyncio.sleep(0.5)
    renewals = await renewals_per_s(tap, IDLE_S)
    d0, w0 = await totals(js)
    sub = await tap.subscribe(">", cb=on_any)
    await tap.flush()
    m0, started = in_msgs(varz), time.monotonic()
    for run_id in sorted(run_ids):
        await one_job(nc, client, run_id, tasks)
    took = time.monotonic() - started
    await asyncio.sleep(0.5)  # what the job still sends after its terminal event (acks, replies)
    m1, window = in_msgs(varz), time.monotonic() - started
    await sub.unsubscribe()
    await tap.close()
    d1, w1 = await totals(js)
    by_stream = {k: (w1[k] - w0.get(k, 0)) / jobs for k in w1 if w1[k] != w0.get(k, 0)}
    beats = sum(n for s, n in seen.items() if s.startswith((S.heartbeat(""), S.kv_subject(S.KV_AGENTS, ""))))
    background = min(beats + renewals * window, m1 - m0)
    return Counts(jobs=jobs, tasks=tasks, ms=took / jobs * 1000, messages=(m1 - m0) / jobs, background=background / jobs,
                  deliveries=(d1 - d0) / jobs, writes=sum(by_stream.values()), by_stream=by_stream,
                  api={k: v / jobs for k, v in api.items()}, seen={k: v / jobs for k, v in seen.items()})


async def measure(jobs: int, lane_tasks: int = 0, cfg: PasConfig | None = None) -> tuple[Counts, Counts | None]:
    """(per 1-task job, per lane job of lane_tasks tasks or None), on a fresh server and Stack."""
    with tempfile.TemporaryDirectory() as tmp:
        srv = EmbeddedServer(Path(tmp) / "nats", port=-1, extra_args=["-m", "-1"])
        srv.start()
        ports = json.loads(next((Path(tmp) / "nats" / "ports").glob("*.ports")).read_text())
        varz = f"{ports['monitoring'][0]}/varz"
        try:
            async with Stack(cfg or load_config(), url=srv.url) as _st:
                nc = await nats.connect(srv.url)
                js = nc.jetstream()
                async with PasClient(nc) as client:
                    await client.submit(job_spec("warm", 1))
                    await client.wait("warm", timeout_s=60)
                    small = await stretch(nc, js, client, varz, "count", jobs, 1)
                    lane = await stretch(nc, js, client, varz, "lane", 1, lane_tasks) if lane_tasks > 1 else None
                await nc.close()
        finally:
            srv.stop()
    return small, lane


def per_task(small: Counts, lane: Counts) -> float:
    """Messages per task of a lane beyond what a 1-task job costs, background left out of both (a lane
    job runs for seconds: its agents beat and renew their pulls meanwhile, whatever the work)."""
    return (lane.work - small.work) / (lane.tasks - 1)


async def main(jobs: int, lane_tasks: int, quiet: bool) -> None:
    small, lane = await measure(jobs, lane_tasks)
    print("\n".join(small.lines("per 1-task job")[:None if not quiet else 6]))
    if lane is not None:
        print("\n".join(lane.lines(f"one job of {lane.tasks} tasks in one lane")[:None if not quiet else 6]))
        print(f"per task in the lane: {per_task(small, lane):.2f} messages in")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--lane-tasks", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="totals only, no per-subject table")
    a = ap.parse_args()
    asyncio.run(main(a.jobs, a.lane_tasks, a.quiet))
