"""The bus: one NATS connection per process, its JetStream, KV helpers and publishing, every write through
the one retry policy (pas.transport.retry). What PAS creates on the server is pas.transport.provision's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    InvalidKeyError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
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
from pas.transport.provision import kv_specs, provision
from pas.transport.retry import retry_js
from pas.transport.streams import ReadOptions, read_raw

if TYPE_CHECKING:
    from pas.config.model import PasConfig  # pydantic stays out of the client commands (pas.config.doc)

log = logging.getLogger("pas.bus")
T = TypeVar("T")

CONFIRM_TIMEOUT_S = 5.0  # publish_js_nowait: resend if no ack by then (longer: a busy loop is not a failover)


def _bytes(obj: Any) -> bytes:
    """A KV value: bytes as they are, anything else encoded as wire JSON."""
    return obj if isinstance(obj, bytes) else wire.encode(obj)


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
