"""Implementations of the `pas` subcommands (argument parsing lives in pas.cli)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import shutil
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pas.base.errors import BadRequest, PasError
from pas.base.redact import redact
from pas.config.doc import ClientConfig, check_model_override, find_config_dir
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import comms as comms_mod
from pas.surfaces.cliutil import (
    client_url,
    columns,
    follow_run,
    install_stop_signals,
    open_client,
    open_nc,
    parse_since,
    result_table,
    wire_run_id,
)
from pas.transport import auth
from pas.transport.client import event_fields
from pas.transport.streams import ReadOptions

if TYPE_CHECKING:  # the client commands (pas.cli.CLIENT_COMMANDS) get a ClientConfig and import no pydantic
    from pas.config.model import PasConfig

log = logging.getLogger("pas.cli")


def http_available() -> bool:
    try:
        import pas.surfaces.http.adapter  # noqa: F401
    except ImportError:
        return False
    return True


async def cmd_up(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.llm import client as llm
    from pas.llm import reachable

    # litellm's import takes seconds: start it now, in a thread, if an agent here can call a model (a missing
    # key fails without it, and so does a local model server that is not listening: pas.llm.reachable). When a
    # planner can, `pas up` says it is up only once it is loaded, so that the first job's planning does not
    # wait for it (pas bench: pas.first_call).
    selected, profiles = cfg.select(args.only or None, args.exclude or None), llm.apply_env_overrides(cfg.models)
    callable_now = await reachable.listening(reachable.callable_profiles(selected, profiles), profiles)
    loading = llm.preload() if callable_now else None
    planners = [p for p in reachable.callable_profiles([a for a in selected if a.role in reachable.PLANNING_ROLES],
                                                       profiles) if p in callable_now]
    from pas.execution.policy import repo_roots
    from pas.surfaces.stack import Stack

    if args.nats_port is not None:
        cfg.settings.nats.port = args.nats_port
    if args.data_dir:
        cfg.settings.nats.data_dir = args.data_dir
    # The HTTP adapter runs in one process only: by default the one that starts every agent.
    http = args.http or not (args.no_http or args.only or args.exclude)
    if args.http and not http_available():
        raise PasError("--http: the HTTP adapter is not part of this build")
    # the adapter in a process of its own: its event hub off the agents' interpreter lock (pas.surfaces.http.process)
    stack = Stack(cfg, only=args.only or None, exclude=args.exclude or None,
                  http="process" if http and http_available() else False)
    stop = asyncio.Event()
    install_stop_signals(stop)
    cdir, why = find_config_dir(args.config_dir)
    print(f"pas: config from {cdir} ({why})", flush=True)
    print(f"pas: jobs may name repositories under {', '.join(map(str, repo_roots(cfg.settings.policy.repo_roots)))} "
          "(settings.policy.repo_roots)", flush=True)
    if not await unless_stopped(stack.start(), stop):
        return 130
    if loading is not None and planners and not loading.done():
        print(f"pas: loading litellm for the planners' models ({', '.join(planners)})", flush=True)
        try:
            await unless_stopped(asyncio.wrap_future(loading), stop)
        except Exception as e:  # the calls will fail with it: say so now, and serve the rest
            print(f"pas: litellm could not be imported: {e!r}", file=sys.stderr, flush=True)
    where = "embedded nats-server" if stack.server else "existing server"
    if stack.creds:
        where += f", NATS users on, credentials in {auth.creds_dir(cfg, stack.data_dir)}"
    web = f", HTTP adapter and HMI on {stack.http_server.url()}" if stack.http_server else ", no HTTP adapter"
    print(f"pas: {len(stack.agents)} agents up on {stack.url} ({where}{web}); Ctrl-C to stop", flush=True)
    if stack.http_server:
        print(login_message(stack.http_server), flush=True)
    if args.ready_file:
        ready = Path(args.ready_file)  # written whole, then renamed: a watcher never reads it half-written
        ready.with_name(ready.name + ".tmp").write_text(stack.url or "")
        ready.with_name(ready.name + ".tmp").replace(ready)
    try:
        await stop.wait()
    finally:
        print("pas: stopping", flush=True)
        began = time.monotonic()
        watchdog = asyncio.ensure_future(_stop_watchdog(STOP_REPORT_S))
        faulthandler.dump_traceback_later(STOP_REPORT_S + 5, exit=False)  # the loop itself stuck: threads' stacks
        try:
            await stack.stop()
        finally:
            faulthandler.cancel_dump_traceback_later()
            watchdog.cancel()
    print(f"pas: stopped in {time.monotonic() - began:.1f}s", flush=True)
    return 0  # pas.surfaces.cli.main then leaves without finalisation (exit_now)


STOP_REPORT_S = 20.0


async def _stop_watchdog(after_s: float) -> None:
    """A stop still going after after_s: say so, with what every task of the loop is waiting on (a stop is
    bounded step by step, pas.surfaces.stack.Stack.stop; this names the step when the bounds add up or fail)."""
    await asyncio.sleep(after_s)
    print(f"pas: still stopping after {after_s:.0f}s; the tasks still running:", file=sys.stderr, flush=True)
    for t in asyncio.all_tasks():
        if t is not asyncio.current_task():
            t.print_stack(limit=8, file=sys.stderr)
    sys.stderr.flush()


def login_message(adapter: Any) -> str:
    """What `pas up` and `pas http` say about reaching the adapter (pas.surfaces.http.adapter.AdapterHandle)."""
    if not adapter.gate.required:
        return f"pas: HTTP auth is OFF (settings.http.auth): every port is open; HMI at {adapter.login_url()}"
    return (f"pas: open the HMI with this one-time login link: {adapter.login_url()}\n"
            f"pas: HTTP clients send `Authorization: Bearer {adapter.gate.token_hint}`"
            + ("; this OS user's loopback connections need no token" if adapter.gate.trust_same_user else ""))


async def unless_stopped(start: Any, stop: asyncio.Event) -> Any:
    """Await a start-up (which may wait for NATS) unless SIGINT/SIGTERM comes first: then cancel it
    (it cleans up after itself) and return None."""
    task = asyncio.ensure_future(start)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        print("pas: stopped during start-up", file=sys.stderr, flush=True)
        return None
    return task.result()


def _age(ts: Any) -> str:
    from datetime import datetime

    if ts is None:
        return "-"
    secs = (datetime.now(UTC) - ts).total_seconds()
    return f"{secs:.1f}s"


def _model_in_use(st: wire.AgentState | None, override: dict[str, Any], a: Any) -> str:
    """The newest of: the model in the agent's last heartbeat, a live switch, the config."""
    from datetime import datetime

    switched = override.get("model")
    if st is not None and st.model:
        ts = override.get("ts")
        if not switched or not ts or datetime.fromisoformat(ts) <= st.last_beat:
            return st.model
    return switched or (a.model if a else None) or "-"


BREAKER_STATES = ("closed", "open", "half_open")
MAX_BREAKER_OPEN_S = 86400.0  # a breaker opens for its cooldown (minutes): a day or more is not PAS's


def _checked(bucket: str, key: str, value: Any, cfg: ClientConfig) -> Any:
    """A KV value `pas agents` shows, checked: a model override names profiles of models.yaml, a breaker
    names the agent and profile of its key, has a known state and opens for less than a day. ValueError
    otherwise."""
    if bucket == S.KV_MODELS:
        check_model_override(value, cfg.models, key)
    elif bucket == S.KV_BREAKERS:
        agent, _, profile = key.partition(".")
        if (value.get("agent"), value.get("profile")) != (agent, profile):
            raise ValueError(f"not a breaker of {agent!r}'s profile {profile!r}: it says agent "
                             f"{value.get('agent')!r}, profile {value.get('profile')!r}")
        until, ts = value.get("open_until"), value.get("ts")
        if value.get("state") not in BREAKER_STATES:
            raise ValueError(f"unknown breaker state {value.get('state')!r}")
        if until is not None and (not isinstance(until, (int, float)) or not isinstance(ts, (int, float))
                                  or until - ts > MAX_BREAKER_OPEN_S):
            raise ValueError(f"open_until {until!r} is not a time within a day of ts {ts!r}")
    return value


async def cmd_agents(args: argparse.Namespace, cfg: ClientConfig) -> int:
    nc = await open_nc(cfg)
    try:
        js = nc.jetstream()
        states: dict[str, wire.AgentState] = {}
        models: dict[str, dict[str, Any]] = {}
        breakers: dict[str, dict[str, Any]] = {}
        for bucket, into, typ in ((S.KV_AGENTS, states, wire.AgentState), (S.KV_MODELS, models, dict),
                                  (S.KV_BREAKERS, breakers, dict)):
            try:
                kv = await js.key_value(bucket)
                keys = await kv.keys()
            except Exception:
                continue  # no such bucket (yet), or nothing in it
            for key in keys:
                try:
                    e = await kv.get(key)
                    if e.value:
                        into[key] = _checked(bucket, key, wire.decode(e.value, typ), cfg)
                except Exception as err:  # written by someone else than PAS: shown as unknown, never fatal
                    log.warning("pas agents: skipped KV %s key %s: %s", bucket, key, err)
        rows = []
        ids = [a.id for a in cfg.agents] + sorted(set(states) - {a.id for a in cfg.agents})
        for aid in ids:
            a = next((x for x in cfg.agents if x.id == aid), None)
            st = states.get(aid)
            m = models.get(aid, {})
            rows.append({
                "agent": aid, "tier": a.tier if a else "?", "lane": (a.lane if a else None) or "-",
                "state": st.state if st else "unknown", "status": st.status if st else "-",
                "age": _age(st.last_beat if st else None),
                "model": _model_in_use(st, m, a),
            })
            prof = rows[-1]["model"]
            br = breakers.get(S.breaker_key(aid, prof))  # its own breaker: no agent writes another's
            rows[-1]["breaker"] = "-" if br is None else (
                br["state"] + (f" {max(0.0, br['open_until'] - time.time()):.0f}s" if br.get("open_until") and
                               br["state"] == "open" else ""))
    finally:
        await nc.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'AGENT':<18}{'TIER':<12}{'LANE':<11}{'STATE':<9}{'STATUS':<10}{'AGE':>9}  {'MODEL':<20}BREAKER")
    for r in rows:
        print(f"{r['agent']:<18}{r['tier']:<12}{r['lane']:<11}{r['state']:<9}{r['status']:<10}{r['age']:>9}  "
              f"{r['model']:<20}{r['breaker']}")
    return 0


LOG_QUIET_S = 0.5
"""`pas log --follow --run R` reads on this long after R ended: the entries its end writes (root's last STATUS)."""


async def _stop_when_ended(nc: Any, run_id: str, stop: asyncio.Event, timeout_s: float) -> None:
    """Set `stop` LOG_QUIET_S after the run is terminal (its status event, or already ended)."""
    ended = asyncio.Event()

    async def on_status(m: Any) -> None:
        if (ev := event_fields(m.subject, m.data)) is not None and ev["status"] in wire.TERMINAL_RUN:
            ended.set()

    sub = await nc.subscribe(S.run_status(run_id), cb=on_status)
    try:
        with contextlib.suppress(Exception):  # an unknown run may start later: then its events tell
            reply = json.loads((await nc.request(S.GATEWAY_STATUS, json.dumps({"run_id": run_id}).encode(),
                                                 timeout=timeout_s)).data)
            if reply.get("status") in wire.TERMINAL_RUN:
                ended.set()
        await ended.wait()
        await asyncio.sleep(LOG_QUIET_S)
        stop.set()
    finally:
        await sub.unsubscribe()


async def cmd_log(args: argparse.Namespace, cfg: ClientConfig) -> int:
    nc = await open_nc(cfg)
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(
        _stop_when_ended(nc, args.run, stop, cfg.settings.nats.request_timeout_s)) if args.follow and args.run else None
    try:
        async for e in comms_mod.read(nc.jetstream(), run_id=args.run, agent=args.agent, msg_type=args.msg_type,
                                      how=ReadOptions(since=parse_since(args.since), follow=args.follow, stop=stop)):
            print(redact(json.dumps(wire.to_builtins(e))) if args.json else comms_mod.format_entry(e), flush=True)
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await nc.close()
    return 0


async def cmd_replay(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.surfaces.replay.commands import replay

    return await replay(args, cfg)


async def cmd_rerun(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.surfaces.replay.commands import rerun

    return await rerun(args, cfg)


async def cmd_diff(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.surfaces.replay.commands import diff

    return await diff(args, cfg)


def _job_from_args(args: argparse.Namespace) -> dict[str, Any]:
    job: dict[str, Any] = {"title": args.title}
    if args.goal:
        job["goal"] = args.goal
    if args.repo:
        job["repo"] = str(Path(args.repo).resolve())
    if args.env:
        job["env"] = args.env
    if args.run_id:
        job["run_id"] = args.run_id
    if args.lane:
        job["lanes"] = args.lane
    tasks = []
    for t in args.task:
        lane, sep, command = t.partition(":")
        if not sep or not command.strip():
            raise BadRequest(f"--task {t!r}: expected LANE:COMMAND")
        tasks.append({"lane": lane.strip(), "instruction": command.strip(), "command": command.strip(),
                      "executor": "command"})
    if tasks:
        job["tasks"] = tasks
    if getattr(args, "priority", None):
        job["priority"] = args.priority
    if getattr(args, "approval", False):
        job["approval_mode"] = True
    return job


SUBMIT_TRIES = 3
"""`pas submit` asks this often when the gateway does not reply in time, always with the same key."""


async def submit_once(client: Any, job: dict[str, Any], key: str) -> dict[str, Any]:
    """Submit with an idempotency key (Nats-Msg-Id), retried on a timeout with the same key: a run that
    was created although its reply was lost comes back (duplicate: true) instead of a second run."""
    from pas.base.errors import GatewayTimeout

    tries = 1
    while True:
        try:
            return await client.submit(job, msg_id=key)
        except GatewayTimeout as e:
            if tries == SUBMIT_TRIES:
                raise GatewayTimeout(f"{e.message} ({SUBMIT_TRIES} tries); the run may exist: submitting again "
                                     f"with --idempotency-key {key} returns it rather than a second run") from None
            print(f"pas: {e.message}; asking again with the same idempotency key", file=sys.stderr, flush=True)
            tries += 1


async def cmd_submit(args: argparse.Namespace, cfg: ClientConfig) -> int:
    import uuid

    job = _job_from_args(args)
    key = args.idempotency_key or f"pas-submit-{uuid.uuid4().hex}"
    async with await open_client(cfg) as client:
        if args.wait and "run_id" not in job:
            job["run_id"] = wire_run_id()
        reply = await submit_once(client, job, key)
        if reply.get("duplicate"):
            print(f"pas: already submitted with idempotency key {key}: the same run", file=sys.stderr, flush=True)
        print(reply["run_id"], flush=True)
        if not args.wait:
            return 0
        st = await follow_run(client, reply["run_id"], args.timeout)
        print(result_table(st))
        return 0 if st["status"] == "completed" else 1


STATUS_PAGE = 100
"""Tasks per page of `pas status --page N`."""


async def cmd_status(args: argparse.Namespace, cfg: ClientConfig) -> int:
    page = args.page
    async with await open_client(cfg) as client:
        if page is None:
            st = await client.status(args.run_id)
        else:
            st = await client.status(args.run_id, (page - 1) * STATUS_PAGE, STATUS_PAGE)
    print(json.dumps(st, indent=2) if args.json else result_table(st))
    if page is not None and not args.json:
        first, total = st.get("offset", 0), st.get("tasks_total", len(st["tasks"]))
        more = f"; next: pas status {args.run_id} --page {page + 1}" if st.get("next_offset") is not None else ""
        print(f"tasks {min(first + 1, total)}-{first + len(st['tasks'])} of {total} (page {page}){more}")
    return 0


async def cmd_runs(args: argparse.Namespace, cfg: ClientConfig) -> int:
    async with await open_client(cfg) as client:
        res = await client.runs(args.limit, args.status, args.offset)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        rows = [[r["run_id"], r["status"], r["created_at"], r["title"]] for r in res["runs"]]
        for line in columns([["RUN", "STATUS", "CREATED", "TITLE"], *rows]):
            print(line)
        if res.get("next_offset") is not None:
            print(f"... {res['total'] - res['next_offset']} older run(s): pas runs --offset {res['next_offset']}")
    return 0


async def cmd_cancel(args: argparse.Namespace, cfg: ClientConfig) -> int:
    async with await open_client(cfg) as client:
        res = await client.cancel(args.run_id)
    print(f"{res['run_id']} {res['status']}")
    return 0


def plan_text(plan: dict[str, Any]) -> str:
    lines = [f"run {plan['run_id']}  {plan['status']}  {plan['title']}"]
    a = plan.get("approval")
    if a:
        who = f" by {wire.decider(a['decided_by'])}" if a.get("decided_by") else ""
        lines.append(f"approval: {a['status']}{who}; deadline {a.get('deadline') or '-'}"
                     + (f"; dropped {', '.join(a['dropped'])}" if a.get("dropped") else "")
                     + (f"; reason: {a['reason']}" if a.get("reason") else ""))
    if not plan["complete"]:
        lines.append("(planning not finished yet)")
    for j in plan["jobs"]:
        lines.append(f"job {j['job_id']} ({j['lane']}, {j['manager']}): {len(j['tasks'])} task(s)")
        for t in j["tasks"]:
            spec = t["spec"]
            what = spec.get("command") or spec["instruction"]
            lines.append(f"  {t['task_id']:<16}{t['status']:<11}{spec.get('executor') or '-':<8}{what[:100]}")
    return "\n".join(lines)


async def cmd_plan(args: argparse.Namespace, cfg: ClientConfig) -> int:
    async with await open_client(cfg) as client:
        plan = await client.plan(args.run_id)
    print(json.dumps(plan, indent=2) if args.json else plan_text(plan))
    return 0


async def cmd_approve(args: argparse.Namespace, cfg: ClientConfig) -> int:
    async with await open_client(cfg) as client:
        res = await client.approve(args.run_id, by=args.by, drop=args.drop, reason=args.reason)
    print(f"{res['run_id']} {res['status']}" + (f" (dropped {', '.join(args.drop)})" if args.drop else ""))
    return 0


async def cmd_reject(args: argparse.Namespace, cfg: ClientConfig) -> int:
    async with await open_client(cfg) as client:
        res = await client.reject(args.run_id, reason=args.reason, by=args.by)
    print(f"{res['run_id']} {res['status']}")
    return 0


async def cmd_model(args: argparse.Namespace, cfg: ClientConfig) -> int:
    async with await open_client(cfg, "admin") as client:  # models are changed by admin only
        which = "backup" if args.backup else "primary"
        res = await client.set_model(args.agent, cfg.models, **{which: args.profile})
    print(f"{res['agent']}: model={res['model']} backup={res['backup_model']}")
    return 0


async def cmd_http(args: argparse.Namespace, cfg: PasConfig) -> int:
    if not http_available():
        raise PasError("the HTTP adapter is not part of this build")
    from pas.surfaces.http.adapter import start_adapter

    stop = asyncio.Event()
    install_stop_signals(stop)
    server = await unless_stopped(start_adapter(cfg, client_url(cfg), creds=auth.user_creds(cfg, "adapter")), stop)
    if server is None:
        return 130
    print(f"pas http: serving agent ports and the HMI on {server.url()}/", flush=True)
    print(login_message(server), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


async def cmd_login(args: argparse.Namespace, cfg: PasConfig) -> int:
    """A new one-time HMI login link from the running adapter: asked with the token from the creds dir
    (or PAS_HTTP_TOKEN), else as this OS user's loopback connection."""
    import httpx

    from pas.surfaces.http.trust import base_url, stored_token

    h = cfg.settings.http
    url = base_url(h.host, h.hmi_port + h.port_offset) + "/login/code"
    token = stored_token(auth.creds_dir(cfg, args.data_dir))
    try:
        async with httpx.AsyncClient(timeout=cfg.settings.nats.client_connect_timeout_s) as c:
            r = await c.post(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    except httpx.HTTPError as e:
        raise PasError(f"no HTTP adapter at {url} ({e!r}): is `pas up` running (with the same "
                       "settings.http.port_offset)?") from None
    if r.status_code != 200:
        raise PasError(f"the HTTP adapter at {url} refused: {r.status_code} {r.text[:300]}")
    print(r.json()["url"])
    return 0


async def cmd_mcp(args: argparse.Namespace, cfg: PasConfig) -> int:
    """MCP over stdio: stdout carries the protocol only; logs go to stderr. With NATS users on, it
    connects as `client` (the credentials from --creds-dir, $PAS_CREDS_DIR, ... like the CLI)."""
    from pas.surfaces.mcp.server import serve_stdio

    n = cfg.settings.nats
    if getattr(args, "connect_timeout", None) is None:
        n.connect_timeout_s = n.client_connect_timeout_s
    await serve_stdio(cfg, client_url(cfg), **auth.connect_kw(auth.user_creds(cfg, "client")))
    return 0


# ---- demo, init ----------------------------------------------------------------------------
async def cmd_demo(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.surfaces.demo import run_demo

    return await run_demo(args, cfg)


async def cmd_eval(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.surfaces.eval.cli import main as eval_main

    return await eval_main(args, cfg)


async def cmd_init(args: argparse.Namespace, cfg: PasConfig | None) -> int:
    """Write editable copies of the packaged default configs into DIR (default ./configs)."""
    from pas.config.model import CONFIG_FILES, PACKAGED_CONFIG_DIR

    dest = Path(args.dir)
    existing = [dest / f for f in CONFIG_FILES if (dest / f).exists()]
    if existing and not args.force:
        raise PasError(f"{', '.join(map(str, existing))} already exist(s); use --force to overwrite")
    dest.mkdir(parents=True, exist_ok=True)
    for f in CONFIG_FILES:
        shutil.copyfile(PACKAGED_CONFIG_DIR / f, dest / f)
    where = dest.resolve()
    used = "" if where == (Path.cwd() / "configs").resolve() else f" (use it with --config-dir {dest} or PAS_CONFIG_DIR)"
    print(f"pas init: wrote {', '.join(CONFIG_FILES)} to {where}{used}")
    return 0


# ---- NATS users ----------------------------------------------------------------------------
async def cmd_creds(args: argparse.Namespace, cfg: ClientConfig) -> int:
    if args.data_dir:
        cfg.settings.nats.data_dir = args.data_dir
    where = auth.creds_dir(cfg)
    creds = auth.load_creds(where).get(args.role)
    if creds is None:
        raise PasError(f"no credentials for {args.role!r} in {where}: `pas up` writes them for its embedded server "
                       f"(or `pas nats-config` for a server of your own); see --creds-dir / PAS_CREDS_DIR")
    from pas.surfaces import natscli

    url = client_url(cfg)
    print(natscli.shell_lines(url, creds, natscli.save_context(url, creds)), end="")
    return 0


async def cmd_nats_config(args: argparse.Namespace, cfg: PasConfig) -> int:
    if args.data_dir:
        cfg.settings.nats.data_dir = args.data_dir
    where = auth.creds_dir(cfg)
    creds = auth.ensure_creds(where, auth.users(cfg))  # generated once; PAS processes read them from the same place
    print(f"# PAS NATS users for the topology in {args.config_dir or 'configs/'} (pas nats-config);\n"
          f"# passwords are in {where}. Save as pas-auth.conf and add `include ./pas-auth.conf` to every\n"
          f"# server's config; start PAS with --creds-dir {where} (or PAS_CREDS_DIR).")
    print(auth.server_block(cfg, creds), end="")
    return 0
