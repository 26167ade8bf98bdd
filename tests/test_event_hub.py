"""The HMI's event hub (pas.surfaces.http.events) against a real nats-server with PAS's streams:
- it follows runs and comms only while a browser listens: with none, a job costs the adapter no
  message; the first browser gets them live before its "hello", and they go when the last one leaves;
- each flush is encoded once, and the same bytes are queued for every client (no work per browser);
- run states are coalesced per object: a client that does not read falls QUEUE_MAX chunks behind
  and then gets one catch-up, the latest state of each task, not every event;
- comms entries carry their PAS_COMMS sequence; a client caught up is told the last sequence read,
  and what it missed is readable from PAS_COMMS by that sequence;
- a body that does not validate is skipped, and the hub goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import read_numbered
from pas.surfaces.http import events
from pas.surfaces.http.events import EventHub
from pas.transport.connection import connect as pas_connect
from pas.transport.provision import provision
from pas.transport.streams import ReadOptions
from tests.conftest import FAST, wait_for


@pytest.fixture
async def hub(nats_server: Any) -> AsyncIterator[tuple[EventHub, Any]]:
    hub_nc = await pas_connect(nats_server.url)
    pub = await pas_connect(nats_server.url)
    await provision(pub.jetstream(), load_config(overrides=list(FAST)))
    h = EventHub(hub_nc, ping_s=30, flush_s=0.05)
    await h.start()
    try:
        yield h, pub
    finally:
        await h.close()
        await hub_nc.close()
        await pub.close()


def parse(chunk: bytes) -> list[tuple[str, Any]]:
    """(event, data) of every SSE event in one chunk."""
    out = []
    for block in chunk.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def next_events(stream: AsyncIterator[bytes], timeout_s: float = 5) -> list[tuple[str, Any]]:
    while True:
        chunk = await asyncio.wait_for(anext(stream), timeout_s)
        got = parse(chunk)
        if got:
            return got


def task_of(item: list[Any]) -> dict[str, Any]:
    """A task's row as the hub sends it (["task", run_id, *TASK_FIELDS], the status as a code) read back."""
    assert item[0] == "task"
    row = dict(zip(events.TASK_FIELDS, item[2:], strict=True))
    return {**row, "run_id": item[1], "status": events.TASK_STATES[row["status"]]}


def task(run: str, task_id: str, status: str) -> bytes:
    return wire.encode(wire.TaskRecord(task_id=task_id, run_id=run, job_id="j", lane="code", manager="m",
                                       executor="command", instruction="echo", status=status))


def comms(run: str, message: str) -> bytes:
    return wire.encode(wire.CommsEntry(ts=wire.now(), from_agent="gateway", to_agent="root", msg_type="CMD",
                                       message=message, run_id=run))


async def test_runs_and_comms_are_followed_only_while_a_browser_listens(hub: tuple[EventHub, Any]) -> None:
    h, pub = hub
    before = h.nc.stats["in_msgs"]
    await pub.publish(S.comms("r1", "gateway", "CMD"), comms("r1", "nobody listens"))
    await pub.publish(S.run_status("r1"), b'{"status": "queued"}')
    await pub.flush()
    await h.nc.flush()  # the server sends what it had for us before the PONG
    assert h.live == [] and h.nc.stats["in_msgs"] == before

    stream = h.stream({"hi": 1})
    assert await anext(stream) == b"retry: 1000\n\n"
    assert (await anext(stream)).startswith(b"event: hello")
    assert len(h.live) == 2
    await pub.publish(S.comms("r1", "gateway", "CMD"), comms("r1", "seen"))
    [(event, batch)] = await next_events(stream)
    assert event == "comms" and [e["message"] for e in batch["entries"]] == ["seen"]
    assert batch["entries"][0]["seq"] == 2 and isinstance(batch["t"], float)  # the second entry stored
    await stream.aclose()  # the browser leaves
    await wait_for(lambda: h.live == [], 5)
    before = h.nc.stats["in_msgs"]
    await pub.publish(S.comms("r1", "gateway", "CMD"), comms("r1", "gone"))
    await pub.flush()
    await h.nc.flush()
    assert h.nc.stats["in_msgs"] == before


async def test_one_encoded_chunk_per_flush_for_every_client(hub: tuple[EventHub, Any]) -> None:
    h, pub = hub
    streams = [h.stream({}) for _ in range(3)]
    for st in streams:
        await anext(st)
        await anext(st)
    for i in range(50):
        await pub.publish(S.run_task("r-3", f"t{i:02d}"), task("r-3", f"t{i:02d}", "running"))
    await pub.flush()
    await wait_for(lambda: h.stats.run_events == 50, 10)
    h.flush()
    queues = [c.queue for c in h.clients]
    assert all(q for q in queues)
    first = queues[0][-1].data
    assert all(q[-1].data is first for q in queues)  # one bytes object, not one encoding per client
    for st in streams:
        got: set[str] = set()
        while len(got) < 50:
            for event, data in await next_events(st):
                got |= {task_of(it)["task_id"] for it in data["items"]} if event == "runs" else set()
        await st.aclose()


async def test_a_client_that_does_not_read_gets_the_latest_state_of_each_task(
        hub: tuple[EventHub, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """300 tasks x 3 states while the client reads nothing: past QUEUE_MAX chunks it is queued no
    more, and its next read is one catch-up with each task's final state, none missing."""
    h, pub = hub
    monkeypatch.setattr(events, "QUEUE_MAX", 2)
    stream = h.stream({})
    await anext(stream)
    await anext(stream)
    [client] = h.clients
    for n, status in enumerate(("queued", "running", "completed"), 1):
        for i in range(300):
            await pub.publish(S.run_task("r-big", f"t{i:03d}"), task("r-big", f"t{i:03d}", status))
        await pub.flush()
        await wait_for(lambda n=n: h.stats.run_events == 300 * n, 10)  # type: ignore[misc]
        h.flush()
    await pub.publish(S.run_task("r-big", "t000"), task("r-big", "t000", "running"))  # late: must not win
    await pub.publish(S.run_task("r-big", "bad"), b'{"task_id": 1}')  # does not validate
    await pub.flush()
    await wait_for(lambda: h.stats.run_events == 902 and h.stats.skipped == 1, 10)
    h.flush()
    assert client.behind_t is not None and not client.queue  # its queue stopped at QUEUE_MAX chunks
    final: dict[str, str] = {}
    while len(final) < 300 or any(s != "completed" for s in final.values()):
        for event, data in await next_events(stream):
            if event == "runs":
                final.update({task_of(it)["task_id"]: task_of(it)["status"] for it in data["items"]})
    assert set(final) == {f"t{i:03d}" for i in range(300)} and set(final.values()) == {"completed"}
    assert client.catch_ups == 1 and client.max_catch_up == 300  # one state per task, not 900
    await stream.aclose()


async def test_comms_a_caught_up_client_missed_are_refilled_by_sequence(
        hub: tuple[EventHub, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    h, pub = hub
    monkeypatch.setattr(events, "QUEUE_MAX", 1)
    stream = h.stream({})
    await anext(stream)
    await anext(stream)
    [client] = h.clients
    js = pub.jetstream()
    for part in range(2):
        for i in range(60):
            await js.publish(S.comms("r-c", "gateway", "CMD"), comms("r-c", f"line {part * 60 + i}"))
        await wait_for(lambda part=part: h.stats.comms == 60 * (part + 1), 10)  # type: ignore[misc]
        h.flush()
    await pub.publish(S.comms("r-c", "gateway", "CMD"), b"not json")  # skipped with a warning
    await wait_for(lambda: h.stats.skipped == 1, 10)
    assert client.behind_t is not None
    [(event, batch)] = await next_events(stream)
    assert event == "comms" and batch["entries"] == []
    # What the page fills the hole with: PAS_COMMS up to the last sequence the hub read.
    last = batch["upto"]
    got = [(seq, e.message) async for seq, e in read_numbered(js, how=ReadOptions(start_seq=last - 120)) if seq <= last]
    assert [m for _, m in got][-120:] == [f"line {i}" for i in range(120)]
    await stream.aclose()


async def test_a_task_state_is_one_compact_row(hub: tuple[EventHub, Any]) -> None:
    """What the run view's row shows, and nothing else: ["task", run, *TASK_FIELDS], the status a code."""
    h, pub = hub
    stream = h.stream({})
    await anext(stream)
    await anext(stream)
    rec = wire.TaskRecord(task_id="t1", run_id="r-row", job_id="j", lane="code", manager="m", executor="command",
                          instruction="echo hi", command="echo hi", status="failed", programmer="prog-1",
                          attempts=2, output="x" * 5000, error="exit 3: " + "e" * 1000, tokens=7)
    await pub.publish(S.run_task("r-row", "t1"), wire.encode(rec))
    [(event, batch)] = await next_events(stream)
    [item] = batch["items"]
    row = task_of(item)
    assert event == "runs" and len(item) == 2 + len(events.TASK_FIELDS)
    assert (row["run_id"], row["task_id"], row["status"], row["programmer"], row["attempts"], row["tokens"]) == \
        ("r-row", "t1", "failed", "prog-1", 2, 7)
    assert row["text"] == row["hover"] == rec.error[:events.LIVE_TEXT]  # an error shows before the command
    assert len(json.dumps(item)) < 800  # not the 5,000-character output
    await stream.aclose()


async def test_the_first_event_after_a_quiet_spell_is_sent_at_once(nats_server: Any) -> None:
    """Idle, the hub waits for nothing (no timer); the first event is flushed at once, and what follows
    within flush_s is coalesced into the next flush, flush_s later."""
    nc = await pas_connect(nats_server.url)
    pub = await pas_connect(nats_server.url)
    await provision(pub.jetstream(), load_config(overrides=list(FAST)))
    h = EventHub(nc, ping_s=30, flush_s=2.0)
    await h.start()
    try:
        stream = h.stream({})
        await anext(stream)
        await anext(stream)
        t0 = asyncio.get_running_loop().time()
        await pub.publish(S.run_task("r-q", "t1"), task("r-q", "t1", "running"))
        first = await next_events(stream, 1.5)  # well before flush_s
        t1 = asyncio.get_running_loop().time()
        await pub.publish(S.run_task("r-q", "t2"), task("r-q", "t2", "running"))
        await pub.publish(S.run_task("r-q", "t2"), task("r-q", "t2", "completed"))
        second = await next_events(stream, 5)
        t2 = asyncio.get_running_loop().time()
        assert [task_of(it)["task_id"] for _, b in first for it in b["items"]] == ["t1"] and t1 - t0 < 1.0
        assert [(task_of(it)["task_id"], task_of(it)["status"]) for _, b in second for it in b["items"]] == \
            [("t2", "completed")]  # coalesced: the latest state only
        assert t2 - t0 >= 1.9  # held until flush_s after the first flush
        await stream.aclose()
    finally:
        await h.close()
        await nc.close()
        await pub.close()


async def test_record_writes_reach_the_page_as_entries_with_no_hole(hub: tuple[EventHub, Any]) -> None:
    """A run record's write is in PAS_COMMS too (the server sources it): the page gets it as the comms
    entry it stands for. A write that stands for none (a task queued) still has a sequence; the batch's
    `seqs` covers it, so the page does not take it for a hole to read back."""
    h, pub = hub
    stream = h.stream({"hi": 1})
    assert await anext(stream) == b"retry: 1000\n\n"
    assert (await anext(stream)).startswith(b"event: hello")
    js = pub.jetstream()
    key = S.kv_subject(S.KV_TREE, S.task_key("rw1", "t1"))
    rec = wire.TaskRecord(task_id="t1", run_id="rw1", job_id="j", lane="code", manager="mgr-code-01",
                          executor="echo", instruction="hi")
    await js.publish(key, wire.encode(rec))  # queued: no entry
    rec.status, rec.programmer, rec.attempts, rec.finished_at = "completed", "prog-001", 1, wire.now()
    await js.publish(key, wire.encode(rec))  # the programmer's result
    batch: dict[str, Any] = {}
    while not batch.get("entries"):
        batch = next(b for e, b in await next_events(stream) + [("comms", {})] if e == "comms")
    [entry] = batch["entries"]
    assert (entry["from_agent"], entry["to_agent"], entry["msg_type"]) == ("prog-001", "mgr-code-01", "RESPONSE")
    assert entry["message"] == "task t1 completed"
    first, last = batch["seqs"]
    assert first < entry["seq"] == last  # the queued write, before it, is covered
    await stream.aclose()
