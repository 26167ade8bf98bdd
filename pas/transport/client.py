"""A small client for PAS over NATS: what the CLI, the HTTP adapter, tests and benchmarks use.

Errors come back as PasError subclasses rebuilt from the micro error headers and JSON body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import msgspec
from nats.aio.client import Client as NC
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from pas.base.errors import GatewayTimeout as GatewayTimeout
from pas.base.errors import Unavailable, from_code
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport import tracing
from pas.transport.connection import connect

log = logging.getLogger("pas.client")


def raise_for(msg: Any) -> None:
    h = msg.headers or {}
    code = h.get("Nats-Service-Error-Code")
    if not code:
        return
    try:
        body = json.loads(msg.data or b"{}")
    except ValueError:
        body = {}
    n = int(code) if str(code).isdigit() else 500
    raise from_code(n, body.get("message") or h.get("Nats-Service-Error") or "error", body.get("detail"))


def default_by() -> str:
    """Who decides when a request names nobody: the OS user running the client."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "anonymous"



def event_fields(subject: str, data: bytes) -> dict[str, Any] | None:
    """A run event's fields (pas.protocol.wire.run_event), None for no event or a bad body (logged)."""
    try:
        ev = wire.run_event(subject, data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        log.warning("skipped a bad event on %s: %s", subject, e)
        return None
    return None if ev is None else cast(dict[str, Any], wire.to_builtins(ev))

class PasClient:
    def __init__(self, nc: NC, timeout_s: float = 5.0) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        self.user: str | None = nc.options.get("user")
        """The NATS user: submit, cancel, approve and reject go to pas.gateway.as.<user>.* (the gateway
        knows who asks); without one (a server without users), to the anonymous subjects."""

    def _as(self, action: str, anonymous: str) -> str:
        return S.gateway_as(self.user, action) if self.user else anonymous

    @classmethod
    async def connect(cls, url: str, timeout_s: float = 5.0, *, connect_timeout_s: float = 5.0, creds: Any = None,
                      **kw: Any) -> PasClient:
        """Connect with pas.transport.connection.connect (waits up to connect_timeout_s, then Unavailable); creds: a
        pas.transport.auth.Creds (the `client` user, or `admin` for control requests), or None."""
        from pas.transport.auth import connect_kw

        nc = await connect(url, name="pas-client", connect_timeout_s=connect_timeout_s, **connect_kw(creds), **kw)
        return cls(nc, timeout_s)

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> PasClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, subject: str, body: Any = None, headers: dict[str, str] | None = None,
                      timeout_s: float | None = None) -> dict[str, Any]:
        """One request to an agent or the gateway; every PAS reply is a JSON object (or empty: {})."""
        data = body if isinstance(body, bytes) else (wire.encode(body) if body is not None else b"{}")
        headers = tracing.inject(headers)  # the caller's span, when its process traces (the HTTP adapter)
        try:
            msg = await self.nc.request(subject, data, timeout=timeout_s or self.timeout_s, headers=headers)
        except NoRespondersError:
            raise Unavailable(f"no agent answers on {subject} (is `pas up` running?)") from None
        except NatsTimeout:
            raise GatewayTimeout(f"no reply on {subject} within {timeout_s or self.timeout_s}s") from None
        raise_for(msg)
        reply: dict[str, Any] = json.loads(msg.data) if msg.data else {}
        return reply

    async def set_model(self, agent_id: str, profiles: Any, primary: str | None = None,
                        backup: str | None = None) -> dict[str, Any]:
        """Switch an agent's model: the override is written here (KV pas_models, which only admin and the HTTP
        adapter may write; agents only read it, at start and when told), merged with the agent's stored one
        and checked against models.yaml's `profiles`; then the agent is told to take it live
        (pas.ctl.<id>.set_model) and answers with the change. An agent that is down takes it at its start."""
        from nats.js.errors import KeyNotFoundError

        from pas.base.errors import BadRequest
        from pas.config.doc import check_model_override

        change = {k: v for k, v in (("model", primary), ("backup_model", backup)) if v is not None}
        if not change:
            raise BadRequest("give primary and/or backup")
        for p in change.values():
            if profiles and p not in profiles:
                raise BadRequest(f"unknown model profile {p!r}", detail={"profiles": sorted(profiles)})
        kv = await self.nc.jetstream(timeout=self.timeout_s).key_value(S.KV_MODELS)
        try:
            entry = await kv.get(agent_id)
            stored = check_model_override(wire.decode(entry.value or b"{}", dict), profiles, agent_id)
        except (KeyNotFoundError, ValueError):  # none yet, or one that cannot be trusted: replaced
            stored = {}
        doc = {"agent": agent_id, **{k: stored[k] for k in ("model", "backup_model") if k in stored}, **change,
               "ts": wire.now().isoformat()}
        await kv.put(agent_id, wire.encode(doc))
        body = {"primary": primary, "backup": backup}
        return dict(await self.request(S.ctl(agent_id, "set_model"), {k: v for k, v in body.items() if v}))

    async def submit(self, job: dict[str, Any] | wire.JobSubmit, msg_id: str | None = None) -> dict[str, Any]:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        return await self.request(self._as("submit", S.GATEWAY_SUBMIT), job, headers=headers)

    async def status_page(self, run_id: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The run with one page of its tasks (pas.protocol.wire.StatusQuery): next_offset says where the next starts."""
        q: dict[str, Any] = {"run_id": run_id, "offset": offset}
        if limit is not None:
            q["limit"] = limit
        return await self.request(S.GATEWAY_STATUS, q)

    async def status(self, run_id: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The run with its tasks from offset (every one, or at most limit): as many replies as it
        takes joined (each reply fits in one NATS message)."""
        st = await self.status_page(run_id, offset, limit)
        while st.get("next_offset") is not None and (limit is None or len(st["tasks"]) < limit):
            more = await self.status_page(run_id, st["next_offset"], None if limit is None else limit - len(st["tasks"]))
            st["tasks"] += more["tasks"]
            st["next_offset"] = more.get("next_offset")
        return st

    async def runs(self, limit: int = 50, status: str | None = None, offset: int = 0) -> dict[str, Any]:
        q: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            q["status"] = status
        return await self.request(S.GATEWAY_RUNS, q)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        return await self.request(self._as("cancel", S.GATEWAY_CANCEL), {"run_id": run_id})

    async def plan(self, run_id: str) -> dict[str, Any]:
        return await self.request(S.GATEWAY_PLAN, {"run_id": run_id})

    async def approve(self, run_id: str, by: str | None = None, drop: list[str] | None = None,
                      reason: str = "") -> dict[str, Any]:
        return await self.request(self._as("approve", S.GATEWAY_APPROVE), {"run_id": run_id, "by": by or default_by(),
                                                      "drop": list(drop or []), "reason": reason})

    async def reject(self, run_id: str, reason: str = "", by: str | None = None) -> dict[str, Any]:
        return await self.request(self._as("reject", S.GATEWAY_REJECT),
                                  {"run_id": run_id, "by": by or default_by(), "reason": reason})

    async def events(self, run_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Live (subject, event) of pas.run.<run_id>.> — subscribe before submitting to miss nothing. The
        event is a TaskRecord's or RunEvent's fields (pas.protocol.wire.events); bad bodies are skipped."""
        q: asyncio.Queue[Any] = asyncio.Queue()

        async def cb(m: Any) -> None:
            await q.put(m)

        sub = await self.nc.subscribe(S.run_events(run_id), cb=cb)
        try:
            while True:
                m = await q.get()
                if (body := event_fields(m.subject, m.data)) is not None:
                    yield m.subject, body
        finally:
            await sub.unsubscribe()

    async def wait(self, run_id: str, timeout_s: float = 600.0, poll_s: float = 1.0) -> dict[str, Any]:
        """Wait for a terminal status: pushed status events, with a slow status poll as a safety net."""
        done = asyncio.Event()

        async def cb(m: Any) -> None:
            if (ev := event_fields(m.subject, m.data)) is not None and ev["status"] in wire.TERMINAL_RUN:
                done.set()

        sub = await self.nc.subscribe(S.run_status(run_id), cb=cb)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while True:
                try:
                    st = await self.status(run_id)
                except (Unavailable, GatewayTimeout):  # a failover in the cluster: ask again
                    st = {"status": "unknown"}
                if st["status"] in wire.TERMINAL_RUN:
                    return st
                left = deadline - loop.time()
                if left <= 0:
                    raise GatewayTimeout(f"run {run_id} still {st['status']} after {timeout_s}s")
                try:
                    await asyncio.wait_for(done.wait(), min(poll_s, left))
                except TimeoutError:
                    pass
        finally:
            await sub.unsubscribe()
