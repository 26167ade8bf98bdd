"""A PAS process: optionally the embedded nats-server, the bus, and a selection of agents.

With NATS users (pas.auth; on by default for the embedded server) the process provisions streams,
consumers and KV buckets as `admin`, then opens one Bus (one connection) per role present, and each
agent acts as its role's user. Without them, every agent shares one Bus, which provisions."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from pas import auth
from pas.agent import Agent
from pas.bus import Bus, connect, provision
from pas.comms import CommsLog
from pas.config import PasConfig
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
        self.bus: Bus | None = None  # the first role's bus (the only one without NATS users)
        self.buses: dict[str, Bus] = {}  # user -> its bus
        self.creds: dict[str, auth.Creds] = {}
        self.agents: list[Agent] = []
        self.http = http
        self.http_server: Any = None
        self.name = name

    async def start(self) -> "Stack":
        n = self.cfg.settings.nats
        cdir = auth.creds_dir(self.cfg, self.data_dir)
        if not self.url:
            block = ""
            if n.auth == "on":
                self.creds = auth.ensure_creds(cdir)
                block = auth.server_block(self.cfg, self.creds)
            self.server = EmbeddedServer(self.data_dir, port=n.port, host=n.host, sync_interval=n.sync_interval,
                                         auth_block=block)
            # Started from the event loop's thread on purpose: the server is tied to this thread's
            # life (PR_SET_PDEATHSIG), and a worker thread may end while we still need the server.
            self.url = self.server.start()
            log.info("embedded nats-server at %s (data in %s, NATS users %s)", self.url, self.data_dir, n.auth)
        elif n.auth == "on":
            self.creds = auth.load_creds(cdir)  # an external server: its users, if we were given them
        try:
            selected = sorted(self.cfg.select(self.only, self.exclude), key=lambda a: a.role != "monitor")
            await self._open_buses([a.tier for a in selected])
            # The monitor first, so it hears every agent's first heartbeat.
            for a in selected:
                bus = self.buses[a.tier if self.creds else ""]
                agent = Agent(bus, a, bus.llm.comms)
                await agent.load_model_override()
                await agent.start()
                self.agents.append(agent)
            for bus in self.buses.values():
                await bus.nc.flush()
            if self.http:
                from pas.http.adapter import start_adapter  # the HTTP adapter is optional

                self.http_server = await start_adapter(self.cfg, self.url, creds=self.creds.get("adapter"))
        except BaseException:
            await self.stop()
            raise
        return self

    async def _open_buses(self, users: list[str]) -> None:
        from pas.usage import RunLLM  # litellm itself is imported lazily, on the first call

        assert self.url
        if self.creds:
            admin = self.creds.get("admin")
            if admin is not None:  # provisioning needs stream management: done once, as admin
                nc = await connect(self.url, name=f"{self.name}-admin", **auth.connect_kw(admin))
                try:
                    await provision(nc.jetstream(timeout=10), self.cfg)
                finally:
                    await nc.close()
            groups = list(dict.fromkeys(users))
        else:
            groups = [""]
        for user in groups:
            bus = await Bus.open(self.url, self.cfg, name=f"{self.name}-{user}" if user else self.name,
                                 do_provision=not self.creds, **auth.connect_kw(self.creds.get(user)))
            self.buses[user] = bus
            self.bus = self.bus or bus
            bus.llm = RunLLM(bus, CommsLog(bus.nc, self.cfg.settings.comms.preview_chars))

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
        for bus in self.buses.values():
            try:
                await asyncio.wait_for(bus.close(), 15)
            except asyncio.TimeoutError:
                log.warning("closing the NATS connection took over 15s; closed forcibly")
                await bus.nc.close()
        self.buses = {}
        self.bus = None
        if self.server is not None:
            await self.server.astop()
            self.server = None

    async def __aenter__(self) -> "Stack":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
