"""The comms log: one JetStream entry per message between agents, in stream PAS_COMMS.

Subject: pas.comms.<run_id>.<from_agent>.<msg_type>, so `nats stream view PAS_COMMS` or
`nats sub 'pas.comms.<run>.>'` selects one run, and 'pas.comms.*.<agent>.>' one sender.
The call shape is the one the original design insisted on: log(from, to, type, message, run, status).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, AsyncIterator

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pas import subjects as S
from pas import wire

MSG_TYPES = ("CMD", "STATUS", "RESPONSE", "HEARTBEAT", "ERROR", "LLM", "EVENT")


class CommsLog:
    def __init__(self, nc: Client, preview_chars: int = 2000) -> None:
        self.nc = nc
        self.preview_chars = preview_chars

    async def log(
        self,
        from_agent: str,
        to_agent: str,
        msg_type: str,
        message: str,
        run_id: str | None = None,
        status: str = "",
        *,
        llm_model: str | None = None,
        tokens: int | None = None,
        cost_usd: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if len(message) > self.preview_chars:
            message = message[: self.preview_chars] + f"... [{len(message)} chars]"
        entry = wire.CommsEntry(
            ts=wire.now(),
            from_agent=from_agent,
            to_agent=to_agent,
            msg_type=msg_type,
            message=message,
            run_id=run_id,
            status=status,
            llm_model=llm_model,
            tokens=tokens,
            cost_usd=cost_usd,
            metadata=metadata or {},
        )
        # A plain publish: the stream captures it; no round trip on the agent's hot path.
        await self.nc.publish(S.comms(run_id, from_agent, msg_type), wire.encode(entry))


def filter_subject(run_id: str | None = None, agent: str | None = None, msg_type: str | None = None) -> str:
    return "pas.comms.{}.{}.{}".format(
        S.token(run_id) if run_id else "*",
        S.token(agent) if agent else "*",
        S.token(msg_type) if msg_type else "*",
    )


async def read(
    js: JetStreamContext,
    *,
    run_id: str | None = None,
    agent: str | None = None,
    msg_type: str | None = None,
    since: datetime | None = None,
    follow: bool = False,
    idle_timeout_s: float = 0.5,
    batch: int = 500,
) -> AsyncIterator[wire.CommsEntry]:
    """Entries in order. `agent` matches the sender (subject filter) or the receiver (payload).

    Without follow, stops at the end of the stream; with follow, keeps tailing.
    """
    subj = filter_subject(run_id, None, msg_type)
    # Sender filtering by subject is exact and cheap; receiver matching needs the payload,
    # so for --agent we read the wider filter and match either side.
    cc = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.ALL,
        opt_start_time=since.isoformat() if since else None,  # type: ignore[arg-type]
        filter_subject=subj,
        inactive_threshold=30.0,
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
    )
    psub = await js.pull_subscribe(subj, durable=None, stream=S.STREAM_COMMS, config=cc)
    remaining = None
    try:
        pending = (await psub.consumer_info()).num_pending
        remaining = pending
        while True:
            if not follow and remaining is not None and remaining <= 0:
                return
            try:
                msgs = await psub.fetch(batch, timeout=idle_timeout_s if not follow else 1.0)
            except (asyncio.TimeoutError, TimeoutError):
                if follow:
                    continue
                return
            for m in msgs:
                if remaining is not None:
                    remaining -= 1
                try:
                    e = wire.decode(m.data, wire.CommsEntry)
                except Exception:  # noqa: BLE001 - a foreign message on our subject: skip it
                    continue
                if agent and agent not in (e.from_agent, e.to_agent):
                    continue
                yield e
    finally:
        try:
            await psub.unsubscribe()
        except Exception:  # noqa: BLE001
            pass


def format_entry(e: wire.CommsEntry) -> str:
    ts = e.ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    extra = ""
    if e.llm_model:
        cost = "unknown" if e.cost_usd is None else f"${e.cost_usd:.6f}"
        extra = f" [{e.llm_model} tok={e.tokens} cost={cost}]"
    return f"{ts} {e.run_id or '-':<20} {e.from_agent:>12} -> {e.to_agent:<12} {e.msg_type:<8} {e.status:<10} {e.message}{extra}"
