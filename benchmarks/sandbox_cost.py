"""The cost of the sandbox: start a sandboxed `true` against a plain one, in the same run.

    PYTHONPATH=. python benchmarks/sandbox_cost.py [N]

Both go through pas.execution.executors.run_argv (what a command task uses), in a small git worktree-sized
directory, alternating so that load on the machine hits both alike: "plain" is settings.policy.sandbox
off (setpriv --pdeathsig, scrubbed environment), "sandboxed" is the default (bwrap + setpriv +
prlimit, and, as root, the workspace handed to the task's uid and back). Prints medians, p90 and
the ratio.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pas.execution.executors import Bounds, run_argv
from pas.execution.sandbox import Box


async def once(box: Box, ws: Path) -> float:
    t0 = time.perf_counter()
    r = await run_argv(["true"], ws, Bounds(30, 4096), box=box)
    dt = time.perf_counter() - t0
    assert r.status == "completed", r
    return dt * 1000


async def main(n: int) -> None:
    ws = Path(tempfile.mkdtemp(prefix="pas-sandbox-cost-"))
    for i in range(200):  # a small project: 200 files in 10 directories
        d = ws / f"pkg{i % 10}"
        d.mkdir(exist_ok=True)
        (d / f"m{i}.py").write_text("x = 1\n")
    plain, boxed = Box(mode="off"), Box()
    problem = boxed.problem()
    if problem:
        sys.exit(f"no sandbox here: {problem}")
    try:
        for _ in range(5):  # warm-up
            await once(plain, ws)
            await once(boxed, ws)
        a: list[float] = []
        b: list[float] = []
        for _ in range(n):
            a.append(await once(plain, ws))
            b.append(await once(boxed, ws))
    finally:
        shutil.rmtree(ws, ignore_errors=True)

    def p90(xs: list[float]) -> float:
        return sorted(xs)[int(0.9 * (len(xs) - 1))]

    ma, mb = statistics.median(a), statistics.median(b)
    print(f"n={n} each, alternating; uid {os.geteuid()}; load {os.getloadavg()[0]:.2f}")
    print(f"plain     true: median {ma:.2f} ms  p90 {p90(a):.2f} ms")
    print(f"sandboxed true: median {mb:.2f} ms  p90 {p90(b):.2f} ms")
    print(f"ratio (median): {mb / ma:.1f}x  (+{mb - ma:.2f} ms per sandboxed process start)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
