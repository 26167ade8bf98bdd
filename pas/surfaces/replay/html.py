"""The timeline as one self-contained HTML page: a Gantt chart in inline SVG, inline CSS, no script
from anywhere (no CDN). Rows: the run, each lane, each job, each task (queued then running segments,
coloured by outcome), each LLM call; the critical path is outlined. Every bar carries data-*
attributes (kind, id, status, start, end) so a browser test can check what was drawn.

Every value that came from the bus (ids, titles, statuses, agents, models, errors) is escaped where it
is written (_e), in text and in attributes alike: a run event whose status is markup stays text."""

from __future__ import annotations

import html
import json
from typing import Any

ROW_H, BAR_H, LABEL_W, CHART_W, TOP = 22, 14, 260, 900, 30
LABEL_CHARS = 36
"""What fits in LABEL_W at 11px: a longer label (a UUID run id) is cut in the middle, whole in its tooltip,
and clipped to the label column besides, so it never runs into the bars."""
COLOURS = {"completed": "#2e7d32", "failed": "#c62828", "cancelled": "#757575", "budget_exceeded": "#ef6c00",
           "timeout": "#ad1457", "running": "#1565c0", "queued": "#b0bec5", "llm-ok": "#6a1b9a",
           "llm-failed": "#e53935"}

CSS = """
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px} .meta{color:#555;margin-bottom:10px}
svg text{font:11px system-ui,sans-serif} .grid{stroke:#eee} .crit{stroke:#000;stroke-width:2}
table{border-collapse:collapse;margin-top:12px} td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.legend span{display:inline-block;margin-right:10px} .legend i{display:inline-block;width:10px;height:10px;margin-right:3px}
"""


def _rows(tl: dict[str, Any]) -> list[dict[str, Any]]:
    """(label, bars) rows; each bar: kind, id, status, start, end, colour."""
    crit = {(p["kind"], p["id"]) for p in tl.get("critical_path", [])}
    end = tl["duration_s"] or 0.0
    rows = [{"label": f"run {tl['run_id']}", "bars": [
        {"kind": "run", "id": tl["run_id"], "status": tl["status"], "start": 0.0, "end": end,
         "colour": COLOURS.get(tl["status"], "#999")}]}]
    for n in tl.get("lanes", []) + tl.get("jobs", []):
        stop = n["end"] if n["end"] is not None else end
        rows.append({"label": f"{n['kind']} {n['id']}", "bars": [
            {"kind": n["kind"], "id": n["id"], "status": n["status"], "start": n["start"], "end": stop,
             "colour": COLOURS.get(n["status"], "#999"), "crit": (n["kind"], n["id"]) in crit}]})
    for x in tl["tasks"]:
        bars = []
        q, r, d = x["queued_t"], x["running_t"], x["done_t"]
        stop = d if d is not None else end
        if q is not None:
            bars.append({"kind": "task-queued", "id": x["task_id"], "status": "queued", "start": q,
                         "end": r if r is not None else stop, "colour": COLOURS["queued"]})
        if r is not None:
            st = x["status"] if d is not None else "running"
            bars.append({"kind": "task-running", "id": x["task_id"], "status": st, "start": r, "end": stop,
                         "colour": COLOURS.get(st, "#999"), "crit": ("task", x["task_id"]) in crit})
        label = f"task {x['task_id']} · {x['programmer'] or '-'} · x{x['attempts']}"
        rows.append({"label": label, "bars": bars})
    for i, c in enumerate(tl["llm_calls"]):
        rows.append({"label": f"llm {c['agent']} · {c['profile']}{' (failover)' if c['failover'] else ''}", "bars": [
            {"kind": "llm", "id": f"{i}", "status": "ok" if c["ok"] else "failed", "start": c["start_t"],
             "end": c["t"], "colour": COLOURS["llm-ok" if c["ok"] else "llm-failed"]}]})
    return rows


def _fit(label: str) -> str:
    if len(label) <= LABEL_CHARS:
        return label
    keep = LABEL_CHARS - 1
    return f"{label[:keep - keep // 3]}…{label[-(keep // 3):]}"


def _e(v: Any) -> str:
    """Text or attribute value, escaped (quotes included)."""
    return html.escape(str(v), quote=True)


def _num(v: Any) -> str:
    """A number from the timeline as text; anything else (a forged body) as 0."""
    return repr(float(v)) if isinstance(v, (int, float)) else "0.0"


def _cost(v: float | None) -> str:
    return "unknown" if v is None else f"${v:.6f}"


def render(tl: dict[str, Any]) -> str:
    rows = _rows(tl)
    span = max([tl["duration_s"] or 0.0] + [b["end"] for r in rows for b in r["bars"]]) or 1.0
    scale = CHART_W / span
    height = TOP + ROW_H * len(rows) + 10
    parts = [f'<svg id="gantt" xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + CHART_W + 20}" '
             f'height="{height}"><clipPath id="label-column"><rect x="0" y="0" width="{LABEL_W - 6}" '
             f'height="{height}"/></clipPath>']
    for k in range(11):  # time grid, tenths of the run
        x = LABEL_W + CHART_W * k / 10
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP - 12}" x2="{x:.1f}" y2="{height}"/>'
                     f'<text x="{x:.1f}" y="{TOP - 16}" text-anchor="middle">{span * k / 10:.2f}s</text>')
    for i, row in enumerate(rows):
        y = TOP + i * ROW_H
        label = str(row["label"])
        parts.append(f'<text class="label" x="4" y="{y + BAR_H - 2}" clip-path="url(#label-column)">'
                     f'{_e(_fit(label))}<title>{_e(label)}</title></text>')
        for b in row["bars"]:
            x = LABEL_W + max(0.0, b["start"]) * scale
            w = max(1.0, (b["end"] - max(0.0, b["start"])) * scale)
            cls = "bar crit" if b.get("crit") else "bar"
            tip = f'{b["kind"]} {b["id"]} {b["status"]} {b["start"]:.3f}s..{b["end"]:.3f}s'
            parts.append(f'<rect class="{cls}" data-kind="{_e(b["kind"])}" data-id="{_e(b["id"])}" '
                         f'data-status="{_e(b["status"])}" data-start="{_num(b["start"])}" data-end="{_num(b["end"])}" '
                         f'x="{x:.2f}" y="{y}" width="{w:.2f}" height="{BAR_H}" fill="{_e(b["colour"])}">'
                         f'<title>{_e(tip)}</title></rect>')
    parts.append("</svg>")
    tot = tl["totals"]
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>' for k, c in COLOURS.items())
    calls = "".join(
        f"<tr><td>{c['t']:.3f}</td><td>{_e(c['agent'])}</td><td>{_e(c['profile'])}</td>"
        f"<td>{_e(c['model'])}</td><td>{_e(c['tokens'])}</td>"
        f"<td>{_e(_cost(c['cost_usd']))}</td>"
        f"<td>{c['latency_s'] * 1000:.0f} ms</td><td>{'failover' if c['failover'] else ''}"
        f"{'' if c['ok'] else _e(' failed: ' + str(c['error']))}</td></tr>" for c in tl["llm_calls"])
    crit = " → ".join(f"{_e(p['kind'])} {_e(p['id'])}" for p in tl["critical_path"]) or "-"
    data = json.dumps(tl, default=str).replace("<", "\\u003c")  # no "</script>" or "<!--" inside the script
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>PAS replay {_e(tl['run_id'])}"
            f"</title><style>{CSS}</style></head><body>"
            f"<h1>Run {_e(tl['run_id'])} · {_e(tl['title'])} · "
            f"<span id='run-status'>{_e(tl['status'])}</span></h1>"
            f"<div class='meta'>submitted {_e(tl['submitted_at'])} · {tl['duration_s']:.3f}s · {len(tl['tasks'])} tasks · "
            f"{tot['llm_calls']} LLM calls · {tot['tokens']} tokens · ${tot['cost_usd']:.6f} "
            f"({tot['unknown_cost_calls']} unknown) · {tot['failovers']} failovers</div>"
            f"<div class='legend'>{legend}</div><div>critical path: <b id='critical-path'>{crit}</b></div>"
            f"{''.join(parts)}"
            f"<table id='llm-calls'><tr><th>t (s)</th><th>agent</th><th>profile</th><th>model</th><th>tokens</th>"
            f"<th>cost</th><th>latency</th><th></th></tr>{calls}</table>"
            f"<script type='application/json' id='timeline-data'>{data}</script></body></html>")
