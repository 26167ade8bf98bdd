"""The gateway as an A2A agent, through the official SDK's client (a2a-sdk): the agent card at the
well-known path, a message that becomes a PAS run and comes back as a completed task (blocking and
streamed), the v0.3 JSON-RPC names, and a bad job that ends as a failed task. A real nats-server,
the in-process stack, the offline planner: no model, no keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import get_data_parts, new_data_part
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState

from pas.surfaces.http.adapter import AdapterHandle, start_adapter
from pas.surfaces.stack import Stack
from pas.transport.server import EmbeddedServer
from tests.http_support import http_cfg
from tests.mcp_support import ALLOW, job, make_repo

# The tests send messages that become runs of their own: one stack and adapter for the module, on
# the module's own server, in the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(module_server: EmbeddedServer) -> AsyncIterator[AdapterHandle]:
    cfg = http_cfg(ALLOW)  # architect and directors without a model: goals are planned offline
    st = Stack(cfg, url=module_server.url, http=False)
    await st.start()
    adapter = await start_adapter(cfg, module_server.url, token="")
    try:
        yield adapter
    finally:
        await adapter.stop()
        await st.stop()


def message(*parts: Part) -> SendMessageRequest:
    return SendMessageRequest(message=Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=list(parts)))


async def send(base: str, req: SendMessageRequest, streaming: bool) -> list[Any]:
    async with httpx.AsyncClient(timeout=120) as http:
        client = await create_client(base, ClientConfig(streaming=streaming, httpx_client=http))
        try:
            return [ev async for ev in client.send_message(req)]
        finally:
            await client.close()


async def test_agent_card(gateway: AdapterHandle) -> None:
    async with httpx.AsyncClient() as h:
        r = await h.get(gateway.url("gateway") + "/.well-known/agent-card.json")
    assert r.status_code == 200
    card = r.json()
    assert card["name"] == "PAS gateway" and card["capabilities"]["streaming"] is True
    assert [s["name"] for s in card["skills"]] == ["run a software job"]
    assert card["supportedInterfaces"][0]["url"] == gateway.url("gateway") + "/a2a"
    assert card["supportedInterfaces"][0]["protocolBinding"] == "JSONRPC"
    async with httpx.AsyncClient() as h:  # the path older clients look at: the same card, v0.3 fields included
        legacy = await h.get(gateway.url("gateway") + "/.well-known/agent.json")
    assert legacy.json() == card and card["url"] == gateway.url("gateway") + "/a2a"
    assert card["preferredTransport"] == "JSONRPC"


async def test_message_becomes_a_completed_task(gateway: AdapterHandle, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    body = job(repo, "ignored")
    del body["run_id"]  # the A2A task id is the run id
    events = await send(gateway.url("gateway"), message(new_data_part(body)), streaming=False)
    assert len(events) == 1 and events[0].HasField("task")
    task = events[0].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    [status] = get_data_parts(list(task.artifacts[0].parts))
    assert status["run_id"] == task.id and status["status"] == "completed"
    assert {t["status"] for t in status["tasks"]} == {"completed"} and len(status["tasks"]) == 2
    async with httpx.AsyncClient() as h:  # the same run, seen through the gateway's HTTP API
        r = await h.get(gateway.url("gateway") + f"/runs/{task.id}")
    assert r.status_code == 200 and r.json()["status"] == "completed"


async def test_streamed_goal_reports_run_events(gateway: AdapterHandle) -> None:
    events = await send(gateway.url("gateway"),
                        message(Part(text="document the sample project\nplanned offline: one echo task per lane")),
                        streaming=True)
    updates = [e.status_update for e in events if e.HasField("status_update")]
    texts = [u.status.message.parts[0].text for u in updates if u.status.message.parts]
    states = [u.status.state for u in updates]
    assert states[-1] == TaskState.TASK_STATE_COMPLETED, texts
    assert TaskState.TASK_STATE_WORKING in states
    assert any(t.startswith("task ") and "completed" in t for t in texts), texts
    artifacts = [e.artifact_update for e in events if e.HasField("artifact_update")]
    [status] = get_data_parts(list(artifacts[0].artifact.parts))
    assert status["title"] == "document the sample project" and status["status"] == "completed"


async def test_v03_message_send_stream_and_a_bad_job(gateway: AdapterHandle) -> None:
    url = gateway.url("gateway") + "/a2a"

    def rpc(parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 1, "method": "message/send",
                "params": {"message": {"role": "user", "messageId": str(uuid.uuid4()), "kind": "message",
                                       "parts": parts}}}

    async with httpx.AsyncClient(timeout=120) as h:
        ok = (await h.post(url, json=rpc([{"kind": "text", "text": "check the docs"}]))).json()
        bad = (await h.post(url, json=rpc([{"kind": "data", "data": {"title": "x", "lanes": ["nope"]}}]))).json()
        events = []
        async with h.stream("POST", url, json={**rpc([{"kind": "text", "text": "lint the code"}]),
                                                "method": "message/stream"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:])["result"])
    assert ok["result"]["kind"] == "task" and ok["result"]["status"]["state"] == "completed", ok
    # integers stay integers (a protobuf Value holds doubles: the SDK alone prints "exit_code": 0.0)
    [final] = [p["data"] for a in ok["result"]["artifacts"] for p in a["parts"] if "data" in p]
    assert [type(t["exit_code"]) for t in final["tasks"]] == [int] * len(final["tasks"]), final["tasks"]
    assert type(final["usage"]["tokens"]) is int and type(final["tasks"][0]["attempts"]) is int, final
    streamed = next(e for e in events if e["kind"] == "artifact-update")["artifact"]["parts"][0]["data"]
    assert all(type(t["exit_code"]) is int for t in streamed["tasks"]), streamed["tasks"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "task" and "artifact-update" in kinds, kinds
    assert events[-1]["kind"] == "status-update" and events[-1]["status"]["state"] == "completed", events[-1]
    assert events[-1]["final"] is True
    assert bad["result"]["status"]["state"] == "failed", bad
    said = bad["result"]["status"]["message"]["parts"][0]["text"]
    assert said.startswith("bad_request") and "lanes" in said, said


async def test_cancelling_the_task_cancels_the_run(gateway: AdapterHandle) -> None:
    from a2a.types import CancelTaskRequest

    body = {"title": "long", "tasks": [{"lane": "code", "instruction": "sleep", "command": "sleep 60"}]}
    seen: list[str] = []
    async with httpx.AsyncClient(timeout=120) as http:
        client = await create_client(gateway.url("gateway"), ClientConfig(streaming=True, httpx_client=http))
        try:
            async for ev in client.send_message(message(new_data_part(body))):
                if ev.HasField("status_update"):
                    u = ev.status_update
                    seen.append(u.status.message.parts[0].text if u.status.message.parts else "")
                    if seen[-1].startswith("task ") and " running " in seen[-1]:
                        task = await client.cancel_task(CancelTaskRequest(id=u.task_id))
                        assert task.status.state == TaskState.TASK_STATE_CANCELED
                        run_id = u.task_id
                        break
            else:
                raise AssertionError(f"the task never ran: {seen}")
        finally:
            await client.close()
        r = await http.get(gateway.url("gateway") + f"/runs/{run_id}")
    assert r.json()["status"] == "cancelled", r.json()
