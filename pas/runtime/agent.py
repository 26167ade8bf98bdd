"""The one agent runtime. Every agent of the topology is an instance of Agent configured by its
AgentConfig entry; role behaviour is plugged in by the caller (pas.roles.new_agent picks the class
from pas.roles, one module per role; this module imports no role).

Each agent is a NATS micro service named after its id, so `nats micro ls/info/stats/ping` see
it; it answers `health` and `status` on pas.<role>.<id>.{health,status}, publishes heartbeats on
pas.hb.<id>, and runs its role's endpoints and work-queue loops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.service import EndpointStats, Service

from pas import __version__
from pas.base.errors import NotFound, PasError, Unavailable
from pas.config.doc import check_model_override
from pas.config.model import AgentConfig
from pas.llm.client import Asker
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import claims
from pas.runtime.comms import CommsLog, Entry
from pas.runtime.service import Call, WorkCtx, WorkLoop, WorkLoopOptions, decode_body, endpoint
from pas.runtime.store import Memory, RunStore
from pas.transport.bus import Bus
from pas.transport.natscompat import count_error, last_endpoint

if TYPE_CHECKING:
    from pas.runtime.usage import RunLLM  # imported by the Stack, never by an agent without models

T = TypeVar("T")

log = logging.getLogger("pas.agent")


@dataclass
class EndpointSpec:
    name: str
    subject: str
    handler: Callable[[Any, Call], Awaitable[Any]]
    req_type: type[Any]
    queue_group: str | None = None
    concurrent: bool = False
    """Handle each request in a task of its own (nats-py runs one subscription's callbacks one at a time)."""
    replies: bool = True
    """False: a report, never answered (its publisher may be waiting on a JetStream ack on the same inbox)."""


@dataclass
class WorkSpec:
    stream: str
    durable: str
    typ: type[Any]
    handler: Callable[[Any, WorkCtx], Awaitable[None]]
    """`async def handler(item: typ, ctx: WorkCtx) -> None`; outcomes are exceptions (pas.runtime.service)."""
    concurrency: int
    ack_wait_s: float
    bands: tuple[str, ...] = ()
    """Several durable consumers pulled highest first (pas.runtime.priority); durable is then the first."""
    band_subjects: tuple[str, ...] = ()
    """The subject each of bands filters (its publishes wake the loop)."""
    wake_subject: str = ""
    burst: int = 8


@dataclass
class Process:
    """What the agents of one process share, each with a connection of its own: the run store's memory
    (pas.runtime.store.Memory) and other one-per-process things (the programmers' priority bands)."""

    memory: Memory = field(default_factory=Memory)
    local: dict[Any, Any] = field(default_factory=dict)


class Role:
    """Base of every role's behaviour."""

    description = "PAS agent"

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.bus = agent.bus
        self.store = agent.store
        self.cfg = agent.bus.cfg
        self.me = agent.cfg

    def endpoints(self) -> list[EndpointSpec]:
        return []

    def work(self) -> list[WorkSpec]:
        return []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def beat(self) -> tuple[str, str | None, float, str]:
        """(status, run_id, progress, message) for the next heartbeat."""
        busy = sum(w.in_flight for w in self.agent.loops)
        return ("running" if busy else "ok", None, 0.0, f"{busy} in flight" if busy else "")

    async def status(self, ref: wire.StatusRef) -> Any:
        raise NotFound(f"{self.me.id} keeps no status for {ref.id!r}")

    def child_done_endpoint(self, subject: str, queue_group: str) -> EndpointSpec:
        """The endpoint where this role, the owner of a record (job, lane or plan), hears that a child of it
        ended and walks the completion up (pas.runtime.runs.note_child_done)."""
        return EndpointSpec("done", subject, self._child_done, wire.ChildDone, queue_group=queue_group,
                            concurrent=True)

    async def _child_done(self, done: wire.ChildDone, call: Call) -> dict[str, Any]:
        from pas.runtime import runs  # (pas.runs imports this module's neighbours; roles use it, the runtime not)

        await runs.note_child_done(self.walk_ctx(done, call), done)
        return {}

    def walk_ctx(self, done: wire.ChildDone, call: Call) -> WorkCtx:
        """The context of a completion walk handed up by request (no work item of its own)."""
        return WorkCtx(run_id=done.event.run_id, attempt=2 if done.redelivered else 1, headers=call.headers,
                       subject=call.subject, agent_id=self.me.id, bus=self.bus, comms=self.agent.comms,
                       store=self.store)


class Agent:
    def __init__(self, bus: Bus, cfg: AgentConfig, comms: CommsLog, role_class: type[Role],
                 llm: RunLLM | None = None, process: Process | None = None) -> None:
        self.bus = bus
        self.process = process or Process()
        self.store = RunStore(bus, self.process.memory)  # the run records, written as this agent
        self.cfg = cfg
        self.comms = comms
        self.llm = llm  # the process's LLM router (pas.runtime.usage), None where no model is called
        self.started_at = wire.now()
        self.model = cfg.model
        self.backup_model = cfg.backup_model
        self.loops: list[WorkLoop] = []
        self.service: Service | None = None
        self._hb: asyncio.Task[Any] | None = None
        self.role = role_class(self)
        self._errors: dict[str, tuple[int, str]] = {}
        self._subs: list[Any] = []
        self._claim_rev = 0

    @property
    def id(self) -> str:
        return self.cfg.id

    def router(self) -> RunLLM:
        """The LLM router; Unavailable in a process that has none (an agent started without a Stack)."""
        if self.llm is None:
            raise Unavailable("no LLM router in this process")
        return self.llm

    def asker(self, run_id: str | None) -> Asker:
        """This agent's models asked through the router, for one run (the planners)."""
        return Asker(self.router(), self.cfg.id, self.model, self.backup_model, run_id)

    def subject(self, endpoint_name: str) -> str:
        return S.agent_endpoint(self.cfg.role, self.cfg.id, endpoint_name)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        c = self.cfg
        metadata = {
            "agent": c.id,
            "role": c.role,
            "tier": c.tier,
            "lane": c.lane or "",
            "parent": c.parent or "",
            "port": str(c.port or ""),
            "model": self.model or "",
        }
        self.service = await add_service(
            self.bus.nc,
            name=c.id,
            version=__version__,
            description=c.description or f"{self.role.description} ({c.tier}{', lane ' + c.lane if c.lane else ''})",
            metadata=metadata,
            stats_handler=self._stats_data,
        )
        # Claim the id before serving or beating anything: one live instance per id on the bus.
        try:
            self._claim_rev = await claims.claim(self.bus, claims.my_claim(c.id, self.service.id))
        except BaseException:
            await self.service.stop()
            self.service = None
            raise
        specs = [
            EndpointSpec("health", self.subject("health"), self._health, wire.Empty),
            EndpointSpec("status", self.subject("status"), self._status, wire.StatusRef),
            EndpointSpec("set_model", S.ctl(c.id, "set_model"), self._set_model, wire.SetModel),
            *self.role.endpoints(),
        ]
        for spec in specs:
            await self._add_endpoint(spec)
        for ws in self.role.work():
            opts = WorkLoopOptions(bus=self.bus, comms=self.comms, agent_id=c.id, concurrency=ws.concurrency,
                                   ack_wait_s=ws.ack_wait_s, store=self.store, on_bad_input=self._bad_input,
                                   name=f"{c.id}:{ws.durable}", ack=self.bus.ack)
            if ws.bands:
                from pas.runtime.priority import BandedWorkLoop

                loop: WorkLoop = BandedWorkLoop(self.bus.nc, list(ws.bands), list(ws.band_subjects), ws.wake_subject,
                                                ws.burst, shared=self.process.local, js=self.bus.js,
                                                stream=ws.stream, typ=ws.typ, handler=ws.handler, opts=opts)
            else:
                loop = WorkLoop(self.bus.js, ws.stream, ws.durable, ws.typ, ws.handler, opts)
            self.loops.append(loop)
        await self.role.start()
        for loop in self.loops:
            loop.start()
        self._hb = self.bus.spawn(self._heartbeat_loop())

    async def settle(self, timeout_s: float, quiet_s: float = 0.3) -> None:
        """Wait (at most timeout_s) until this agent's work loops have held nothing for quiet_s: the work
        already published to it (a run's done.plan, for root) is delivered at once by the outstanding pulls."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        idle_since = loop.time()
        while loop.time() < deadline:
            if any(w.in_flight for w in self.loops):
                idle_since = loop.time()
            elif loop.time() - idle_since >= quiet_s:
                return
            await asyncio.sleep(0.05)
        log.warning("%s: still busy after %.0fs of draining; stopping anyway", self.id, timeout_s)

    async def stop(self) -> None:
        if self._hb:
            self._hb.cancel()
        await asyncio.gather(*(loop.stop() for loop in self.loops), return_exceptions=True)
        await self.role.stop()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        self._subs.clear()
        if self.service:
            try:
                await self.service.stop()
            except Exception:
                pass
        if self._claim_rev:
            await claims.release(self.bus, self.id, self._claim_rev)
            self._claim_rev = 0

    async def listen(self, subject: str, typ: type[T], cb: Callable[[T], Awaitable[None]]) -> None:
        """A core subscription for the role (heartbeats, cancels), typed like a work handler: cb gets
        the decoded struct; a malformed message is logged and dropped; nothing kills the agent.
        Unsubscribed when the agent stops."""

        async def on(msg: Msg) -> None:
            try:
                item = decode_body(msg.data, typ)
            except PasError as e:
                log.warning("%s: ignoring a bad message on %s: %s", self.id, msg.subject, e.message)
                return
            try:
                await cb(item)
            except Exception:
                log.exception("%s: handling %s failed", self.id, msg.subject)

        self._subs.append(await self.bus.nc.subscribe(subject, cb=on))

    async def _add_endpoint(self, spec: EndpointSpec) -> None:
        assert self.service is not None
        holder: dict[str, Any] = {}

        def on_error(text: str) -> None:
            ep = holder.get("ep")
            if ep is not None:
                count_error(ep, text)

        handle = endpoint(spec.handler, spec.req_type, on_error=on_error, on_bad_input=self._bad_input,
                          replies=spec.replies)
        if spec.concurrent:
            serial = handle

            async def handle(req: Any) -> None:
                self.bus.spawn(serial(req))

        await self.service.add_endpoint(
            name=spec.name,
            subject=spec.subject,
            queue_group=spec.queue_group,
            handler=handle,
            metadata={"agent": self.id},
        )
        holder["ep"] = last_endpoint(self.service)

    def _stats_data(self, ep: EndpointStats) -> dict[str, Any]:
        return {
            "agent": self.id,
            "in_flight": sum(w.in_flight for w in self.loops),
            "handled": sum(w.handled for w in self.loops),
        }

    # ---- heartbeats ------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        interval = self.bus.cfg.settings.heartbeat.interval_s
        while True:
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("%s: heartbeat failed: %r", self.id, e)
            await asyncio.sleep(interval)

    async def _beat(self) -> None:
        status, run_id, progress, message = self.role.beat()
        hb = wire.Heartbeat(agent=self.id, ts=wire.now(), status=status,  # type: ignore[arg-type]
                            run_id=run_id, progress=progress, message=message, model=self.model)
        await self.bus.publish(S.heartbeat(self.id), hb)

    # ---- built-in endpoints ----------------------------------------------------------------
    async def _health(self, _: wire.Empty, call: Call) -> wire.AgentHealth:
        status = self.role.beat()[0]
        return wire.AgentHealth(
            agent=self.id, role=self.cfg.role, tier=self.cfg.tier, lane=self.cfg.lane,
            parent=self.cfg.parent, status=status, model=self.model, backup_model=self.backup_model,
            started_at=self.started_at, in_flight=sum(w.in_flight for w in self.loops),
            handled=sum(w.handled for w in self.loops),
        )

    async def _status(self, ref: wire.StatusRef, call: Call) -> Any:
        if ref.id is None:
            return await self._health(wire.Empty(), call)
        return await self.role.status(ref)

    async def _set_model(self, req: wire.SetModel, call: Call) -> dict[str, Any]:
        from pas.base.errors import BadRequest

        models = self.bus.cfg.models
        for p in (req.primary, req.backup):
            if p is not None and p not in models:
                raise BadRequest(f"unknown model profile {p!r}", detail={"profiles": sorted(models)})
        if req.primary is None and req.backup is None:
            raise BadRequest("give primary and/or backup")
        old = (self.model, self.backup_model)
        if req.primary is not None:
            self.model = req.primary
        if req.backup is not None:
            self.backup_model = req.backup
        change = {"agent": self.id, "model": self.model, "backup_model": self.backup_model,
                  "previous": {"model": old[0], "backup_model": old[1]}, "ts": wire.now().isoformat()}
        # (stored in KV pas_models by whoever asked, admin or the HTTP adapter: an agent writes no override)
        await self.bus.nc.publish(S.ctl(self.id, "model_changed"), wire.encode(change))
        # A beat now: `pas agents` shows the model of the last beat, and a live switch is stored nowhere else
        await self._beat()
        await self.comms.log(Entry(self.id, "ctl", "RESPONSE", f"set_model primary={self.model} backup={self.backup_model}",
                                   status="ok", metadata=change))
        return change

    async def load_model_override(self) -> None:
        try:
            e = await self.bus.kv[S.KV_MODELS].get(self.id)
        except Exception:
            return
        if not e.value:
            return
        try:
            d = check_model_override(wire.decode(e.value, dict), self.bus.cfg.models, self.id)
            model, backup = d.get("model", self.model), d.get("backup_model", self.backup_model)
        except Exception as err:
            log.warning("%s: ignoring its stored model override (KV %s): %s", self.id, S.KV_MODELS, err)
            return
        self.model, self.backup_model = model, backup

    async def _bad_input(self, subject: str, data: bytes, err: PasError) -> None:
        preview = data[:500].decode(errors="replace")
        await self.comms.log(Entry(
            self.id, "client", "ERROR", f"rejected input on {subject}: {err.message}",
            status=err.error, metadata={"subject": subject, "bytes": len(data), "preview": preview, "code": err.code},
        ))
