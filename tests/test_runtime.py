"""The runtime: one handler contract (WorkCtx, outcomes as exceptions), a parent finished in its last
child's handler, the hops a 1-task job costs, and a killed programmer's task moving on at default
settings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats.errors import NoRespondersError
from nats.js.api import ConsumerConfig, StreamConfig

from pas.base.errors import BadInput, BudgetExceeded, Retry, Unavailable
from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.roles import new_agent
from pas.runtime import comms
from pas.runtime import runs as R
from pas.runtime.comms import CommsLog
from pas.runtime.service import WorkCtx, WorkLoop, WorkLoopOptions, settle, task_status
from pas.runtime.store import RunStore
from pas.surfaces.stack import Stack
from pas.transport.bus import Bus
from tests.conftest import make_cfg, wait_for


def test_outcomes_map_to_settlement_and_task_status() -> None:
    assert settle(None) == ("ack", 0.0)
    assert settle(Retry("later", delay_s=2.5)) == ("nak", 2.5)
    assert settle(Unavailable("no model answered")) == ("nak", Unavailable.delay_s)
    assert settle(Unavailable("JetStream down", delay_s=0.3)) == ("nak", 0.3)
    assert settle(BudgetExceeded("no budget"))[0] == "ack"
    assert settle(BadInput("no such job"))[0] == "term"
    assert settle(RuntimeError("bug")) == ("nak", 1.0)
    assert task_status(BudgetExceeded("x")) == "budget_exceeded"
    assert task_status(BadInput("x")) == "failed"


async def test_work_loop_hands_typed_items_and_a_context(nats_server: Any) -> None:
    """A real stream and consumer: the handler gets the decoded struct and a WorkCtx (run, attempt,
    headers); Retry is redelivered (attempt 2), BadInput (raised by the handler, or by the loop for a body
    that does not decode) is terminated and logged, never redelivered."""
    cfg = make_cfg()
    bus = await Bus.open(nats_server.url, cfg, name="rt-test")
    try:
        await bus.js.add_stream(StreamConfig(name="RT", subjects=["rt.>"]))
        await bus.js.add_consumer("RT", ConsumerConfig(durable_name="rt", ack_wait=5))
        seen: list[tuple[str, str, int, str]] = []
        bad: list[str] = []

        async def handler(ref: wire.RunRef, ctx: WorkCtx) -> None:
            seen.append((ref.run_id, ctx.run_id, ctx.attempt, ctx.headers.get("traceparent", "")))
            if ref.run_id == "retry" and ctx.attempt == 1:
                raise Retry("not yet", delay_s=0.1)
            if ref.run_id == "bad":
                raise BadInput("names nothing")

        async def on_bad(subject: str, data: bytes, err: Any) -> None:
            bad.append(err.error)

        loop = WorkLoop(bus.js, "RT", "rt", wire.RunRef, handler,
                        WorkLoopOptions(bus=bus, comms=CommsLog(bus.nc), agent_id="t", concurrency=4, ack_wait_s=5,
                                        on_bad_input=on_bad))
        loop.start()
        try:
            await bus.js.publish("rt.a", b'{"run_id":"retry"}', headers={"traceparent": "00-abc-def-01"})
            await bus.js.publish("rt.b", b'{"run_id":"bad"}')
            await bus.js.publish("rt.c", b'{"nope":1}')  # fails validation: never reaches the handler
            await wait_for(lambda: len(seen) >= 3 and len(bad) >= 2, 20)
            info = await bus.js.consumer_info("RT", "rt")
            await wait_for(lambda: loop.handled == 1, 5)
        finally:
            await loop.stop()
        assert ("retry", "retry", 1, "00-abc-def-01") in seen and ("retry", "retry", 2, "00-abc-def-01") in seen
        assert [s for s in seen if s[0] == "bad"] == [("bad", "bad", 1, "")]  # terminated: once
        assert bad == ["bad_input", "bad_input"]
        assert info.num_pending == 0
    finally:
        await bus.close()


async def test_unavailable_work_is_redelivered_after_its_delay_and_then_succeeds(nats_server: Any) -> None:
    """Unavailable means "try again": the item is nak'ed with its delay, not terminated; so is a JetStream
    error still transient after retry_js gave up (an Unavailable like the endpoints' 503). Both are
    handled on the next attempt, and nothing is reported as bad input."""
    cfg = make_cfg()
    bus = await Bus.open(nats_server.url, cfg, name="rt-unavail")
    try:
        await bus.js.add_stream(StreamConfig(name="RTU", subjects=["rtu.>"]))
        await bus.js.add_consumer("RTU", ConsumerConfig(durable_name="rtu", ack_wait=30))
        attempts: dict[str, list[tuple[int, float]]] = {"model": [], "js": []}
        bad: list[str] = []

        async def handler(ref: wire.RunRef, ctx: WorkCtx) -> None:
            attempts[ref.run_id].append((ctx.attempt, time.monotonic()))
            if ctx.attempt == 1 and ref.run_id == "model":
                raise Unavailable("no model answered", delay_s=0.7)
            if ctx.attempt == 1 and ref.run_id == "js":
                raise NoRespondersError()

        async def on_bad(subject: str, data: bytes, err: Any) -> None:
            bad.append(err.error)

        loop = WorkLoop(bus.js, "RTU", "rtu", wire.RunRef, handler,
                        WorkLoopOptions(bus=bus, comms=CommsLog(bus.nc), agent_id="t", concurrency=4, ack_wait_s=30,
                                        on_bad_input=on_bad))
        loop.start()
        try:
            await bus.js.publish("rtu.a", b'{"run_id":"model"}')
            await bus.js.publish("rtu.b", b'{"run_id":"js"}')
            await wait_for(lambda: loop.handled == 2, 20)

            async def acked() -> Any:  # the handlers have returned; their acks reach the server just after
                info = await bus.js.consumer_info("RTU", "rtu")
                return info if info.num_ack_pending == 0 else None

            info = await wait_for(acked, 10)
        finally:
            await loop.stop()
        for run_id, delay in (("model", 0.7), ("js", Unavailable.delay_s)):
            (first, t1), (second, t2) = attempts[run_id]
            assert (first, second) == (1, 2), attempts
            assert t2 - t1 >= delay * 0.9, (run_id, t2 - t1)
        assert bad == [] and info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await bus.close()


async def test_one_task_job_costs_five_deliveries(stack: Any, client: Any, nc: Any) -> None:
    """architect, director, manager, programmer, root: no tier forwards without working. The job, its
    lane and its plan are finished by their owners (manager, director, architect), told by request, not
    by a work item: no delivery of their own."""
    js = nc.jetstream()

    async def delivered() -> int:
        total = 0
        for stream in (S.STREAM_WORK, S.STREAM_EVENTS):
            for ci in await js.consumers_info(stream):
                total += ci.delivered.consumer_seq
        return total

    await client.submit({"title": "warm", "run_id": "hop0", "tasks": [{"lane": "code", "instruction": "hi",
                                                                       "executor": "echo"}]})
    assert (await client.wait("hop0", timeout_s=60))["status"] == "completed"
    before = await delivered()
    reads: list[str] = []

    async def on_read(m: Any) -> None:
        reads.append(m.subject)

    ended = asyncio.Event()

    async def on_status(m: Any) -> None:
        ev = wire.run_event(m.subject, m.data)
        if ev is not None and ev.status in wire.TERMINAL_RUN:
            ended.set()

    sub = await nc.subscribe(S.js_api("DIRECT", "GET", ">"), cb=on_read)
    status = await nc.subscribe(S.run_status("hop1"), cb=on_status)
    await nc.flush()
    await client.submit({"title": "count", "run_id": "hop1", "tasks": [{"lane": "code", "instruction": "hi",
                                                                        "executor": "echo"}]})
    await asyncio.wait_for(ended.wait(), 60)
    await sub.unsubscribe()
    await status.unsubscribe()
    st = await client.wait("hop1", timeout_s=60)
    # The architect starts the run from what the gateway sent (no read of the run or the request);
    # the run and the parents are updated from the records this process wrote, by compare-and-set
    # (no read of run, job, lane or plan); the programmer's "cancelled?" is the run as written here.
    assert not [r for r in reads if "hop1" in r], reads
    assert st["status"] == "completed" and st["tasks"][0]["output"] == "hi"
    await wait_for(lambda: delivered_is(delivered, before + 5), 10)
    # Root's STATUS is the run's last comms entry, in stream order and by time: every other entry
    # (the plan's "all lanes done" included) is written before done.plan is sent. Both are the server's
    # copies of the records' writes (pas.runtime.comms.stored_entry), there a moment after the event.
    async def ended_in_comms() -> list[Any]:
        got = [e async for e in comms.read(js, run_id="hop1")]
        return got if got and got[-1].msg_type == "STATUS" else []

    entries = await wait_for(ended_in_comms, timeout_s=10)
    assert (entries[-1].from_agent, entries[-1].msg_type) == ("root", "STATUS"), [e.message for e in entries]
    assert max(entries, key=lambda e: e.ts) is entries[-1]
    assert any(e.message.startswith("all lanes done") for e in entries)
    # The parents' records were finished by compare-and-set, each with its one child noted done.
    plan = await stack.bus.kv_get(S.KV_TREE, "hop1.plan", wire.PlanRecord)
    job = await stack.bus.kv_get(S.KV_TREE, "hop1.job.code-1", wire.JobRecord)
    assert plan[0].status == "completed" and plan[0].done == {"code": "completed"}
    assert job[0].status == "completed" and job[0].done == {"code-1-01": "completed"}


async def delivered_is(delivered: Any, n: int) -> bool:
    return bool(await delivered() == n)


async def test_killed_programmer_task_moves_on_at_default_settings(nats_server: Any, client: Any,
                                                                    pas_procs: Any, nc: Any) -> None:
    """Default settings (no short ack waits): a programmer process SIGKILLed mid-task stops marking
    its task in progress, and the task is taken by another programmer after pool.ack_wait_s, not
    after the tier default; it completes there, with one result."""
    cfg = load_config()
    busy = pas_procs("--nats-url", nats_server.url, "--only", "prog-001", name="prog001")
    ci = await nc.jetstream().consumer_info(S.STREAM_WORK, S.consumer_prog(5))
    assert ci.config.ack_wait == cfg.settings.pool.ack_wait_s < cfg.settings.work.ack_wait_s
    async with Stack(cfg, url=nats_server.url, exclude=["prog-*"]) as st:
        await client.submit({"title": "killed", "run_id": "kill1", "tasks": [
            {"lane": "code", "instruction": "sleep 6", "command": "sleep 6", "executor": "command"}]})

        async def task_on(prog: str) -> bool:
            t = (await client.status("kill1"))["tasks"]
            return bool(t) and t[0]["status"] == "running" and t[0]["programmer"] == prog

        await wait_for(lambda: task_on("prog-001"), 30)
        busy.kill()
        assert st.bus is not None
        other = new_agent(st.bus, cfg.agent("prog-002"), CommsLog(st.bus.nc), process=st.process)
        await other.start()
        try:
            # Generous bound, far under the 30 s tier ack wait; the 12 s target is measured by the benchmarks.
            await wait_for(lambda: task_on("prog-002"), 25, interval_s=0.2)
            final = await client.wait("kill1", timeout_s=60)
        finally:
            await other.stop()
    t = final["tasks"][0]
    assert final["status"] == "completed"
    assert t["status"] == "completed" and t["programmer"] == "prog-002" and t["attempts"] == 2
    results = await task_results(nc, "kill1", "code-1-01")
    assert results == ["completed"], results  # one result went up


async def task_results(nc: Any, run_id: str, task_id: str) -> list[str]:
    """The terminal statuses published on the task's subject (its result is published once)."""
    js = nc.jetstream()
    sub = await js.subscribe(S.run_task(run_id, task_id), stream=S.STREAM_EVENTS, ordered_consumer=True)
    out: list[str] = []
    try:
        while True:
            try:
                m = await sub.next_msg(timeout=1)
            except TimeoutError:
                return out
            status = wire.decode(m.data, wire.TaskRecord).status
            if status in wire.TERMINAL_TASK:
                out.append(status)
    finally:
        await sub.unsubscribe()


async def serve_owners(bus: Bus) -> Any:
    """What the managers', directors' and architect's `done` endpoints do (pas.agent.Role.child_done_endpoint),
    for a walk tested without agents: each pas.<role>.<lane>.done request is noted by note_child_done, which
    tells the next owner up the same way (a task's, pas.mgr.<lane>.done.<programmer>, without the managers'
    holder check: pas.runtime.taskowner, tested in test_identities)."""
    store = RunStore(bus)  # the owners' process

    async def note(m: Any) -> None:
        done = wire.decode(m.data, wire.ChildDone)
        ctx = WorkCtx(run_id=done.event.run_id, attempt=2 if done.redelivered else 1, headers={}, subject=m.subject,
                      agent_id="owner", bus=bus, comms=CommsLog(bus.nc), store=store)
        await R.note_child_done(ctx, done)
        await m.respond(b"{}")

    async def on(m: Any) -> None:
        bus.spawn(note(m))  # concurrently, as the endpoints do (siblings share a write)

    subs = [await bus.nc.subscribe(subject, cb=on) for subject in (S.child_done("*", "*"), S.task_done("*", "*"))]

    class Owners:
        async def unsubscribe(self) -> None:
            for sub in subs:
                await sub.unsubscribe()

    return Owners()


async def test_a_parent_finishes_once_however_often_its_last_child_is_reported(nats_server: Any) -> None:
    """child_done walks task -> job -> lane -> plan by compare-and-set, each level by the owner of its
    record; reported again (a redelivery after a crash), it finishes nothing twice and re-announces the
    plan under the same message id."""
    cfg = make_cfg()
    bus = await Bus.open(nats_server.url, cfg, name="rt-rollup")
    owners = await serve_owners(bus)
    try:
        run = "roll1"
        await bus.kv_put(S.KV_TREE, f"{run}.plan", wire.PlanRecord(run_id=run, lanes=["code", "docs"], architect="a"))
        await bus.kv_put(S.KV_TREE, f"{run}.lane.code", wire.LaneRecord(run_id=run, lane="code", director="d",
                                                                        jobs=["code-1"]))
        await bus.kv_put(S.KV_TREE, f"{run}.lane.docs", wire.LaneRecord(run_id=run, lane="docs", director="dd",
                                                                        jobs=["docs-1"]))
        for lane in ("code", "docs"):
            await bus.kv_put(S.KV_TREE, f"{run}.job.{lane}-1", wire.JobRecord(
                run_id=run, job_id=f"{lane}-1", lane=lane, manager="m", tasks=[f"{lane}-1-01", f"{lane}-1-02"]))

        def ctx(attempt: int) -> WorkCtx:
            return WorkCtx(run_id=run, attempt=attempt, headers={}, subject="", agent_id="prog-x", bus=bus,
                           comms=CommsLog(bus.nc), store=RunStore(bus), _msg=None)  # type: ignore[arg-type]

        async def record(key: str, typ: type[Any]) -> Any:
            got = await bus.kv_get(S.KV_TREE, key, typ)
            assert got is not None
            return got[0]

        def done(lane: str, n: int, status: str = "completed") -> wire.RunEvent:
            return R.event(run, "task", status, "prog-x", lane=lane, job_id=f"{lane}-1", task_id=f"{lane}-1-0{n}")

        await R.child_done(ctx(1), done("code", 1))
        await R.child_done(ctx(1), done("code", 2, "failed"))
        await R.child_done(ctx(2), done("code", 2, "failed"))  # the same completion, redelivered
        lane = await record(f"{run}.lane.code", wire.LaneRecord)
        plan = await record(f"{run}.plan", wire.PlanRecord)
        assert lane.status == "failed" and lane.done == {"code-1": "failed"}
        assert plan.status == "running" and plan.done == {"code": "failed"}  # docs is still running
        await asyncio.gather(R.child_done(ctx(1), done("docs", 1)), R.child_done(ctx(1), done("docs", 2)))
        await R.child_done(ctx(2), done("docs", 2))
        plan = await record(f"{run}.plan", wire.PlanRecord)
        assert plan.status == "failed" and plan.done == {"code": "failed", "docs": "completed"}
        info = await bus.js.stream_info(S.STREAM_EVENTS, subjects_filter=S.done_plan(run))
        assert info.state.subjects == {S.done_plan(run): 1}  # announced once, re-announcements deduplicated
        # each job's end in the comms log, once: the server's copy of its record's terminal write
        async def job_ends() -> list[str]:
            return sorted([e.message async for e in comms.read(bus.js, run_id=run) if e.message.startswith("job ")])

        await wait_for(job_ends, timeout_s=10)
        assert await job_ends() == ["job code-1 failed: 1/2 tasks completed", "job docs-1 completed: 2/2 tasks completed"]
    finally:
        await owners.unsubscribe()
        await bus.close()


async def test_a_one_lane_plan_is_announced_once(nats_server: Any) -> None:
    """The same last completion of a one-lane plan reported twice at once (a redelivery racing the
    first delivery) and once more later still finishes the plan once, stores done.plan once, with the
    lane's status."""
    cfg = make_cfg()
    bus = await Bus.open(nats_server.url, cfg, name="rt-onelane")
    owners = await serve_owners(bus)
    try:
        run = "one1"
        await bus.kv_put(S.KV_TREE, f"{run}.plan", wire.PlanRecord(run_id=run, lanes=["code"], architect="a"))
        await bus.kv_put(S.KV_TREE, f"{run}.lane.code", wire.LaneRecord(run_id=run, lane="code", director="d",
                                                                        jobs=["code-1"]))
        await bus.kv_put(S.KV_TREE, f"{run}.job.code-1", wire.JobRecord(run_id=run, job_id="code-1", lane="code",
                                                                        manager="m", tasks=["code-1-01"]))
        got: list[wire.RunEvent] = []

        async def on_done(m: Any) -> None:
            got.append(wire.decode(m.data, wire.RunEvent))

        sub = await bus.nc.subscribe(S.done_plan(run), cb=on_done)

        def ctx(attempt: int) -> WorkCtx:
            return WorkCtx(run_id=run, attempt=attempt, headers={}, subject="", agent_id="prog-x", bus=bus,
                           comms=CommsLog(bus.nc), store=RunStore(bus), _msg=None)  # type: ignore[arg-type]

        ev = R.event(run, "task", "failed", "prog-x", lane="code", job_id="code-1", task_id="code-1-01")
        await asyncio.gather(R.child_done(ctx(1), ev), R.child_done(ctx(2), ev))
        await R.child_done(ctx(3), ev)
        plan = await bus.kv_get(S.KV_TREE, f"{run}.plan", wire.PlanRecord)
        assert plan is not None and plan[0].status == "failed" and plan[0].done == {"code": "failed"}
        info = await bus.js.stream_info(S.STREAM_EVENTS, subjects_filter=S.done_plan(run))
        assert info.state.subjects == {S.done_plan(run): 1}  # announced once, re-announcements deduplicated
        await wait_for(lambda: len(got) >= 1, timeout_s=5)
        assert {(e.status, e.message) for e in got} == {("failed", "code=failed")}
        async def plan_ends() -> list[str]:
            return [e.message async for e in comms.read(bus.js, run_id=run) if e.message.startswith("all lanes done")]

        await wait_for(plan_ends, timeout_s=10)
        assert await plan_ends() == ["all lanes done: code=failed"]  # finished once
        await sub.unsubscribe()
    finally:
        await owners.unsubscribe()
        await bus.close()


async def test_a_long_handler_keeps_its_message_past_the_ack_wait(nats_server: Any) -> None:
    """A handler running three ack waits long is marked in progress (a timer arms the first mark):
    the message is not delivered again, and a handler that ends quickly sends no mark at all."""
    cfg = make_cfg()
    bus = await Bus.open(nats_server.url, cfg, name="rt-keep")
    try:
        await bus.js.add_stream(StreamConfig(name="RTK", subjects=["rtk.>"]))
        await bus.js.add_consumer("RTK", ConsumerConfig(durable_name="rtk", ack_wait=1))
        attempts: list[tuple[str, int]] = []
        marks: list[str] = []

        async def on_mark(m: Any) -> None:
            if m.data == b"+WPI":
                marks.append(m.subject)

        mark_sub = await bus.nc.subscribe(S.js_acks("RTK", "rtk"), cb=on_mark)

        async def handler(ref: wire.RunRef, ctx: WorkCtx) -> None:
            attempts.append((ref.run_id, ctx.attempt))
            if ref.run_id == "long":
                await asyncio.sleep(3.0)

        loop = WorkLoop(bus.js, "RTK", "rtk", wire.RunRef, handler,
                        WorkLoopOptions(bus=bus, comms=CommsLog(bus.nc), agent_id="t", concurrency=2, ack_wait_s=1))
        loop.start()
        try:
            await bus.js.publish("rtk.quick", b'{"run_id":"quick"}')
            await wait_for(lambda: loop.handled == 1, 10)
            assert marks == []  # ended before its first mark was due
            await bus.js.publish("rtk.long", b'{"run_id":"long"}')
            await wait_for(lambda: loop.handled == 2, 15)

            async def acked() -> Any:  # the handler has returned; its ack reaches the server just after
                info = await bus.js.consumer_info("RTK", "rtk")
                return info if info.num_ack_pending == 0 else None

            info = await wait_for(acked, 10)
        finally:
            await loop.stop()
            await mark_sub.unsubscribe()
        assert attempts == [("quick", 1), ("long", 1)], attempts
        assert len(marks) >= 3 and info.num_redelivered == 0
    finally:
        await bus.close()


