"""The one way PAS reads a stream: an ephemeral pull consumer on a filter subject, oldest first, each
message with its stream sequence and store time.

Used for one run's events (`pas replay`), the comms log (`pas log`, pas.comms.read, the HTTP comms
tail) and KV listings (Bus.kv_values). The consumer has no acks (no deliveries until asked, so its
pending count is exact) and is pulled in batches (pas.transport.pull.Puller; nats-py's fetch()
costs a task and a timer per message); without `follow` it stops after the messages that existed when
it started, with `follow` it tails until `stop` is set. It is deleted when done, and expires by itself
(inactive threshold) if the reader dies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pas.protocol import subjects as S
from pas.transport.natscompat import connection_of, unique_name
from pas.transport.pull import Puller, Status


@dataclass
class Raw:
    stream: str
    seq: int
    subject: str
    data: bytes
    stored: datetime  # when the server stored it
    headers: dict[str, str] | None = None


def _meta(reply: str) -> tuple[int, datetime]:
    got = S.parse_js_ack(reply)
    if got is None:
        return 0, datetime.now(UTC)
    seq, ts_ns = got  # floored to the microsecond, exactly (a float would round some up)
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return seq, datetime.fromtimestamp(secs, tz=UTC) + timedelta(microseconds=ns // 1000)


def _deliver(since: datetime | None, start_seq: int | None, last_per_subject: bool) -> dict[str, Any]:
    if last_per_subject:
        return {"deliver_policy": DeliverPolicy.LAST_PER_SUBJECT}
    if start_seq is not None:
        return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start_seq}
    if since is not None:
        return {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": since.isoformat()}
    return {"deliver_policy": DeliverPolicy.ALL}


@dataclass(frozen=True)
class ReadOptions:
    """How to read a stream: where to start (all, `since` a time, from `start_seq`, or the last message
    per subject), whether to tail it (`follow` until `stop` is set), the pull batch, how long an idle
    consumer lives (`inactive_s`), and whether a short read is an error (`complete`, without follow)."""

    follow: bool = False
    since: datetime | None = None
    start_seq: int | None = None
    last_per_subject: bool = False
    stop: asyncio.Event | None = None
    idle_timeout_s: float = 0.5
    batch: int = 1000
    inactive_s: float = 30.0
    complete: bool = False


ALL = ReadOptions()


class IncompleteRead(asyncio.TimeoutError):
    """A read that had to see every message ended short (a pull answered with a status while a
    cluster node restarts or a leader moves): a timeout, so pas.transport.retry.retry_js tries it again."""


async def read_raw(js: JetStreamContext, stream: str, subject: str | tuple[str, ...],
                   how: ReadOptions = ALL) -> AsyncIterator[Raw]:
    """The messages of `stream` on `subject` (or on any of several): all of them, those stored since a
    time or from a sequence on, or the last one per subject (a KV bucket's current values).
    `how.complete` (without follow): every message pending when the read began, or IncompleteRead,
    never a silent part."""
    follow, stop, batch, complete = how.follow, how.stop, how.batch, how.complete
    name = unique_name()
    filters: dict[str, Any] = ({"filter_subject": subject} if isinstance(subject, str) else
                               {"filter_subjects": list(subject)})
    cc = ConsumerConfig(name=name, **filters, inactive_threshold=how.inactive_s,
                        ack_policy=AckPolicy.NONE, mem_storage=True, num_replicas=1,
                        **_deliver(how.since, how.start_seq, how.last_per_subject))
    info = await js.add_consumer(stream, cc)
    remaining = info.num_pending or 0
    if not follow and remaining == 0:
        await _delete(js, stream, name)
        return
    expires_s = 1.0 if follow else max(how.idle_timeout_s, 2.0)
    try:
        async with Puller(connection_of(js), stream, name) as pull:
            while (follow and not (stop and stop.is_set())) or remaining > 0:
                want = batch if follow else min(batch, remaining)
                await pull.request(want, expires_s=expires_s)
                got = 0
                while got < want:
                    try:
                        m = await pull.next(expires_s + 2)
                    except TimeoutError:
                        break
                    if isinstance(m, Status):
                        break  # 404 / 408: nothing more for now
                    got += 1
                    remaining -= 1
                    seq, stored = _meta(m.reply or "")
                    yield Raw(stream, seq, m.subject, m.data, stored, m.headers)
                if not follow and got == 0:
                    if complete and remaining > 0:
                        raise IncompleteRead(f"read of {stream} {subject} ended {remaining} message(s) short")
                    return
    finally:
        await _delete(js, stream, name)


async def _delete(js: JetStreamContext, stream: str, name: str) -> None:
    try:
        await js.delete_consumer(stream, name)
    except Exception:
        pass
