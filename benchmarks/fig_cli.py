"""pas.cli: the read-only commands (`pas agents`, `pas status <run>`, `pas runs`) timed as users run
them, one process each, against benchmarks/cli_bare.py (a bare nats-py script, also one process each)
that makes the same NATS requests and prints the replies; target <= 2x the script (issue 11).

Both run against `pas up --no-http` in a process of its own with one finished run (in a quick run, against
pas.latency_up's `pas up`, which then stays up for them); they alternate,
after one unmeasured call of each (of the first command only in a quick run), and each figure is the
median wall time of cli_n calls.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

from benchmarks.pas_common import RunWatch, connect, echo_task, one_job
from benchmarks.procs import ChildPas
from benchmarks.run import BenchContext, register
from benchmarks.stats import Figure
from pas.transport.client import PasClient

TARGET_RATIO = 2.0
RUN_ID = "cli-1"

BARE = Path(__file__).resolve().parent / "cli_bare.py"  # the floor: nothing but Python and nats-py


def commands(url: str) -> dict[str, tuple[list[str], list[str], str]]:
    """name -> (the pas command, the bare script making its NATS requests, a string both must print)."""
    pas = [sys.executable, "-m", "pas"]
    floor = [sys.executable, str(BARE), "--url", url]
    return {
        "agents": ([*pas, "agents", "--nats-url", url], [*floor, "agents"], "prog-001"),
        "status": ([*pas, "status", RUN_ID, "--nats-url", url], [*floor, "status", RUN_ID], RUN_ID),
        "runs": ([*pas, "runs", "--nats-url", url], [*floor, "runs"], RUN_ID),
    }


async def timed(argv: list[str], cwd: str, expect: str) -> float:
    """Wall time of one process, start to exit; it must succeed and print `expect`."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    dt = time.perf_counter() - t0
    if proc.returncode != 0 or expect not in out.decode():
        raise RuntimeError(f"{' '.join(argv[:5])} ... exited {proc.returncode}: {(out + err).decode()[-800:]}")
    return dt


@register("pas.cli")
async def pas_cli(ctx: BenchContext) -> list[Figure]:
    workdir = ctx.data_dir / "cli"
    workdir.mkdir(parents=True, exist_ok=True)
    url = ctx.shared.get("pas_up") if ctx.quick else None  # a quick run: pas.latency_up's `pas up`
    srv, child = None, None
    if url is None:
        srv = await ctx.start_server("pas-cli")
        url, child = srv.url, ChildPas(["--nats-url", srv.url, "--no-http"], workdir, "up")
        child.spawn()
    times: dict[str, dict[str, list[float]]] = {}
    try:
        if child is not None:
            await child.wait_ready()
        nc = await connect(url, "bench-cli")
        try:
            watch = RunWatch(nc)
            _, status = await one_job(PasClient(nc, timeout_s=10), watch, RUN_ID,
                                      {"title": "cli", "tasks": [echo_task("code")]})
            await watch.close()
        finally:
            await nc.close()
        if status != "completed":
            raise RuntimeError(f"the run for `pas status` ended {status}")
        for k, (name, (pas_argv, floor_argv, expect)) in enumerate(commands(url).items()):
            t = times[name] = {"pas": [], "floor": []}
            if k == 0 or not ctx.quick:  # unmeasured: page cache, .pyc files (a quick run warms them once)
                await timed(pas_argv, str(workdir), expect)
                await timed(floor_argv, str(workdir), expect)
            for _ in range(ctx.sizes.cli_n):
                t["pas"].append(await timed(pas_argv, str(workdir), expect))
                t["floor"].append(await timed(floor_argv, str(workdir), expect))
    finally:
        if child is not None and srv is not None:
            await asyncio.to_thread(child.terminate)
            await asyncio.to_thread(srv.stop)
    ctx.details["pas.cli"] = {"n": ctx.sizes.cli_n, "seconds": times}
    out = []
    for name, t in times.items():
        value, floor = statistics.median(t["pas"]), statistics.median(t["floor"])
        out.append(Figure(f"pas.cli.{name}_s", value, "s", floor_name=f"cli_bare.py {name}",
                          floor_value=floor, target=f"<= {TARGET_RATIO:.0f}x floor",
                          passed=value <= TARGET_RATIO * floor,
                          note=(f"`pas {name}{' ' + RUN_ID if name == 'status' else ''}` as a process, median of "
                                f"{len(t['pas'])}: {', '.join(f'{x:.2f}' for x in t['pas'])} s; benchmarks/cli_bare.py "
                                f"{name} (nats-py, the same requests): {', '.join(f'{x:.2f}' for x in t['floor'])} s")))
    return out
