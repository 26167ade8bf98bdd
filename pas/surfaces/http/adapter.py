"""The port-based HTTP adapter: ONE server for every agent's legacy port plus the HMI.

    handle = await start_adapter(cfg, nats_url)   # binds every port, returns at once
    ...
    await handle.stop()

Every port of the topology (AgentConfig.port + settings.http.port_offset) and the HMI
(settings.http.hmi_port + port_offset) is a socket bound here, all served by a single
uvicorn.Server running in the caller's event loop (`pas up` and Stack give it a loop and a thread of its
own, AdapterThread, so the agents' longest steps never hold HTTP or the HMI's events); requests are dispatched to the agent's own
FastAPI app by the local port they arrived on (scope["server"]). One process owning every port
means two services can never race for one port (the predecessor's 6110/6120 collisions).

The gateway's port also serves MCP (streamable HTTP at /mcp) and the gateway as an A2A agent
(/.well-known/agent-card.json, /a2a): see pas.surfaces.mcp.http.

Every port is closed by default (pas.surfaces.http.trust, README "Who is trusted"): a foreign Host gets 421,
everything but /health needs the token (<creds dir>/http-token, or PAS_HTTP_TOKEN), the HMI's login
cookie, or a loopback connection of PAS's own OS user; writes from a foreign Origin get 403; past
settings.http.max_connections open connections or max_sse event streams, 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import resource
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pas.base.errors import PasError
from pas.base.portowner import port_owner
from pas.config.model import PasConfig
from pas.surfaces.http.agents import agent_app
from pas.surfaces.http.backend import Backend
from pas.surfaces.http.common import Ctx
from pas.surfaces.http.events import EventHub
from pas.surfaces.http.hmi import hmi_app
from pas.surfaces.http.trust import Gate, base_url, http_token
from pas.transport import tracing

log = logging.getLogger("pas.surfaces.http")

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


STREAM_PATHS = frozenset({"/api/events", "/mcp", "/mcp/"})
"""Paths whose responses stay open (SSE): counted against settings.http.max_sse, like any request that
asks for text/event-stream."""
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class PortDispatch:
    """ASGI app in front of every port: the gate (Host 421, caps 503, Origin 403 on writes, auth 401;
    pas.surfaces.http.trust), then the per-port app picked by the local port, with request bodies capped (413)."""

    def __init__(self, apps: dict[int, Any], limit: int, gate: Gate, *, public: dict[int, frozenset[str]],
                 max_connections: int, max_sse: int) -> None:
        self.apps = apps
        self.limit = limit
        self.gate = gate
        self.public = public
        """Per port, the paths served without authorization (/health; the HMI's /login)."""
        self.max_connections, self.max_sse = max_connections, max_sse
        self.connections: Any = ()  # uvicorn's set of open connections, once the server exists
        self.streams = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        server = scope.get("server") or (None, None)
        port = server[1]
        app = self.apps.get(port) if isinstance(port, int) else None
        if app is None or not isinstance(port, int):
            return await _json(send, 404, {"detail": f"nothing is served on port {port}"})
        refusal = self._refusal(scope, port)
        if refusal is not None:
            status, why, headers = refusal
            log.info("HTTP %s %s from %s: %d %s", scope.get("method"), scope.get("path"), _peer(scope), status,
                     why["detail"])
            if status == 401 and b"text/html" in dict(scope.get("headers") or []).get(b"accept", b""):
                return await _respond(send, 401, LOGIN_PAGE, b"text/html; charset=utf-8", headers)
            return await _json(send, status, why, headers)
        if scope["type"] == "http" and scope["method"] in WRITES:
            body = await self._read_body(scope, receive)
            if body is None:
                return await _json(send, 413, {"detail": f"request body larger than {self.limit} bytes",
                                               "error": "payload_too_large"})
            receive = _replay(body, receive)
        stream = _is_stream(scope)
        self.streams += stream
        try:
            with tracing.http_request(scope):
                await app(scope, receive, send)
        finally:
            self.streams -= stream

    def _refusal(self, scope: dict[str, Any], port: int) -> tuple[int, dict[str, Any], list[Any]] | None:
        """Why this request is refused before any app sees it (status, body, extra headers), or None."""
        g = self.gate
        if not g.host_ok(scope):
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            return 421, {"detail": f"Host {host!r} is not served here (allowed: {', '.join(sorted(g.allowed_hosts))}; "
                                   "add names with settings.http.allowed_hosts)", "error": "misdirected"}, []
        close = [(b"connection", b"close")]
        if len(self.connections) > self.max_connections:
            return 503, {"detail": f"too many open connections ({len(self.connections)}; at most "
                                   f"settings.http.max_connections={self.max_connections})",
                         "error": "unavailable"}, close
        if _is_stream(scope) and self.streams >= self.max_sse:
            return 503, {"detail": f"too many open event streams ({self.streams}; at most "
                                   f"settings.http.max_sse={self.max_sse})", "error": "unavailable"}, close
        if scope["type"] == "http" and scope["method"] in WRITES and not g.origin_ok(scope):
            return 403, {"detail": "cross-origin write refused (Origin is not this host)", "error": "refused"}, []
        if scope.get("method") == "OPTIONS" or scope.get("path") in self.public.get(port, ()):
            return None  # a CORS preflight carries no credentials; it reaches no agent
        if not g.authorized(scope):
            return 401, {"detail": "missing or wrong bearer token: send `Authorization: Bearer <token>` (the token "
                                   "is in the creds dir's http-token file, or PAS_HTTP_TOKEN), or open the HMI "
                                   "login link that `pas up` printed", "error": "unauthorized"}, \
                [(b"www-authenticate", b"Bearer")]
        return None

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


def _is_stream(scope: dict[str, Any]) -> bool:
    if scope.get("path") in STREAM_PATHS:
        return True
    accept = dict(scope.get("headers") or []).get(b"accept", b"")
    return b"text/event-stream" in accept


def _peer(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


LOGIN_PAGE = (b"<!doctype html><title>PAS: log in</title><p>This PAS is closed to other users and sites. "
              b"Open the one-time login link that <code>pas up</code> printed, or run <code>pas login</code> "
              b"where PAS runs for a new one.")
"""What a browser navigating to a closed port sees instead of the JSON 401."""


async def _json(send: Any, status: int, body: dict[str, Any], headers: list[Any] | None = None) -> None:
    await _respond(send, status, json.dumps(body).encode(), b"application/json", headers)


async def _respond(send: Any, status: int, data: bytes, content_type: bytes, headers: list[Any] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class _Server(uvicorn.Server):
    """uvicorn in someone else's event loop: the host process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


KEEP_ALIVE_S = 10.0
"""How long a connection may idle after a response. Longer than clients keep idle connections (httpx: 5 s):
at uvicorn's 5 s, the server closed a pooled connection as the client sent its next request on it (a test's
shared client, CI: httpx.ReadError)."""
FIRST_REQUEST_S = 5.0
"""How long a new connection may wait before its first request."""


class _IdleClosingH11(H11Protocol):
    """uvicorn's h11 protocol, with a keep-alive timeout also started when a connection opens, not only
    after a response: a socket that never sends a request is closed after FIRST_REQUEST_S, so idle
    connections cannot pile up until the process runs out of file descriptors."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(FIRST_REQUEST_S, self.timeout_keep_alive_handler)


FD_RESERVE = 256
"""File descriptors kept for everything but HTTP connections (NATS, task pipes, files)."""


def _room_for(connections: int) -> None:
    """Raise the soft open-files limit so max_connections fit beside the rest of the process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            log.warning("HTTP adapter: open files limited to %d (hard limit): settings.http.max_connections=%d "
                        "leaves less than %d for the rest", new, connections, FD_RESERVE)


@dataclass
class AdapterHandle:
    host: str
    ports: dict[str, int]
    backend: Backend
    hub: EventHub
    server: _Server
    task: asyncio.Task[Any]
    gate: Gate
    mcp: Any = None  # pas.surfaces.mcp.http.McpHttp: MCP and A2A on the gateway's port
    _stopped: bool = field(default=False)

    def url(self, name: str = HMI) -> str:
        """Base URL of an agent's port (by id) or of the HMI."""
        return base_url(self.host, self.ports[name])

    def login_url(self) -> str:
        """The HMI with a new one-time login code (what `pas up` prints); the bare HMI when auth is off."""
        return self.url() + (f"/login?code={self.gate.mint_code()}" if self.gate.required else "/")

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
                        socks: dict[str, socket.socket] | None = None, creds: Any = None,
                        token_dir: Path | None = None) -> AdapterHandle:
    """Bind every agent port and the HMI (unless `socks` are given, from bind_ports), connect to
    NATS at `url` (as the `adapter` user when creds, a pas.transport.auth.Creds, are given), and serve in the
    background. The token: `token`, else PAS_HTTP_TOKEN, else <token_dir>/http-token (made on first
    start; token_dir defaults to the creds dir, pas.transport.auth.creds_dir)."""
    h = cfg.settings.http
    plan = port_plan(cfg)
    tracing.setup(cfg)
    token, hint = (token, "the token given") if token else _token(cfg, token_dir) if h.auth == "on" else (None, "")
    gate = Gate.from_config(cfg, token, hint)
    if not gate.required:
        log.warning("HTTP adapter: settings.http.auth is off: every port is open to anyone who can reach "
                    "%s (other local users and, through their browsers, web pages)", h.host)
    socks = socks if socks is not None else bind(h.host, plan)
    backend: Backend | None = None
    hub: EventHub | None = None
    mcp: Any = None
    try:
        backend = await Backend.open(cfg, url, creds)
        hub = EventHub(backend.bus.nc)
        await hub.start()
        ctx = Ctx(cfg=cfg, backend=backend, hub=hub, gate=gate)
        apps: dict[int, Any] = {plan[a.id]: agent_app(ctx, a) for a in cfg.agents if a.id in plan}
        apps[plan[HMI]] = hmi_app(ctx)
        mcp = await _mount_mcp_a2a(ctx, apps, plan)
        public = {port: frozenset({"/health"}) for port in plan.values()}
        public[plan[HMI]] = frozenset({"/health", "/login"})
        dispatch = PortDispatch(apps, h.request_limit_bytes, gate, public=public, max_connections=h.max_connections,
                                max_sse=h.max_sse)
        _room_for(h.max_connections)
        config = uvicorn.Config(dispatch, lifespan="off", log_config=None, log_level="warning", access_log=False,
                                ws="none", server_header=False, timeout_graceful_shutdown=3, http=_IdleClosingH11,
                                timeout_keep_alive=int(KEEP_ALIVE_S))
        server = _Server(config)
        dispatch.connections = server.server_state.connections
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
    return AdapterHandle(host=h.host, ports=plan, backend=backend, hub=hub, server=server, task=task, mcp=mcp,
                         gate=gate)


def _token(cfg: PasConfig, token_dir: Path | None) -> tuple[str, str]:
    from pas.transport.auth import creds_dir

    return http_token(token_dir or creds_dir(cfg))



async def _mount_mcp_a2a(ctx: Ctx, apps: dict[int, Any], plan: dict[str, int]) -> Any:
    """MCP (/mcp) and A2A (agent card, /a2a) on the gateway's port (pas.surfaces.mcp.http)."""
    gw = next((a for a in ctx.cfg.agents if a.role == "gateway" and a.id in plan), None)
    if gw is None:
        return None
    from pas.surfaces.mcp.http import mount_on_gateway
    from pas.surfaces.mcp.tools import Ops

    port = plan[gw.id]
    apps[port], mcp = await mount_on_gateway(apps[port], Ops(ctx.backend), base_url(ctx.cfg.settings.http.host, port))
    return mcp


class AdapterThread:
    """The adapter on an event loop of its own, in a thread of its own (what `pas up` and Stack run). Beside
    26 agents in one event loop the hub waited for the agents' longest steps (0.3-0.9 s at a big job's start:
    a 2,000-task job's first task states reached the page 0.5-1.2 s late, BENCHMARKS.md "hmi, third pass");
    in its own loop it waits at most for the interpreter's thread switch (5 ms). It shares no asyncio object
    with the agents: its own NATS connection (the `adapter` user), run store and hub. Delegates what callers
    read (url, login_url, ports, host, gate, hub, backend); stop() stops it in its loop and joins the thread."""

    def __init__(self, handle: AdapterHandle, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.handle, self.loop, self.thread = handle, loop, thread
        self._stopped = False

    @classmethod
    async def start(cls, cfg: PasConfig, url: str, **kw: Any) -> AdapterThread:
        """start_adapter(cfg, url, **kw) in a new thread's loop; returns once it serves (or raises what
        stopped it, the thread ended)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="pas-http", daemon=True)
        thread.start()
        started = asyncio.run_coroutine_threadsafe(start_adapter(cfg, url, **kw), loop)
        try:
            handle = await asyncio.wrap_future(started)
        except BaseException:
            started.cancel()  # a cancelled start: start_adapter's own cleanup runs in its loop
            await asyncio.to_thread(_end_loop, loop, thread)
            raise
        return cls(handle, loop, thread)

    @property
    def host(self) -> str:
        return self.handle.host

    @property
    def ports(self) -> dict[str, int]:
        return self.handle.ports

    @property
    def gate(self) -> Gate:
        return self.handle.gate

    @property
    def hub(self) -> EventHub:
        return self.handle.hub

    @property
    def backend(self) -> Backend:
        return self.handle.backend

    def url(self, name: str = HMI) -> str:
        return self.handle.url(name)

    def login_url(self) -> str:
        return self.handle.login_url()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.handle.stop(), self.loop))
        finally:
            await asyncio.to_thread(_end_loop, self.loop, self.thread)


def _end_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop a thread's loop once what runs in it has ended (each task cancelled and awaited), then close it."""
    async def cancel_rest() -> None:
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    if not thread.is_alive():
        loop.close()
