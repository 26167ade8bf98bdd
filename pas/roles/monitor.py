"""Heartbeat monitor: keeps each agent's last beat and state in KV pas_agents and publishes
pas.alert.agent.<id> when an agent misses `missed_beats` beats, and again when it recovers.

On a cluster it also watches the sources of PAS_EVENTS and PAS_COMMS (the record writes the server copies
into them). When a node is lost, the new leader of one of those streams may try to set its sources up
before the bucket it copies from has a leader of its own; nats-server then leaves that source idle for
minutes (seen here: a run's events missing from PAS_EVENTS 30 s after the run ended). A source that has
been down for SOURCE_STALL_S is restarted the way an operator would (`nats stream cluster step-down`): the
stream's leader steps down, and the next one sets every source up again, from where it stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.agent import Role
from pas.runtime.comms import Entry

log = logging.getLogger("pas.monitor")

SOURCE_CHECK_S = 2.0
SOURCE_STALL_S = 8.0
"""A source not active for this long (a healthy one is active every second or so, idle or not) is down."""
STEPDOWN_EVERY_S = 30.0


def source_down(active_ns: int | None, error: object) -> bool:
    """Whether a stream source, as stream info reports it, is down: an error, never set up (no or a
    negative active), or silent for SOURCE_STALL_S."""
    return error is not None or active_ns is None or active_ns < 0 or active_ns > SOURCE_STALL_S * 1e9


class MonitorRole(Role):
    description = "PAS heartbeat monitor: alive/dead state of every agent"

    def __init__(self, agent: Any) -> None:
        super().__init__(agent)
        hb = self.cfg.settings.heartbeat
        self.interval = hb.interval_s
        self.deadline = hb.interval_s * hb.missed_beats + hb.interval_s * 0.1
        self.last: dict[str, float] = {}  # agent -> monotonic time of last beat
        self.state: dict[str, wire.AgentState] = {}
        self._scan: asyncio.Task[Any] | None = None
        self._sources: asyncio.Task[Any] | None = None
        self.down_since: dict[tuple[str, str], float] = {}  # (stream, source) -> when first seen down
        self.stepped_down: dict[str, float] = {}  # stream -> when its leader was last asked to step down

    async def start(self) -> None:
        started = time.monotonic()
        for st in await self.bus.kv_values(S.KV_AGENTS, ">", wire.AgentState):
            self.state[st.agent] = st
            # Give every known agent a full deadline from now before judging it.
            self.last[st.agent] = started
        await self.agent.listen(S.HEARTBEAT_ALL, wire.Heartbeat, self._on_beat)
        self._scan = self.bus.spawn(self._scan_loop())
        if self.cfg.settings.nats.replicas > 1:
            self._sources = self.bus.spawn(self._sources_loop())

    async def stop(self) -> None:
        for t in (self._scan, self._sources):
            if t:
                t.cancel()

    async def _sources_loop(self) -> None:
        while True:
            await asyncio.sleep(SOURCE_CHECK_S)
            for stream in S.SOURCING_STREAMS:
                try:
                    await self.check_sources(stream)
                except Exception as e:  # a cluster without a leader for it right now: next round
                    log.debug("sources of %s not checked: %r", stream, e)

    async def check_sources(self, stream: str, now: float | None = None) -> bool:
        """One look at `stream`'s sources; True if its leader was asked to step down."""
        now = time.monotonic() if now is None else now
        info = await self.bus.js.stream_info(stream)
        down = []
        for src in info.sources or []:
            key = (stream, src.name)
            if not source_down(src.active, src.error):
                self.down_since.pop(key, None)
                continue
            since = self.down_since.setdefault(key, now)
            if now - since >= SOURCE_STALL_S:
                down.append(f"{src.name} (lag {src.lag}, active {src.active}, error {src.error})")
        if not down or now - self.stepped_down.get(stream, -STEPDOWN_EVERY_S) < STEPDOWN_EVERY_S:
            return False
        self.stepped_down[stream] = now
        log.warning("stream %s: source(s) %s down for %.0f s: asking its leader to step down, so that the next one "
                    "sets them up again", stream, ", ".join(down), SOURCE_STALL_S)
        reply = await self.bus.nc.request(S.js_api("STREAM", "LEADER", "STEPDOWN", stream), b"", timeout=5)
        log.warning("stream %s: step-down answered %s", stream, reply.data[:200].decode(errors="replace"))
        for key in [k for k in self.down_since if k[0] == stream]:
            del self.down_since[key]
        return True

    async def _on_beat(self, hb: wire.Heartbeat) -> None:
        self.last[hb.agent] = time.monotonic()
        prev = self.state.get(hb.agent)
        st = wire.AgentState(agent=hb.agent, state="alive", last_beat=hb.ts, status=hb.status, run_id=hb.run_id,
                             message=hb.message, since=prev.since if prev and prev.state == "alive" else hb.ts,
                             model=hb.model)
        self.state[hb.agent] = st
        # Not waited for (nor retried through an election): the next beat supersedes it, and this
        # callback must keep up with every agent's beats.
        await self.bus.kv_put_nowait(S.KV_AGENTS, hb.agent, st)
        if prev is not None and prev.state == "dead":
            await self._alert(hb.agent, "recovered", hb.ts, 0.0)

    async def _scan_loop(self) -> None:
        period = max(0.05, self.interval / 10)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for agent, t in list(self.last.items()):
                st = self.state.get(agent)
                if st is None or st.state == "dead" or now - t < self.deadline:
                    continue
                st.state = "dead"
                st.since = wire.now()
                try:
                    await self.bus.kv_put(S.KV_AGENTS, agent, st)
                    await self._alert(agent, "dead", st.last_beat, now - t)
                except Exception as e:
                    log.warning("could not record %s dead: %r", agent, e)

    async def _alert(self, agent: str, kind: str, last_beat: Any, missed_s: float) -> None:
        alert = wire.Alert(agent=agent, kind=kind, ts=wire.now(), last_beat=last_beat, missed_s=round(missed_s, 3))  # type: ignore[arg-type]
        log.warning("agent %s %s", agent, kind)
        await self.bus.publish_js(S.alert_agent(agent), alert)
        await self.agent.comms.log(Entry(self.me.id, agent, "STATUS", f"agent {agent} {kind}", None, kind))

    def beat(self) -> tuple[str, str | None, float, str]:
        dead = sorted(a for a, s in self.state.items() if s.state == "dead")
        return ("degraded" if dead else "ok"), None, 0.0, (f"dead: {', '.join(dead)}" if dead else "all alive")
