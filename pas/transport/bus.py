"""The bus: one NATS connection per process, JetStream provisioning, KV helpers.

provision() is idempotent: it creates or updates every stream, consumer and KV bucket that
pas.protocol.subjects names, so any process (pas up, pas http, a test) can call it at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionReconnectingError, NoRespondersError, OutboundBufferLimitError, StaleConnectionError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StoreCompression,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import (
    APIError,
    BadRequestError,
    InvalidKeyError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport import tracing
from pas.transport.connection import CREDS_HINT as CREDS_HINT
from pas.transport.connection import AuthRefused as AuthRefused
from pas.transport.connection import connect as connect
from pas.transport.connection import split_servers as split_servers
from pas.transport.natscompat import unique_name
from pas.transport.streams import ReadOptions, read_raw

if TYPE_CHECKING:
    from pas.config.model import PasConfig  # pydantic stays out of the client commands (pas.config.doc)

log = logging.getLogger("pas.bus")
T = TypeVar("T")

# What a JetStream write meets while a cluster elects a leader or the client moves to another node.
TRANSIENT: tuple[type[BaseException], ...] = (
    NoRespondersError, NoStreamResponseError, NatsTimeoutError, asyncio.TimeoutError,
    ConnectionReconnectingError, StaleConnectionError, OutboundBufferLimitError,
)
ATTEMPT_TIMEOUT_S = 2.0  # first attempt's bound; later ones wait 4 s (a request lost in a failover
# is not answered at all: a long wait on it would outlast the election it is waiting for)
CONFIRM_TIMEOUT_S = 5.0  # publish_js_nowait: resend if no ack by then (longer: a busy loop is not a failover)


def transient(e: BaseException) -> bool:
    if isinstance(e, TRANSIENT):
        return True
    # 503: "JetStream system temporarily unavailable", no stream/consumer leader yet (a pull's 503
    # status comes without a code).
    return isinstance(e, ServiceUnavailableError) or (isinstance(e, APIError) and getattr(e, "code", None) == 503)


async def retry_js(what: str, op: Callable[[], Awaitable[T]], deadline_s: float = 60.0) -> T:
    """Run a JetStream write, retrying transient unavailability with bounded exponential backoff.

    The one retry policy of PAS: every publish to a stream, KV write (Bus.kv_put, kv_create, kv_update,
    kv_delete; the one exception is Bus.kv_put_nowait) and ack goes through here, so a
    leader election or a failover to another node delays a handler by seconds instead of failing it
    (and a finished task is never redone because its completion could not be stored). Each attempt
    is bounded; each failed attempt is logged (WARNING, with what and which attempt). Past deadline_s
    the last error is raised. Writes retried here must be idempotent: publishes carry a message id,
    KV puts write the same value, CAS updates report a lost race (the caller reads again)."""
    start = time.monotonic()
    attempt, delay = 1, 0.05  # then 0.1, 0.2, 0.4, 0.5, 0.5, ...
    while True:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S * min(attempt, 2)):  # no task per call, unlike wait_for
                return await op()
        except Exception as e:
            if not transient(e):
                raise
            spent = time.monotonic() - start
            if spent + delay > deadline_s:
                log.error("%s: JetStream still unavailable after %d attempts in %.1fs (%s): giving up",
                          what, attempt, spent, type(e).__name__)
                raise
            log.warning("%s: JetStream unavailable (%s: %s), attempt %d failed; retrying in %.2fs",
                        what, type(e).__name__, str(e)[:120], attempt, delay)
        await asyncio.sleep(delay)
        attempt += 1
        delay = min(delay * 2, 0.5)


def _bytes(obj: Any) -> bytes:
    """A KV value: bytes as they are, anything else encoded as wire JSON."""
    return obj if isinstance(obj, bytes) else wire.encode(obj)


def _stream_configs(cfg: PasConfig) -> list[StreamConfig]:
    s = cfg.settings

    def stream(name: str, description: str, subjects: list[str], **kw: Any) -> StreamConfig:
        return StreamConfig(name=name, description=description, subjects=subjects, storage=StorageType.FILE,
                            num_replicas=s.nats.replicas, duplicate_window=s.work.dedupe_window_s, **kw)

    aged: dict[str, Any] = {"retention": RetentionPolicy.LIMITS, "max_age": s.comms.max_age_days * 86400}
    capped: dict[str, Any] = {**aged, "max_bytes": s.comms.max_bytes, "discard": DiscardPolicy.OLD}
    return [
        stream(S.STREAM_COMMS, "PAS comms log: one entry per message between agents (record writes sourced)",
               [S.COMMS_ALL, S.STARTED_TO_COMMS[0]], sources=kv_sources(S.COMMS_RECORD_SOURCES),
               subject_transform=SubjectTransform(src=S.STARTED_TO_COMMS[0], dest=S.STARTED_TO_COMMS[1]), **capped),
        stream(S.STREAM_WORK, "PAS work queues between tiers (one consumer per tier/lane)", [S.WORK_ALL],
               retention=RetentionPolicy.WORK_QUEUE),
        stream(S.STREAM_EVENTS, "PAS run records as events (sourced from KV), agent commands and alerts",
               [*S.EVENTS_COMMANDS, S.ALERT_ALL],
               sources=kv_sources({S.KV_RUNS: (S.RUNS_REPUBLISH,), S.KV_TREE: S.TREE_EVENT_SOURCES}), **aged),
        stream(S.STREAM_RECORDINGS,
               "PAS model exchanges: request, reply, model, tokens, cost, latency (pas.llm.recording)",
               [S.RECORDINGS_ALL], **capped, compression=StoreCompression.S2, allow_direct=True),
    ]


def kv_sources(transforms: dict[str, tuple[tuple[str, str], ...]]) -> list[StreamSource]:
    """A stream's copy of every run record write (pas_runs, and pas_tree's plan, lanes, jobs, tasks), each
    bucket's under its (src, dest) subject transforms: PAS_EVENTS' as pas.run.<run>.<rest>, PAS_COMMS' as
    pas.comms.<run>.record.<rest>. Written once by PAS (the record), fanned out by the server, as durable
    as the record (a source resumes from its last sequence after a node loss or a restart)."""
    return [StreamSource(name=S.kv_stream(bucket), subject_transforms=[SubjectTransform(src=a, dest=b) for a, b in pairs])
            for bucket, pairs in transforms.items()]


def consumer_specs(cfg: PasConfig) -> list[tuple[str, ConsumerConfig]]:
    """(stream, config) of every durable consumer."""
    w, p = cfg.settings.work, cfg.settings.pool

    def c(name: str, subject: str, ack_wait: float, max_deliver: int = -1) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=name,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=10000,
            max_waiting=512,
        )

    out: list[tuple[str, ConsumerConfig]] = [
        (S.STREAM_WORK, c(S.CONSUMER_ARCHITECT, S.WORK_ARCHITECT, w.ack_wait_s)),
        # No max_deliver on the pool: the programmer itself fails a task past pool.max_deliver
        # attempts, so a task is never silently dropped by JetStream and its run always ends.
        *[(S.STREAM_WORK, c(S.consumer_prog(b), S.work_prog(b), p.ack_wait_s)) for b in wire.PRIORITIES],
        (S.STREAM_WORK, c(S.CONSUMER_APPROVAL, S.WORK_APPROVAL, w.ack_wait_s)),
        (S.STREAM_EVENTS, c(S.CONSUMER_ROOT_DONE, S.DONE_PLAN_FILTER, w.ack_wait_s)),
    ]
    for lane in S.LANES:
        out.append((S.STREAM_WORK, c(S.consumer_dir(lane), S.work_dir(lane), w.ack_wait_s)))
        out.append((S.STREAM_WORK, c(S.consumer_mgr(lane), S.work_mgr(lane), w.ack_wait_s)))
        out.append((S.STREAM_EVENTS, c(S.consumer_mgr_release(lane), S.RELEASE_FILTER.format(lane=lane),
                                       w.ack_wait_s)))
    return out


def kv_specs(cfg: PasConfig) -> list[KeyValueConfig]:
    reps = cfg.settings.nats.replicas
    # Direct gets (no JetStream API round through the leader's API handler) on a single server. With
    # replicas every replica answers them, a lagging one with an older value: a redelivered task could
    # miss its own result and run again. Clusters read from the leader.
    direct = reps == 1

    def kv(bucket: str, description: str, *, history: int = 1, ttl: float | None = None,
           republish: tuple[str, str] | None = None) -> KeyValueConfig:
        return KeyValueConfig(bucket=bucket, description=description, history=history, ttl=ttl, direct=direct,
                              storage=StorageType.FILE, replicas=reps,
                              republish=RePublish(src=republish[0], dest=republish[1]) if republish else None)

    # The run records' buckets republish every write as its live event (core NATS, for watchers:
    # pas.protocol.subjects, "run events"); PAS_EVENTS sources the same writes durably.
    return [
        kv(S.KV_AGENTS, "agent id -> last heartbeat and alive/dead state"),
        # history 8: PAS_EVENTS sources every revision of these buckets; with one revision per key a write
        # replaced at once (a run's "queued" by its "running") could be gone before the source copied it
        kv(S.KV_RUNS, "run id -> run record", history=8, republish=S.RUNS_REPUBLISH),
        kv(S.KV_TREE, "<run>.plan/.lane.<l>/.job.<j>/.task.<t> -> per-node records", history=8,
           republish=S.TREE_REPUBLISH),
        kv(S.KV_IDEMPOTENCY, "hash of an idempotency key -> run id (dedupe window)",
           ttl=cfg.settings.work.dedupe_window_s),
        kv(S.KV_MODELS, "agent id -> live model override", history=5),
        kv(S.KV_BREAKERS, "<agent_id>.<model profile> -> that agent's circuit-breaker state"),
        kv(S.KV_CLAIMS, "agent id -> the one live instance that holds it"),
    ]


async def provision(js: JetStreamContext, cfg: PasConfig) -> None:
    retry_s = cfg.settings.nats.js_retry_s

    async def ensure_stream(sc: StreamConfig) -> None:
        try:
            await js.add_stream(sc)
        except BadRequestError:
            await js.update_stream(sc)

    async def ensure_kv(kc: KeyValueConfig) -> None:
        try:
            await js.create_key_value(kc)
        except BadRequestError:  # exists with other settings: keep it (its data is what matters), but
            si = await js.stream_info(S.kv_stream(kc.bucket))  # read it with direct gets and republish
            old = si.config  # its writes (a store from before they were turned on)
            if (kc.direct and not old.allow_direct) or (kc.republish and old.republish != kc.republish):
                old.allow_direct = bool(old.allow_direct or kc.direct)
                old.republish = kc.republish or old.republish
                await js.update_stream(old)

    async def ensure_consumer(stream: str, cc: ConsumerConfig) -> None:
        try:
            await js.add_consumer(stream, cc)
        except BadRequestError:
            pass

    # On a cluster another process may be creating the same assets, or a leader may be moving: a
    # "not found" for an asset being created is retried like unavailability.
    async def step(what: str, op: Callable[[], Awaitable[None]]) -> None:
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return await retry_js(what, op, retry_s)
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise
                log.warning("provision %s: not found while the cluster settles; retrying", what)
                await asyncio.sleep(0.2)

    for kc in kv_specs(cfg):  # first: PAS_EVENTS sources two of them
        await step(f"kv {kc.bucket}", lambda kc=kc: ensure_kv(kc))  # type: ignore[misc]
    for sc in _stream_configs(cfg):
        await step(f"stream {sc.name}", lambda sc=sc: ensure_stream(sc))  # type: ignore[misc]
    for stream, cc in consumer_specs(cfg):
        await step(f"consumer {cc.durable_name}", lambda s=stream, c=cc: ensure_consumer(s, c))  # type: ignore[misc]
    await sources_active(js, [sc.name for sc in _stream_configs(cfg) if sc.sources and sc.name], retry_s)


async def sources_active(js: JetStreamContext, streams: list[str], within_s: float) -> None:
    """Wait until the server has set up every source of these streams. A new stream's sources start
    ~0.1-0.5 s after it is created (active -1 until then): record writes made before that reach PAS_COMMS
    and PAS_EVENTS late, in one batch stamped with one time, so a run's first entries would show out of
    order and a reader right after a fast run would miss them. Once set up, a sourced copy lags its record
    by ~0.2 ms. Bounded: a source still down after within_s is logged, and startup goes on (its writes are
    copied when it comes up: a source resumes from its last sequence)."""
    deadline = time.monotonic() + within_s
    for name in streams:
        while True:
            try:
                waiting = [s.name for s in (await js.stream_info(name)).sources or []
                           if s.active is None or s.active < 0]
            except Exception as e:  # unavailability while a cluster settles: try again
                if not transient(e) and not isinstance(e, NotFoundError):
                    raise
                waiting = ["?"]
            if not waiting:
                break
            if time.monotonic() > deadline:
                log.warning("stream %s: source(s) %s not set up after %.0fs; their record writes will be copied "
                            "when they are", name, ", ".join(waiting), within_s)
                break
            await asyncio.sleep(0.02)


@dataclass
class Bus:
    """One connection and its JetStream: KV handles, the retry policy's primitives, publishing. What a
    process remembers of the run records is the run store's (pas.runtime.store), not the bus's."""

    nc: Client
    js: JetStreamContext
    cfg: PasConfig
    kv: dict[str, KeyValue] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    async def open(cls, url: str, cfg: PasConfig, name: str = "pas", do_provision: bool = True,
                   **kw: Any) -> Bus:
        nc = await connect(url, name=name, connect_timeout_s=cfg.settings.nats.connect_timeout_s,
                           ping_interval_s=cfg.settings.nats.ping_interval_s, **kw)
        js = nc.jetstream(timeout=10)
        if do_provision:
            await provision(js, cfg)
        bus = cls(nc=nc, js=js, cfg=cfg)
        for kc in kv_specs(cfg):
            bus.kv[kc.bucket] = await js.key_value(kc.bucket)
        return bus

    def spawn(self, coro: Awaitable[Any], name: str | None = None) -> asyncio.Task[Any]:
        """create_task that keeps a reference until the task ends (nats-py/asyncio gotcha)."""
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._done)
        return t

    def _done(self, t: asyncio.Task[Any]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("background task failed", exc_info=t.exception())

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=5)
            for t in pending:
                log.warning("task %r ignored cancellation at close", t)
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                await self.nc.close()

    # ---- KV helpers ------------------------------------------------------------------------
    async def kv_get(self, bucket: str, key: str, typ: type[Any]) -> tuple[Any, int] | None:
        """(value, revision), the value decoded as typ (bytes: as stored), or None if there is none."""
        try:
            e = await self.retry(f"get {bucket}/{key}", lambda: self.kv[bucket].get(key))
        except (KeyNotFoundError, InvalidKeyError):
            return None  # an id that cannot be a key names nothing
        if e.value is None:
            return None
        return (e.value if typ is bytes else wire.decode(e.value, typ)), e.revision or 0

    async def retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        return await retry_js(what, op, self.cfg.settings.nats.js_retry_s)

    async def _kv_write(self, bucket: str, key: str, data: bytes, last: int | None = None) -> int:
        """Put (last None) or compare-and-set at revision `last` (0: the key must not exist). Traced,
        the write carries the span's traceparent, so the event the server derives from it (PAS_EVENTS
        sources the buckets) stays in the run's trace: then it is published to the key's subject."""
        headers = tracing.inject(None)
        kv = self.kv[bucket]
        if headers is None:
            return await (kv.put(key, data) if last is None else kv.update(key, data, last=last))
        if last is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(last)
        try:
            ack = await self.js.publish(S.kv_subject(bucket, key), data, headers=headers)
        except APIError as e:
            if e.err_code in (10071, 10164):  # wrong last sequence: what nats-py's KeyValue raises
                raise KeyWrongLastSequenceError(description=e.description) from e
            raise
        return ack.seq

    async def _kv_create(self, bucket: str, key: str, data: bytes) -> int:
        try:
            return await self._kv_write(bucket, key, data, last=0)
        except KeyWrongLastSequenceError:
            # the key exists, or was deleted: nats-py's create re-creates a deleted key (untraced)
            return await self.kv[bucket].create(key, data)

    async def kv_put(self, bucket: str, key: str, obj: Any) -> int:
        data = _bytes(obj)
        return await self.retry(f"put {bucket}/{key}", lambda: self._kv_write(bucket, key, data))

    async def kv_create(self, bucket: str, key: str, obj: Any) -> int | None:
        """Create-if-absent: the revision, or None when the key holds something else. A key that
        holds exactly this value counts as created: an earlier attempt of this very write, stored,
        whose ack was lost in a failover (retried, the create finds it there)."""
        data = _bytes(obj)
        try:
            return await self.retry(f"create {bucket}/{key}", lambda: self._kv_create(bucket, key, data))
        except KeyWrongLastSequenceError:
            pass
        try:
            e = await self.retry(f"get {bucket}/{key}", lambda: self.kv[bucket].get(key))
        except KeyNotFoundError:
            return None
        return (e.revision or None) if e.value == data else None

    async def kv_delete(self, bucket: str, key: str, last: int | None = None) -> None:
        """Delete (only at revision `last` when given: KeyWrongLastSequenceError otherwise)."""
        await self.retry(f"delete {bucket}/{key}", lambda: self.kv[bucket].delete(key, last=last))

    async def kv_update(self, bucket: str, key: str, data: bytes, last: int) -> int:
        """Compare-and-set. Raises KeyWrongLastSequenceError on a lost race, also when an earlier
        attempt of this very write was stored but its ack was lost: the caller reads again."""
        return await self.retry(f"update {bucket}/{key}", lambda: self._kv_write(bucket, key, data, last))

    async def ack(self, m: Msg) -> None:
        """Acknowledge; retried while the connection is moving to another node. Not confirmed (a
        confirmed ack costs a round trip and ~25 % more CPU per task): an ack the cluster drops
        during an election means one redelivery after the ack deadline, which every handler treats
        as a replay (a finished task is re-announced under the same message id, never re-run)."""
        await self.retry(f"ack {m.subject}", m.ack)

    async def kv_put_nowait(self, bucket: str, key: str, obj: Any, last: int | None = None) -> None:
        """A KV write without waiting for the store's ack: for progress states that a later,
        acknowledged write supersedes (a task's "running"). The write that supersedes it may come over
        another connection (another agent's: one NATS user each), which NATS does not order after this
        one: given `last`, the server stores it only while the key is still at that revision, so a
        progress state that arrives after its result is dropped, not written over it.
        The one KV write outside retry_js, on purpose: a retried progress state could land after
        the write that supersedes it; a lost one is harmless."""
        headers = tracing.inject({"Nats-Expected-Last-Subject-Sequence": str(last)} if last else None)
        await self.nc.publish(S.kv_subject(bucket, key), wire.encode(obj), headers=headers)

    async def kv_values(self, bucket: str, pattern: str, typ: type[Any]) -> list[Any]:
        """Latest value of every key matching pattern (a subject-style filter).

        Reads exactly the pending count of a last-per-subject consumer (pas.transport.streams.read_raw), which
        is then deleted (nats-py's KV watch can report "done" before values arrive under load, and
        leaves its consumer behind). Retried as a whole through an election."""
        return [v for _, v in await self.kv_items(bucket, pattern, typ)]

    async def kv_items(self, bucket: str, pattern: str, typ: type[Any]) -> list[tuple[str, Any]]:
        """(key, latest value) of every key matching pattern, as kv_values reads them: for records whose key
        says who wrote them (the grant is on the key, not on what the body claims)."""
        return await self.retry(f"read {bucket}/{pattern}", lambda: self._kv_items(bucket, pattern, typ))

    async def _kv_items(self, bucket: str, pattern: str, typ: type[Any]) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        prefix = len(S.kv_subject(bucket, ""))
        try:
            async for m in read_raw(self.js, S.kv_stream(bucket), S.kv_subject(bucket, pattern),
                                    ReadOptions(last_per_subject=True, batch=256, inactive_s=10.0, complete=True)):
                op = (m.headers or {}).get("KV-Operation")
                if op in ("DEL", "PURGE") or not m.data:
                    continue
                try:
                    out.append((m.subject[prefix:], wire.decode(m.data, typ)))
                except msgspec.MsgspecError as e:  # written by someone else than PAS: never fails the view
                    log.warning("%s: skipped %s: not a valid %s (%s)", bucket, m.subject, typ.__name__, e)
        except NotFoundError:
            return out
        return out

    async def publish_js(self, subject: str, obj: Any, msg_id: str | None = None) -> None:
        """Store obj in its stream and wait for the ack (retried: msg_id makes a retry a no-op)."""
        headers = tracing.inject({"Nats-Msg-Id": msg_id} if msg_id else None)
        data = wire.encode(obj)
        await self.retry(f"publish {subject}", lambda: self.js.publish(subject, data, headers=headers))

    async def publish_js_nowait(self, subject: str, data: bytes) -> None:
        """Store data in its stream without waiting on the hot path: the ack is checked in the
        background and, if it does not come (an election, a failover), the publish is retried with
        the same message id. For the comms log: every entry is kept, in order unless retried."""
        msg_id = unique_name()
        headers = tracing.inject({"Nats-Msg-Id": msg_id}) or {}
        try:
            # No wait_stall: a bounded wait would yield (and flush the socket) on every entry.
            fut = await self.js.publish_async(subject, data, headers=dict(headers))
        except Exception as e:
            log.warning("publish %s: not sent (%r); retrying", subject, e)
            self.spawn(self.retry(f"publish {subject}", lambda: self.js.publish(subject, data, headers=headers)))
            return

        def resend() -> None:
            self.spawn(self.retry(f"publish {subject}", lambda: self.js.publish(subject, data, headers=headers)))

        def on_timeout() -> None:
            if not fut.done():
                fut.cancel()  # frees its slot; the retry below carries the same message id
                log.warning("publish %s: no ack within %.0fs; retrying", subject, CONFIRM_TIMEOUT_S)
                resend()

        timer = asyncio.get_running_loop().call_later(CONFIRM_TIMEOUT_S, on_timeout)

        def on_done(f: asyncio.Future[Any]) -> None:
            timer.cancel()
            if not f.cancelled() and f.exception() is not None:
                log.warning("publish %s: %r; retrying", subject, f.exception())
                resend()

        fut.add_done_callback(on_done)

    async def publish(self, subject: str, obj: Any) -> None:
        await self.nc.publish(subject, wire.encode(obj), headers=tracing.inject(None))
