"""Floors from the official tool: `nats bench` (natscli, Go) on the benchmark's own nats-server.

Measured in the same `pas bench` run, on the same server and settings as the nats-py floors:

- natsbench.pubsub:  `nats bench sub` (one subscriber process, started and subscribed first) and
                     `nats bench pub` (one publisher): core publish/subscribe throughput.
- natsbench.reqrep:  `nats bench service serve` and `nats bench service request`: sequential
                     request/reply, throughput and round-trip latency.
- natsbench.js_pub:  `nats bench js pub async` (batched acks) and `sync` (each PubAck awaited) into a
                     file-storage stream of its own, deleted afterwards: JetStream append rate/latency.

Then natsbench.compare (a producer that runs after the PAS figures) sets the nats-py floors and the
PAS figures against these numbers. Without natscli (no Go to build it) every figure is reported as
skipped with the reason, never as a failure of PAS.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import json
import math
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import floors
from benchmarks.run import BenchContext, Producer, register, register_floor
from benchmarks.stats import Figure
from pas.transport.server import EmbeddedServer

NATSCLI_VERSION = "v0.5.0"
TIMEOUT_S = 180.0
SIZE = f"{floors.DEFAULT_PAYLOAD}B"


def find_natscli() -> tuple[str | None, str]:
    """(path, "") of natscli NATSCLI_VERSION ($PAS_TOOLS_BIN, ~/.local/share/pas/bin, PATH), else (None, why)."""
    tools = Path(os.environ.get("PAS_TOOLS_BIN") or Path.home() / ".local/share/pas/bin")
    seen = []
    for cand in (str(tools / "nats"), shutil.which("nats")):
        if cand and os.access(cand, os.X_OK):
            try:
                out = subprocess.run([cand, "--version"], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.SubprocessError) as e:
                seen.append(f"{cand}: {e}")
                continue
            version = (out.stdout or out.stderr).strip()
            if version == NATSCLI_VERSION:
                return cand, ""
            seen.append(f"{cand} is {version}")
    return None, (f"natscli {NATSCLI_VERSION} not installed ({'; '.join(seen) or 'no nats binary'}); "
                  "scripts/setup.sh --dev builds it when Go is present")


def monitor_url(server: EmbeddedServer | None) -> str | None:
    """The server's HTTP monitoring URL (started with -m -1), read from its ports file."""
    if server is None or server.proc is None:
        return None
    p = server.data_dir / "ports" / f"nats-server_{server.proc.pid}.ports"
    try:
        return (json.loads(p.read_text()).get("monitoring") or [None])[0]
    except (OSError, ValueError):
        return None


@dataclass
class Row:
    """One line of `nats bench --csv` (MsgCount is not used: v0.5.0 writes 2x the count for JS publishers)."""

    msgs_per_s: float
    duration_s: float
    p50_us: float = math.nan
    p99_us: float = math.nan


def _read_csv(path: Path) -> Row:
    with path.open() as fh:
        rows = list(csv.DictReader(line.lstrip("#") for line in fh))
    r = rows[0]
    return Row(float(r["MsgsPerSec"]), float(r["DurationSecs"]), float(r.get("P50LatencyMicroSecs") or "nan"),
               float(r.get("P99LatencyMicroSecs") or "nan"))


class NatsBench:
    def __init__(self, binary: str, url: str, tmp: Path) -> None:
        self.binary, self.url, self.tmp = binary, url, tmp
        self.tag = secrets.token_hex(4)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--server", self.url, "--no-context", *args]

    async def run(self, name: str, *args: str) -> Row:
        """`nats bench ARGS --csv FILE`; the figures come from the CSV it writes."""
        out = self.tmp / f"{name}-{self.tag}.csv"
        proc = await asyncio.create_subprocess_exec(*self.argv("bench", *args, "--no-progress", "--csv", str(out)),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            text, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"nats bench {' '.join(args)} exited {proc.returncode}: {text.decode()[-500:]}")
        return _read_csv(out)

    async def background(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(*self.argv("bench", *args, "--no-progress"),
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def wait_subscribed(self, monitor: str, subject: str, proc: asyncio.subprocess.Process) -> None:
        """Until the server holds a subscription on `subject` (the CLI logs before it subscribes)."""
        deadline = time.monotonic() + 30
        while True:
            conns = await asyncio.to_thread(_connz, monitor)
            if any(subject in (c.get("subscriptions_list") or []) for c in conns):
                return
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats bench on {subject} never subscribed (rc={proc.returncode})")
            await asyncio.sleep(0.05)


def _connz(monitor: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{monitor}/connz?subs=1&limit=1024", timeout=5) as r:
        return json.loads(r.read()).get("connections") or []


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def pubsub(nb: NatsBench, monitor: str, n: int) -> tuple[Row, Row]:
    """(subscriber, publisher): one `nats bench sub` counting n messages from one `nats bench pub`."""
    subject = f"bench.{nb.tag}.pubsub"
    out = nb.tmp / f"sub-{nb.tag}.csv"
    sub = await nb.background("sub", subject, "--msgs", str(n), "--size", SIZE, "--csv", str(out))
    try:
        await nb.wait_subscribed(monitor, subject, sub)
        pub = await nb.run("pub", "pub", subject, "--msgs", str(n), "--size", SIZE)
        try:
            await asyncio.wait_for(sub.wait(), TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"nats bench sub did not receive all {n} messages (slow consumer?)") from None
        if sub.returncode != 0 or not out.is_file():
            err = (await sub.stderr.read()).decode()[-500:] if sub.stderr else ""
            raise RuntimeError(f"nats bench sub exited {sub.returncode}: {err}")
        return _read_csv(out), pub
    finally:
        await _stop(sub)


async def reqrep(nb: NatsBench, monitor: str, n: int) -> Row:
    subject = f"bench.{nb.tag}.service"
    serve = await nb.background("service", "serve", subject)
    try:
        await nb.wait_subscribed(monitor, subject, serve)
        return await nb.run("request", "service", "request", subject, "--msgs", str(n), "--size", SIZE)
    finally:
        await _stop(serve)


async def js_pub(nb: NatsBench, mode: str, n: int) -> Row:
    stream = f"BENCH_NB_{nb.tag}_{mode.upper()}"
    try:
        return await nb.run(f"js-{mode}", "js", "pub", mode, f"bench.{nb.tag}.js.{mode}", "--create",
                            "--storage", "file", "--stream", stream, "--msgs", str(n), "--size", SIZE)
    finally:
        await asyncio.to_thread(subprocess.run, nb.argv("stream", "rm", "-f", stream),
                                capture_output=True, timeout=30)


# ---- producers ---------------------------------------------------------------------------------
def _skipped(name: str, why: str) -> list[Figure]:
    return [Figure(name=name, value=math.nan, unit="", target="floor", passed=None, note=f"skipped: {why}")]


Measure = Callable[[BenchContext, NatsBench, str], Awaitable[list[Figure]]]


def _natscli_floor(name: str, *, monitor: bool = True) -> Callable[[Measure], Producer]:
    """Register a floor measured with natscli on the benchmark's server, given the server's monitoring
    URL (with `monitor`; else ""). Without either, the figure `name` is reported as skipped, with why."""

    def wrap(measure: Measure) -> Producer:
        @functools.wraps(measure)
        async def floor(ctx: BenchContext) -> list[Figure]:
            binary, why = find_natscli()
            url = monitor_url(ctx.server) if monitor else ""
            if binary is None or url is None:
                return _skipped(name, why or "the server has no monitoring port")
            return await measure(ctx, NatsBench(binary, ctx.url, ctx.data_dir), url)

        return register_floor(floor)

    return wrap


@_natscli_floor("natsbench.pubsub")
async def _floor_natsbench_pubsub(ctx: BenchContext, nb: NatsBench, monitor: str) -> list[Figure]:
    n = ctx.sizes.nb_pubsub_n
    sub, pub = await pubsub(nb, monitor, n)
    ctx.details["natsbench.pubsub"] = {"n": n, "size": SIZE, "sub": asdict(sub), "pub": asdict(pub)}
    note = f"nats bench sub + pub ({NATSCLI_VERSION}), 1 subscriber, 1 publisher, n={n}, {SIZE}"
    return [Figure("natsbench.pubsub.sub_per_s", sub.msgs_per_s, "msgs/s", target="floor", note=note),
            Figure("natsbench.pubsub.pub_per_s", pub.msgs_per_s, "msgs/s", target="floor", note=note)]


@_natscli_floor("natsbench.reqrep")
async def _floor_natsbench_reqrep(ctx: BenchContext, nb: NatsBench, monitor: str) -> list[Figure]:
    n = ctx.sizes.nb_reqrep_n
    row = await reqrep(nb, monitor, n)
    ctx.details["natsbench.reqrep"] = {"n": n, "size": SIZE, **asdict(row)}
    note = f"nats bench service serve + request ({NATSCLI_VERSION}), 1 client, sequential, n={n}, {SIZE}"
    return [Figure("natsbench.reqrep.msgs_per_s", row.msgs_per_s, "msgs/s", target="floor", note=note),
            Figure("natsbench.reqrep.p50", row.p50_us / 1000, "ms", target="floor", note=note),
            Figure("natsbench.reqrep.p99", row.p99_us / 1000, "ms", target="floor", note=note)]


@_natscli_floor("natsbench.js_pub", monitor=False)
async def _floor_natsbench_js_pub(ctx: BenchContext, nb: NatsBench, _monitor: str) -> list[Figure]:
    n_async, n_sync = ctx.sizes.nb_js_async_n, ctx.sizes.nb_js_sync_n
    a = await js_pub(nb, "async", n_async)
    s = await js_pub(nb, "sync", n_sync)
    ctx.details["natsbench.js_pub"] = {"size": SIZE, "async": {"n": n_async, **asdict(a)},
                                       "sync": {"n": n_sync, **asdict(s)}}
    base = f"nats bench js pub ({NATSCLI_VERSION}), file storage, own stream, 1 client, {SIZE}"
    return [Figure("natsbench.js_pub_async.msgs_per_s", a.msgs_per_s, "msgs/s", target="floor",
                   note=f"{base}, async (batches of 500 acks), n={n_async}"),
            Figure("natsbench.js_pub_sync.msgs_per_s", s.msgs_per_s, "msgs/s", target="floor",
                   note=f"{base}, sync (each PubAck awaited), n={n_sync}"),
            Figure("natsbench.js_pub_sync.p50", s.p50_us / 1000, "ms", target="floor",
                   note=f"{base}, sync: one append, PubAck awaited")]


@register("natsbench.compare")
async def natsbench_compare(ctx: BenchContext) -> list[Figure]:
    """The nats-py floors and PAS's figures set against the official tool's numbers (no targets)."""
    hops = ctx.sizes.hops
    req, js_sync, js_async = (ctx.value(n) for n in ("natsbench.reqrep.p50", "natsbench.js_pub_sync.p50",
                                                      "natsbench.js_pub_async.msgs_per_s"))
    if req is None or js_sync is None or js_async is None:
        return []  # the floors were skipped; their figures say why
    chain = hops * req
    chain_js = hops * (req + js_sync)
    out = []
    pairs = [("core_chain.p50", f"{hops} x natsbench.reqrep.p50", chain, "ms"),
             ("js_chain.p50", f"{hops} x (natsbench.reqrep.p50 + natsbench.js_pub_sync.p50)", chain_js, "ms"),
             ("pas.latency.p50", f"{hops} x (natsbench.reqrep.p50 + natsbench.js_pub_sync.p50)", chain_js, "ms"),
             ("pas.latency_up.p50", f"{hops} x (natsbench.reqrep.p50 + natsbench.js_pub_sync.p50)", chain_js, "ms"),
             ("workqueue_raw.publish_per_s", "natsbench.js_pub_async.msgs_per_s", js_async, "msgs/s"),
             ("pas.throughput.tasks_per_s", "natsbench.js_pub_async.msgs_per_s", js_async, "tasks/s"),
             ("pas.throughput_1lane.tasks_per_s", "natsbench.js_pub_async.msgs_per_s", js_async, "tasks/s")]
    for name, floor_name, floor_value, unit in pairs:
        v = ctx.value(name)
        if v is not None:
            out.append(Figure(f"{name}.vs_natsbench", v, unit, floor_name=floor_name, floor_value=floor_value,
                              note="against the official Go tool on the same server"))
    return out
