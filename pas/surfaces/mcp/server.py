"""The MCP server of PAS (official SDK, PyPI `mcp`, low-level Server with explicit JSON schemas).

    pas mcp --nats-url nats://127.0.0.1:4222        # stdio, for assistants that spawn it
    http://<gateway host:port>/mcp                  # streamable HTTP, served by the HTTP adapter

A tool's PasError (bad input, unknown run, no agent answering, timeout) comes back as an MCP tool
result with isError=true and the PAS error text; the server itself never fails on bad input.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

from pas import __version__
from pas.base.errors import PasError
from pas.config.model import PasConfig
from pas.surfaces.http.backend import Backend
from pas.surfaces.mcp.tools import TOOLS, Ops
from pas.transport.bus import Bus, connect

log = logging.getLogger("pas.surfaces.mcp")

INSTRUCTIONS = ("PAS is a hierarchical agent swarm over NATS. submit_job hands it a software job (a goal, or "
                "explicit tasks per lane, in a git repo); wait_run or submit_job(wait=true) follow it with "
                "progress notifications; run_status, run_log and run_diff read the result.")


def tool_error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def build_server(ops: Ops) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=t.name, description=t.description, input_schema=t.input_schema,
                       annotations=types.ToolAnnotations(read_only_hint=t.read_only,
                                                         destructive_hint=t.name in ("cancel_run", "reject_run"),
                                                         open_world_hint=False))
            for t in TOOLS.values()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = TOOLS.get(params.name)
        if tool is None:
            return tool_error(f"unknown tool {params.name!r}; tools: {', '.join(TOOLS)}")
        args = params.arguments or {}

        async def progress(n: int, line: str) -> None:
            await ctx.session.report_progress(n, None, line)

        try:
            result = await tool.fn(ops, args, progress)
        except PasError as e:
            log.warning("mcp tool %s: %s %s", tool.name, e.error, e.message)
            return tool_error(f"{e.error} ({e.code}): {e.message}")
        except Exception as e:
            log.exception("mcp tool %s failed", tool.name)
            return tool_error(f"internal: {type(e).__name__}: {e}")
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(result, indent=1, default=str))],
                                    structured_content=result)

    return Server("pas", version=__version__, title="PAS, the Polyglot Agent Swarm", instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def open_backend(cfg: PasConfig, url: str, **connect_kw: Any) -> Backend:
    """A Backend on its own connection, as a client: no provisioning and no KV handles (the tools
    read buckets and the comms stream through consumers, and send requests)."""
    nc = await connect(url, name="pas-mcp", connect_timeout_s=cfg.settings.nats.connect_timeout_s, **connect_kw)
    return Backend(cfg, Bus(nc=nc, js=nc.jetstream(timeout=10), cfg=cfg))


async def serve_stdio(cfg: PasConfig, url: str, **connect_kw: Any) -> None:
    """Serve until stdin closes. NATS is reached at the first tool call: without it the server still
    starts, and each tool call says why it cannot work (unavailable, with the URL)."""

    async def opener() -> Backend:
        return await open_backend(cfg, url, **connect_kw)

    ops = Ops(opener=opener)
    try:
        server = build_server(ops)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        if ops.backend is not None:
            await ops.backend.close()
