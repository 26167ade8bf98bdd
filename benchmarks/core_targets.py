"""Issue 21's speed targets alone, at full sizes, ratios from one run (about 2 minutes on 2 cores).

`pas bench --figure` runs PAS figures without the floors; the full `pas bench` takes about an hour. This
runs only the floors these targets compare with (core_chain, js_chain, both work-queue shapes) and the
figures they judge (latency in-process and `pas up`, throughput, one-lane throughput, parallel efficiency):

    python -m benchmarks.core_targets [--markdown FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time

from benchmarks import run as R
from benchmarks.report import render_markdown_table, render_table

FLOORS = {"core_chain", "js_chain", "workqueue_raw", "workqueue_1conn"}
FIGURES = ["pas.latency", "pas.latency_up", "pas.throughput", "pas.throughput_1lane", "pas.parallel"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.core_targets", description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", help="also write the table as markdown to this file")
    args = ap.parse_args(argv)
    for m in ("fig_latency", "fig_throughput", "fig_parallel"):
        importlib.import_module(f"benchmarks.{m}")
    R.FLOOR_PRODUCERS[:] = [r for r in R.FLOOR_PRODUCERS if r.name in FLOORS]
    producers = [r for r in R.PRODUCERS if r.name in FIGURES]
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    ctx = asyncio.run(R.run_all(False, producers))
    print(render_table(ctx.figures))
    print(f"{time.monotonic() - t0:.0f} s; load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after",
          file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown_table(ctx.figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
