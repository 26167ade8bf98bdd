"""What PAS creates on the server: every stream, durable consumer and KV bucket that pas.protocol.subjects
names, with their settings from the config.

provision() is idempotent: it creates or updates them all, so any process (pas up, pas http, a test) can
call it at start-up (pas.transport.bus.Bus.open does, unless told not to). subjects.md lists each of them;
tests/test_subjects_doc.py checks the list against stream_configs(), consumer_specs() and kv_specs().
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

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
from nats.js.errors import BadRequestError, NotFoundError

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.retry import retry_js, transient

if TYPE_CHECKING:
    from pas.config.model import PasConfig  # pydantic stays out of the client commands (pas.config.doc)

log = logging.getLogger("pas.bus")


def stream_configs(cfg: PasConfig) -> list[StreamConfig]:
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
    streams = stream_configs(cfg)
    for sc in streams:
        await step(f"stream {sc.name}", lambda sc=sc: ensure_stream(sc))  # type: ignore[misc]
    for stream, cc in consumer_specs(cfg):
        await step(f"consumer {cc.durable_name}", lambda s=stream, c=cc: ensure_consumer(s, c))  # type: ignore[misc]
    await sources_active(js, [sc.name for sc in streams if sc.sources and sc.name], retry_s)


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
