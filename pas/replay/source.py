"""Read a stream's messages on a filter subject, oldest first, with their stream sequence and store time
(one run's events for `pas replay`; the comms log for `pas log`, pas.comms.read).

An ephemeral pull consumer with no acks (no deliveries until asked, so its pending count is exact),
pulled in batches on a plain callback subscription (nats-py's fetch() costs a task and a timer per
message); without `follow` it stops after the messages that existed when it started, with `follow`
it tails until `stop` is set.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pas import subjects as S


@dataclass
class Raw:
    stream: str
    seq: int
    subject: str
    data: bytes
    stored: datetime  # when the server stored it
    headers: dict[str, str] | None = None


def _meta(reply: str) -> tuple[int, datetime]:
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream_seq>.<consumer_seq>.<ts_ns>.<pending>
    parts = reply.split(".")
    # (v2 adds <domain>.<account hash> after ACK and a random token at the end)
    if parts[:2] == ["$JS", "ACK"] and len(parts) in (9, 12):
        i = 5 if len(parts) == 9 else 7
        return int(parts[i]), datetime.fromtimestamp(int(parts[i + 2]) / 1e9, tz=timezone.utc)
    return 0, datetime.now(timezone.utc)


async def read_raw(js: JetStreamContext, stream: str, subject: str, *, follow: bool = False,
                   since: datetime | None = None, stop: asyncio.Event | None = None, idle_timeout_s: float = 0.5,
                   batch: int = 1000) -> AsyncIterator[Raw]:
    nc = js._nc  # noqa: SLF001 - the connection under this JetStream context
    name = nc._nuid.next().decode()  # noqa: SLF001
    cc = ConsumerConfig(name=name, deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.ALL,
                        opt_start_time=since.isoformat() if since else None,  # type: ignore[arg-type]
                        filter_subject=subject, inactive_threshold=30.0, ack_policy=AckPolicy.NONE,
                        mem_storage=True, num_replicas=1)
    info = await js.add_consumer(stream, cc)
    remaining = info.num_pending
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def on_msg(m: Any) -> None:
        queue.put_nowait(m)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_msg)
    nxt = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
    expires_s = 1.0 if follow else max(idle_timeout_s, 2.0)
    try:
        while (follow and not (stop and stop.is_set())) or remaining > 0:
            want = batch if follow else min(batch, remaining)
            await nc.publish(nxt, json.dumps({"batch": want, "expires": int(expires_s * 1e9)}).encode(), reply=inbox)
            got = 0
            while got < want:
                try:
                    m = queue.get_nowait() if not queue.empty() else await asyncio.wait_for(queue.get(), expires_s + 2)
                except asyncio.TimeoutError:
                    break
                if not m.data and m.headers and m.headers.get("Status"):
                    break  # 404 / 408: nothing more for now
                got += 1
                remaining -= 1
                seq, stored = _meta(m.reply or "")
                yield Raw(stream, seq, m.subject, m.data, stored, m.headers)
            if not follow and got == 0:
                return
    finally:
        try:
            await sub.unsubscribe()
            await js.delete_consumer(stream, name)
        except Exception:  # noqa: BLE001 - it expires by itself
            pass


def events_subject(run_id: str) -> str:
    return f"{S.PREFIX}.run.{S.token(run_id)}.>"


def comms_subject(run_id: str) -> str:
    return f"{S.PREFIX}.comms.{S.token(run_id)}.>"
