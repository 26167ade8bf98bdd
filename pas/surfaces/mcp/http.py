"""MCP (streamable HTTP) and A2A on the gateway's port of the HTTP adapter, in the adapter's process
and event loop, over the adapter's NATS connection:

    POST/GET/DELETE /mcp                       MCP streamable HTTP (sessions, SSE progress)
    GET  /.well-known/agent-card.json          the gateway's A2A agent card (also at agent.json)
    POST /a2a                                  A2A JSON-RPC: SendMessage / SendStreamingMessage
                                               (and the v0.3 names message/send, message/stream)

Every other path goes to the gateway's own FastAPI app. Who may call is decided before any of this, by
the adapter's gate for every port (pas.surfaces.http.trust: Host allowlist, token, cookie or same-user
connection, Origin on writes), so the MCP SDK's own Host/Origin check is not used: one allowlist.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager

from pas.surfaces.mcp.server import build_server
from pas.surfaces.mcp.tools import Ops

MCP_PATH = "/mcp"
A2A_PATH = "/a2a"


class McpHttp:
    """The MCP session manager, run in a task of its own (its task group must enter and exit in one task)."""

    def __init__(self, ops: Ops) -> None:
        self.manager = StreamableHTTPSessionManager(app=build_server(ops))
        self.app = StreamableHTTPASGIApp(self.manager)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        started = asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                started.set()
                await self._stop.wait()

        self._task = asyncio.ensure_future(run())
        done, _ = await asyncio.wait([self._task, asyncio.ensure_future(started.wait())],
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            self._task.result()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (TimeoutError, Exception):
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)


class GatewayMounts:
    """ASGI: /mcp, /a2a and the agent card in front of the gateway's app."""

    def __init__(self, gateway_app: Any, mcp: McpHttp, a2a_app: Any) -> None:
        self.gateway_app = gateway_app
        self.mcp = mcp
        self.a2a_app = a2a_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path in (MCP_PATH, MCP_PATH + "/"):
            app = self.mcp.app
        elif path == A2A_PATH or path.startswith("/.well-known/agent"):
            app = self.a2a_app
        else:
            app = self.gateway_app
        await app(scope, receive, send)


async def mount_on_gateway(gateway_app: Any, ops: Ops, base_url: str) -> tuple[GatewayMounts, McpHttp]:
    from pas.surfaces.a2a import a2a_app

    mcp = McpHttp(ops)
    await mcp.start()
    return GatewayMounts(gateway_app, mcp, a2a_app(await ops.pas(), base_url + A2A_PATH)), mcp
