"""The `pas` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING

from pas.base.errors import ConfigError, PasError
from pas.base.textsafe import terminal
from pas.config.doc import ClientConfig, client_config
from pas.protocol import subjects as S
from pas.protocol.ids import ID_RULE, is_id

if TYPE_CHECKING:
    from pas.config.model import PasConfig

CLIENT_COMMANDS = frozenset({"agents", "log", "status", "runs", "plan", "submit", "cancel", "approve", "reject",
                             "model", "creds"})
"""Commands that only talk to NATS as a client: they read the config's client view (pas.config.doc), so they
import neither pydantic nor the runtime."""


MAX_SECONDS = 10**7
"""Durations given on the command line: finite, positive, at most about 4 months."""


def seconds(text: str) -> float:
    """argparse type of a duration in seconds: a number > 0 and <= MAX_SECONDS (never inf or nan)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < v <= MAX_SECONDS:  # also false for nan
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds > 0 and <= {MAX_SECONDS}")
    return v


def speed(text: str) -> float:
    """argparse type of --speed: a finite number >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= v <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number >= 0 and <= {MAX_SECONDS}")
    return v


def since(text: str) -> str:
    """argparse type of --since: checked here (pas.surfaces.cliutil.parse_since), passed on as given."""
    from pas.surfaces.cliutil import parse_since

    try:
        parse_since(text)
    except (ValueError, OverflowError) as e:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an ISO time or a duration such as 10m, 2h, 1d "
                                         f"({e})") from None
    return text


def run_id(value: str) -> str:
    """argparse type of every run/task id argument: the one id rule (pas.protocol.ids), checked before anything
    is sent."""
    if not is_id(value):
        raise argparse.ArgumentTypeError(f"invalid id {value!r} ({ID_RULE})")
    return value


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def _common(p: argparse.ArgumentParser, long_set: bool = True) -> None:
    p.add_argument("--config-dir", help="directory with pas.yaml, models.yaml, agents.yaml (default: $PAS_CONFIG_DIR, "
                   "else ./configs if it exists, else the defaults shipped with pas)")
    p.add_argument(*(["-c", "--set"] if long_set else ["-c"]), dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. -c settings.heartbeat.interval_s=1 (repeatable)")
    p.add_argument("--nats-url", help="use this NATS server (also PAS_NATS_URL); a comma-separated list for a cluster")
    p.add_argument("--agents", dest="agent_files", action="append", default=[], metavar="FILE",
                   help="an overlay topology file shaped like agents.yaml: new ids are added, known ids "
                        "changed (repeatable)")
    p.add_argument("--connect-timeout", type=seconds, metavar="SECONDS",
                   help="give up if NATS cannot be reached within this time (default: settings.nats."
                        "connect_timeout_s=30 for up/http, client_connect_timeout_s=5 for the client commands)")
    p.add_argument("--creds-dir", help="NATS users' credentials (also PAS_CREDS_DIR; default <data_dir>/creds)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pas", description="PAS, the Polyglot Agent Swarm, over NATS")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start the embedded nats-server (unless --nats-url) and the agents")
    _common(up)
    up.add_argument("--nats-port", type=int, help="port of the embedded server (default 4222; -1 = any free)")
    up.add_argument("--data-dir", help="where the embedded server stores JetStream (default .pas)")
    up.add_argument("--only", action="append", default=[], metavar="GLOB", help="start only these agent ids")
    up.add_argument("--except", dest="exclude", action="append", default=[], metavar="GLOB",
                    help="start all but these agent ids")
    web = up.add_mutually_exclusive_group()
    web.add_argument("--http", action="store_true",
                     help="start the HTTP adapter and HMI (the default only when every agent is started)")
    web.add_argument("--no-http", action="store_true", help="do not start the port-based HTTP adapter and HMI")
    up.add_argument("--ready-file", help="write the NATS URL to this file once every agent is up")

    ag = sub.add_parser("agents", help="agent, tier, lane, state, age of last beat, model")
    _common(ag)
    ag.add_argument("--json", action="store_true")

    lg = sub.add_parser("log", help="read the comms log")
    _common(lg)
    lg.add_argument("--run", type=run_id)
    lg.add_argument("--agent", help="entries sent or received by this agent")
    lg.add_argument("--type", dest="msg_type", help="CMD, STATUS, RESPONSE, ERROR, LLM ...")
    lg.add_argument("--since", type=since, help="ISO time, or a duration such as 10m, 2h, 1d")
    lg.add_argument("--follow", "-f", action="store_true")
    lg.add_argument("--json", action="store_true")

    rp = sub.add_parser("replay", help=f"a run's timeline rebuilt from JetStream "
                        f"({S.STREAM_EVENTS}, {S.STREAM_COMMS}; never KV)")
    _common(rp)
    rp.add_argument("run_id", type=run_id)
    rp.add_argument("--json", action="store_true", help="the timeline as JSON")
    rp.add_argument("--html", metavar="FILE", help="write one self-contained page with a Gantt chart")
    rp.add_argument("--follow", "-f", action="store_true", help="print steps as they happen until the run ends")
    rp.add_argument("--speed", type=speed, metavar="X", help="re-publish the run's messages on "
                    f"{S.REPLAY_ALL[:-1]}<run>.> with the original gaps divided by X (0 = no waiting)")
    rp.add_argument("--rebuild", action="store_true", help="re-derive the KV run tree from the events and "
                    "compare it with KV (exit 1 on differences)")

    rr = sub.add_parser("rerun", help="re-run a run from its recorded model replies (0 tokens); --from forks it")
    _common(rr, long_set=False)
    rr.add_argument("run_id", type=run_id, help="the parent run")
    rr.add_argument("--run-id", dest="new_run_id", type=run_id, help="id of the new run (default: <parent>-r<N>)")
    rr.add_argument("--on-diverge", choices=["stop", "live"], default="stop",
                    help="a prompt with no recording: cancel the run (stop, default) or call the model (live)")
    rr.add_argument("--from", dest="from_step", metavar="STEP",
                    help="replay until STEP, then go live: task:<task_id>, lane:<lane>, or an agent id or role[-lane] "
                         "(architect, dir-docs, mgr-code, prog)")
    rr.add_argument("--model", dest="models", action="append", default=[], metavar="AGENT=PROFILE",
                    help="the model profile of live calls by AGENT (an agent id or role[-lane]) (repeatable)")
    rr.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="change the submitted job: goal=..., budget.tokens_max=1000 (JSON values) (repeatable)")
    rr.add_argument("--timeout", type=seconds, default=3600.0)
    rr.add_argument("--json", action="store_true")

    df = sub.add_parser("diff", help="compare two runs: plans, task outcomes, diffs, tokens, cost")
    _common(df)
    df.add_argument("run_a", type=run_id)
    df.add_argument("run_b", type=run_id)
    df.add_argument("--json", action="store_true")

    sm = sub.add_parser("submit", help="submit a job; prints the run id")
    _common(sm)
    sm.add_argument("title")
    sm.add_argument("--goal")
    sm.add_argument("--task", action="append", default=[], metavar="LANE:COMMAND",
                    help="a command task in a lane (repeatable), e.g. code:'python -m pytest -q'")
    sm.add_argument("--lane", action="append", default=[], help="a lane to open for the goal (repeatable)")
    sm.add_argument("--repo", help="git repository the tasks work in (one worktree per task)")
    sm.add_argument("--env", help="Python environment of the tasks when the repo has no .venv: a venv or conda "
                    "directory, or an interpreter (default: settings.pool.env, else python3 on PATH)")
    sm.add_argument("--run-id", type=run_id)
    sm.add_argument("--priority", type=int, choices=[1, 5, 10, 20], help="the pool serves higher first (default 5)")
    sm.add_argument("--approval", action="store_true",
                    help="approval mode: the run waits in waiting_approval after planning (pas plan/approve/reject)")
    sm.add_argument("--idempotency-key", help="the same key within settings.work.dedupe_window_s returns the same "
                    "run (default: a new key per invocation, reused when a timeout makes pas submit ask again)")
    sm.add_argument("--wait", action="store_true", help="show progress until the run ends; exit 0 only if completed")
    sm.add_argument("--timeout", type=seconds, default=3600.0, help="with --wait: give up after this many seconds")

    st = sub.add_parser("status", help="status of a run")
    _common(st)
    st.add_argument("run_id", type=run_id)
    st.add_argument("--json", action="store_true")
    st.add_argument("--page", type=_positive, metavar="N",
                    help="only page N of the tasks (100 a page; default: every task)")

    rs = sub.add_parser("runs", help="recent runs")
    _common(rs)
    rs.add_argument("--limit", type=int, default=20, help="at most this many runs (1-1000)")
    rs.add_argument("--offset", type=int, default=0, help="skip this many of the newest runs (the next page)")
    rs.add_argument("--status")
    rs.add_argument("--json", action="store_true")

    pl = sub.add_parser("plan", help="the whole plan of a run: every job and task, and its approval state")
    _common(pl)
    pl.add_argument("run_id", type=run_id)
    pl.add_argument("--json", action="store_true")

    ap_ = sub.add_parser("approve", help="approve a run waiting for approval (optionally without some tasks)")
    _common(ap_)
    ap_.add_argument("run_id", type=run_id)
    ap_.add_argument("--drop", type=run_id, action="append", default=[], metavar="TASK_ID",
                     help="remove this task from the plan (repeatable); it ends skipped")
    ap_.add_argument("--by", help="who decides (default: your user name)")
    ap_.add_argument("--reason", default="")

    rj = sub.add_parser("reject", help="reject a run waiting for approval: it ends rejected")
    _common(rj)
    rj.add_argument("run_id", type=run_id)
    rj.add_argument("--reason", default="", help="why (kept in the run and the comms log)")
    rj.add_argument("--by", help="who decides (default: your user name)")

    cn = sub.add_parser("cancel", help="cancel a run at every tier")
    _common(cn)
    cn.add_argument("run_id", type=run_id)

    dm = sub.add_parser("demo", help="start the embedded stack and run a sample job across 3 lanes")
    _common(dm)
    dm.add_argument("--data-dir", help="JetStream store of the demo (default: a temporary directory)")
    dm.add_argument("--keep", action="store_true", help="keep the stack running after the job (Ctrl-C to stop)")
    dm.add_argument("--nats-port", type=int, default=-1)

    it = sub.add_parser("init", help="write editable copies of the default configs (pas.yaml, models.yaml, agents.yaml)")
    it.add_argument("dir", nargs="?", default="configs", help="where to write them (default: ./configs, which "
                    "pas then uses when run from this directory)")
    it.add_argument("--force", action="store_true", help="overwrite existing files")

    ht = sub.add_parser("http", help="run only the port-based HTTP adapter and HMI against an existing NATS")
    _common(ht)

    lo = sub.add_parser("login", help="print a new one-time login link for the HMI (asks the running HTTP adapter)")
    _common(lo)
    lo.add_argument("--data-dir", help="the data dir of `pas up` (its creds/ subdirectory holds the HTTP token)")

    mc = sub.add_parser("mcp", help="serve PAS's MCP tools over stdio, for coding assistants "
                                    "(`claude mcp add pas -- pas mcp`)")
    _common(mc)

    md = sub.add_parser("model", help="models of agents")
    md_sub = md.add_subparsers(dest="model_cmd", required=True)
    ms = md_sub.add_parser("set", help="switch an agent's primary (or --backup) model profile live")
    ms.add_argument("agent")
    ms.add_argument("profile")
    ms.add_argument("--backup", action="store_true")
    _common(ms)

    cr = sub.add_parser("creds", help="save a `nats` CLI context for one PAS NATS user and print the "
                                        "shell lines that select it (eval \"$(pas creds client)\")")
    _common(cr)
    cr.add_argument("role", help="the PAS NATS user: client, adapter, admin or an agent id (prog-001, ...)")
    cr.add_argument("--data-dir", help="the data dir of `pas up` (its creds/ subdirectory)")

    nc = sub.add_parser("nats-config", help="print the nats-server `authorization` block of PAS's users")
    _common(nc)
    nc.add_argument("--data-dir", help="keep the generated credentials in <data_dir>/creds")

    from pas.surfaces.eval.cli import add_parser as add_eval_parser

    add_eval_parser(sub, _common)

    bn = sub.add_parser("bench", help="benchmarks (from a checkout: benchmarks/): PAS against raw NATS and HTTP")
    bn.add_argument("--quick", action="store_true", help="a reduced run (a few minutes)")
    bn.add_argument("--json", help="write figures to this JSON file")
    bn.add_argument("--markdown", help="regenerate this markdown report (e.g. BENCHMARKS.md)")
    bn.add_argument("--figure", dest="figures", action="append", default=[], metavar="NAME",
                    help="run only this PAS figure (e.g. hmi), without the floors; repeatable")
    return ap


def load(args: argparse.Namespace) -> PasConfig | ClientConfig:
    """The config of this command: the client view for CLIENT_COMMANDS, else the whole validated config."""
    overrides = list(getattr(args, "overrides", []) or [])
    if args.cmd in CLIENT_COMMANDS:
        cfg: PasConfig | ClientConfig = client_config(getattr(args, "config_dir", None), overrides,
                                                      getattr(args, "agent_files", None))
    else:
        from pas.config.model import load_config

        cfg = load_config(getattr(args, "config_dir", None), overrides, getattr(args, "agent_files", None))
    if getattr(args, "nats_url", None):
        cfg.settings.nats.url = args.nats_url
    if getattr(args, "creds_dir", None):
        cfg.settings.nats.creds_dir = args.creds_dir
    if getattr(args, "nats_port", None) is not None and cfg.settings.nats.url and args.cmd == "up":
        given = ("--nats-url" if getattr(args, "nats_url", None) else
                 "PAS_NATS_URL" if os.environ.get("PAS_NATS_URL") else "settings.nats.url")
        raise ConfigError(f"--nats-port {args.nats_port} sets the port of the embedded nats-server, but {given} "
                          f"({cfg.settings.nats.url}) means no embedded server is started: give one or the other")
    if getattr(args, "connect_timeout", None) is not None:
        cfg.settings.nats.connect_timeout_s = cfg.settings.nats.client_connect_timeout_s = args.connect_timeout
    return cfg


def main(argv: list[str] | None = None) -> int:
    # Task output, comms entries, run titles: whatever reaches the terminal passes textsafe.clean.
    sys.stdout, sys.stderr = terminal(sys.stdout), terminal(sys.stderr)
    args = build_parser().parse_args(argv)
    code = _main(args)
    if args.cmd == "up":  # its litellm import may still run in a thread: no finalisation (pas.base.exiting)
        from pas.base.exiting import exit_now

        exit_now(code)
    return code


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "bench":
            return bench(args)
        from pas.surfaces import commands

        if args.cmd == "init":  # needs no config: it writes one
            return asyncio.run(commands.cmd_init(args, None))
        cfg = load(args)

        fn = getattr(commands, f"cmd_{args.cmd.replace('-', '_')}")
        return asyncio.run(fn(args, cfg)) or 0
    except ConfigError as e:
        print(f"pas: config error: {e.message}", file=sys.stderr)
        return 2
    except PasError as e:
        print(f"pas: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pas agents | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def bench(args: argparse.Namespace) -> int:
    """`pas bench`: the harness lives beside the package, in the checkout's benchmarks/ (not in a wheel)."""
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "benchmarks" / "cli.py").is_file() and str(checkout) not in sys.path:
        sys.path.append(str(checkout))  # `pas` run from anywhere, pas imported from a checkout
    try:
        from benchmarks.cli import run_bench
    except ImportError as e:
        if e.name not in ("benchmarks", "benchmarks.cli"):
            raise
        print("pas: `pas bench` runs the benchmark harness in benchmarks/ of a PAS checkout, which this "
              f"installation ({checkout}) does not have: run it from a checkout (`pas bench` or "
              "`python -m benchmarks` there)", file=sys.stderr)
        return 2
    return run_bench(args)


__all__ = ["bench", "build_parser", "main"]
