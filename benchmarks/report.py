"""Render benchmark Figures: a plain-text table for the terminal, JSON, and BENCHMARKS.md."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTES = REPO_ROOT / "benchmarks" / "NOTES.md"
NOTES_HEADING = "What limits each figure / profile-driven fixes"

COLUMNS = ("figure", "value", "unit", "floor", "floor value", "ratio", "target", "result", "note")


# ---- formatting ----------------------------------------------------------------------------
def fmt_num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None or math.isnan(r) else f"{r:.2f}x"


def fmt_passed(p: bool | None) -> str:
    return "-" if p is None else ("PASS" if p else "FAIL")


def _row(f: Figure) -> list[str]:
    return [f.name, fmt_num(f.value), f.unit, f.floor_name or "-", fmt_num(f.floor_value),
            fmt_ratio(f.ratio), f.target or "-", fmt_passed(f.passed), f.note]


def render_table(figures: Sequence[Figure]) -> str:
    """A fixed-width table; the note column is left unpadded at the end of each line."""
    rows = [list(COLUMNS)] + [_row(f) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    numeric = {1, 4, 5}
    lines = []
    for k, r in enumerate(rows):
        cells = [(c.rjust(w) if i in numeric and k else c.ljust(w))
                 for i, (c, w) in enumerate(zip(r, widths, strict=False))]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(lines)


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown_table(figures: Sequence[Figure]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    align = "|" + "|".join("---:" if i in (1, 4, 5) else "---" for i in range(len(COLUMNS))) + "|"
    body = ["| " + " | ".join(_md_cell(c) for c in _row(f)) + " |" for f in figures]
    return "\n".join([head, align, *body])


# ---- machine -------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and val.strip():
                return val.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kb = int(line.split()[1])
                return f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _nats_server_version() -> str:
    try:
        from pas.transport.server import find_binary

        out = subprocess.run([find_binary(), "--version"], capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip()
        return text.removeprefix("nats-server:").strip() or "unknown"
    except Exception as e:
        return f"unknown ({e})"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _natscli_version() -> str:
    from benchmarks.natsbench import NATSCLI_VERSION, find_natscli

    path, why = find_natscli()
    return f"{NATSCLI_VERSION} ({path})" if path else why


def machine_info(command: str | None = None) -> dict[str, Any]:
    cpus = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cpus
    return {
        "cpu_count": cpus,
        "cpu_usable": usable,
        "cpu_model": _cpu_model(),
        "memory": _mem_total(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "nats_server": _nats_server_version(),
        "nats_py": _version("nats-py"),
        "natscli": _natscli_version(),
        "http_stack": f"fastapi {_version('fastapi')}, uvicorn {_version('uvicorn')}, httpx {_version('httpx')}",
        "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "command": command or " ".join([Path(sys.executable).name, *sys.argv]),
    }


# ---- JSON ----------------------------------------------------------------------------------
def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def to_json(figures: Sequence[Figure], machine: dict[str, Any] | None = None,
            details: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json_safe({
        "machine": machine or {},
        "figures": [f.to_dict() for f in figures],
        "details": details or {},
    })


def write_json(path: str | Path, figures: Sequence[Figure], machine: dict[str, Any] | None = None,
               details: dict[str, Any] | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_json(figures, machine, details), indent=2, allow_nan=False) + "\n")
    return p


def load_json(path: str | Path) -> tuple[list[Figure], dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    return [Figure.from_dict(d) for d in data.get("figures", [])], data.get("machine", {})


# ---- markdown ------------------------------------------------------------------------------
def read_notes(path: str | Path | None = DEFAULT_NOTES) -> str:
    """The notes file's body, without its own top heading (the report supplies the heading)."""
    if path is None:
        return ""
    p = Path(path)
    if not p.is_file():
        return ""
    lines = p.read_text().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0].startswith("# "):
        lines.pop(0)
    return "\n".join(lines).strip()


def render_natsbench_section(figures: Sequence[Figure]) -> list[str]:
    """Markdown lines: the official tool's floors and what is set against them (empty if not measured)."""
    tool = [f for f in figures if f.name.startswith("natsbench.")]
    if not tool:
        return []
    vs = []
    for f in figures:  # each figure set against the tool, after the same figure against its own floor
        if f.name.endswith(".vs_natsbench"):
            own = next((g for g in figures if g.name == f.name.removesuffix(".vs_natsbench")), None)
            vs += [own, f] if own is not None and own.floor_name else [f]
    return [
        "## Against the official tool (`nats bench`)",
        "",
        "`nats bench` (natscli, Go) on the same nats-server, in the same run, with the same 128-byte",
        "messages and file storage: core pub/sub, sequential service request/reply, JetStream publish",
        "(async and sync). The chain floors and PAS are set against a chain of the tool's own hops:",
        "`hops x request/reply p50` (core), `hops x (request/reply p50 + sync publish p50)` (one append",
        "per hop), and the work-queue publish rate and PAS throughput against the tool's async publish rate;",
        "a PAS figure's row against its own floor comes just before.",
        "",
        render_markdown_table([*tool, *vs]),
        "",
    ]


def render_markdown(figures: Sequence[Figure], machine: dict[str, Any], notes: str = "") -> str:
    m = machine
    out = [
        "# PAS benchmarks",
        "",
        f"Produced by `{m.get('command', 'python -m benchmarks')}` on {m.get('date', '?')}.",
        "Floors are the bare transports with no PAS code in the path; every PAS figure names the",
        "floor it is compared with, and ratio = value / floor value (same unit).",
        "",
        "## Figures",
        "",
        render_markdown_table(figures),
        "",
        *render_natsbench_section(figures),
        "## Machine",
        "",
        f"- CPUs: {m.get('cpu_count', '?')} ({m.get('cpu_usable', '?')} usable)",
        f"- CPU model: {m.get('cpu_model', '?')}",
        f"- Memory: {m.get('memory', '?')}",
        f"- OS: {m.get('os', '?')}",
        f"- Python: {m.get('python', '?')}",
        f"- nats-server: {m.get('nats_server', '?')}",
        f"- nats-py: {m.get('nats_py', '?')}",
        *([f"- natscli (`nats bench` floors): {m['natscli']}"] if m.get("natscli") else []),
        f"- HTTP stack (http_chain floor): {m.get('http_stack', '?')}",
        f"- Date: {m.get('date', '?')}",
        *([f"- Load average (1 min): {m['loadavg_1m']}"] if m.get("loadavg_1m") else []),
        *([f"- CPU used by other processes during the run: {m['other_processes_cpu']}"]
          if m.get("other_processes_cpu") else []),
        *([f"- Mode: {m['mode']}"] if m.get("mode") else []),
        *([f"- PAS commit measured: {m['pas_commit']}"] if m.get("pas_commit") else []),
        f"- Command: `{m.get('command', '?')}`",
        "",
        f"## {NOTES_HEADING}",
        "",
        notes.strip() or "_No notes yet (benchmarks/NOTES.md)._",
        "",
    ]
    return "\n".join(out)


def write_markdown(path: str | Path, figures: Sequence[Figure], machine: dict[str, Any],
                   notes_path: str | Path | None = DEFAULT_NOTES) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_markdown(figures, machine, read_notes(notes_path)))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """python -m benchmarks.report RESULTS.json [BENCHMARKS.md]: re-render a saved run (e.g. after
    editing benchmarks/NOTES.md) without measuring again; prints the table when no .md is given."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or len(args) > 2:
        print("usage: python -m benchmarks.report RESULTS.json [OUT.md]", file=sys.stderr)
        return 2
    figures, machine = load_json(args[0])
    if len(args) == 2:
        write_markdown(args[1], figures, machine)
    else:
        print(render_table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
