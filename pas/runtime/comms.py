"""The comms log: one JetStream entry per message between agents, in stream PAS_COMMS.

Subject: pas.comms.<run_id>.<from_agent>.<msg_type>, so `nats stream view PAS_COMMS` or
`nats sub 'pas.comms.<run>.>'` selects one run, and 'pas.comms.*.<agent>.>' one sender.
The call shape is the one the original design insisted on: log(from, to, type, message, run, status).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from pas.base.redact import redact, redact_obj
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.streams import ALL, ReadOptions, read_raw

if TYPE_CHECKING:
    from pas.transport.bus import Bus

log = logging.getLogger("pas.comms")


def check(subject: str, e: wire.CommsEntry) -> None:
    """An entry says who sent it where NATS checked it (the subject: each agent may publish only its own
    pas.comms.*.<agent_id>.*) and again in its body: they must agree. ValueError if not."""
    if S.comms(e.run_id, e.from_agent, e.msg_type) != subject:
        raise ValueError(f"its body (from {e.from_agent!r}, run {e.run_id!r}, {e.msg_type}) does not match "
                         f"its subject")


@dataclass(frozen=True)
class Entry:
    """One comms log entry as an agent says it: who to whom, which kind (CMD, RESPONSE, STATUS, LLM,
    ERROR), the text, the run and status it is about, and for a model call its model and spend."""

    from_agent: str
    to_agent: str
    msg_type: str
    message: str
    run_id: str | None = None
    status: str = ""
    llm_model: str | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    metadata: dict[str, Any] | None = None


class CommsLog:
    """With a Bus, every entry is stored for sure (its ack is checked in the background and the
    publish retried through an election or failover); with a bare connection, a plain publish."""

    def __init__(self, nc: Client, preview_chars: int = 2000, bus: Bus | None = None) -> None:
        self.nc = nc
        self.preview_chars = preview_chars
        self.bus = bus

    async def log(self, e: Entry) -> None:
        """Store one entry: stamped, redacted, its message cut to preview_chars."""
        message = redact(e.message)
        if len(message) > self.preview_chars:
            message = message[: self.preview_chars] + f"... [{len(message)} chars]"
        entry = wire.CommsEntry(
            ts=wire.now(),
            from_agent=e.from_agent,
            to_agent=e.to_agent,
            msg_type=e.msg_type,
            message=message,
            run_id=e.run_id,
            status=e.status,
            llm_model=e.llm_model,
            tokens=e.tokens,
            cost_usd=e.cost_usd,
            metadata=redact_obj(e.metadata) if e.metadata else {},  # type: ignore[arg-type]
        )
        # No round trip on the agent's hot path either way.
        subject, data = S.comms(e.run_id, e.from_agent, e.msg_type), wire.encode(entry)
        if self.bus is not None:
            await self.bus.publish_js_nowait(subject, data)
        else:
            await self.nc.publish(subject, data)


def filter_subject(run_id: str | None = None, agent: str | None = None, msg_type: str | None = None) -> str:
    return S.comms_filter(run_id, agent, msg_type)


async def read(
    js: JetStreamContext,
    *,
    run_id: str | None = None,
    agent: str | None = None,
    msg_type: str | None = None,
    how: ReadOptions = ALL,
) -> AsyncIterator[wire.CommsEntry]:
    """Entries in order, all of them or those from a time (`how.since`) or a stream sequence (`how.start_seq`)
    on. `agent` matches the sender or the receiver; an entry that does not decode is skipped.

    Without `how.follow`, stops after the entries that existed when it started; with it, tails until
    `how.stop` is set (pas.transport.streams.read_raw: an ephemeral pull consumer, pulled in batches).
    """
    async for _, e in read_numbered(js, run_id=run_id, agent=agent, msg_type=msg_type, how=how):
        yield e


async def read_numbered(
    js: JetStreamContext,
    *,
    run_id: str | None = None,
    agent: str | None = None,
    msg_type: str | None = None,
    how: ReadOptions = ALL,
) -> AsyncGenerator[tuple[int, wire.CommsEntry], None]:
    """read(), each entry with its PAS_COMMS sequence (the HMI fills gaps in its live log by it)."""
    async for m in read_raw(js, S.STREAM_COMMS, filter_subject(run_id, None, msg_type), how):
        try:
            e = wire.decode(m.data, wire.CommsEntry)
            check(m.subject, e)
        except Exception as err:
            log.warning("comms log: skipped entry %d (%s): not a valid CommsEntry (%s)", m.seq, m.subject, err)
            continue
        if agent and agent not in (e.from_agent, e.to_agent):
            continue
        yield m.seq, e


def format_entry(e: wire.CommsEntry) -> str:
    ts = e.ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    extra = ""
    if e.llm_model:
        cost = "unknown" if e.cost_usd is None else f"${e.cost_usd:.6f}"
        extra = f" [{e.llm_model} tok={e.tokens} cost={cost}]"
    line = f"{ts} {e.run_id or '-':<20} {e.from_agent:>12} -> {e.to_agent:<12} {e.msg_type:<8} {e.status:<10} {e.message}{extra}"
    return redact(line)  # entries written by anything but PAS were not redacted at the source
