"""A PAS process: optionally the embedded nats-server, the bus, and a selection of agents."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from pas import claims
from pas.agent import Agent
from pas.bus import Bus
from pas.comms import CommsLog
from pas.config import PasConfig
from pas.redact import register_env
from pas.sandbox import Box
from pas.server import EmbeddedServer

log = logging.getLogger("pas.stack")


class Stack:
    def __init__(
        self,
        cfg: PasConfig,
        *,
        only: list[str] | None = None,
        exclude: list[str] | None = None,
        url: str | None = None,
        data_dir: str | Path | None = None,
        http: bool = False,
        name: str = "pas",
    ) -> None:
        self.cfg = cfg
        self.only, self.exclude = only, exclude
        self.url = url or cfg.settings.nats.url
        self.data_dir = Path(data_dir or cfg.settings.nats.data_dir)
        self.server: EmbeddedServer | None = None
        self.bus: Bus | None = None
        self.agents: list[Agent] = []
        self.http = http
        self.http_server: Any = None
        self.name = name

    def check_sandbox(self) -> None:
        """Say at start when tasks will run unsandboxed or be refused (settings.policy.sandbox)."""
        for prof in self.cfg.models.values():
            if prof.api_key_env:
                register_env(prof.api_key_env)
        if not any(a.role == "prog" for a in self.cfg.select(self.only, self.exclude)):
            return
        box = Box.from_policy(self.cfg.settings.policy)
        if box.off:
            log.warning("sandbox OFF (settings.policy.sandbox: off): tasks run model-written code with "
                        "PAS's rights; every task logs this warning")
        elif (problem := box.problem()) is not None:
            log.warning("no sandbox: %s. command/llm/aider tasks will be REFUSED until it works "
                        "(or settings.policy.sandbox: off is set)", problem)

    async def start(self) -> "Stack":
        socks = None
        if self.http:  # bind first: a busy port fails start-up before anything joins the bus
            from pas.http.adapter import bind_ports  # the HTTP adapter is optional

            socks = bind_ports(self.cfg)
        try:
            await self._start(socks)
        except BaseException:
            for s in (socks or {}).values():
                s.close()
            raise
        return self

    async def _start(self, socks: dict[str, Any] | None) -> None:
        await asyncio.to_thread(self.check_sandbox)
        if not self.url:
            n = self.cfg.settings.nats
            self.server = EmbeddedServer(self.data_dir, port=n.port, host=n.host, sync_interval=n.sync_interval)
            # Started from the event loop's thread on purpose: the server is tied to this thread's
            # life (PR_SET_PDEATHSIG), and a worker thread may end while we still need the server.
            self.url = self.server.start()
            log.info("embedded nats-server at %s (data in %s)", self.url, self.data_dir)
        try:
            self.bus = await Bus.open(self.url, self.cfg, name=self.name, reconnected_cb=self._reconnected)
            comms = CommsLog(self.bus.nc, self.cfg.settings.comms.preview_chars, bus=self.bus)
            from pas.usage import RunLLM  # litellm itself is imported lazily, on the first call

            self.bus.llm = RunLLM(self.bus, comms)
            selected = self.cfg.select(self.only, self.exclude)
            live = await claims.live_claims(self.bus, [a.id for a in selected])
            if live:
                raise claims.refusal(live)
            # The monitor first, so it hears every agent's first heartbeat.
            for a in sorted(selected, key=lambda a: a.role != "monitor"):
                agent = Agent(self.bus, a, comms)
                await agent.load_model_override()
                await agent.start()
                self.agents.append(agent)
            await self.bus.nc.flush()
            if self.http:
                from pas.http.adapter import start_adapter  # the HTTP adapter is optional

                self.http_server = await start_adapter(self.cfg, self.url, socks=socks)
        except BaseException:
            await self.stop()
            raise

    async def _reconnected(self) -> None:
        if self.bus is not None:
            self.bus.spawn(self._check_after_reconnect())

    async def _check_after_reconnect(self) -> None:
        for _ in range(10):  # JetStream may still be electing a leader right after a reconnect
            try:
                await self.check_claims()
                return
            except Exception as e:  # noqa: BLE001 - retried, then given up loudly
                log.warning("checking agent claims after a reconnect failed (%r); retrying in 1s", e)
                await asyncio.sleep(1.0)
        log.error("could not check agent claims after a reconnect; duplicates are possible until restart")

    async def check_claims(self) -> list[str]:
        """Stop every agent of this process whose id another instance has claimed meanwhile (it
        was taken over while this process was cut off from the bus): one live instance per id."""
        lost = []
        for agent in list(self.agents):
            held = await claims.holder(self.bus, agent.id)
            if held is not None and agent.service is not None and held.instance != agent.service.id:
                log.error("agent %s was taken over by %s while this process was disconnected; stopping it here",
                          agent.id, claims.describe(held))
                self.agents.remove(agent)
                await agent.stop()
                lost.append(agent.id)
        return lost

    async def stop(self) -> None:
        if self.http_server is not None:
            await self.http_server.stop()
            self.http_server = None
        if self.agents:
            done, pending = await asyncio.wait([asyncio.ensure_future(a.stop()) for a in self.agents], timeout=15)
            if pending:
                log.warning("%d agent(s) did not stop within 15s; closing anyway", len(pending))
                for t in pending:
                    t.cancel()
        self.agents = []
        if self.bus is not None:
            try:
                await asyncio.wait_for(self.bus.close(), 15)
            except asyncio.TimeoutError:
                log.warning("closing the NATS connection took over 15s; closed forcibly")
                await self.bus.nc.close()
            self.bus = None
        if self.server is not None:
            await self.server.astop()
            self.server = None

    async def __aenter__(self) -> "Stack":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
