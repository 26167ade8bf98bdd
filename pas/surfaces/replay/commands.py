"""`pas replay`, `pas rerun` and `pas diff` (their arguments are parsed in pas.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pas.base.errors import BadRequest, NotFound, PasError
from pas.config.model import PasConfig
from pas.protocol import subjects as S
from pas.runtime import comms as comms_mod
from pas.surfaces.cliutil import open_bus, open_client, open_nc
from pas.transport.client import PasClient


async def replay(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.surfaces.replay import html, live, rebuild, timeline

    if args.speed is not None and args.speed < 0:
        raise BadRequest("--speed must be >= 0")
    nc = await open_nc(cfg)
    js = nc.jetstream()
    try:
        if args.rebuild:
            rep = await rebuild.compare(js, args.run_id)
            print(json.dumps(rep, indent=2) if args.json else rebuild.format_text(rep))
            return 0 if rep["same"] else 1
        if args.speed is not None:
            n = await live.republish(js, args.run_id, args.speed)
            if not n:
                raise PasError(f"run {args.run_id}: nothing in {S.STREAM_EVENTS} or {S.STREAM_COMMS}")
            print(f"pas: re-published {n} messages of {args.run_id} on {S.replay(args.run_id, '>')}")
            return 0
        if args.follow:
            tl = await live.follow(js, args.run_id, lambda line: print(line, flush=True))
        else:
            tl = await timeline.build(js, args.run_id)
        if tl.get("submitted_at") is None:
            raise PasError(f"run {args.run_id}: nothing in {S.STREAM_EVENTS} or {S.STREAM_COMMS}")
        if args.html:
            Path(args.html).write_text(html.render(tl), encoding="utf-8")
            print(f"pas: wrote {args.html}", file=sys.stderr)
        if args.json:
            print(json.dumps(tl, indent=2))
        elif not args.html and not args.follow:
            print(timeline.format_text(tl))
    finally:
        await nc.close()
    return 0


async def rerun(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.runtime import rerun as rerun_mod

    models = {}
    for m in args.models:
        agent, sep, prof = m.partition("=")
        if not sep or not agent or not prof:
            raise BadRequest(f"--model {m!r}: expected AGENT=PROFILE")
        # the profile is the agents' to resolve (their models.yaml): an unknown one fails that call, logged
        models[agent] = prof
    bus = await open_bus(cfg)
    client = await open_client(cfg)
    try:
        new = args.new_run_id or await _free_rerun_id(client, args.run_id)
        try:
            asked = rerun_mod.RerunSpec(args.run_id, args.on_diverge, args.from_step, models)
            job, spec = await rerun_mod.prepare(bus, asked, new, args.sets)
        except (KeyError, ValueError) as e:
            raise BadRequest(str(e).strip("'\"")) from None
        await comms_mod.CommsLog(bus.nc).log(comms_mod.Entry(
            "client", "gateway", "CMD", f"rerun of {args.run_id} as {new}"
            + (f" from {args.from_step}" if args.from_step else ""), new, "queued",
            metadata={"parent": args.run_id, "from": args.from_step, "models": models}))
        await client.submit(job)
        print(f"pas: rerun of {args.run_id}: run {new}", file=sys.stderr, flush=True)
        if not spec.calls:
            print(f"pas: run {args.run_id} has no recorded model calls (no model answered it, or its recordings "
                  f"aged out): nothing to replay, any model call of the rerun is a divergence", file=sys.stderr,
                  flush=True)
        res = await client.wait(new, timeout_s=args.timeout)
        div = await rerun_mod.divergence(bus, new)
        llm = [e async for e in comms_mod.read(bus.js, run_id=new, msg_type="LLM")]
        replayed = sum(1 for e in llm if e.metadata.get("replayed"))
        out = {"run_id": new, "parent": args.run_id, "status": res["status"], "tokens": res["usage"]["tokens"],
               "cost_usd": res["usage"]["cost_usd"], "replayed_calls": replayed,
               "live_calls": sum(1 for e in llm if "profile" in e.metadata and not e.metadata.get("replayed")),
               "divergence": div}
    finally:
        await client.close()
        await bus.close()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"run {new} ({out['status']}): rerun of {args.run_id}, {replayed} replies replayed, "
              f"{out['live_calls']} live calls, {out['tokens']} tokens")
        if div:
            print(divergence_text(div, args.run_id, len(spec.calls)))
    return 0 if out["status"] == "completed" and not (div and div["action"] == "stop") else 1


def divergence_text(div: dict[str, Any], parent: str, recorded: int) -> str:
    """Where a rerun left its recordings: the call, the recorded call it should have been, the first
    differing message and the diff; or, with nothing recorded to compare with, that."""
    where = f"diverged at {div['agent']} call {div['call']}"
    exp = div.get("expected")
    if not recorded:
        return f"{where}: run {parent} has no recordings to replay; {div['action']}"
    if not exp:
        return f"{where}: {div['diff']} (run {parent} has {recorded} recorded call(s)); {div['action']}"
    return (f"{where} (recorded: {exp['agent']} call #{exp['index']}): message {div['message_index']} "
            f"({div['role']}) differs; {div['action']}\n{div['diff']}")


async def diff(args: argparse.Namespace, cfg: PasConfig) -> int:
    from pas.runtime.store import RunStore
    from pas.surfaces.replay import diff as diff_mod

    bus = await open_bus(cfg)
    store = RunStore(bus)
    client = await open_client(cfg)
    try:
        d = diff_mod.compare(await diff_mod.side(store, client, args.run_a), await diff_mod.side(store, client, args.run_b))
    finally:
        await client.close()
        await bus.close()
    print(json.dumps(d, indent=2) if args.json else diff_mod.format_text(d))
    return 0 if d["same"] else 1


async def _free_rerun_id(client: PasClient, parent: str) -> str:
    for n in range(1, 1000):
        rid = f"{parent[:58]}-r{n}"
        try:
            await client.status(rid)
        except NotFound:
            return rid
    raise PasError(f"no free rerun id for {parent}")
