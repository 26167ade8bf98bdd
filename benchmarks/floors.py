"""Benchmark floors: what the bare transports cost, with no PAS code in the path.

Each function takes the URL of a running nats-server (the caller starts an EmbeddedServer) and
returns raw measurements (seconds, counts); benchmarks.run turns them into Figures. Every
function removes the subscriptions, streams and consumers it created, whatever happens.

- core_chain:    a 6-hop core-NATS request chain (A1 -> ... -> A6, each hop replies after the
                 reply from downstream comes back; the last replies immediately).
- js_chain:      the same chain, each hop first appending one message to a JetStream stream
                 (awaiting the PubAck).
- http_chain:    the same shape over HTTP: 6 FastAPI apps in 6 uvicorn processes, chained by
                 httpx POSTs (the shape of the earlier HTTP version). Needs no NATS.
- workqueue_raw: a JetStream work-queue stream, n messages published with bounded in-flight
                 acks, drained by `workers` concurrent fetch+ack loops on one shared durable
                 pull consumer, each worker on a NATS connection of its own.
- workqueue_raw(shape="one_connection"): the same loop with the publisher and every worker on
                 ONE connection: nats-py costs a reader and a flusher task per connection, so in one
                 event loop this shape can be the faster one (issue 21: the work-queue floor is the
                 faster of the two).

Each hop has its own NATS connection (as separate services would), all in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from benchmarks.httpchain import HttpChain

REQUEST_TIMEOUT_S = 10.0
DEFAULT_WARMUP = 20
DEFAULT_PAYLOAD = 128


@dataclass
class ChainRun:
    """One chain measurement: latencies_s holds one submit->final-reply time per job."""

    kind: str  # "core" | "js" | "http"
    hops: int
    n: int
    warmup: int
    payload_bytes: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0  # replies that did not echo the payload (or failed requests)
    wall_s: float = 0.0  # time for the n measured jobs, end to end
    appends: int = 0  # js: messages found in the stream afterwards (expect hops * (warmup + n))


WorkQueueShape = Literal["per_worker", "one_connection"]
WORKQUEUE_SHAPES: tuple[WorkQueueShape, ...] = ("per_worker", "one_connection")


@dataclass
class WorkQueueRun:
    n: int
    workers: int
    batch: int
    payload_bytes: int
    shape: WorkQueueShape = "per_worker"
    published: int = 0
    acked: int = 0  # distinct stream sequences acked
    redelivered: int = 0  # deliveries beyond the first
    publish_s: float = 0.0  # first publish -> last PubAck
    elapsed_s: float = 0.0  # first publish -> last ack flushed to the server
    remaining: int = -1  # messages left in the stream afterwards (expect 0)
    per_worker: list[int] = field(default_factory=list)


def _tag() -> str:
    return secrets.token_hex(4)


def _payload(size: int) -> bytes:
    return (b"x" * size)[:size]


async def _connect(url: str, name: str) -> NATS:
    return await nats.connect(url, name=name, allow_reconnect=False, connect_timeout=5)


async def _close_all(conns: list[NATS]) -> None:
    for nc in conns:
        with contextlib.suppress(Exception):
            await nc.close()


Hook = Callable[[Msg], Awaitable[None]]


async def _timed_jobs(run: ChainRun, job: Callable[[], Awaitable[bool]]) -> None:
    """Run `job` run.warmup + run.n times, one after another; keep the latency of each of the last n
    (a False answer counts as an error) and their wall time."""
    started = 0.0
    for j in range(run.warmup + run.n):
        if j == run.warmup:
            started = time.perf_counter()
        t0 = time.perf_counter()
        ok = await job()
        dt = time.perf_counter() - t0
        if j >= run.warmup:
            run.latencies_s.append(dt)
            if not ok:
                run.errors += 1
    run.wall_s = time.perf_counter() - started


async def _nats_chain(url: str, kind: str, hops: int, n: int, warmup: int, payload_bytes: int,
                      make_hook: Callable[[int, NATS], Awaitable[Hook | None]] | None = None) -> ChainRun:
    if hops < 1 or n < 1:
        raise ValueError("hops and n must be >= 1")
    tag = _tag()
    subjects = [f"bench.{tag}.{kind}.a{i + 1}" for i in range(hops)]
    conns: list[NATS] = []
    subs = []
    run = ChainRun(kind=kind, hops=hops, n=n, warmup=warmup, payload_bytes=payload_bytes)
    try:
        for i in range(hops):
            nc = await _connect(url, f"bench-{kind}-a{i + 1}")
            conns.append(nc)
            hook = await make_hook(i, nc) if make_hook else None
            nxt = subjects[i + 1] if i + 1 < hops else None

            def handler_for(nc: NATS, nxt: str | None, hook: Hook | None) -> Callable[[Msg], Awaitable[None]]:
                async def handler(msg: Msg) -> None:
                    try:
                        if hook is not None:
                            await hook(msg)
                        if nxt is None:
                            await msg.respond(msg.data)
                        else:
                            reply = await nc.request(nxt, msg.data, timeout=REQUEST_TIMEOUT_S)
                            await msg.respond(reply.data)
                    except Exception as e:
                        await msg.respond(b"ERR " + type(e).__name__.encode())

                return handler

            subs.append(await nc.subscribe(subjects[i], cb=handler_for(nc, nxt, hook)))
            await nc.flush()
        driver = await _connect(url, f"bench-{kind}-driver")
        conns.append(driver)
        payload = _payload(payload_bytes)

        async def job() -> bool:
            try:
                reply = await driver.request(subjects[0], payload, timeout=REQUEST_TIMEOUT_S * hops)
            except Exception:
                return False
            return reply.data == payload

        await _timed_jobs(run, job)
        return run
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await _close_all(conns)


async def core_chain(url: str, hops: int = 6, n: int = 300, *, warmup: int = DEFAULT_WARMUP,
                     payload_bytes: int = DEFAULT_PAYLOAD) -> ChainRun:
    """A bare `hops`-hop core-NATS request chain; n jobs one after another, after `warmup` jobs."""
    return await _nats_chain(url, "core", hops, n, warmup, payload_bytes)


async def js_chain(url: str, hops: int = 6, n: int = 300, *, warmup: int = DEFAULT_WARMUP,
                   payload_bytes: int = DEFAULT_PAYLOAD, storage: StorageType = StorageType.FILE) -> ChainRun:
    """core_chain plus one JetStream append (awaiting the PubAck) per hop before forwarding."""
    tag = _tag()
    stream = f"BENCH_JSCHAIN_{tag}"
    log_prefix = f"bench.{tag}.log"
    admin = await _connect(url, "bench-js-admin")
    try:
        ajs = admin.jetstream()
        await ajs.add_stream(StreamConfig(name=stream, subjects=[f"{log_prefix}.>"], storage=storage,
                                          retention=RetentionPolicy.LIMITS))

        async def make_hook(i: int, nc: NATS) -> Hook:
            js = nc.jetstream()
            subject = f"{log_prefix}.a{i + 1}"

            async def append(msg: Msg) -> None:
                await js.publish(subject, msg.data, stream=stream, timeout=REQUEST_TIMEOUT_S)

            return append

        try:
            run = await _nats_chain(url, "js", hops, n, warmup, payload_bytes, make_hook)
            info = await ajs.stream_info(stream)
            run.appends = info.state.messages
            return run
        finally:
            with contextlib.suppress(Exception):
                await ajs.delete_stream(stream)
    finally:
        await _close_all([admin])


async def http_chain(hops: int = 6, n: int = 300, *, warmup: int = DEFAULT_WARMUP,
                     payload_bytes: int = DEFAULT_PAYLOAD) -> ChainRun:
    """The HTTP shape: `hops` FastAPI apps in `hops` uvicorn processes, chained by httpx POSTs."""
    import httpx

    if hops < 1 or n < 1:
        raise ValueError("hops and n must be >= 1")
    run = ChainRun(kind="http", hops=hops, n=n, warmup=warmup, payload_bytes=payload_bytes)
    chain = HttpChain(hops)
    try:
        url = await chain.start()
        payload = _payload(payload_bytes)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S * hops) as client:

            async def job() -> bool:
                try:
                    r = await client.post(url, content=payload)
                except httpx.HTTPError:
                    return False
                return r.status_code == 200 and r.content == payload

            await _timed_jobs(run, job)
        return run
    finally:
        chain.stop()  # synchronous on purpose: runs even if this task is being cancelled


async def workqueue_raw(url: str, n: int = 10000, workers: int = 10, *, batch: int = 100,
                        max_inflight: int = 1000, payload_bytes: int = DEFAULT_PAYLOAD,
                        storage: StorageType = StorageType.FILE, timeout_s: float = 300.0,
                        shape: WorkQueueShape = "per_worker") -> WorkQueueRun:
    """Publish n messages to a work-queue stream while `workers` pull loops (one shared durable)
    fetch(batch) and ack them; elapsed_s runs from the first publish to the last ack (flushed).
    shape: a connection per worker, or one connection for the publisher and every worker."""
    if n < 1 or workers < 1:
        raise ValueError("n and workers must be >= 1")
    if shape not in WORKQUEUE_SHAPES:
        raise ValueError(f"shape must be one of {WORKQUEUE_SHAPES}, not {shape!r}")
    tag = _tag()
    stream = f"BENCH_WQ_{tag}"
    subject = f"bench.{tag}.wq"
    durable = "workers"
    run = WorkQueueRun(n=n, workers=workers, batch=batch, payload_bytes=payload_bytes, shape=shape,
                       per_worker=[0] * workers)
    conns: list[NATS] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    all_acked = asyncio.Event()
    seen: set[int] = set()
    t_first_publish = 0.0
    t_last_ack = 0.0
    pub = await _connect(url, "bench-wq-publisher")
    conns.append(pub)
    js = pub.jetstream(publish_async_max_pending=max_inflight)
    try:
        await js.add_stream(StreamConfig(name=stream, subjects=[subject], storage=storage,
                                         retention=RetentionPolicy.WORK_QUEUE))
        await js.add_consumer(stream, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                                     ack_wait=60.0, max_ack_pending=max(1000, workers * batch * 2),
                                                     max_waiting=max(512, workers * 4)))
        worker_conns = [pub] * workers if shape == "one_connection" else []
        for w in range(len(worker_conns), workers):
            nc = await _connect(url, f"bench-wq-worker{w}")
            conns.append(nc)
            worker_conns.append(nc)

        async def worker(w: int, nc: NATS) -> None:
            nonlocal t_last_ack
            psub = await nc.jetstream().pull_subscribe_bind(durable, stream=stream)
            try:
                while not stop.is_set():
                    try:
                        msgs = await psub.fetch(batch, timeout=0.5)
                    except nats.errors.TimeoutError:
                        continue
                    for m in msgs:
                        await m.ack()
                        seq = m.metadata.sequence.stream
                        if seq in seen:
                            run.redelivered += 1
                        else:
                            seen.add(seq)
                    run.per_worker[w] += len(msgs)
                    if len(seen) >= n and not all_acked.is_set():
                        await nc.flush()  # the acks have reached the server
                        t_last_ack = time.perf_counter()
                        all_acked.set()
            finally:
                with contextlib.suppress(Exception):
                    await psub.unsubscribe()

        for w, nc in enumerate(worker_conns):
            tasks.append(asyncio.create_task(worker(w, nc), name=f"bench-wq-worker{w}"))
        await asyncio.sleep(0)

        payload = _payload(payload_bytes)
        futures = []
        t_first_publish = time.perf_counter()
        for _ in range(n):
            futures.append(await js.publish_async(subject, payload, wait_stall=REQUEST_TIMEOUT_S))
        await asyncio.wait_for(js.publish_async_completed(), timeout=timeout_s)
        run.publish_s = time.perf_counter() - t_first_publish
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        run.published = n - len(failed)
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} publishes failed: {failed[0].exception()!r}")
        # wait for the last ack, or for a worker to die (which would otherwise hang here)
        acked_wait = asyncio.create_task(all_acked.wait())
        try:
            await asyncio.wait([acked_wait, *tasks], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            acked_wait.cancel()
        if not all_acked.is_set():
            broken = [t for t in tasks if t.done()]
            cause = broken[0].exception() if broken and not broken[0].cancelled() else None
            raise RuntimeError(f"work queue: {len(seen)} of {n} acked "
                               f"({'worker failed: ' + repr(cause) if cause else 'timed out'})")
        run.elapsed_s = t_last_ack - t_first_publish
        run.acked = len(seen)
        # the work queue deletes acked messages; give the server a moment to apply the last acks
        for _ in range(50):
            info = await js.stream_info(stream)
            run.remaining = info.state.messages
            if run.remaining == 0:
                break
            await asyncio.sleep(0.02)
        return run
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await _close_all(conns)
