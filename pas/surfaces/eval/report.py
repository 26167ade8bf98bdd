"""`pas eval` reports: a summary per mode (pass rate over repeats: mean, spread), a text table, JSON,
a self-contained HTML page with an inline SVG chart, and a labelled cost estimate."""

from __future__ import annotations

import html
import statistics
from typing import Any

from pas.surfaces.eval.runner import Outcome
from pas.surfaces.eval.tasks import CATEGORIES

TIER_ORDER = ("architect", "director", "manager", "programmer")


def _rate(xs: list[Outcome]) -> float:
    return sum(o.passed for o in xs) / len(xs) if xs else 0.0


def summarize(results: list[Outcome]) -> dict[str, Any]:
    modes: dict[str, Any] = {}
    for mode in dict.fromkeys(o.mode for o in results):
        rs = [o for o in results if o.mode == mode]
        reps = sorted({o.repeat for o in rs})
        rates = [_rate([o for o in rs if o.repeat == k]) for k in reps]
        calls: dict[str, int] = {}
        for o in rs:
            for tier, n in o.llm_calls.items():
                calls[tier] = calls.get(tier, 0) + n
        costs = [o.cost_usd for o in rs]
        modes[mode] = {
            "runs": len(rs),
            "passed": sum(o.passed for o in rs),
            "pass_rate": {"mean": statistics.fmean(rates), "stdev": statistics.pstdev(rates),
                          "min": min(rates), "max": max(rates), "per_repeat": rates},
            "tokens": sum(o.tokens for o in rs),
            "tokens_in": sum(o.tokens_in for o in rs),
            "tokens_out": sum(o.tokens_out for o in rs),
            "cost_usd": None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
            "wall_s": round(sum(o.wall_s for o in rs), 3),
            "llm_calls": {t: calls[t] for t in TIER_ORDER if t in calls},
            "conflicts": sum(1 for o in rs if o.conflicts),
            "by_category": {c: _rate([o for o in rs if o.category == c])
                            for c in CATEGORIES if any(o.category == c for o in rs)},
        }
    return {"modes": modes, "runs": [o.to_json() for o in results]}


def _cost(c: float | None) -> str:
    return "unknown" if c is None else f"${c:.4f}"


def _calls(calls: dict[str, int]) -> str:
    return "/".join(str(calls.get(t, 0)) for t in TIER_ORDER)


def table(results: list[Outcome]) -> str:
    """Per-run rows, then one summary row per mode. Calls are architect/director/manager/programmer."""
    rows = [("task", "mode", "rep", "verdict", "tokens", "cost", "wall s", "calls A/D/M/P", "reason")]
    for o in results:
        rows.append((o.task, o.mode, str(o.repeat), "PASS" if o.passed else "FAIL", str(o.tokens), _cost(o.cost_usd),
                     f"{o.wall_s:.1f}", _calls(o.llm_calls), o.reason[:90]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1] for r in rows]
    lines.append("")
    s = summarize(results)["modes"]
    lines.append("mode   pass rate (mean ± sd, min-max over repeats)  runs  tokens    cost        "
                 "wall s  calls A/D/M/P")
    for mode, m in s.items():
        pr = m["pass_rate"]
        rate = f"{pr['mean'] * 100:5.1f}% ± {pr['stdev'] * 100:4.1f} ({pr['min'] * 100:.0f}-{pr['max'] * 100:.0f}%)"
        lines.append(f"{mode:<6} {rate:<45} {m['runs']:<5} {m['tokens']:<9} {_cost(m['cost_usd']):<11} "
                     f"{m['wall_s']:<7.1f} {_calls(m['llm_calls'])}")
    return "\n".join(lines)


def estimate_cost(results: list[Outcome], usd_per_mtok_in: float, usd_per_mtok_out: float) -> dict[str, Any]:
    """What these runs' tokens would cost at the given prices (USD per million tokens): an ESTIMATE
    (the fake model counts words, not a tokenizer's tokens)."""
    s = summarize(results)["modes"]
    per_task, total = {}, {}
    for mode, m in s.items():
        usd = (m["tokens_in"] * usd_per_mtok_in + m["tokens_out"] * usd_per_mtok_out) / 1e6
        total[mode] = usd
        per_task[mode] = usd / max(1, m["runs"])
    return {"label": "estimate", "usd_per_mtok_in": usd_per_mtok_in, "usd_per_mtok_out": usd_per_mtok_out,
            "total_usd": total, "per_task_usd": per_task}


def _chart(s: dict[str, Any]) -> str:
    """Grouped bars: pass rate per category (and overall), one bar per mode. Inline SVG."""
    modes = list(s["modes"])
    cats = ["all"] + [c for c in CATEGORIES if any(c in m["by_category"] for m in s["modes"].values())]
    colours = ["#3b6ea5", "#d08a2e", "#5a9a4c"]
    bw, gap, h, top = 22, 18, 200, 20
    width = 60 + len(cats) * (len(modes) * bw + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 70}" role="img" '
             f'aria-label="pass rate per category and mode">']
    for pct in (0, 50, 100):
        y = top + h - h * pct / 100
        parts.append(f'<line x1="40" x2="{width}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="4" y="{y + 4}" font-size="11">{pct}%</text>')
    x = 50
    for c in cats:
        for i, mode in enumerate(modes):
            m = s["modes"][mode]
            rate = m["pass_rate"]["mean"] if c == "all" else m["by_category"].get(c)
            if rate is not None:
                bh = h * rate
                parts.append(f'<rect x="{x + i * bw}" y="{top + h - bh:.1f}" width="{bw - 3}" height="{bh:.1f}" '
                             f'fill="{colours[i % 3]}"><title>{html.escape(mode)} {html.escape(c)}: '
                             f'{rate * 100:.0f}%</title></rect>')
        parts.append(f'<text x="{x}" y="{top + h + 16}" font-size="11">{html.escape(c)}</text>')
        x += len(modes) * bw + gap
    for i, mode in enumerate(modes):
        parts.append(f'<rect x="{50 + i * 90}" y="{top + h + 32}" width="12" height="12" fill="{colours[i % 3]}"/>'
                     f'<text x="{66 + i * 90}" y="{top + h + 43}" font-size="12">{html.escape(mode)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(results: list[Outcome], title: str = "pas eval") -> str:
    """One self-contained page: the chart, the summary and every run (no scripts, no external files)."""
    s = summarize(results)
    esc = html.escape
    summary_rows = "".join(
        f"<tr><td>{esc(mode)}</td><td>{m['pass_rate']['mean'] * 100:.1f}% ± {m['pass_rate']['stdev'] * 100:.1f}</td>"
        f"<td>{m['runs']}</td><td>{m['tokens']}</td><td>{esc(_cost(m['cost_usd']))}</td><td>{m['wall_s']:.1f}</td>"
        f"<td>{esc(_calls(m['llm_calls']))}</td></tr>" for mode, m in s["modes"].items())
    run_rows = "".join(
        f"<tr><td>{esc(o.task)}</td><td>{esc(o.mode)}</td><td>{o.repeat}</td>"
        f"<td class=\"{'p' if o.passed else 'f'}\">{'PASS' if o.passed else 'FAIL'}</td><td>{o.tokens}</td>"
        f"<td>{esc(_cost(o.cost_usd))}</td><td>{o.wall_s:.1f}</td><td>{esc(_calls(o.llm_calls))}</td>"
        f"<td>{esc(o.run_id)}</td><td>{esc(o.reason)}</td></tr>" for o in results)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}.p{{color:#1a7f37}}.f{{color:#b42318}}</style>
</head><body><h1>{esc(title)}</h1>
<h2>Pass rate by category</h2>{_chart(s)}
<h2>Summary</h2><table><tr><th>mode</th><th>pass rate (mean ± sd over repeats)</th><th>runs</th><th>tokens</th>
<th>cost</th><th>wall s</th><th>LLM calls A/D/M/P</th></tr>{summary_rows}</table>
<h2>Runs</h2><table><tr><th>task</th><th>mode</th><th>rep</th><th>verdict</th><th>tokens</th><th>cost</th>
<th>wall s</th><th>calls A/D/M/P</th><th>run</th><th>reason</th></tr>{run_rows}</table>
</body></html>
"""
