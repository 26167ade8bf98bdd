"""A PAS process: optionally the embedded nats-server, the bus, and a selection of agents.

With NATS users (pas.transport.auth; on by default for the embedded server) the process provisions streams,
consumers and KV buckets as `admin`, then opens one Bus (one connection) per agent, as that agent's own
user: a connection can hold one identity, and an identity per agent is what keeps one agent's stolen
credentials from speaking for another. The buses share what is per process (CAS locks, the records
this process wrote, the programmers' wake-up subscription, the model breakers). Without NATS users,
every agent shares one Bus, which provisions."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pas.base.redact import register_env
from pas.config.model import PasConfig
from pas.execution.sandbox import Box
from pas.roles import new_agent
from pas.runtime import claims
from pas.runtime.agent import Agent, Process
from pas.runtime.comms import CommsLog
from pas.runtime.store import RunStore
from pas.transport import auth, tracing
from pas.transport.bus import Bus, connect
from pas.transport.provision import provision
from pas.transport.server import EmbeddedServer

if TYPE_CHECKING:
    from pas.runtime.usage import RunLLM
    from pas.surfaces.http.adapter import AdapterThread  # optional: imported when the adapter starts
    from pas.surfaces.http.process import AdapterProcess

log = logging.getLogger("pas.surfaces.stack")


ROOT_SETTLE_S = 10.0
"""At most this long, PAS Root ends the runs whose plans completed while the other agents drained."""


STOP_ORDER = ("prog", "mgr", "dir", "architect")
"""Roles stopped one tier at a time, bottom up, before the others and PAS Root (Stack.stop)."""


async def _stop_agents(agents: list[Agent]) -> None:
    if not agents:
        return
    _done, pending = await asyncio.wait([asyncio.ensure_future(a.stop()) for a in agents], timeout=15)
    if pending:
        log.warning("%d agent(s) did not stop within 15s; closing anyway", len(pending))
        for t in pending:
            t.cancel()


async def _close_bus(bus: Bus) -> None:
    try:
        await asyncio.wait_for(bus.close(), 15)
    except TimeoutError:
        log.warning("closing the NATS connection %s took over 15s; closed forcibly", bus.nc.connected_url)
        await bus.nc.close()


class Stack:
    def __init__(
        self,
        cfg: PasConfig,
        *,
        only: list[str] | None = None,
        exclude: list[str] | None = None,
        url: str | None = None,
        http: bool | Literal["thread", "process"] = False,
        name: str = "pas",
    ) -> None:
        self.cfg = cfg
        self.only, self.exclude = only, exclude
        self.url = url or cfg.settings.nats.url
        self.data_dir = Path(cfg.settings.nats.data_dir)  # the embedded server's, and the creds' default home
        self.server: EmbeddedServer | None = None
        self.bus: Bus | None = None  # the first role's bus (the only one without NATS users)
        self.process = Process()  # what its agents share: the run store's memory, the priority bands
        self.buses: dict[str, Bus] = {}  # agent id ("" without NATS users) -> its bus
        self.llms: dict[str, RunLLM] = {}  # the same keys -> its LLM router (breakers shared)
        self.creds: dict[str, auth.Creds] = {}
        self.agents: list[Agent] = []
        # the HTTP adapter: in a process of its own ("process", what `pas up` runs: pas.surfaces.http.process),
        # in a thread of this process (True, "thread"), or none
        self.http = bool(http)
        self.http_process = http == "process"
        self.http_server: AdapterThread | AdapterProcess | None = None
        self._child: AdapterProcess | None = None  # spawned, not yet serving
        self.name = name
        self._checking: asyncio.Task[Any] | None = None

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

    async def start(self) -> Stack:
        socks = None
        if self.http:  # bind first: a busy port fails start-up before anything joins the bus
            from pas.surfaces.http.adapter import bind_ports  # the HTTP adapter is optional

            socks = bind_ports(self.cfg)
        try:
            if self.http_process:
                from pas.surfaces.http.process import AdapterProcess

                assert socks is not None
                self._child = await AdapterProcess.spawn(socks)  # it imports while the agents start
            await self._start(socks)
        except BaseException:
            if self._child is not None:
                await self._child.stop()
                self._child = None
            for s in (socks or {}).values():
                s.close()
            raise
        return self

    async def _start(self, socks: dict[str, Any] | None) -> None:
        await asyncio.to_thread(self.check_sandbox)
        tracing.setup(self.cfg)
        n = self.cfg.settings.nats
        cdir = auth.creds_dir(self.cfg, self.data_dir)
        if not self.url:
            block = ""
            if n.auth == "on":
                self.creds = auth.ensure_creds(cdir, auth.users(self.cfg))
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
            selected = self.cfg.select(self.only, self.exclude)
            await self._open_buses([self._user(a) for a in selected])
            live = []
            for user, bus in self.buses.items():  # each agent checks its own id (its rights cover no other)
                live += await claims.live_claims(bus, [a.id for a in selected if self._user(a) == user])
            if live:
                raise claims.refusal(live)
            # The monitor first, so it hears every agent's first heartbeat.
            for a in sorted(selected, key=lambda a: a.role != "monitor"):
                bus = self.buses[self._user(a)]
                llm = self.llms[self._user(a)]
                agent = new_agent(bus, a, llm.comms, llm, self.process)
                await agent.load_model_override()
                await agent.start()
                self.agents.append(agent)
            for bus in self.buses.values():
                await bus.nc.flush()
            if self.http:
                from pas.surfaces.http.adapter import AdapterThread  # the HTTP adapter is optional

                creds, token_dir = self.creds.get("adapter"), auth.creds_dir(self.cfg, self.data_dir)
                if self._child is not None:
                    self.http_server, self._child = await self._child.start(self.cfg, self.url, creds=creds,
                                                                            token_dir=token_dir), None
                else:
                    self.http_server = await AdapterThread.start(self.cfg, self.url, socks=socks, creds=creds,
                                                                 token_dir=token_dir)
        except BaseException:
            await self.stop()
            raise

    @property
    def store(self) -> RunStore:
        """The run store over the first role's bus, sharing the agents' memory."""
        assert self.bus is not None
        return RunStore(self.bus, self.process.memory)

    @property
    def llm(self) -> RunLLM:
        """The LLM router of the first agent's connection (one per connection; they share the breakers)."""
        return next(iter(self.llms.values()))

    def _user(self, a: Any) -> str:
        return a.id if self.creds else ""

    async def _open_buses(self, users: list[str]) -> None:
        from pas.runtime.usage import RunLLM  # litellm itself is imported lazily, on the first call

        assert self.url
        if self.creds:
            admin = self.creds.get("admin")
            if admin is not None:  # provisioning needs stream management: done once, as admin
                nc = await connect(self.url, name=f"{self.name}-admin",
                                   connect_timeout_s=self.cfg.settings.nats.connect_timeout_s, **auth.connect_kw(admin))
                try:
                    await provision(nc.jetstream(timeout=10), self.cfg)
                finally:
                    await nc.close()
            groups = list(dict.fromkeys(users))
        else:
            groups = [""]
        for user in groups:
            if user and user not in self.creds:
                raise auth.missing_user(user, auth.creds_dir(self.cfg, self.data_dir))
        buses = await asyncio.gather(*(
            Bus.open(self.url, self.cfg, name=f"{self.name}-{user}" if user else self.name,
                     do_provision=not self.creds, reconnected_cb=self._reconnected,
                     **auth.connect_kw(self.creds.get(user)))
            for user in groups))
        for user, bus in zip(groups, buses, strict=True):
            llm = RunLLM(bus, CommsLog(bus.nc, self.cfg.settings.comms.preview_chars, bus=bus))
            if self.bus is not None:  # one process, one view: its agents share the model breakers (and
                llm.client.breaker = self.llm.client.breaker  # the run store's memory: self.process)
            self.llms[user] = llm
            self.buses[user] = bus
            self.bus = self.bus or bus

    async def _reconnected(self) -> None:
        if self.bus is not None:
            self.process.memory.forget()  # a cancel may have gone unheard while cut off (pas.runtime.store)
            if self._checking is None or self._checking.done():  # one check for all the agents' connections
                self._checking = self.bus.spawn(self._check_after_reconnect())

    async def _check_after_reconnect(self) -> None:
        for _ in range(10):  # JetStream may still be electing a leader right after a reconnect
            try:
                await self.check_claims()
                return
            except Exception as e:
                log.warning("checking agent claims after a reconnect failed (%r); retrying in 1s", e)
                await asyncio.sleep(1.0)
        log.error("could not check agent claims after a reconnect; duplicates are possible until restart")

    async def check_claims(self) -> list[str]:
        """Stop every agent of this process whose id another instance has claimed meanwhile (it
        was taken over while this process was cut off from the bus): one live instance per id."""
        lost = []
        for agent in list(self.agents):
            held = await claims.holder(agent.bus, agent.id)
            if held is not None and agent.service is not None and held.instance != agent.service.id:
                log.error("agent %s was taken over by %s while this process was disconnected; stopping it here",
                          agent.id, claims.describe(held))
                self.agents.remove(agent)
                await agent.stop()
                lost.append(agent.id)
        return lost

    async def stop(self) -> None:
        """Drain, then close, from the bottom tier up: programmers, managers, directors, the architect, then
        the rest, each finishing the work it holds (up to its loops' drain time; what is left is named and
        redelivered later). A task finished during that drain is walked up to its owners (the manager finishes
        the job, the director the lane, the architect the plan), so they are still serving while the tiers
        below drain; root, still consuming, ends a run whose plan completed, then stops too."""
        if self.http_server is not None:
            await self.http_server.stop()
            self.http_server = None
        for role in STOP_ORDER:
            await _stop_agents([a for a in self.agents if a.cfg.role == role])
        last = [a for a in self.agents if a.cfg.role == "root"]
        await _stop_agents([a for a in self.agents if a.cfg.role not in (*STOP_ORDER, "root")])
        for a in last:
            await a.settle(ROOT_SETTLE_S)
        await _stop_agents(last)
        self.agents = []
        # Every agent has a connection of its own (issue 19): closed one after another, each drain's bound
        # (5 s) added up past a stopping `pas up`'s 30 s under load; together, the slowest one bounds them.
        await asyncio.gather(*(_close_bus(b) for b in self.buses.values()))
        self.buses = {}
        self.bus = None
        if self.server is not None:
            await self.server.astop()
            self.server = None

    async def __aenter__(self) -> Stack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
