"""`pas bench [--quick] [--json FILE] [--markdown FILE]`: the floors, then every PAS figure.

Prints the table; --json writes the figures, machine and details; --markdown regenerates a
BENCHMARKS.md-style report (with benchmarks/NOTES.md). Nothing is written unless asked.

Exit status: 0 every target met, 1 some target missed, 2 a producer failed to run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
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


def main(args: argparse.Namespace) -> int:
    for mod in run.DEFAULT_PRODUCER_MODULES:
        importlib.import_module(mod)
    quick = bool(getattr(args, "quick", False))
    ctx = asyncio.run(run.run_all(quick))
    machine = report.machine_info(command_line(args))
    machine["mode"] = "quick" if quick else "full"
    print(report.render_table(ctx.figures), flush=True)
    if getattr(args, "json", None):
        p = report.write_json(args.json, ctx.figures, machine, details=ctx.details)
        print(f"pas bench: wrote {p}", file=sys.stderr)
    if getattr(args, "markdown", None):
        p = report.write_markdown(args.markdown, ctx.figures, machine)
        print(f"pas bench: wrote {p}", file=sys.stderr)
    return exit_code(ctx.figures)
