"""PAS as an MCP server, through the official SDK's client: over stdio (`python -m pas mcp`
spawned like an assistant would) and over streamable HTTP (the HTTP adapter's /mcp on the
gateway's port). A real nats-server, the in-process stack, command tasks: no model, no keys."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from pas.surfaces.http.adapter import start_adapter
from pas.surfaces.mcp import tools
from pas.surfaces.stack import Stack
from pas.transport.server import EmbeddedServer
from tests.conftest import ROOT, make_cfg
from tests.http_support import http_cfg
from tests.mcp_support import ALLOW, data, job, make_repo, scenario


@pytest.fixture
async def mcp_stack(nats_server: EmbeddedServer) -> AsyncIterator[Stack]:
    st = Stack(make_cfg(ALLOW), url=nats_server.url, http=False)
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


async def test_mcp_over_stdio(mcp_stack: Stack, nats_server: EmbeddedServer, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "pas", "mcp", "--nats-url", nats_server.url],
                                   env=env, cwd=str(tmp_path))
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await scenario(session, repo, "mcp-stdio-1")


async def test_mcp_over_streamable_http(mcp_stack: Stack, nats_server: EmbeddedServer, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    cfg = http_cfg(ALLOW)
    adapter = await start_adapter(cfg, nats_server.url, token="")
    try:
        url = adapter.url("gateway") + "/mcp"
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await scenario(session, repo, "mcp-http-1")
            # A diff longer than the cap is cut, each task's alike, and says so (the server is in-process).
            monkeypatch.setattr(tools, "DIFF_MAX_CHARS", 40)
            cut = data(await session.call_tool("run_diff", {"run_id": "mcp-http-1",
                                                            "per_task": True}))
            by_lane = {d["task_id"].split("-")[0]: d["diff"] for d in cut["diffs"]}
            assert by_lane["code"].endswith("\n[... diff truncated at 20 characters]"), by_lane
            assert len(by_lane["code"]) == 20 + len("\n[... diff truncated at 20 characters]")
            assert by_lane["docs"] == ""
        # The gateway's own endpoints are still served on that port.
        async with httpx.AsyncClient() as h:
            r = await h.get(adapter.url("gateway") + "/runs")
            assert r.status_code == 200 and "mcp-http-1" in r.text
    finally:
        await adapter.stop()


async def test_mcp_http_needs_the_token_and_a_local_host_name(mcp_stack: Stack, nats_server: EmbeddedServer) -> None:
    adapter = await start_adapter(http_cfg("settings.http.trust_same_user=false"), nats_server.url, token="s3cret")
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        hdrs = {"Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient() as h:
            r = await h.post(adapter.url("gateway") + "/mcp", json=body, headers=hdrs)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
            r = await h.post(adapter.url("gateway") + "/a2a", json=body)
            assert r.status_code == 401
            # A page on another name resolving here (DNS rebinding) is refused by the adapter's Host check.
            r = await h.post(adapter.url("gateway") + "/mcp", json=body,
                             headers={**hdrs, "Host": "rebound.example", "Authorization": "Bearer s3cret"})
            assert r.status_code == 421, r.text
        http = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"})
        async with http, streamable_http_client(adapter.url("gateway") + "/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                assert len((await session.list_tools()).tools) == len(tools.TOOLS)
    finally:
        await adapter.stop()


async def test_stdio_server_without_nats_answers_with_tool_errors(tmp_path: Path) -> None:
    """`pas mcp` starts although nothing listens at the URL; a tool call says so, and the next one
    connects once the server is there."""
    srv = EmbeddedServer(tmp_path / "later", port=-1)
    srv.start()
    url = srv.url
    srv.stop()  # its port: nothing listens there now
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, env=env, cwd=str(tmp_path),
                                   args=["-m", "pas", "mcp", "--nats-url", url, "--connect-timeout", "1"])
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert len((await session.list_tools()).tools) == len(tools.TOOLS)
            res = await session.call_tool("list_runs", {})
            assert res.is_error, res
            assert res.content[0].text.startswith("unavailable (503): cannot reach NATS at " + url)
            assert (await session.call_tool("agents", {})).is_error
            port = int(url.rsplit(":", 1)[1])
            back = EmbeddedServer(tmp_path / "back", port=port)  # the same port, now served
            back.start()
            try:
                res = await session.call_tool("list_runs", {})
                # Connected now; no gateway runs on this bare server, and the tool says that.
                assert res.is_error and res.content[0].text.startswith("unavailable (503): no agent answers "
                                                                       "on pas.gateway.runs"), res
                agents = await session.call_tool("agents", {})
                assert not agents.is_error and agents.structured_content["agents"], agents
            finally:
                back.stop()


async def test_with_nats_users_on_it_connects_as_client(tmp_path: Path) -> None:
    """`pas up`'s default, NATS users on: `pas mcp` connects as `client` (creds from --creds-dir), the
    adapter's /mcp as `adapter`; a job with progress, the log, the diff and the agents work over both,
    and the server logs no permissions violation. Without credentials a tool call says it was refused."""
    repo = make_repo(tmp_path)
    cfg = http_cfg("settings.nats.port=-1", ALLOW)
    assert cfg.settings.nats.auth == "on"
    cfg.settings.nats.data_dir = str(tmp_path / "data")
    st = Stack(cfg, only=["monitor", "gateway", "root", "architect", "dir-code", "mgr-code-01", "prog-001"], http=True)
    await st.start()
    try:
        creds = tmp_path / "data" / "creds"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("PAS_CREDS_DIR", None)
        base = ["-m", "pas", "mcp", "--nats-url", st.url or ""]
        with (tmp_path / "mcp-stderr.log").open("w") as errlog:
            params = StdioServerParameters(command=sys.executable, args=[*base, "--creds-dir", str(creds)], env=env,
                                           cwd=str(tmp_path))
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await secured_calls(session, repo, "perm-stdio")
            anonymous = StdioServerParameters(command=sys.executable, args=base, env=env, cwd=str(tmp_path))
            async with stdio_client(anonymous, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    res = await session.call_tool("list_runs", {})
                    assert res.is_error and "refused the credentials" in res.content[0].text, res
        assert st.http_server is not None
        async with streamable_http_client(st.http_server.url("gateway") + "/mcp") as (read, write):
            async with ClientSession(read, write) as session:
                await secured_calls(session, repo, "perm-http")
    finally:
        await st.stop()
    text = (tmp_path / "data" / "nats-server.log").read_text()
    assert "Publish Violation" not in text and "Subscription Violation" not in text


async def secured_calls(session: ClientSession, repo: Path, run_id: str) -> None:
    await session.initialize()
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    body = {**job(repo, run_id), "wait": True, "timeout_s": 120}
    body["tasks"] = body["tasks"][:1]  # the code lane only
    final = data(await session.call_tool("submit_job", body, progress_callback=on_progress))
    assert final["status"] == "completed" and seen[-1].startswith("run completed"), (final, seen)
    log = data(await session.call_tool("run_log", {"run_id": run_id}))
    assert log["count"] > 0
    diff = data(await session.call_tool("run_diff", {"run_id": run_id}))
    assert "+written by a PAS task" in diff["diffs"][0]["diff"]
    agents = data(await session.call_tool("agents", {}))
    assert any(a["state"] == "alive" for a in agents["agents"]), agents
    assert data(await session.call_tool("list_runs", {}))["runs"]
