"""`pas bench [--quick] [--json FILE] [--markdown FILE]`: the floors, then every PAS figure.

Prints the table; --json writes the figures, machine and details; --markdown regenerates a
BENCHMARKS.md-style report (with benchmarks/NOTES.md). Nothing is written unless asked.

Exit status: 0 every target met, 1 some target missed, 2 a producer failed to run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from typing import Any

from pas.bench import report, run


def command_line(args: argparse.Namespace) -> str:
    parts = ["pas bench"]
    if getattr(args, "quick", False):
        parts.append("--quick")
    if getattr(args, "json", None):
        parts += ["--json", str(args.json)]
    if getattr(args, "markdown", None):
        parts += ["--markdown", str(args.markdown)]
    return " ".join(parts)


def exit_code(figures: list[Any]) -> int:
    if any(f.passed is False and f.note.startswith("error:") for f in figures):
        return 2
    return 1 if any(f.passed is False for f in figures) else 0


def _loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def _busy_s() -> float:
    """CPU seconds (all CPUs, non-idle) the whole machine has used since boot."""
    try:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return float("nan")


def _ours_s() -> float:
    """CPU seconds used by this process and its waited-for children (nats-servers, pas up, uvicorn)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _commit() -> str:
    """The measured runtime: short commit, "+modified" when files under pas/ (not pas/bench) differ."""
    import subprocess

    root = report.REPO_ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pas", ":(exclude)pas/bench"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+modified" if dirty else "")


def main(args: argparse.Namespace) -> int:
    for mod in run.DEFAULT_PRODUCER_MODULES:
        importlib.import_module(mod)
    quick = bool(getattr(args, "quick", False))
    load0, commit = _loadavg(), _commit()
    busy0, ours0, t0 = _busy_s(), _ours_s(), time.monotonic()
    ctx = asyncio.run(run.run_all(quick))
    other = (_busy_s() - busy0) - (_ours_s() - ours0)
    wall = time.monotonic() - t0
    machine = report.machine_info(command_line(args))
    machine["mode"] = "quick" if quick else "full"
    machine["pas_commit"] = commit
    machine["loadavg_1m"] = f"{load0} before, {_loadavg()} after"
    # CPU used meanwhile by processes that are not this benchmark: how disturbed the run was
    machine["other_processes_cpu"] = f"{max(other, 0.0):.1f} CPU-s in {wall:.0f} s ({max(other, 0.0) / wall:.0%} of one CPU)"
    print(report.render_table(ctx.figures), flush=True)
    if getattr(args, "json", None):
        p = report.write_json(args.json, ctx.figures, machine, details=ctx.details)
        print(f"pas bench: wrote {p}", file=sys.stderr)
    if getattr(args, "markdown", None):
        p = report.write_markdown(args.markdown, ctx.figures, machine)
        print(f"pas bench: wrote {p}", file=sys.stderr)
    return exit_code(ctx.figures)
