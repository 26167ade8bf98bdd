"""`pas bench` / `python -m benchmarks` [--quick] [--json FILE] [--markdown FILE] [--figure NAME]: the floors,
then every PAS figure (or only the figures named).

Prints the table; --json writes the figures, machine and details; --markdown regenerates a
BENCHMARKS.md-style report (with benchmarks/NOTES.md). Nothing is written unless asked. The full
regeneration of the committed report, from the checkout's root:

    pas bench --json benchmarks/full.json --markdown BENCHMARKS.md

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

from benchmarks import report, run
from benchmarks.procs import busy_s


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="PAS benchmarks: transport floors and PAS figures against them")
    add_arguments(ap)
    ap.add_argument("--with", dest="modules", action="append", default=[], metavar="MODULE",
                    help="import MODULE first (it registers extra producers); repeatable")
    ap.add_argument("--floors-only", action="store_true", help="skip the PAS figures")
    ap.add_argument("--notes", metavar="FILE", default=None,
                    help="notes for the markdown report (default: benchmarks/NOTES.md)")
    return ap


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options `pas bench` has too (pas.surfaces.cli declares the same ones without importing this)."""
    ap.add_argument("--quick", action="store_true", help="a reduced run (a few minutes)")
    ap.add_argument("--json", help="write figures to this JSON file")
    ap.add_argument("--markdown", help="regenerate this markdown report (e.g. BENCHMARKS.md)")
    ap.add_argument("--figure", dest="figures", action="append", default=[], metavar="NAME",
                    help="run only this PAS figure (e.g. hmi), without the floors; repeatable")


def command_line(args: argparse.Namespace) -> str:
    parts = [getattr(args, "prog", "pas bench")]
    if getattr(args, "quick", False):
        parts.append("--quick")
    if getattr(args, "json", None):
        parts += ["--json", str(args.json)]
    if getattr(args, "markdown", None):
        parts += ["--markdown", str(args.markdown)]
    for name in getattr(args, "figures", None) or []:
        parts += ["--figure", name]
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


def _ours_s() -> float:
    """CPU seconds used by this process and its waited-for children (nats-servers, pas up, uvicorn)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _commit() -> str:
    """The measured runtime: short commit, "+modified" when files under pas/ differ from it."""
    import subprocess

    root = report.REPO_ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pas"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+modified" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    """python -m benchmarks ..."""
    args = build_parser().parse_args(argv)
    args.prog = "python -m benchmarks"
    return run_bench(args)


def run_bench(args: argparse.Namespace) -> int:
    """Measure, print, write what was asked; `pas bench` calls this with its parsed arguments."""
    for mod in (*run.DEFAULT_PRODUCER_MODULES, *getattr(args, "modules", [])):
        importlib.import_module(mod)
    quick = bool(getattr(args, "quick", False))
    chosen = getattr(args, "figures", None) or []
    unknown = sorted(set(chosen) - {r.name for r in run.PRODUCERS})
    if unknown:
        print(f"pas bench: no figure {', '.join(unknown)}; figures: {', '.join(r.name for r in run.PRODUCERS)}",
              file=sys.stderr)
        return 2
    load0, commit = _loadavg(), _commit()
    busy0, ours0, t0 = busy_s(), _ours_s(), time.monotonic()
    if chosen:  # one figure alone (e.g. the hmi figure re-measured on a quiet machine): no floors
        ctx = asyncio.run(run.run_all(quick, producers=[r for r in run.PRODUCERS if r.name in chosen],
                                      include_floors=False))
    else:
        ctx = asyncio.run(run.run_all(quick, producers=[] if getattr(args, "floors_only", False) else None))
    other = (busy_s() - busy0) - (_ours_s() - ours0)
    wall = time.monotonic() - t0
    machine = report.machine_info(command_line(args))
    machine["mode"] = "quick" if quick else "full"
    machine["pas_commit"] = commit
    machine["loadavg_1m"] = f"{load0} before, {_loadavg()} after"
    # CPU used meanwhile by processes that are not this benchmark: how disturbed the run was
    other = max(other, 0.0)
    machine["other_processes_cpu"] = f"{other:.1f} CPU-s in {wall:.0f} s ({other / wall:.0%} of one CPU)"
    print(report.render_table(ctx.figures), flush=True)
    if getattr(args, "json", None):
        p = report.write_json(args.json, ctx.figures, machine, details=ctx.details)
        print(f"pas bench: wrote {p}", file=sys.stderr)
    if getattr(args, "markdown", None):
        notes = getattr(args, "notes", None) or report.DEFAULT_NOTES
        p = report.write_markdown(args.markdown, ctx.figures, machine, notes_path=notes)
        print(f"pas bench: wrote {p}", file=sys.stderr)
    return exit_code(ctx.figures)
