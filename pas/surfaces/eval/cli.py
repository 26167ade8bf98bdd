"""The `pas eval` command line (the parser imports nothing heavy: `pas --help` stays fast)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pas.base.errors import PasError

if TYPE_CHECKING:
    from pas.config.model import PasConfig

CHEAP_PRICES = (0.15, 0.60)
"""USD per million input/output tokens used for the estimate (gpt-4o-mini's list price)."""


def add_parser(sub: Any, common: Any) -> None:
    ev = sub.add_parser("eval", help="run the eval task set through the swarm and/or one model alone; "
                                     "hidden tests decide pass or fail")
    common(ev)
    ev.add_argument("--tasks", default="*", metavar="GLOB", help="task names to run (globs, comma-separated)")
    ev.add_argument("--tasks-dir", help="the task set (default: evals/tasks of the source tree, or $PAS_EVAL_TASKS)")
    ev.add_argument("--mode", choices=["swarm", "solo", "both"], default="both")
    ev.add_argument("--model", default="gpt-4o-mini", metavar="PROFILE",
                    help="model profile (models.yaml) used by every tier in swarm mode and by the solo executor")
    ev.add_argument("--programmers", type=int, default=4, metavar="N", help="programmers in the pool (default 4)")
    ev.add_argument("--repeat", type=int, default=1, metavar="K", help="run every task K times (pass rate mean/sd)")
    ev.add_argument("--budget", default="", metavar="tokens=N,usd=X",
                    help="per-run budget (default tokens=200000,usd=5)")
    ev.add_argument("--parallel", type=int, default=1, metavar="P",
                    help="runs in flight at once per mode (default 1: wall times without contention)")
    ev.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per run (default 600)")
    ev.add_argument("--env", help="the tasks' Python (job env) when a repository has no .venv (default: python3)")
    ev.add_argument("--workdir", help="where the task repositories go (default: a new temporary directory)")
    ev.add_argument("--json", dest="json_out", metavar="FILE", help="write the summary and every run as JSON")
    ev.add_argument("--html", dest="html_out", metavar="FILE", help="write a self-contained HTML page with a chart")
    ev.add_argument("--price", default=f"{CHEAP_PRICES[0]},{CHEAP_PRICES[1]}", metavar="IN,OUT",
                    help="USD per million input,output tokens for the cost estimate (default: gpt-4o-mini's)")


def parse_budget(text: str) -> tuple[int, float]:
    tokens, usd = 200_000, 5.0
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, val = part.partition("=")
        try:
            if key == "tokens":
                tokens = int(val)
            elif key in ("usd", "cost"):
                usd = float(val)
            else:
                raise ValueError(key)
        except ValueError:
            raise PasError(f"--budget: cannot read {part!r} (use tokens=N,usd=X)") from None
    return tokens, usd


def _progress(o: Any) -> None:
    if isinstance(o, str):
        print(f"pas eval: {o}", flush=True)
        return
    print(f"pas eval: {o.mode:<5} {o.task:<22} rep {o.repeat}  {'PASS' if o.passed else 'FAIL'}  "
          f"{o.wall_s:6.1f}s  {o.tokens:>7} tok  {o.reason[:80]}", flush=True)


async def main(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.surfaces.eval.report import estimate_cost, render_html, summarize, table
    from pas.surfaces.eval.runner import MODES, EvalOptions, run_eval
    from pas.surfaces.eval.tasks import load_tasks

    tasks = load_tasks(Path(args.tasks_dir) if args.tasks_dir else None, args.tasks)
    if min(args.repeat, args.programmers, args.parallel) < 1:
        raise PasError("--repeat, --programmers and --parallel must be at least 1")
    tokens, usd = parse_budget(args.budget)
    try:
        price_in, price_out = (float(x) for x in args.price.split(","))
    except ValueError:
        raise PasError("--price: use IN,OUT in USD per million tokens, e.g. 0.15,0.60") from None
    opts = EvalOptions(profile=args.model, modes=MODES if args.mode == "both" else (args.mode,),
                       programmers=args.programmers, repeat=args.repeat, tokens_max=tokens, cost_usd_max=usd,
                       timeout_s=args.timeout, env=args.env, parallel=args.parallel,
                       workdir=Path(args.workdir) if args.workdir else None)
    print(f"pas eval: {len(tasks)} task(s) x {', '.join(opts.modes)} x {opts.repeat}, model {opts.profile}, "
          f"{opts.programmers} programmer(s)", flush=True)
    results = await run_eval(cfg, tasks, opts, url=cfg.settings.nats.url or None, progress=_progress)
    print()
    print(table(results))
    est = estimate_cost(results, price_in, price_out)
    if any(m["cost_usd"] is None for m in summarize(results)["modes"].values()):
        print("\nESTIMATE (costs unknown for this model): at ${:.2f}/${:.2f} per million tokens in/out: {}".format(
            price_in, price_out, ", ".join(f"{m} ${v:.4f} per task" for m, v in est["per_task_usd"].items())))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**summarize(results), "cost_estimate": est}, indent=1))
        print(f"pas eval: wrote {args.json_out}")
    if args.html_out:
        Path(args.html_out).write_text(render_html(results))
        print(f"pas eval: wrote {args.html_out}")
    sys.stdout.flush()
    return 0
