"""One live instance per agent id, across every process and machine on the bus.

An agent claims its id in KV `pas_claims` (key: agent id; value: who holds it) right after its
micro service is registered and before it serves anything or beats. `create` is atomic, so of two
processes starting the same id at once exactly one wins. A claim left behind by a process that
died is taken over by compare-and-set on its revision, once the holder's own micro instance no
longer answers `$SRV.PING.<id>.<instance>`: the server drops a closed connection's subscriptions
at once, so the ping of a dead holder fails at once with "no responders". A holder that is
subscribed but silent (hung, or cut off) is treated as alive: refusing is the safe side.
A holder cut off from the bus for a moment can lose its claim that way (a newcomer sees no
responders); after every reconnect the Stack checks its claims and stops the agents it lost.

Why not the heartbeat KV: a beat stays fresh for up to interval x missed_beats after a crash, so a
restart would be refused, and two processes starting together would both see no beat.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from pas.base.errors import Conflict
from pas.protocol import subjects as S
from pas.protocol import wire

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.kv import KeyValue

    from pas.transport.bus import Bus

PING_TIMEOUT_S = 2.0


class Claim(wire.Struct):
    agent: str
    instance: str
    """The micro service instance id of the holder."""
    host: str
    pid: int
    since: str
    cmd: str = ""


def my_claim(agent_id: str, instance: str) -> Claim:
    return Claim(agent=agent_id, instance=instance, host=socket.gethostname(), pid=os.getpid(),
                 since=wire.now().isoformat(), cmd=" ".join(["pas", *sys.argv[1:]])[:200])


def describe(c: Claim) -> str:
    return f"pid {c.pid} on {c.host} since {c.since[:19]} ({c.cmd})"


async def holder_alive(nc: Client, c: Claim) -> bool:
    try:
        await nc.request(S.srv_ping(c.agent, c.instance), b"", timeout=PING_TIMEOUT_S)
    except NoRespondersError:
        return False
    except NatsTimeout:
        return True  # subscribed but silent: not proof of death
    return True


async def _current(kv: KeyValue, agent_id: str) -> tuple[Claim, int] | None:
    try:
        e = await kv.get(agent_id)
    except KeyNotFoundError:
        return None
    if not e.value:
        return None
    return wire.decode(e.value, Claim), e.revision or 0


async def holder(bus: Bus, agent_id: str) -> Claim | None:
    cur = await _current(bus.kv[S.KV_CLAIMS], agent_id)
    return cur[0] if cur else None


async def live_claims(bus: Bus, ids: Iterable[str]) -> list[Claim]:
    """Claims of these ids whose holder still answers (checked concurrently)."""
    kv = bus.kv[S.KV_CLAIMS]

    async def one(agent_id: str) -> Claim | None:
        cur = await _current(kv, agent_id)
        return cur[0] if cur and await holder_alive(bus.nc, cur[0]) else None

    return [c for c in await asyncio.gather(*(one(i) for i in ids)) if c is not None]


def refusal(claims: list[Claim]) -> Conflict:
    by_holder: dict[str, list[str]] = {}
    for c in claims:
        by_holder.setdefault(describe(c), []).append(c.agent)
    text = "; ".join(f"{', '.join(sorted(ids))} in {who}" for who, ids in by_holder.items())
    return Conflict(f"agent(s) already running on the bus: {text}. Stop them first, or start other ids "
                    f"with --only/--except", detail={"agents": sorted(c.agent for c in claims)})


async def claim(bus: Bus, mine: Claim) -> int:
    """Claim mine.agent for this instance; Conflict if a live instance holds it. Returns the revision."""
    kv = bus.kv[S.KV_CLAIMS]
    data = wire.encode(mine)
    for _ in range(3):
        rev = await bus.kv_create(S.KV_CLAIMS, mine.agent, data)
        if rev is not None:
            return rev
        cur = await _current(kv, mine.agent)
        if cur is None:
            continue  # released meanwhile: try to create again
        held, rev = cur
        if await holder_alive(bus.nc, held):
            raise refusal([held])
        try:
            return await bus.kv_update(S.KV_CLAIMS, mine.agent, data, rev)
        except KeyWrongLastSequenceError:
            continue  # someone else took it over first: look again
    cur = await _current(kv, mine.agent)
    raise refusal([cur[0]] if cur else [mine])


async def release(bus: Bus, agent_id: str, revision: int) -> None:
    """Drop our claim (only if it is still ours)."""
    try:
        await bus.kv_delete(S.KV_CLAIMS, agent_id, last=revision)
    except Exception:
        pass
