"""Work loops keep pull requests outstanding (pas.transport.pull.PullFeed): far fewer pulls than deliveries,
never more work held than free slots, and a lost pull (server killed and restarted, consumer deleted
and re-created) is noticed and asked again, with the failure and the recovery logged."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, RetentionPolicy, StreamConfig

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import CommsLog
from pas.runtime.service import WorkCtx, WorkLoop, WorkLoopOptions
from pas.transport.bus import Bus
from pas.transport.connection import connect
from pas.transport.pull import Puller, Status, ended
from pas.transport.server import EmbeddedServer
from tests.conftest import make_cfg, wait_for

Handler = Callable[[wire.RunRef, WorkCtx], Awaitable[None]]


def work_loop(bus: Bus, stream: str, durable: str, handler: Handler, concurrency: int,
              fetch_timeout_s: float = 2.0, ack_wait_s: float = 10) -> WorkLoop:
    return WorkLoop(bus.js, stream, durable, wire.RunRef, handler,
                    WorkLoopOptions(bus=bus, comms=CommsLog(bus.nc), agent_id="t", concurrency=concurrency,
                                    ack_wait_s=ack_wait_s, name=f"t:{durable}", fetch_timeout_s=fetch_timeout_s))


@asynccontextmanager
async def queue(url: str, stream: str, durable: str, ack_wait_s: float = 10) -> AsyncIterator[Bus]:
    """A Bus on url with a work-queue stream `<stream>` on `<stream>.>` and one durable consumer."""
    nc = await connect(url, name=f"pull-test-{durable}")
    bus = Bus(nc=nc, js=nc.jetstream(timeout=10), cfg=make_cfg())
    try:
        await bus.js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"], retention=RetentionPolicy.WORK_QUEUE))
        await bus.js.add_consumer(stream, ConsumerConfig(durable_name=durable, ack_wait=ack_wait_s))
        yield bus
    finally:
        await bus.close()


async def publish(bus: Bus, stream: str, run_id: str) -> None:
    await bus.retry("publish", lambda: bus.js.publish(f"{stream}.x", wire.encode(wire.RunRef(run_id=run_id))))


def test_a_status_ends_its_request() -> None:
    """408 and a counted 409 release their rest; a refused request (no leader: 503, 400, over
    max_waiting) its whole batch; a no-wait 404 its whole batch; a leadership change, a deleted
    consumer, a shutdown every request."""
    assert ended(Status("408", "Request Timeout", 3), 8) == (3, True)
    assert ended(Status("409", "Message Size Exceeds MaxBytes", 2), 8) == (2, True)
    assert ended(Status("503"), 8) == (8, False)
    assert ended(Status("409", "Exceeded MaxWaiting"), 8) == (8, False)
    assert ended(Status("400", "Bad Request"), 8) == (8, False)
    assert ended(Status("404", "No Messages"), 1) == (1, True)
    assert ended(Status("409", "Leadership Change"), 8) == (None, True)
    assert ended(Status("409", "Consumer Deleted"), 8) == (None, False)
    assert ended(Status("409", "Server Shutdown"), 8) == (None, False)


async def test_a_puller_reads_deliveries_then_the_status_that_ends_its_request(nats_server: Any) -> None:
    """The one-shot shape (stream reads, priority bands): a no-wait pull of an empty consumer ends with
    404; a pull of 3 with 2 stored gets both, then the 408 of its expiry saying 1 was not delivered."""
    async with queue(nats_server.url, "PULLONE", "one") as bus:
        async with Puller(bus.nc, "PULLONE", "one") as pull:
            await pull.request(1, no_wait=True)
            assert await pull.next(5) == Status("404", "No Messages")
            for run_id in ("a", "b"):
                await publish(bus, "PULLONE", run_id)
            await pull.request(3, expires_s=0.5)
            got = [await pull.next(5) for _ in range(3)]
            assert [wire.decode(m.data, wire.RunRef).run_id for m in got[:2] if isinstance(m, Msg)] == ["a", "b"]
            assert got[2] == Status("408", "Request Timeout", 1) and ended(got[2], 3) == (1, True)
            assert pull.buffered == 0


async def test_sequential_deliveries_need_far_fewer_pulls_than_deliveries(nats_server: Any, nc: Any) -> None:
    """40 items, each published once the one before it is handled (a job's hops arrive that way):
    one pull request for the 32 free slots, a refill when half are unasked for, nothing per item."""
    pulls: list[dict[str, Any]] = []

    async def on_pull(m: Any) -> None:
        pulls.append(json.loads(m.data))

    sub = await nc.subscribe(S.js_next("PULLSEQ", "seq"), cb=on_pull)
    await nc.flush()
    seen: list[str] = []

    async def handler(ref: wire.RunRef, ctx: WorkCtx) -> None:
        seen.append(ref.run_id)

    async with queue(nats_server.url, "PULLSEQ", "seq") as bus:
        loop = work_loop(bus, "PULLSEQ", "seq", handler, concurrency=32)
        loop.start()
        try:
            await wait_for(lambda: pulls, 10)
            for i in range(40):
                await publish(bus, "PULLSEQ", f"r{i}")
                await wait_for(lambda i=i: len(seen) == i + 1 and loop.in_flight == 0, 10)
        finally:
            await loop.stop()
    await sub.unsubscribe()
    assert seen == [f"r{i}" for i in range(40)]
    assert len(pulls) <= 6, pulls  # a pull per delivery would be 40 (the fetch loop before: 41)
    assert pulls[0] == {"batch": 32, "expires": 2_000_000_000}  # every free slot, the loop's fetch timeout


async def test_a_loop_holds_no_more_than_its_free_slots(nats_server: Any) -> None:
    """A backlog of 12 and a loop of 3 whose handlers block: the consumer has exactly 3 delivered and
    unacked and no pull request waiting, through several expiry periods of the loop; a second loop
    on the same consumer gets the other 9 meanwhile. Released, the first loop takes no more than 3."""
    gate = asyncio.Event()
    busy = {"now": 0, "max": 0}
    done: list[str] = []

    async def slow(ref: wire.RunRef, ctx: WorkCtx) -> None:
        busy["now"] += 1
        busy["max"] = max(busy["max"], busy["now"])
        try:
            await gate.wait()
        finally:
            busy["now"] -= 1
        done.append(ref.run_id)

    async def fast(ref: wire.RunRef, ctx: WorkCtx) -> None:
        done.append(ref.run_id)

    async with queue(nats_server.url, "PULLSLOTS", "slots") as bus:
        a = work_loop(bus, "PULLSLOTS", "slots", slow, concurrency=3, fetch_timeout_s=0.3)
        b = work_loop(bus, "PULLSLOTS", "slots", fast, concurrency=4)
        a.start()
        try:
            await wait_for(lambda: a._feed is not None and a._feed.outstanding == 3, 10)
            for i in range(12):
                await publish(bus, "PULLSLOTS", f"r{i}")
            await wait_for(lambda: busy["now"] == 3, 10)
            # Several of a's expiry periods (0.3 s) pass: a asks for nothing while its slots are full.
            pulls_then = a._feed.pulls if a._feed else 0
            samples = []
            loop_time = asyncio.get_running_loop().time
            until = loop_time() + 1.0
            while loop_time() < until:
                ci = await bus.js.consumer_info("PULLSLOTS", "slots")
                samples.append((ci.num_ack_pending, ci.num_waiting, ci.num_pending))
                await asyncio.sleep(0.05)
            assert samples and all(s == (3, 0, 9) for s in samples), samples
            assert a._feed is not None and a._feed.pulls == pulls_then and a._feed.outstanding == 0
            b.start()
            await wait_for(lambda: len(done) == 9, 10)  # b took the rest while a still holds its 3
            assert busy["now"] == 3 and a.in_flight == 3
            gate.set()
            await wait_for(lambda: len(done) == 12 and a.in_flight == 0, 10)
        finally:
            await a.stop()
            await b.stop()
        assert sorted(done) == sorted(f"r{i}" for i in range(12))
        assert busy["max"] == 3


async def test_a_loop_resumes_after_its_consumer_is_deleted_and_recreated(nats_server: Any, caplog: Any) -> None:
    """The waiting pull ends with 409 Consumer Deleted; pulls to the missing consumer get 503 (no
    responders), retried every 0.5 s; once the consumer is back, the next item is handled."""
    caplog.set_level(logging.WARNING, logger="pas.transport.pull")
    seen: list[str] = []

    async def handler(ref: wire.RunRef, ctx: WorkCtx) -> None:
        seen.append(ref.run_id)

    async with queue(nats_server.url, "PULLDEL", "del") as bus:
        loop = work_loop(bus, "PULLDEL", "del", handler, concurrency=4)
        loop.start()
        try:
            await wait_for(lambda: loop._feed is not None and loop._feed.outstanding == 4, 10)
            await bus.js.delete_consumer("PULLDEL", "del")
            await wait_for(lambda: any("fetch failed: 409 Consumer Deleted" in r.getMessage()
                                       for r in caplog.records), 10)
            await bus.js.add_consumer("PULLDEL", ConsumerConfig(durable_name="del", ack_wait=10))
            await publish(bus, "PULLDEL", "after")
            await wait_for(lambda: seen == ["after"], 10)
        finally:
            await loop.stop()
    assert any("fetch no longer failing" in r.getMessage() for r in caplog.records)


async def test_a_loop_resumes_after_its_pull_is_lost_with_the_server(tmp_path: Path, caplog: Any) -> None:
    """SIGKILL the server while the loop's pull waits there, restart it on the same store and port:
    the pull is gone without an answer; the loop notices once it is overdue (expiry + grace), asks
    again, and handles an item published after the restart."""
    caplog.set_level(logging.WARNING, logger="pas.transport.pull")
    srv = EmbeddedServer(tmp_path / "nats", port=-1)
    url = srv.start()
    seen: list[str] = []

    async def handler(ref: wire.RunRef, ctx: WorkCtx) -> None:
        seen.append(ref.run_id)

    try:
        async with queue(url, "PULLLOST", "lost") as bus:
            loop = work_loop(bus, "PULLLOST", "lost", handler, concurrency=4, fetch_timeout_s=1.0)
            loop.start()
            try:
                await wait_for(lambda: loop._feed is not None and loop._feed.outstanding == 4, 10)
                srv.kill()
                srv = EmbeddedServer(tmp_path / "nats", port=int(url.rsplit(":", 1)[1]))
                srv.start()
                await publish(bus, "PULLLOST", "after")
                await wait_for(lambda: seen == ["after"], 15)
            finally:
                await loop.stop()
    finally:
        srv.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("fetch failed: no answer to a pull" in m for m in messages), messages
    assert any("fetch no longer failing" in m for m in messages), messages


async def test_a_redelivery_while_its_handler_runs_is_not_run_twice(nats_server: EmbeddedServer,
                                                                    caplog: Any) -> None:
    """An event loop stalled past the ack deadline sends no in-progress mark (litellm importing in a
    thread stalled the agents' loop 1.5-2.5 s on a loaded machine), so the server redelivers, to this
    same loop, while the handler still runs: test_replay's --rebuild saw a plan made twice. Here the
    stall is made certain (the handler blocks the loop for twice the ack wait): the item is handled
    once, and acknowledged."""
    attempts: list[int] = []
    release = asyncio.Event()

    async def handler(item: wire.RunRef, ctx: WorkCtx) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            time.sleep(2.0)  # the stall itself: no mark can go out meanwhile
        await release.wait()

    caplog.set_level(logging.WARNING, logger="pas.runtime.service")
    async with queue(nats_server.url, "PULLHELD", "held", ack_wait_s=1) as bus:
        loop = work_loop(bus, "PULLHELD", "held", handler, concurrency=2, ack_wait_s=1)
        loop.start()
        try:
            await publish(bus, "PULLHELD", "r1")
            await wait_for(lambda: attempts, 10)
            info = await wait_for(lambda: redelivered(bus), 10)  # the server gave up on the first delivery
            assert info.num_redelivered == 1
            await wait_for(lambda: len(attempts) > 1 or "not run twice" in caplog.text, 10)
            release.set()
            await wait_for(lambda: settled(bus), 10)
            assert attempts == [1], attempts
        finally:
            release.set()
            await loop.stop()


async def redelivered(bus: Bus) -> Any:
    info = await bus.js.consumer_info("PULLHELD", "held")
    return info if info.delivered.consumer_seq >= 2 else None


async def settled(bus: Bus) -> bool:
    info = await bus.js.consumer_info("PULLHELD", "held")
    return info.num_ack_pending == 0 and info.num_pending == 0
