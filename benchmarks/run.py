"""Run the benchmarks: the floors first, then every registered figure producer.

A producer is `async def producer(ctx: BenchContext) -> list[Figure]`. Register one with

    from benchmarks.run import register

    @register("pas.latency")          # or register(fn), or register(fn, name="...")
    async def pas_latency(ctx):
        core = ctx.figure("core_chain.p50")   # floors already ran; compare against them
        ...
        return [Figure("pas.latency.p50", value_ms, "ms", floor_name=core.name,
                       floor_value=core.value, target="<= 5x floor", passed=...)]

Producers run in registration order, after the floors, against one shared EmbeddedServer
(ctx.url); a producer that needs a server of its own (failover, replay) calls
`await ctx.start_server("name")`, which is stopped when the run ends. ctx.quick / ctx.sizes say
how big to go; ctx.details[name] = {...} lands in the JSON report. A producer that raises
becomes one failed Figure carrying the error; the other producers still run.

Modules that register producers are imported by `python -m benchmarks --with MODULE`, or listed
in DEFAULT_PRODUCER_MODULES below.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import floors
from benchmarks.stats import Figure, Summary, ms, rate
from pas.transport.server import EmbeddedServer

# modules imported by main() before running, so their @register calls take effect
# (one module per figure, in the order they run; natsbench last: it compares against all of them)
DEFAULT_PRODUCER_MODULES: tuple[str, ...] = tuple(
    f"benchmarks.{m}" for m in ("fig_latency", "fig_throughput", "fig_parallel", "fig_failover", "fig_footprint",
                                "fig_comms", "fig_cli", "fig_firstcall", "fig_hmi", "natsbench"))


@dataclass(frozen=True)
class Sizes:
    hops: int = 6
    chain_n: int = 300
    wq_n: int = 10000  # per work-queue floor shape (two of them; --quick: 500 each, as long as one of 1,000)
    wq_workers: int = 10
    # PAS figures (benchmarks/fig_*.py)
    latency_n: int = 300  # sequential 1-task echo jobs (each start mode)
    latency_warmup: int = 20
    latency_traced: int = 20  # extra jobs traced per stage (pas.run.<run>.>), not in the figure
    tp_tasks: int = 10000  # echo tasks through the pool
    tp_jobs: int = 5  # ... split over this many jobs (runs)
    tp1_tasks: int = 2000  # echo tasks in one job, one lane
    parallel_tasks: int = 20  # `sleep 1` tasks on the 10 programmers
    failover_trials: int = 3
    failover_default_trials: int = 3  # at default settings (ack wait, heartbeats)
    cli_n: int = 10  # calls of each read-only CLI command (and of its bare nats-py script)
    first_call_n: int = 10  # planning calls after the first one of a fresh `pas up`
    footprint_trials: int = 3
    comms_n: int = 50000  # comms entries written, then replayed
    comms_reads: int = 3
    hmi_tasks: int = 2000  # the one-lane job beside a 20-task one, with and without browsers (fig_hmi)
    hmi_pages: int = 5
    # `nats bench` floors (benchmarks.natsbench)
    nb_pubsub_n: int = 400_000  # x 128 B stays under the server's 64 MB pending limit per client: no slow consumer
    nb_reqrep_n: int = 20_000
    nb_js_async_n: int = 100_000
    nb_js_sync_n: int = 10_000

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if not quick:
            return cls()
        # quick: every producer runs once, at sizes that show it works (the suite runs this), not at sizes that
        # make its numbers worth quoting; a figure's cost here is mostly processes started, not n
        return cls(chain_n=30, wq_n=500, latency_n=10, latency_warmup=3, latency_traced=2, tp_tasks=200,
                   tp1_tasks=200, failover_trials=1, failover_default_trials=1, footprint_trials=1, cli_n=1,
                   first_call_n=3, comms_n=5000, comms_reads=1, hmi_tasks=200, hmi_pages=2,
                   nb_pubsub_n=100_000, nb_reqrep_n=2_000, nb_js_async_n=10_000, nb_js_sync_n=1_000)


@dataclass
class BenchContext:
    url: str
    quick: bool
    data_dir: Path
    sizes: Sizes
    server: EmbeddedServer | None = None
    figures: list[Figure] = field(default_factory=list)  # everything produced so far, in order
    raw: dict[str, Any] = field(default_factory=dict)  # floor name -> ChainRun / WorkQueueRun
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able extras for the report
    shared: dict[str, Any] = field(default_factory=dict)  # what producers share in a quick run (pas_common)
    _servers: list[EmbeddedServer] = field(default_factory=list)
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def figure(self, name: str) -> Figure | None:
        for f in reversed(self.figures):
            if f.name == name:
                return f
        return None

    def value(self, name: str) -> float | None:
        f = self.figure(name)
        return None if f is None or math.isnan(f.value) else f.value

    async def start_server(self, name: str, **kwargs: Any) -> EmbeddedServer:
        """Another nats-server (own data dir, free port), stopped when the run ends."""
        kwargs.setdefault("port", -1)
        srv = EmbeddedServer(self.data_dir / name, **kwargs)
        await asyncio.to_thread(srv.start)
        self._servers.append(srv)
        return srv

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `await closer()` when the run ends (last registered, first run), before the servers stop."""
        self._closers.append(closer)

    async def _close(self) -> None:
        while self._closers:
            try:
                await self._closers.pop()()
            except Exception:
                traceback.print_exc(file=sys.stderr)

    def _stop_servers(self) -> None:
        for srv in reversed(self._servers):
            try:
                srv.stop()
            except Exception:
                srv.kill()
        self._servers.clear()


Producer = Callable[[BenchContext], Awaitable[list[Figure]]]


@dataclass(frozen=True)
class Registered:
    name: str
    fn: Producer


FLOOR_PRODUCERS: list[Registered] = []
PRODUCERS: list[Registered] = []


def register(fn_or_name: Producer | str | None = None, *, name: str | None = None) -> Any:
    """Register an extra figure producer; usable as @register, @register("name") or register(fn).
    Registering a name again replaces the earlier producer (keeps its position)."""

    def add(fn: Producer, pname: str | None) -> Producer:
        entry = Registered(pname or str(getattr(fn, "__name__", repr(fn))), fn)
        for i, r in enumerate(PRODUCERS):
            if r.name == entry.name:
                PRODUCERS[i] = entry
                return fn
        PRODUCERS.append(entry)
        return fn

    if callable(fn_or_name):
        return add(fn_or_name, name)
    pname = fn_or_name if isinstance(fn_or_name, str) else name
    return lambda fn: add(fn, pname)


def unregister(name: str) -> None:
    PRODUCERS[:] = [r for r in PRODUCERS if r.name != name]


def register_floor(fn: Producer) -> Producer:
    """Add a floor producer (runs before every PAS figure); named after the function, minus `_floor_`."""
    FLOOR_PRODUCERS.append(Registered(fn.__name__.removeprefix("_floor_"), fn))
    return fn


_floor = register_floor


# ---- the floors as producers ---------------------------------------------------------------
def _chain_figures(ctx: BenchContext, run: floors.ChainRun, label: str, against: str | None) -> list[Figure]:
    name = f"{run.kind}_chain"
    ctx.raw[name] = run
    s = Summary.of(run.latencies_s)
    ctx.details[name] = {
        "hops": run.hops, "n": run.n, "warmup": run.warmup, "payload_bytes": run.payload_bytes,
        "errors": run.errors, "wall_s": run.wall_s, "appends": run.appends,
        "latency_s": s.to_dict(), "jobs_per_s": rate(run.n, run.wall_s),
    }
    note = f"{label}; {run.hops} hops, n={run.n} sequential jobs after {run.warmup} warm-up"
    if run.kind == "js":
        note += f"; {run.appends}/{run.hops * (run.n + run.warmup)} appends in stream"
    if run.errors:
        note += f"; {run.errors} ERRORS"
    passed = False if run.errors else None
    out = []
    for pct, val in (("p50", s.p50), ("p99", s.p99)):
        ref = ctx.figure(f"{against}.{pct}") if against else None
        out.append(Figure(name=f"{name}.{pct}", value=ms(val), unit="ms",
                          floor_name=ref.name if ref else None, floor_value=ref.value if ref else None,
                          target="floor", passed=passed, note=note))
    return out


@_floor
async def _floor_core_chain(ctx: BenchContext) -> list[Figure]:
    run = await floors.core_chain(ctx.url, hops=ctx.sizes.hops, n=ctx.sizes.chain_n)
    return _chain_figures(ctx, run, "bare nats-py request chain", None)


@_floor
async def _floor_js_chain(ctx: BenchContext) -> list[Figure]:
    run = await floors.js_chain(ctx.url, hops=ctx.sizes.hops, n=ctx.sizes.chain_n)
    return _chain_figures(ctx, run, "core chain + 1 JetStream append (PubAck awaited) per hop", "core_chain")


@_floor
async def _floor_http_chain(ctx: BenchContext) -> list[Figure]:
    run = await floors.http_chain(hops=ctx.sizes.hops, n=ctx.sizes.chain_n)
    return _chain_figures(ctx, run, "FastAPI/uvicorn processes chained by httpx POSTs", "core_chain")


WORKQUEUE_FLOORS = {"per_worker": "workqueue_raw", "one_connection": "workqueue_1conn"}
"""The work-queue floor's two shapes (benchmarks.floors.workqueue_raw) -> their figures' prefix."""


def workqueue_floor(ctx: BenchContext) -> Figure | None:
    """The work-queue floor PAS throughput is set against: the faster of its two shapes in this run
    (issue 21: the fastest plain nats-py loop, a connection per worker or one for all)."""
    got = [f for p in WORKQUEUE_FLOORS.values()
           if (f := ctx.figure(f"{p}.tasks_per_s")) is not None and not math.isnan(f.value)]
    return max(got, key=lambda f: f.value, default=None)


async def _workqueue_figures(ctx: BenchContext, shape: floors.WorkQueueShape) -> list[Figure]:
    sz, prefix = ctx.sizes, WORKQUEUE_FLOORS[shape]
    run = await floors.workqueue_raw(ctx.url, n=sz.wq_n, workers=sz.wq_workers, shape=shape)
    ctx.raw[prefix] = run
    ctx.details[prefix] = dataclasses.asdict(run)
    ok = run.acked == run.n and run.remaining == 0
    conns = "a connection per worker" if shape == "per_worker" else "one connection for them and the publisher"
    note = (f"n={run.n}, {run.workers} pull workers on one durable ({conns}), fetch({run.batch})+ack; "
            f"first publish -> last ack; acked {run.acked}, left {run.remaining}")
    if run.redelivered:
        note += f", {run.redelivered} redelivered"
    return [
        Figure(name=f"{prefix}.tasks_per_s", value=rate(run.acked, run.elapsed_s), unit="tasks/s",
               target="floor", passed=None if ok else False, note=note),
        Figure(name=f"{prefix}.publish_per_s", value=rate(run.published, run.publish_s), unit="msgs/s",
               target="floor", passed=None if ok else False,
               note="publish_async, <=1000 PubAcks in flight, while the workers drain"),
    ]


@_floor
async def _floor_workqueue_raw(ctx: BenchContext) -> list[Figure]:
    return await _workqueue_figures(ctx, "per_worker")


@_floor
async def _floor_workqueue_1conn(ctx: BenchContext) -> list[Figure]:
    return await _workqueue_figures(ctx, "one_connection")


# ---- running -------------------------------------------------------------------------------
async def _run_producer(ctx: BenchContext, reg: Registered, log: Callable[[str], None]) -> list[Figure]:
    t0 = time.perf_counter()
    log(f"[bench] {reg.name} ...")
    try:
        figs = list(await reg.fn(ctx))
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        figs = [Figure(name=reg.name, value=math.nan, unit="", target="runs", passed=False,
                       note=f"error: {type(e).__name__}: {e}")]
    log(f"[bench] {reg.name} done in {time.perf_counter() - t0:.1f}s")
    ctx.figures.extend(figs)
    return figs


async def run_all(quick: bool, producers: Sequence[Registered] | None = None, *, include_floors: bool = True,
                  log: Callable[[str], None] | None = None) -> BenchContext:
    """Start an EmbeddedServer in a temp dir, run the floors then `producers` (default: the
    registered ones), stop everything; returns the context (ctx.figures, ctx.details)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    todo = (list(FLOOR_PRODUCERS) if include_floors else []) + list(PRODUCERS if producers is None else producers)
    tmp = Path(tempfile.mkdtemp(prefix="pas-bench-"))
    # -m -1: an HTTP monitoring port, where the `nats bench` floors see when the CLI's subscriber is ready
    server = EmbeddedServer(tmp / "nats", port=-1, extra_args=["-m", "-1"])
    ctx = BenchContext(url="", quick=quick, data_dir=tmp, sizes=Sizes.for_mode(quick), server=server)
    try:
        ctx.url = await asyncio.to_thread(server.start)
        for reg in todo:
            await _run_producer(ctx, reg, log)
        return ctx
    finally:
        await ctx._close()
        ctx._stop_servers()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def run_floors(quick: bool) -> list[Figure]:
    """Only the floors, on a server of their own."""
    ctx = await run_all(quick, producers=[], include_floors=True)
    return ctx.figures
