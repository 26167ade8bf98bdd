"""The HMI's event hub (pas.surfaces.http.events) against a real nats-server with PAS's streams:
- it follows runs and comms only while a browser listens: with none, a job costs the adapter no
  message; the first browser gets them live before its "hello", and they go when the last one leaves;
- run states are coalesced per object: a client that does not read holds the latest state of each
  task, not every event, and then gets every final state in one batch;
- comms entries carry their PAS_COMMS sequence; a client that falls further behind than the hub
  keeps loses the oldest, and what it lost is readable from PAS_COMMS by that sequence;
- a body that does not validate is skipped, and the hub goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import read_numbered
from pas.surfaces.http import events
from pas.surfaces.http.events import EventHub
from pas.transport.bus import provision
from pas.transport.streams import ReadOptions
from tests.conftest import FAST, wait_for


@pytest.fixture
async def hub(nats_server: Any) -> AsyncIterator[tuple[EventHub, Any]]:
    hub_nc = await nats.connect(nats_server.url)
    pub = await nats.connect(nats_server.url)
    await provision(pub.jetstream(), load_config(overrides=list(FAST)))
    h = EventHub(hub_nc, ping_s=30, flush_s=0.05)
    await h.start()
    try:
        yield h, pub
    finally:
        await h.close()
        await hub_nc.close()
        await pub.close()


def parse(chunk: str) -> list[tuple[str, Any]]:
    """(event, data) of every SSE event in one chunk."""
    out = []
    for block in chunk.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def next_events(stream: AsyncIterator[str], timeout_s: float = 5) -> list[tuple[str, Any]]:
    while True:
        chunk = await asyncio.wait_for(anext(stream), timeout_s)
        got = parse(chunk)
        if got:
            return got


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
    assert await anext(stream) == "retry: 1000\n\n"
    assert (await anext(stream)).startswith("event: hello")
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


async def test_a_client_that_does_not_read_gets_the_latest_state_of_each_task(hub: tuple[EventHub, Any]) -> None:
    """300 tasks x 3 states while the client reads nothing: the hub holds at most one state per
    task for it, and then sends each task's final state, none missing."""
    h, pub = hub
    stream = h.stream({})
    await anext(stream)
    await anext(stream)
    [client] = h.clients
    for status in ("queued", "running", "completed"):
        for i in range(300):
            await pub.publish(S.run_task("r-big", f"t{i:03d}"), task("r-big", f"t{i:03d}", status))
    await pub.publish(S.run_task("r-big", "t000"), task("r-big", "t000", "running"))  # late: must not win
    await pub.publish(S.run_task("r-big", "bad"), b'{"task_id": 1}')  # does not validate
    await pub.flush()
    await wait_for(lambda: h.stats.run_events == 902, 10)
    await wait_for(lambda: h.stats.skipped == 1, 10)
    h.flush()
    assert len(client.runs) == 300 and client.max_backlog <= 300  # bounded by objects, not events
    final: dict[str, str] = {}
    while len(final) < 300 or any(s != "completed" for s in final.values()):
        for event, data in await next_events(stream):
            if event == "runs":
                final.update({it["data"]["task_id"]: it["data"]["status"] for it in data["items"]})
    assert set(final) == {f"t{i:03d}" for i in range(300)} and set(final.values()) == {"completed"}
    assert h.stats.run_states_sent <= 302  # not 900
    await stream.aclose()


async def test_comms_beyond_the_backlog_are_refilled_by_sequence(hub: tuple[EventHub, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    h, pub = hub
    monkeypatch.setattr(events, "COMMS_BACKLOG", 50)
    stream = h.stream({})
    await anext(stream)
    await anext(stream)
    [client] = h.clients
    js = pub.jetstream()
    for i in range(120):
        await js.publish(S.comms("r-c", "gateway", "CMD"), comms("r-c", f"line {i}"))
    await pub.publish(S.comms("r-c", "gateway", "CMD"), b"not json")  # skipped with a warning
    await wait_for(lambda: h.stats.comms == 120 and h.stats.skipped == 1, 10)
    h.flush()
    assert client.comms_dropped == 70
    [(event, batch)] = await next_events(stream)
    seqs = [e["seq"] for e in batch["entries"]]
    assert event == "comms" and len(seqs) == 50 and seqs == list(range(seqs[0], seqs[0] + 50))
    # What the page fills the hole with: PAS_COMMS from the first sequence it missed.
    first = seqs[0] - 70
    got = [(seq, e.message) async for seq, e in read_numbered(js, how=ReadOptions(start_seq=first)) if seq < seqs[0]]
    assert [m for _, m in got] == [f"line {i}" for i in range(70)]
    await stream.aclose()
