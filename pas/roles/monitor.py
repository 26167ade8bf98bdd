"""Heartbeat monitor: keeps each agent's last beat and state in KV pas_agents and publishes
pas.alert.agent.<id> when an agent misses `missed_beats` beats, and again when it recovers."""

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

    async def start(self) -> None:
        started = time.monotonic()
        for st in await self.bus.kv_values(S.KV_AGENTS, ">", wire.AgentState):
            self.state[st.agent] = st
            # Give every known agent a full deadline from now before judging it.
            self.last[st.agent] = started
        await self.agent.listen(S.HEARTBEAT_ALL, wire.Heartbeat, self._on_beat)
        self._scan = self.bus.spawn(self._scan_loop())

    async def stop(self) -> None:
        if self._scan:
            self._scan.cancel()

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
