"""One NATS identity per agent id, records granted to their owners (pas/transport/auth.py), and readers that skip
what they cannot trust — against the real embedded server with its users on, as `pas up` starts it.

Each attack is made with the credentials a compromised process would hold (a programmer's: what an
aider process can read; the `client` user's), is refused by the server (its log names the user and
subject) or ignored by the reader that meets it (a WARNING names the entry), and a normal job still
completes afterwards."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import comms
from pas.surfaces.replay import timeline
from pas.surfaces.stack import Stack
from pas.transport import auth
from pas.transport.client import PasClient
from pas.transport.streams import Raw, read_raw
from tests.conftest import as_user, make_cfg, wait_for

AGENTS = ["monitor", "gateway", "root", "architect", "dir-code", "mgr-code-01", "prog-001", "prog-002"]
SLEEP = {"lane": "code", "instruction": "sleep 30", "command": "sleep 30", "executor": "command"}
ECHO = {"lane": "code", "instruction": "echo ok", "command": "echo ok", "executor": "command"}


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Stack]:
    st = Stack(make_cfg("settings.nats.port=-1", f"settings.nats.data_dir={tmp_path / 'data'}"), only=AGENTS)
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


async def violation(st: Stack, user: str, subject: str) -> None:
    """The server refused `user` publishing `subject` (its log says so)."""
    assert st.server is not None and st.server.log_path is not None
    log_path = st.server.log_path
    await wait_for(lambda: f'user:{user}" - Publish Violation - Subject "{subject}"' in log_path.read_text(),
                   timeout_s=10)


async def stored(st: Stack, bucket: str, key: str) -> bytes | None:
    """A KV value as `admin` reads it (None: no such key)."""
    nc = await as_user(st, "admin")
    try:
        return (await (await nc.jetstream().key_value(bucket)).get(key)).value
    except KeyNotFoundError:
        return None
    finally:
        await nc.close()


async def client_of(st: Stack) -> PasClient:
    return await PasClient.connect(st.url or "", 10, creds=st.creds["client"])


async def a_job_completes(st: Stack, run_id: str) -> None:
    client = await client_of(st)
    try:
        await client.submit({"title": "after", "run_id": run_id, "tasks": [ECHO]})
        res = await client.wait(run_id, timeout_s=60)
    finally:
        await client.close()
    assert res["status"] == "completed" and res["tasks"][0]["output"] == "ok\n", res


async def running(st: Stack, run_id: str) -> PasClient:
    client = await client_of(st)
    await client.submit({"title": "victim", "run_id": run_id, "tasks": [SLEEP]})
    await wait_for(lambda: _task_running(client, run_id), timeout_s=30)
    return client


async def _task_running(client: PasClient, run_id: str) -> bool:
    st = await client.status(run_id)
    return bool(st["tasks"]) and st["tasks"][0]["status"] == "running"


def test_each_agent_has_its_own_user_and_grants() -> None:
    """The generated rules: an agent's own subjects carry its id; only the owner of a record writes it."""
    cfg = make_cfg()
    perms = auth.permissions(cfg)
    assert set(perms) == {"client", "adapter", "admin", *(a.id for a in cfg.agents)}
    prog = perms["prog-001"].publish
    assert S.heartbeat("prog-001") in prog and S.heartbeat("*") not in prog
    assert S.comms_filter(from_agent="prog-001") in prog and S.COMMS_ALL not in prog
    assert S.kv_subject(S.KV_CLAIMS, "prog-001") in prog and S.kv_subject(S.KV_MODELS, "prog-001") not in prog
    assert {u for u, p in perms.items() if S.kv_subject(S.KV_MODELS, "*") in p.publish} == {"adapter", "admin"}
    assert S.kv_subject(S.KV_BREAKERS, S.breaker_key("prog-001", ">")) in prog
    assert S.task_done("*", "prog-001") in prog and S.task_done("*", "*") not in prog
    for theirs in (S.task_key("*", "*"), S.job_key("*", "*"), S.lane_key("*", "*"), S.plan_key("*")):
        assert S.kv_subject(S.KV_TREE, theirs) not in prog
    assert S.done_plan("*") not in prog and S.GATEWAY_CANCEL not in prog
    only = {S.kv_subject(S.KV_TREE, S.job_key("*", "*")): "mgr-",
            S.kv_subject(S.KV_TREE, S.task_key("*", "*")): "mgr-", S.kv_subject(S.KV_TREE, S.plan_key("*")): "architect",
            S.done_plan("*"): "architect", S.kv_subject(S.KV_TREE, S.lane_key("*", "code")): "dir-code"}
    for subject, owner in only.items():
        assert {u for u, p in perms.items() if subject in p.publish and u != "admin"} == {
            a.id for a in cfg.agents if a.id.startswith(owner)}, subject
    assert S.JS_FLOW_CONTROL_ALL in perms["admin"].publish  # admin's ordered consumers get flow control
    assert S.js_next(S.STREAM_EVENTS, S.CONSUMER_ROOT_DONE) in perms["client"].deny_publish


async def test_programmer_cannot_end_freeze_cancel_or_remodel_another_run(up: Stack) -> None:
    """A programmer's credentials against a running run: done.plan, its job record, the gateway's
    cancel and another agent's model are all refused; the run goes on and completes normally."""
    victim = await running(up, "victim-1")
    nc = await as_user(up, "prog-001")
    try:
        forged = wire.encode(wire.RunEvent(run_id="victim-1", kind="plan", status="completed", ts=wire.now()))
        await nc.publish(S.done_plan("victim-1"), forged)
        await violation(up, "prog-001", S.done_plan("victim-1"))
        job = S.kv_subject(S.KV_TREE, S.job_key("victim-1", "code-1"))
        await nc.publish(job, b'{"forged": true}')
        await violation(up, "prog-001", job)
        await nc.publish(S.GATEWAY_CANCEL, json.dumps({"run_id": "victim-1"}).encode(), reply=nc.new_inbox())
        await violation(up, "prog-001", S.GATEWAY_CANCEL)
        other_model = S.kv_subject(S.KV_MODELS, "prog-002")
        await nc.publish(other_model, b'{"model": "gpt-4o"}')
        await violation(up, "prog-001", other_model)
        await nc.flush()
        st = await victim.status("victim-1")
        assert st["status"] == "running" and st["tasks"][0]["status"] == "running"
        assert up.bus is not None
        job_rec = await up.bus.kv_get(S.KV_TREE, S.job_key("victim-1", "code-1"), wire.JobRecord)
        assert job_rec is not None and job_rec[0].status == "running" and job_rec[0].done == {}
        assert await stored(up, S.KV_MODELS, "prog-002") is None
        assert (await victim.cancel("victim-1"))["status"] == "cancelled"
        assert (await victim.wait("victim-1", timeout_s=30))["status"] == "cancelled"
    finally:
        await nc.close()
        await victim.close()
    await a_job_completes(up, "after-1")


async def test_a_forged_done_plan_of_a_running_plan_ends_nothing(up: Stack, caplog: Any) -> None:
    """Even from a user that may publish done.plan (the architect's), root checks the plan record: a
    plan still running is not ended by being told it is."""
    caplog.set_level(logging.WARNING, "pas.root")
    victim = await running(up, "victim-2")
    nc = await as_user(up, "architect")
    try:
        forged = wire.RunEvent(run_id="victim-2", kind="plan", status="completed", ts=wire.now(), message="code=completed")
        await nc.jetstream().publish(S.done_plan("victim-2"), wire.encode(forged))
        await wait_for(lambda: any("done.plan for run victim-2 ignored" in r.getMessage() for r in caplog.records),
                       timeout_s=20)
        assert (await victim.status("victim-2"))["status"] == "running"
        await victim.cancel("victim-2")
    finally:
        await nc.close()
        await victim.close()
    await a_job_completes(up, "after-2")


async def test_programmer_cannot_speak_for_another_agent(up: Stack, caplog: Any) -> None:
    """Heartbeats, claims and comms entries carry an agent id: a programmer may use only its own, and
    an entry whose body names another sender than its subject is skipped by every reader."""
    caplog.set_level(logging.WARNING)
    nc = await as_user(up, "prog-001")
    try:
        hb = wire.Heartbeat(agent="prog-999", ts=wire.now(), status="ok")
        for subject in (S.heartbeat("prog-999"), S.heartbeat("prog-002")):
            await nc.publish(subject, wire.encode(hb))
            await violation(up, "prog-001", subject)
        claim = S.kv_subject(S.KV_CLAIMS, "mgr-code-02")
        await nc.publish(claim, b'{"agent": "mgr-code-02", "instance": "x", "host": "h", "pid": 1}')
        await violation(up, "prog-001", claim)
        forged = wire.CommsEntry(ts=wire.now(), from_agent="root", to_agent="gateway", msg_type="STATUS",
                                 message="run r-x completed", run_id="r-x")
        await nc.publish(S.comms("r-x", "root", "STATUS"), wire.encode(forged))
        await violation(up, "prog-001", S.comms("r-x", "root", "STATUS"))
        # its own subject, another sender in the body: stored (the subject is its own), never shown
        await nc.jetstream().publish(S.comms("r-x", "prog-001", "STATUS"), wire.encode(forged))
    finally:
        await nc.close()
    client = await client_of(up)
    try:
        seen = [e async for e in comms.read(client.nc.jetstream(), run_id="r-x")]
        assert seen == []
        assert any("skipped entry" in r.getMessage() and "does not match" in r.getMessage() for r in caplog.records)
        agents = await wait_for(lambda: _alive(client), timeout_s=20)
        assert "prog-999" not in agents
    finally:
        await client.close()
    assert await stored(up, S.KV_CLAIMS, "mgr-code-02") is None
    await a_job_completes(up, "after-3")


async def _alive(client: PasClient) -> set[str] | None:
    kv = await client.nc.jetstream().key_value(S.KV_AGENTS)
    ids = set(await kv.keys())
    return ids if set(AGENTS) <= ids else None


async def test_client_cannot_steal_from_or_delete_pas_consumers(up: Stack) -> None:
    """`client` reads streams through consumers of its own; PAS's durables are denied to it by name."""
    client = await client_of(up)
    nc = client.nc
    try:
        pull = S.js_next(S.STREAM_EVENTS, S.CONSUMER_ROOT_DONE)
        with pytest.raises((NoRespondersError, NatsTimeoutError)):
            await nc.request(pull, b'{"batch": 1, "expires": 500000000}', timeout=2)
        await violation(up, "client", pull)
        for durable in (S.CONSUMER_ROOT_DONE, S.consumer_mgr_release("code")):
            delete = S.js_api("CONSUMER", "DELETE", S.STREAM_EVENTS, durable)
            with pytest.raises((NoRespondersError, NatsTimeoutError)):
                await nc.request(delete, b"", timeout=2)
            await violation(up, "client", delete)
        admin = await as_user(up, "admin")
        try:
            names = {c.name for c in await admin.jetstream().consumers_info(S.STREAM_EVENTS)}
        finally:
            await admin.close()
        assert {S.CONSUMER_ROOT_DONE, S.consumer_mgr_release("code")} <= names
        # reading the same stream through its own consumer still works (pas log, pas replay)
        assert [e async for e in comms.read(nc.jetstream(), run_id="nothing")] == []
    finally:
        await client.close()
    await a_job_completes(up, "after-4")


async def test_a_bad_llm_entry_does_not_break_the_timeline(up: Stack, caplog: Any) -> None:
    """An LLM comms entry with latency_s "abc" (and a run event with a status that is not one) in a run:
    the timeline is still built, the entry is skipped with a WARNING naming it."""
    caplog.set_level(logging.WARNING, "pas.replay")
    await a_job_completes(up, "tl-1")
    client = await client_of(up)
    try:
        bad = wire.CommsEntry(ts=datetime.now(UTC), from_agent="client", to_agent="llm", msg_type="LLM",
                              message="x", run_id="tl-1", metadata={"profile": "p", "latency_s": "abc"})
        ack = await client.nc.jetstream().publish(S.comms("tl-1", "client", "LLM"), wire.encode(bad))
        tl = await timeline.build(client.nc.jetstream(), "tl-1")
    finally:
        await client.close()
    assert tl["status"] == "completed" and tl["llm_calls"] == [] and tl["tasks"][0]["status"] == "completed"
    assert any(f"message {ack.seq}" in r.getMessage() and "latency_s" in r.getMessage() for r in caplog.records)
    bad_event = json.dumps({"run_id": "tl-1", "kind": "run", "status": "<img src=x onerror=alert(1)>",
                            "ts": wire.now().isoformat()}).encode()
    raw = Raw(stream=S.STREAM_EVENTS, seq=1, subject=S.run_status("tl-1"), data=bad_event,
                       stored=datetime.now(UTC))
    assert timeline.decode(raw) is None  # a status that is not one is never shown


async def test_client_cancels_and_decides_only_its_own_runs(up: Stack) -> None:
    """A run records the NATS user that submitted it (pas.gateway.as.<user>.submit): `client` may cancel,
    approve or reject its own runs only; `adapter` and `admin` act on all."""
    from pas.base.errors import Forbidden

    mine = await running(up, "own-1")  # submitted by `client`
    other = await PasClient.connect(up.url or "", 10, creds=up.creds["adapter"])
    admin = await PasClient.connect(up.url or "", 10, creds=up.creds["admin"])
    try:
        await other.submit({"title": "someone else's", "run_id": "own-2", "tasks": [SLEEP]})
        await other.submit({"title": "held", "run_id": "own-3", "approval_mode": True, "tasks": [ECHO]})
        await wait_for(lambda: _status_is(other, "own-3", "waiting_approval"), timeout_s=30)
        for act in (lambda: mine.cancel("own-2"), lambda: mine.approve("own-3"), lambda: mine.reject("own-3")):
            with pytest.raises(Forbidden) as e:
                await act()
            assert e.value.code == 403 and "was not submitted by 'client'" in e.value.message
        assert (await other.status("own-2"))["status"] == "running"
        assert (await other.status("own-3"))["status"] == "waiting_approval"
        assert (await mine.cancel("own-1"))["status"] == "cancelled"  # its own
        assert (await admin.cancel("own-2"))["status"] == "cancelled"  # admin: any run
        assert (await other.approve("own-3", by="ana"))["status"] == "running"  # adapter: any run
        assert (await other.wait("own-3", timeout_s=60))["status"] == "completed"
        assert up.bus is not None
        runs = {r: (await up.bus.kv_get(S.KV_RUNS, r, wire.RunRecord)) for r in ("own-1", "own-2")}
        assert {r: got[0].submitted_by for r, got in runs.items() if got} == {"own-1": "client", "own-2": "adapter"}
        # The comms entries of the commands name the NATS user that sent each one, never the `by` it states.
        cmds = [(e.run_id, e.message.split()[0], e.from_agent) async for e in comms.read(mine.nc.jetstream())
                if e.msg_type == "CMD" and e.to_agent == "gateway" and (e.run_id or "").startswith("own-")]
        assert sorted(cmds) == [("own-1", "cancel", "client"), ("own-1", "submit", "client"),
                                ("own-2", "cancel", "admin"), ("own-2", "submit", "adapter"),
                                ("own-3", "approve", "adapter"), ("own-3", "submit", "adapter")], cmds
    finally:
        await mine.close()
        await other.close()
        await admin.close()
    nc = await as_user(up, "gateway")  # what the gateway itself may log as a client's command: not `ana`
    try:
        await nc.publish(S.comms("own-3", "ana", "CMD"), b"{}")
        await violation(up, "gateway", S.comms("own-3", "ana", "CMD"))
    finally:
        await nc.close()
    await a_job_completes(up, "after-5")


async def _status_is(client: PasClient, run_id: str, status: str) -> bool:
    return bool((await client.status(run_id))["status"] == status)


async def test_a_bad_model_override_or_breaker_is_skipped(up: Stack, caplog: Any) -> None:
    """A programmer may write its own breakers only (another agent's, or the old per-profile key, is refused by
    the server); what it writes there is checked where it is read: a breaker open for a year, or one whose body
    names another agent, is skipped with a WARNING (`pas agents` shows no breaker), and nothing fails. Model
    overrides are admin's: a stored one naming a profile not in models.yaml is skipped the same way."""
    import sys
    import time

    caplog.set_level(logging.WARNING, "pas.agent")
    prog = next(a for a in up.agents if a.id == "prog-001")
    profile = prog.model
    assert profile is not None
    nc = await as_user(up, "prog-001")
    try:
        js = nc.jetstream()
        year = {"state": "open", "failures": 3, "open_until": time.time() + 31535889, "ts": time.time(),
                "agent": "prog-001", "profile": profile}
        await js.publish(S.kv_subject(S.KV_BREAKERS, S.breaker_key("prog-001", profile)), json.dumps(year).encode())
        other = next(m for m in up.cfg.models if m != profile)
        hour = {**year, "open_until": time.time() + 3600, "agent": "prog-002", "profile": other}  # another's name
        await js.publish(S.kv_subject(S.KV_BREAKERS, S.breaker_key("prog-001", other)), json.dumps(hour).encode())
        for theirs in (S.breaker_key("prog-002", profile), profile):
            await nc.publish(S.kv_subject(S.KV_BREAKERS, theirs), json.dumps(year).encode())
            await violation(up, "prog-001", S.kv_subject(S.KV_BREAKERS, theirs))
    finally:
        await nc.close()
    admin = await as_user(up, "admin")  # model overrides are admin's to write
    try:
        await admin.jetstream().publish(S.kv_subject(S.KV_MODELS, "prog-001"),
                                        b'{"agent": "prog-001", "model": "no-such-profile"}')
    finally:
        await admin.close()
    await prog.load_model_override()
    assert prog.model == profile
    assert any("ignoring its stored model override" in r.getMessage() and "no-such-profile" in r.getMessage()
               for r in caplog.records)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pas", "agents", "--json", "--nats-url", up.url or "", "--creds-dir",
        str(Path(up.data_dir) / "creds"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)  # (the agents answer from this event loop)
    assert proc.returncode == 0, err.decode()
    row = next(r for r in json.loads(out) if r["agent"] == "prog-001")
    assert row["model"] == profile and row["breaker"] == "-", row
    assert f"skipped KV {S.KV_MODELS} key prog-001" in err.decode()
    assert f"skipped KV {S.KV_BREAKERS} key prog-001.{profile}" in err.decode()
    assert f"skipped KV {S.KV_BREAKERS} key prog-001.{other}" in err.decode()
    for key in (S.breaker_key("prog-002", profile), profile):
        assert await stored(up, S.KV_BREAKERS, key) is None
    await a_job_completes(up, "after-6")


async def test_programmer_reports_only_the_tasks_it_holds(up: Stack, caplog: Any) -> None:
    """Task records are the managers': with a programmer's credentials, writing another run's task record is
    refused by the server, and a result or a start reported under its own id for a task another programmer
    holds is refused by the managers with a WARNING; the holder's real result is what the run ends with."""
    caplog.set_level(logging.WARNING, "pas.taskowner")
    client = await client_of(up)
    task = {"lane": "code", "instruction": "sleep 4", "command": "sleep 4", "executor": "command"}
    await client.submit({"title": "victim", "run_id": "held-1", "tasks": [task]})
    await wait_for(lambda: _task_running(client, "held-1"), timeout_s=30)
    holder = (await client.status("held-1"))["tasks"][0]["programmer"]
    attacker = "prog-002" if holder == "prog-001" else "prog-001"
    nc = await as_user(up, attacker)
    try:
        forged = wire.TaskRecord(task_id="code-1-01", run_id="held-1", job_id="code-1", lane="code", manager="x",
                                 executor="command", instruction="forged", status="failed", output="forged",
                                 attempts=1, programmer=holder)
        key = S.kv_subject(S.KV_TREE, S.task_key("held-1", "code-1-01"))
        await nc.publish(key, wire.encode(forged))
        await violation(up, attacker, key)
        await nc.publish(S.task_done("code", holder), b"{}")  # another programmer's subject
        await violation(up, attacker, S.task_done("code", holder))
        started = msgspec.structs.replace(forged, status="running", output="")
        await nc.publish(S.task_started("code", attacker, "held-1"), wire.encode(started))
        # its own start, on another run's subject: the body must name the subject's run
        own = msgspec.structs.replace(started, programmer=attacker, attempts=2)
        await nc.publish(S.task_started("code", attacker, "other-run"), wire.encode(own))
        ev = wire.RunEvent(run_id="held-1", kind="task", status="failed", ts=wire.now(), lane="code", job_id="code-1",
                           task_id="code-1-01")
        reply = await nc.request(S.task_done("code", attacker), wire.encode(wire.ChildDone(event=ev, task=forged)),
                                 timeout=10)
        assert (reply.headers or {}).get("Nats-Service-Error-Code") == "403", reply.headers
        await wait_for(lambda: sum("ignored " + attacker + "'s start" in r.getMessage() or
                                   "refused " + attacker + "'s result" in r.getMessage() for r in caplog.records) == 3,
                       timeout_s=10)
        assert any("sent on run 'other-run'" in r.getMessage() for r in caplog.records)
        # PAS_COMMS keeps both forged starts too (its subjects take them), but they are nobody's "run task" entry:
        # one names the holder in the attacker's report, the other a run its subject does not name
        js = client.nc.jetstream()
        async def stored_starts() -> int:
            forged = S.comms_record("*", f"{S.COMMS_START}.{attacker}")
            return len([m async for m in read_raw(js, S.STREAM_COMMS, forged)])

        async def both_stored() -> bool:
            return await stored_starts() >= 2

        await wait_for(both_stored, timeout_s=10)
        assert await stored_starts() == 2
        forged_entries = [e for run in ("held-1", "other-run") async for e in comms.read(js, run_id=run)
                          if e.from_agent == attacker]
        assert not forged_entries, forged_entries
        res = await client.wait("held-1", timeout_s=60)
    finally:
        await nc.close()
        await client.close()
    t = res["tasks"][0]
    assert res["status"] == "completed" and t["status"] == "completed" and t["output"] != "forged", res
    assert t["programmer"] == holder and t["instruction"] == "sleep 4", t
    await a_job_completes(up, "after-7")


async def test_a_garbage_task_record_does_not_break_the_status(up: Stack, caplog: Any) -> None:
    """A task record that is not a TaskRecord (written with the credentials of a manager, who owns them) is
    skipped, with a WARNING naming its key, by every view that lists a run's tasks."""
    caplog.set_level(logging.WARNING, "pas.bus")
    await a_job_completes(up, "garbage-1")
    nc = await as_user(up, "mgr-code-01")
    try:
        await nc.jetstream().publish(S.kv_subject(S.KV_TREE, S.task_key("garbage-1", "x-99")), b'{"status": 7}')
    finally:
        await nc.close()
    client = await client_of(up)
    try:
        st = await client.status("garbage-1")
    finally:
        await client.close()
    assert st["status"] == "completed" and [t["task_id"] for t in st["tasks"]] == ["code-1-01"]
    assert any("skipped" in r.getMessage() and "garbage-1.task.x-99" in r.getMessage() for r in caplog.records)


async def test_programmer_cannot_raise_another_runs_usage(up: Stack, caplog: Any) -> None:
    """Usage is one entry per agent (pas.runtime.usage): with a programmer's credentials, another agent's entry
    and the old per-run key are refused by the server, and its own entry with a forged huge count, in a run
    where it holds no task, is ignored with a WARNING: the run's reported usage and budget do not move; its
    own rerun divergence note there is ignored alike. The holder's and a manager's usage entries count."""
    caplog.set_level(logging.WARNING, "pas.runtime.writers")
    from pas.runtime import rerun, usage

    victim = await running(up, "spent-1")
    holder = (await victim.status("spent-1"))["tasks"][0]["programmer"]
    attacker = "prog-002" if holder == "prog-001" else "prog-001"
    assert up.bus is not None
    budget = await usage.run_budget(up.bus, "spent-1")
    nc = await as_user(up, attacker)
    try:
        huge = wire.encode(usage.RunUsage(tokens=10**12, cost_usd=1e9, calls=1))
        for key in (S.usage_key("spent-1", holder), "spent-1.usage", S.usage_key("spent-1", "mgr-code-01")):
            await nc.publish(S.kv_subject(S.KV_TREE, key), huge)
            await violation(up, attacker, S.kv_subject(S.KV_TREE, key))
        own = S.usage_key("spent-1", attacker)
        await nc.publish(S.kv_subject(S.KV_TREE, own), huge)  # its own key: stored, but it holds no task here
        await nc.flush()
        await wait_for(lambda: _is_stored(up, own), timeout_s=10)
        st = await victim.status("spent-1")
        assert st["usage"]["tokens"] == 0 and st["usage"]["cost_usd"] == 0, st["usage"]
        assert any(attacker in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)
        assert await usage.remaining(up.bus, "spent-1") == (budget.tokens_max, budget.cost_usd_max)
        for key in ("spent-1.divergence", "spent-1.forked", S.forked_key("spent-1", holder)):  # rerun notes alike
            await nc.publish(S.kv_subject(S.KV_TREE, key), b'{"agent": "x"}')
            await violation(up, attacker, S.kv_subject(S.KV_TREE, key))
        note = S.divergence_key("spent-1", attacker)
        await nc.publish(S.kv_subject(S.KV_TREE, note), b'{"agent": "forged"}')
        await wait_for(lambda: _is_stored(up, note), timeout_s=10)
        assert await rerun.divergence(up.bus, "spent-1") is None
        for agent, tokens in ((holder, 7), ("mgr-code-01", 5)):  # entries that count: summed
            writer = await as_user(up, agent)
            try:
                await writer.publish(S.kv_subject(S.KV_TREE, S.usage_key("spent-1", agent)),
                                     wire.encode(usage.RunUsage(tokens=tokens, cost_usd=0.5, calls=1)))
                await writer.flush()
            finally:
                await writer.close()
        await wait_for(lambda: _usage_is(victim, "spent-1", 12), timeout_s=10)
        assert (await victim.cancel("spent-1"))["status"] == "cancelled"
    finally:
        await nc.close()
        await victim.close()
    await a_job_completes(up, "after-9")


async def _is_stored(st: Stack, key: str) -> bool:
    return await stored(st, S.KV_TREE, key) is not None


async def _usage_is(client: PasClient, run_id: str, tokens: int) -> bool:
    u = (await client.status(run_id))["usage"]
    return bool(u["tokens"] == tokens and u["llm_calls"] == 2 and u["cost_usd"] == 1.0)


async def test_only_the_monitor_steps_down_and_only_the_sourcing_streams(up: Stack) -> None:
    """The monitor's step-down grant (it restarts a stalled source: pas.roles.monitor) is its alone and
    covers PAS_EVENTS and PAS_COMMS only: a stolen monitor credential cannot move the leader of the work
    queue or a record bucket, nor any other agent's of the two streams."""
    perms = auth.permissions(up.cfg)
    stepdown = S.js_api("STREAM", "LEADER", "STEPDOWN", "*")
    grants = {u: sorted(s for s in p.publish if s.startswith(stepdown[:-1])) for u, p in perms.items()}
    assert {u: g for u, g in grants.items() if g and u != "admin"} == {
        "monitor": sorted(S.js_api("STREAM", "LEADER", "STEPDOWN", st) for st in S.SOURCING_STREAMS)}
    nc = await as_user(up, "monitor")
    try:
        for stream in (S.STREAM_WORK, f"KV_{S.KV_TREE}", f"KV_{S.KV_RUNS}"):
            subject = S.js_api("STREAM", "LEADER", "STEPDOWN", stream)
            with pytest.raises((NoRespondersError, NatsTimeoutError)):
                await nc.request(subject, b"", timeout=2)
            await violation(up, "monitor", subject)
    finally:
        await nc.close()
    prog = await as_user(up, "prog-001")
    try:
        subject = S.js_api("STREAM", "LEADER", "STEPDOWN", S.STREAM_EVENTS)
        with pytest.raises((NoRespondersError, NatsTimeoutError)):
            await prog.request(subject, b"", timeout=2)
        await violation(up, "prog-001", subject)
    finally:
        await prog.close()
    await a_job_completes(up, "after-stepdown")
