"""The port-based HTTP adapter: ONE server for every agent's legacy port plus the HMI.

    handle = await start_adapter(cfg, nats_url)   # binds every port, returns at once
    ...
    await handle.stop()

Every port of the topology (AgentConfig.port + settings.http.port_offset) and the HMI
(settings.http.hmi_port + port_offset) is a socket bound here, all served by a single
uvicorn.Server running in the caller's event loop; requests are dispatched to the agent's own
FastAPI app by the local port they arrived on (scope["server"]). One process owning every port
means two services can never race for one port (the predecessor's 6110/6120 collisions).

The gateway's port also serves MCP (streamable HTTP at /mcp) and the gateway as an A2A agent
(/.well-known/agent-card.json, /a2a): see pas.mcp.http.

When PAS_HTTP_TOKEN is set, every POST needs `Authorization: Bearer <token>`; reads stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from pas import tracing
from pas.config import PasConfig
from pas.errors import PasError
from pas.http.agents import agent_app
from pas.http.backend import Backend
from pas.http.common import Ctx
from pas.http.events import EventHub
from pas.http.hmi import hmi_app
from pas.portowner import port_owner

log = logging.getLogger("pas.http")

HMI = "hmi"
START_TIMEOUT_S = 10.0


def port_plan(cfg: PasConfig) -> dict[str, int]:
    """Name (agent id or "hmi") -> the port it is served on."""
    h = cfg.settings.http
    plan = {a.id: a.port + h.port_offset for a in cfg.agents if a.port is not None}
    plan[HMI] = h.hmi_port + h.port_offset
    for name, port in plan.items():
        if not 0 < port < 65536:
            raise PasError(f"HTTP port {port} of {name!r} is out of range (check settings.http.port_offset)")
    return plan


def bind(host: str, plan: dict[str, int]) -> dict[str, socket.socket]:
    """Bind and listen on every port now, so a client connecting right after start() is queued,
    and a port in use fails start-up with its owner named."""
    socks: dict[str, socket.socket] = {}
    try:
        for name, port in plan.items():
            try:
                fam = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
                socks[name] = socket.create_server((host, port), family=fam, backlog=512)
            except OSError as e:
                owner = f" (held by {port_owner(port)})" if e.errno == errno.EADDRINUSE else ""
                why = os.strerror(e.errno) if e.errno else str(e)
                raise PasError(f"HTTP adapter: cannot bind {host}:{port} for {name}: {why}{owner}; "
                               f"another PAS process may serve HTTP already: start this one with --no-http, "
                               f"or move the ports with -c settings.http.port_offset=N") from None
    except BaseException:
        for s in socks.values():
            s.close()
        raise
    return socks


class PortDispatch:
    """ASGI app: picks the per-port app by the local port; caps request bodies (413)."""

    def __init__(self, apps: dict[int, Any], limit: int, origins: frozenset[str] = frozenset()) -> None:
        self.apps = apps
        self.limit = limit
        self.origins = origins  # settings.http.cors_origins: browser origins allowed to write too

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        server = scope.get("server") or (None, None)
        app = self.apps.get(server[1]) if isinstance(server[1], int) else None
        if app is None:
            return await _json(send, 404, {"detail": f"nothing is served on port {server[1]}"})
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            if not _same_origin(scope, self.origins):
                return await _json(send, 403, {"detail": "cross-origin write refused (Origin is not this host)",
                                               "error": "refused"})
            body = await self._read_body(scope, receive)
            if body is None:
                return await _json(send, 413, {"detail": f"request body larger than {self.limit} bytes",
                                               "error": "payload_too_large"})
            receive = _replay(body, receive)
        with tracing.http_request(scope):
            await app(scope, receive, send)

    async def _read_body(self, scope: dict[str, Any], receive: Any) -> bytes | None:
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        too_big = declared.isdigit() and int(declared) > self.limit
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            more = msg.get("more_body", False)
            if size > self.limit:
                too_big = True
            if too_big:
                if size > 4 * self.limit:  # stop reading a flood; the connection will be closed
                    break
                continue  # drain so the client sees the 413 rather than a reset
            chunks.append(chunk)
        return None if too_big else b"".join(chunks)


def _same_origin(scope: dict[str, Any], allowed: frozenset[str] = frozenset()) -> bool:
    """A browser names the page that sent a write in Origin: only this host:port's own pages, and
    the origins configured in settings.http.cors_origins, may write (no CSRF from other sites; the
    body-less cancel would otherwise be a simple form post).
    Clients that send no Origin (curl, scripts) are not browsers and are let through."""
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin")
    if origin is None:
        return True
    if origin.decode("latin-1").rstrip("/") in allowed:
        return True
    return urlsplit(origin.decode("latin-1")).netloc == headers.get(b"host", b"").decode("latin-1")


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class _Server(uvicorn.Server):
    """uvicorn in someone else's event loop: the host process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class AdapterHandle:
    host: str
    ports: dict[str, int]
    backend: Backend
    hub: EventHub
    server: _Server
    task: asyncio.Task[Any]
    mcp: Any = None  # pas.mcp.http.McpHttp: MCP and A2A on the gateway's port
    _stopped: bool = field(default=False)

    def url(self, name: str = HMI) -> str:
        """Base URL of an agent's port (by id) or of the HMI."""
        return f"http://{self.host}:{self.ports[name]}"

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.hub.close()  # ends every SSE stream, so shutdown does not wait on them
        if self.mcp is not None:
            await self.mcp.stop()  # ends the MCP sessions and their streams
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10.0)
        except (TimeoutError, Exception):
            self.server.force_exit = True
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.backend.close()


def bind_ports(cfg: PasConfig) -> dict[str, socket.socket]:
    """Every port of the adapter, bound now (a caller binds first, before anything else starts)."""
    return bind(cfg.settings.http.host, port_plan(cfg))


async def start_adapter(cfg: PasConfig, url: str, *, token: str | None = None,
                        socks: dict[str, socket.socket] | None = None, creds: Any = None) -> AdapterHandle:
    """Bind every agent port and the HMI (unless `socks` are given, from bind_ports), connect to
    NATS at `url` (as the `adapter` user when creds, a pas.auth.Creds, are given), and serve in the
    background."""
    h = cfg.settings.http
    plan = port_plan(cfg)
    tracing.setup(cfg)
    socks = socks if socks is not None else bind(h.host, plan)
    backend: Backend | None = None
    hub: EventHub | None = None
    mcp: Any = None
    try:
        backend = await Backend.open(cfg, url, creds)
        hub = EventHub(backend.bus.nc)
        await hub.start()
        ctx = Ctx(cfg=cfg, backend=backend, hub=hub,
                  token=token if token is not None else (os.environ.get("PAS_HTTP_TOKEN") or None))
        apps: dict[int, Any] = {plan[a.id]: agent_app(ctx, a) for a in cfg.agents if a.id in plan}
        apps[plan[HMI]] = hmi_app(ctx)
        mcp = await _mount_mcp_a2a(ctx, apps, plan)
        config = uvicorn.Config(PortDispatch(apps, h.request_limit_bytes,
                                             frozenset(o.rstrip("/") for o in h.cors_origins)), lifespan="off", log_config=None,
                                log_level="warning", access_log=False, ws="none", server_header=False,
                                timeout_graceful_shutdown=3)
        server = _Server(config)
        task = asyncio.ensure_future(server.serve(sockets=list(socks.values())))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise PasError("HTTP adapter stopped during start-up")
            if loop.time() > deadline:
                task.cancel()
                raise PasError(f"HTTP adapter not serving after {START_TIMEOUT_S}s")
            await asyncio.sleep(0.005)
    except BaseException:
        for s in socks.values():
            s.close()
        if hub is not None:
            await hub.close()
        if mcp is not None:
            await mcp.stop()
        if backend is not None:
            await backend.close()
        raise
    log.info("HTTP adapter: %d agent ports and the HMI on %s:%d", len(plan) - 1, h.host, plan[HMI])
    return AdapterHandle(host=h.host, ports=plan, backend=backend, hub=hub, server=server, task=task, mcp=mcp)


async def _mount_mcp_a2a(ctx: Ctx, apps: dict[int, Any], plan: dict[str, int]) -> Any:
    """MCP (/mcp) and A2A (agent card, /a2a) on the gateway's port (pas.mcp.http)."""
    gw = next((a for a in ctx.cfg.agents if a.role == "gateway" and a.id in plan), None)
    if gw is None:
        return None
    from pas.mcp.http import mount_on_gateway
    from pas.mcp.tools import Ops

    host = ctx.cfg.settings.http.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    port = plan[gw.id]
    apps[port], mcp = await mount_on_gateway(apps[port], Ops(ctx.backend), host, f"http://{shown}:{port}",
                                             ctx.token)
    return mcp
