"""The run store (pas.runtime.store), exercised directly against a real nats-server: its compare-and-set,
the last-write cache, group commit, the walk to the parent and idempotent finishing; and the shape around
it: Bus keeps no record state, and no role writes or reads a run record past the store."""

from __future__ import annotations

import asyncio
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.js.errors import KeyWrongLastSequenceError

from pas.base.errors import Conflict, Forbidden, NotFound
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.store import Memory, Noted, ParentRef, RunStore, Versioned, children, parent_of
from pas.transport.bus import Bus
from tests.conftest import make_cfg

ROLES = Path(__file__).resolve().parent.parent / "pas" / "roles"


def job(run: str, tasks: list[str]) -> wire.JobRecord:
    return wire.JobRecord(run_id=run, job_id="code-1", lane="code", manager="m", tasks=tasks)


def task(job_id: str) -> wire.TaskRecord:
    return wire.TaskRecord(task_id="code-1-01", run_id="st-task1", job_id=job_id, lane="code", manager="m",
                           executor="echo", instruction="say hi")


def _run(run_id: str, status: str = "running") -> wire.RunRecord:
    return wire.RunRecord(run_id=run_id, title="t", status=status, created_at=wire.now())  # type: ignore[arg-type]


async def two_stores(url: str, name: str) -> tuple[RunStore, RunStore]:
    """Two processes' stores: each with its own connection and memory."""
    cfg = make_cfg()
    here, there = await asyncio.gather(Bus.open(url, cfg, name=f"{name}-a"), Bus.open(url, cfg, name=f"{name}-b"))
    return RunStore(here), RunStore(there)


def test_bus_is_connection_and_jetstream_only() -> None:
    """No record, lock, cache or carried completion lives on the Bus (the store's Memory holds them)."""
    names = {f.name for f in fields(Bus)}
    assert names == {"nc", "js", "cfg", "kv", "_tasks"}, names
    assert not hasattr(Bus, "share")
    assert {f.name for f in fields(Memory)} == {"records", "locks", "carried", "creating"}


async def test_views_through_the_store(nats_server: Any) -> None:
    """view(): the run with a page of its tasks; page(): the newest runs, by status."""
    store = RunStore(await Bus.open(nats_server.url, make_cfg(), name="st-view"))
    try:
        await store.create_run(_run("st-view1"), b"{}")
        for n in (1, 2, 3):
            key = S.task_key("st-view1", f"code-1-0{n}")
            await store.put_task(key, wire.TaskRecord(task_id=f"code-1-0{n}", run_id="st-view1", job_id="code-1",
                                                      lane="code", manager="m", executor="echo", instruction="hi"))
        view = await store.view("st-view1", offset=1, limit=1)
        assert view is not None and [t.task_id for t in view.tasks] == ["code-1-02"]
        assert view.tasks_total == 3 and view.next_offset == 2
        assert await store.view("st-view-none") is None
        runs = await store.page(status="running")
        assert "st-view1" in [r.run_id for r in runs.runs]
        assert "st-view1" not in [r.run_id for r in (await store.page(status="completed")).runs]
    finally:
        await store.bus.close()


def test_roles_reach_run_records_through_the_store_only() -> None:
    """Roles name neither the run records' buckets (so no bus KV call reaches them) nor the bus's old record
    state: they use ctx.store / self.store."""
    bad = re.compile(r"S\.KV_(RUNS|TREE|IDEMPOTENCY)|bus\.(records|locks|carried|local)\b")
    found = [f"{p.name}:{n}: {line.strip()}" for p in sorted(ROLES.glob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert found == []


def test_the_walk_upward() -> None:
    """parent_of names the parent record of what an event announces; children() lists a parent's children."""
    task = wire.RunEvent(run_id="w1", kind="task", status="completed", ts=wire.now(), lane="code", job_id="code-1",
                         task_id="code-1-01")
    assert parent_of(task) == ParentRef(S.job_key("w1", "code-1"), wire.JobRecord, "code-1-01")
    jb = wire.RunEvent(run_id="w1", kind="job", status="failed", ts=wire.now(), lane="code", job_id="code-1")
    assert parent_of(jb) == ParentRef(S.lane_key("w1", "code"), wire.LaneRecord, "code-1")
    lane = wire.RunEvent(run_id="w1", kind="lane", status="failed", ts=wire.now(), lane="code")
    assert parent_of(lane) == ParentRef(S.plan_key("w1"), wire.PlanRecord, "code")
    assert parent_of(wire.RunEvent(run_id="w1", kind="plan", status="failed", ts=wire.now())) is None
    assert children(job("w1", ["a", "b"])) == ["a", "b"]
    assert children(wire.LaneRecord(run_id="w1", lane="code", director="d", jobs=["code-1"])) == ["code-1"]
    assert children(wire.PlanRecord(run_id="w1", lanes=["code", "docs"], architect="a")) == ["code", "docs"]


async def test_a_lost_compare_and_set_reads_again(nats_server: Any) -> None:
    """Two processes update the same run at once: both changes land (the loser reads the store and applies
    its change again), and a change that declines writes nothing."""
    here, there = await two_stores(nats_server.url, "st-cas")
    try:
        run = _run("st-cas1")
        await here.create_run(run, wire.encode(wire.JobSubmit(title="t")))
        assert here.cached_run(run.run_id) is not None
        calls: list[str] = []

        def note(tag: str) -> Any:
            def change(r: wire.RunRecord) -> bool:
                calls.append(tag)
                r.message = (r.message + "," if r.message else "") + tag
                return True
            return change

        # `here` works from its cached copy; `there` wrote meanwhile, so here's first try loses
        assert await there.update_run(run.run_id, note("there")) is not None
        assert await here.update_run(run.run_id, note("here")) is not None
        assert calls == ["there", "here", "here"]  # here's change was applied twice: once more after the lost race
        stored = await there.run(run.run_id)
        assert stored is not None and stored.record.message == "there,here"
        assert await here.update_run(run.run_id, lambda r: False) is None
        again = await there.run(run.run_id)
        assert again is not None and again.rev == stored.rev  # declined: no write
        with pytest.raises(Conflict):
            await there.create_run(_run("st-cas1"), b"{}")
    finally:
        await here.bus.close()
        await there.bus.close()


async def test_a_cached_parent_record_is_checked_by_its_revision(nats_server: Any) -> None:
    """A process keeps the parent records it wrote to save a read before the next child's compare-and-set;
    when another process updated the record meanwhile, the revision no longer matches, the entry is dropped
    and the store read: no completion is lost."""
    here, there = await two_stores(nats_server.url, "st-cache")
    try:
        key = S.job_key("st-cache1", "code-1")
        await here.put(key, job("st-cache1", ["code-1-01", "code-1-02"]))
        assert here.memory.cached(key, wire.JobRecord) is not None and there.memory.cached(key, wire.JobRecord) is None
        one = await there.note_child(ParentRef(key, wire.JobRecord, "code-1-01"), "completed")
        assert one is not None and one.parent.status == "running" and not one.finished_now
        two = await here.note_child(ParentRef(key, wire.JobRecord, "code-1-02"), "failed")
        assert isinstance(two, Noted) and two.finished_now  # this update finished the job
        got = await here.get(key, wire.JobRecord)
        assert isinstance(got, Versioned) and got.record.status == "failed"
        assert got.record.done == {"code-1-01": "completed", "code-1-02": "failed"}
        assert here.memory.cached(key, wire.JobRecord) is None  # a finished parent is not kept
    finally:
        await here.bus.close()
        await there.bus.close()


async def test_finishing_is_idempotent(nats_server: Any) -> None:
    """A completion reported again after its parent finished (a redelivery) finishes nothing twice: the
    parent comes back as it is, finished_now False, and the store is not written."""
    store = RunStore(await Bus.open(nats_server.url, make_cfg(), name="st-idem"))
    try:
        key = S.job_key("st-idem1", "code-1")
        await store.put(key, job("st-idem1", ["code-1-01"]))
        ref = ParentRef(key, wire.JobRecord, "code-1-01")
        first = await store.note_child(ref, "completed")
        assert first is not None and first.finished_now and first.parent.status == "completed"
        before = await store.get(key, wire.JobRecord)
        again = await store.note_child(ref, "failed")
        assert again is not None and not again.finished_now and again.parent.status == "completed"
        after = await store.get(key, wire.JobRecord)
        assert before is not None and after is not None and after.rev == before.rev
        assert await store.note_child(ParentRef(S.job_key("st-idem1", "nope"), wire.JobRecord, "x"), "done") is None
    finally:
        await store.bus.close()


async def test_a_cached_run_loses_to_a_cancel_from_another_process(nats_server: Any) -> None:
    """The run as this process wrote it is only a first guess: a cancel written by another process
    changes the revision, so this process's next compare-and-set reads the store and sees it."""
    here, there = await two_stores(nats_server.url, "st-run")
    try:
        run = _run("st-cached1")
        rev = await here.create_run(run, b"{}")
        got = here.cached_run(run.run_id)
        assert got is not None and got.record.status == "running" and got.rev == rev

        def cancel(r: wire.RunRecord) -> bool:
            r.status = "cancelled"
            return True

        assert await there.update_run(run.run_id, cancel) is not None
        seen: list[str] = []

        def finish(r: wire.RunRecord) -> bool:
            seen.append(r.status)
            if r.status != "running":
                return False  # cancelled meanwhile: that stands
            r.status = "completed"
            return True

        assert await here.update_run(run.run_id, finish) is None
        assert seen == ["running", "cancelled"]  # the cached guess, then the store after the lost race
        assert await here.is_cancelled(run.run_id)
        assert here.cached_run(run.run_id) is None
    finally:
        await here.bus.close()
        await there.bus.close()


async def test_siblings_finishing_together_share_one_write(nats_server: Any) -> None:
    """Ten tasks of one job finishing at once in one process (two agents' stores over one Memory): while the
    first one's compare-and-set is in flight, the others wait, and one write carries them all (group commit).
    Every completion is recorded, and exactly one caller finishes the job."""
    cfg = make_cfg()
    memory = Memory()
    buses = await asyncio.gather(Bus.open(nats_server.url, cfg, name="st-group-a"),
                                 Bus.open(nats_server.url, cfg, name="st-group-b"))
    stores = [RunStore(b, memory) for b in buses]
    try:
        key = S.job_key("st-group1", "code-1")
        tasks = [f"code-1-{i:02d}" for i in range(1, 11)]
        rev0 = await stores[0].put(key, job("st-group1", tasks))
        results = await asyncio.gather(*(stores[i % 2].note_children(ParentRef(key, wire.JobRecord, t), "completed")
                                         for i, t in enumerate(tasks)))
        writers = [r for r in results if r is not None]
        assert sum(1 for r in writers if r.finished_now) == 1  # one caller finished the job
        got = await stores[1].get(key, wire.JobRecord)
        assert got is not None and got.record.status == "completed" and sorted(got.record.done) == tasks
        assert got.rev - rev0 == 2  # two writes for ten tasks (nothing else writes to the key meanwhile)
        assert not memory.carried.get(key)
    finally:
        for b in buses:
            await b.close()


async def test_task_records_as_this_process_wrote_them(nats_server: Any) -> None:
    """The managers' task records: remembered as written (no read on the hot path), created only if absent,
    updated only over the revision read."""
    store = RunStore(await Bus.open(nats_server.url, make_cfg(), name="st-task"))
    try:
        key = S.task_key("st-task1", "code-1-01")
        rec = task("code-1")
        assert await store.create_task(key, rec) is not None
        store.remember_task(key, rec)
        assert store.written_task(key) == rec
        assert await store.create_task(key, task("other")) is None
        stored = await store.task(key)
        assert stored is not None and stored.record == rec
        rec.status = "running"
        await store.update_task(key, rec, stored.rev)
        with pytest.raises(KeyWrongLastSequenceError):
            await store.update_task(key, rec, stored.rev)  # the record changed since that revision
        store.forget_task(key)
        assert store.written_task(key) is None
    finally:
        await store.bus.close()


async def test_start_cancel_finish_a_run(nats_server: Any) -> None:
    """The run's lifecycle through the store: started once, cancelled once (NotFound, Conflict, and the
    caller's own check refusing), and an ending that finds the run cancelled meanwhile leaves it be."""
    store = RunStore(await Bus.open(nats_server.url, make_cfg(), name="st-life"))
    try:
        run = _run("st-life1", status="queued")
        await store.create_run(run, b"{}")
        started = await store.start_run(run.run_id)
        assert started is not None and started.status == "running" and started.started_at is not None
        assert await store.start_run(run.run_id) is None  # started before
        read = await store.run(run.run_id)
        assert read is not None

        def refuse(r: wire.RunRecord) -> None:
            raise Forbidden(f"not yours: {r.run_id}")

        with pytest.raises(Forbidden):
            await store.cancel_run(run.run_id, refuse)
        cancelled = await store.cancel_run(run.run_id, lambda r: None)
        assert cancelled.status == "cancelled" and cancelled.message == "cancelled by request"
        with pytest.raises(Conflict):
            await store.cancel_run(run.run_id, lambda r: None)
        with pytest.raises(NotFound):
            await store.cancel_run("st-life-none", lambda r: None)
        end = msgspec.structs.replace(read.record, status="completed", finished_at=wire.now(), message="done")
        assert await store.finish_run(end, read) is None  # the cancel stands
        stored = await store.run(run.run_id)
        assert stored is not None and stored.record.status == "cancelled"
    finally:
        await store.bus.close()


async def test_a_running_state_arriving_after_its_result_is_dropped(nats_server: Any) -> None:
    """A programmer's start and its result can reach two managers, each writing over its own connection, which
    NATS does not order: the fire-and-forget "running" must not land over the stored result (seen in CI: a
    completed job whose task stayed "running" with no output). The start's write names the revision it was
    computed from (the create's, remembered when acknowledged); the server drops it once the result is stored."""
    from pas.runtime import taskowner

    here, there = await two_stores(nats_server.url, "st-race")
    try:
        key = S.task_key("st-task1", "code-1-01")
        queued = task("code-1")
        rev = await here.create_task(key, queued)
        assert rev
        here.remember_task(key, queued)
        here.task_created(key, rev)
        got = here.written_task_at(key)
        assert got is not None and got.rev == rev
        # the other manager stores the result first ...
        done = task("code-1")
        done.status, done.programmer, done.output = "completed", "prog-001", "hi"
        await there.put_task(key, done)
        # ... then this one handles the start it computed from the queued record, and writes it
        running = task("code-1")
        running.status, running.attempts = "running", 1
        assert await taskowner.started(here, running, "prog-001", "code") is not None
        await barrier(here)
        stored = await there.task(key)
        assert stored is not None and stored.record.status == "completed" and stored.record.output == "hi", stored
        # with the create's revision unknown (its ack not back yet) the start is written as before
        here.forget_task(key)
        key2 = S.task_key("st-task1", "code-1-02")
        q2 = task("code-1")
        q2.task_id = "code-1-02"
        assert await here.create_task(key2, q2)
        here.remember_task(key2, q2)
        r2 = task("code-1")
        r2.task_id, r2.status, r2.attempts = "code-1-02", "running", 1
        assert await taskowner.started(here, r2, "prog-001", "code") is not None
        await barrier(here)
        got2 = await there.task(key2)
        assert got2 is not None and got2.record.status == "running" and got2.record.programmer == "prog-001"
    finally:
        await asyncio.gather(here.bus.close(), there.bus.close())


async def test_a_start_handled_before_its_create_is_acknowledged_waits_for_its_revision(nats_server: Any) -> None:
    """A manager publishes a job's tasks while their creates are still in flight, so a programmer's start can
    be handled before the create's acknowledgement: the start's "running" then waits for that revision and
    names it (Nats-Expected-Last-Subject-Sequence), instead of being written unguarded, where it could land
    over a result another manager stored meanwhile."""
    from pas.runtime import taskowner

    here, there = await two_stores(nats_server.url, "st-inflight")
    sent: list[Any] = []

    async def tap(m: Any) -> None:
        sent.append(m)

    try:
        key = S.task_key("st-task2", "code-1-01")
        sub = await there.bus.nc.subscribe(f"$KV.{S.KV_TREE}.{key}", cb=tap)  # the writes as published
        await there.bus.nc.flush()
        queued = task("code-1")
        queued.run_id = "st-task2"
        create = here.create_task(key, queued)  # in flight: not acknowledged yet
        here.remember_task(key, queued)
        running = task("code-1")
        running.run_id, running.status, running.attempts = "st-task2", "running", 1
        start = asyncio.ensure_future(taskowner.started(here, running, "prog-001", "code"))
        rev = await create
        assert rev
        assert await start is not None
        await barrier(here)
        await there.bus.nc.flush()
        starts = [m for m in sent if b'"running"' in m.data]
        assert len(starts) == 1, sent
        assert (starts[0].headers or {}).get("Nats-Expected-Last-Subject-Sequence") == str(rev), starts[0].headers
        assert here.memory.creating == {}  # nothing left behind once acknowledged
        await sub.unsubscribe()
    finally:
        await asyncio.gather(here.bus.close(), there.bus.close())


async def barrier(store: RunStore) -> None:
    """An acknowledged write to the same stream over the same connection: what that connection published
    before it (a fire-and-forget progress write) has been stored or refused by then."""
    await store.bus.kv_put(S.KV_TREE, S.task_key("st-task1", "barrier"), task("code-1"))
