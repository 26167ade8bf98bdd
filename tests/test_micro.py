"""Every agent is a NATS micro service whose $SRV replies validate against the `nats` CLI schemas;
every endpoint answers bad payloads with a structured error and keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import jsonschema
import pytest

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import comms
from tests.conftest import SCHEMAS, wait_for
from tests.module_stack import module_stack

# The tests only ask the agents and submit runs of their own: one stack for the module.
pytestmark = pytest.mark.asyncio(loop_scope="module")
stack, nc, client = module_stack()


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}_response.json").read_text())


async def collect(nc: Any, subject: str, want: int, timeout_s: float = 3.0) -> list[Any]:
    inbox = nc.new_inbox()
    got: list[Any] = []
    enough = asyncio.Event()

    async def cb(m: Any) -> None:
        got.append(json.loads(m.data))
        if len(got) >= want:
            enough.set()

    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish(subject, b"", reply=inbox)
    try:
        await asyncio.wait_for(enough.wait(), timeout_s)
    finally:
        await sub.unsubscribe()
    return got


async def test_ping_info_stats_validate(stack: Any, nc: Any) -> None:
    pings = await collect(nc, "$SRV.PING", 26)
    names = {p["name"] for p in pings}
    assert {a.id for a in stack.cfg.agents} <= names
    for verb in ("ping", "info", "stats"):
        replies = pings if verb == "ping" else await collect(nc, f"$SRV.{verb.upper()}", 26)
        assert len(replies) >= 26
        for r in replies:
            jsonschema.validate(r, schema(verb))
    info = {r["name"]: r for r in await collect(nc, "$SRV.INFO", 26)}
    mgr = info["mgr-code-01"]
    assert mgr["metadata"]["lane"] == "code" and mgr["description"]
    subjects = {e["subject"] for e in mgr["endpoints"]}
    assert {"pas.mgr.mgr-code-01.health", "pas.mgr.mgr-code-01.status", "pas.mgr.code.submit"} <= subjects
    # per-service verbs, as `nats micro info mgr-code-01` sends them
    one = await nc.request("$SRV.INFO.mgr-code-01", b"", timeout=2)
    jsonschema.validate(json.loads(one.data), schema("info"))


async def test_every_agent_answers_health_and_status(stack: Any, nc: Any) -> None:
    for a in stack.cfg.agents:
        for ep in ("health", "status"):
            r = await nc.request(S.agent_endpoint(a.role, a.id, ep), b"", timeout=2)
            body = json.loads(r.data)
            assert body["agent"] == a.id and body["tier"] == a.tier, (a.id, ep, body)


def endpoints_of(stack: Any) -> list[str]:
    subs = []
    for agent in stack.agents:
        for ep in agent.service.info().endpoints:
            subs.append(ep.subject)
    return sorted(set(subs))


BAD = [
    (b"not json", "400"),
    (b'{"title": 5, "run_id": [1]}', "400"),
    (b"[1, 2, 3]", "400"),
    (b"x" * (3 * 1024 * 1024), "413"),
]


async def test_bad_payloads_on_every_endpoint(stack: Any, nc: Any) -> None:
    subjects = endpoints_of(stack)
    assert len(subjects) >= 26 * 3
    for subject in subjects:
        for payload, code in BAD:
            r = await nc.request(subject, payload, timeout=5)
            h = r.headers or {}
            # Endpoints that take no body (health) accept anything; all others must refuse.
            if ".started." in subject:  # a report, never answered: PAS_COMMS keeps it (its ack is the answer)
                assert "Nats-Service-Error-Code" not in h and json.loads(r.data)["stream"] == S.STREAM_COMMS, r.data
                continue
            if subject.endswith(".health"):
                assert "Nats-Service-Error-Code" not in h or h["Nats-Service-Error-Code"] == "413"
                continue
            assert h.get("Nats-Service-Error-Code") == code, (subject, payload[:30], h, r.data[:200])
            body = json.loads(r.data)
            assert body["code"] == int(code) and body["message"], body
    # missing required fields
    r = await nc.request(S.GATEWAY_SUBMIT, b"{}", timeout=5)
    assert r.headers["Nats-Service-Error-Code"] == "400" and "title" in json.loads(r.data)["message"]
    # the agents keep serving, and STATS count the errors
    pings = await collect(nc, "$SRV.PING", 26)
    assert len(pings) >= 26
    st = json.loads((await nc.request("$SRV.STATS.gateway", b"", timeout=2)).data)
    submit = next(e for e in st["endpoints"] if e["name"] == "submit")
    assert submit["num_errors"] >= len(BAD) + 1 and submit["last_error"]
    # the reports refused all the same (each lane's managers are one queue group: the lane's errors add up)
    for lane in S.LANES:
        managers = [a.id for a in stack.cfg.agents if a.role == "mgr" and a.lane == lane]
        errors = 0
        for m in managers:
            mst = json.loads((await nc.request(f"$SRV.STATS.{m}", b"", timeout=2)).data)
            errors += next(e for e in mst["endpoints"] if e["name"] == "task_started")["num_errors"]
        assert errors >= len(BAD), (lane, errors)
    # the bad input is logged in the comms log
    async def logged() -> bool:
        entries = [e async for e in comms.read(stack.bus.js, msg_type="ERROR")]
        return any(e.metadata.get("subject") == S.GATEWAY_SUBMIT and "not valid JSON" in e.message for e in entries)

    await wait_for(logged, 10)


async def test_plain_publish_without_reply_is_served(stack: Any, nc: Any, client: Any) -> None:
    done = await nc.subscribe(S.run_status("pub-1"))
    await nc.publish(S.GATEWAY_SUBMIT, json.dumps({"title": "fire and forget", "run_id": "pub-1"}).encode())
    first = await done.next_msg(timeout=10)  # the gateway announces the run it started
    assert json.loads(first.data)["status"] == "queued"
    st = await client.wait("pub-1", timeout_s=20)
    assert st["status"] == "completed"
    await nc.publish(S.GATEWAY_SUBMIT, b"garbage without reply")  # must not crash anything
    assert len(await collect(nc, "$SRV.PING", 26)) >= 26


async def test_malformed_heartbeat_is_ignored(stack: Any, nc: Any, caplog: Any) -> None:
    """A broken beat reaches the monitor's heartbeat subscription, which logs and drops it; the
    agent's state is untouched and the beats that follow are still taken by _on_beat."""
    caplog.set_level(logging.WARNING, logger="pas")
    monitor = next(a for a in stack.agents if a.id == "monitor").role
    await wait_for(lambda: monitor.state.get("prog-001"), 10)  # prog-001's own beats are being taken
    await nc.publish(S.heartbeat("prog-001"), b"{broken")

    def dropped() -> bool:  # logged by the monitor agent's typed subscription (Agent.listen)
        return any(r.getMessage().startswith("monitor: ignoring a bad message on " + S.heartbeat("prog-001"))
                   for r in caplog.records)

    await wait_for(dropped, 10)
    assert monitor.state["prog-001"].state == "alive"
    # The next beat on the same connection comes after the broken one: taken and stored in KV.
    beat = wire.Heartbeat(agent="hb-probe", ts=wire.now(), message="after the broken beat")
    await nc.publish(S.heartbeat("hb-probe"), wire.encode(beat))

    async def stored() -> Any:
        got = await stack.bus.kv_get(S.KV_AGENTS, "hb-probe", wire.AgentState)
        return got and got[0].message == "after the broken beat" and got[0].state == "alive"

    await wait_for(stored, 10)
    r = await nc.request("pas.monitor.monitor.health", b"", timeout=2)
    assert json.loads(r.data)["agent"] == "monitor"
