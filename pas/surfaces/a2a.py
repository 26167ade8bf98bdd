"""The gateway as an A2A agent (official SDK, PyPI `a2a-sdk`): an agent card with one skill,
"run a software job", and a JSON-RPC endpoint where a message becomes a PAS run.

    GET  /.well-known/agent-card.json     the card (served on the gateway's port by the HTTP adapter;
                                          also at /.well-known/agent.json for older clients)
    POST /a2a                             SendMessage / SendStreamingMessage (A2A 1.0), and the
                                          v0.3 names message/send / message/stream

A message's text is the job's goal (its first line the title); a data part shaped like
pas.gateway.submit's body (title, goal, repo, lanes, tasks, budget ...) is submitted as it is.
The A2A task id is the PAS run id. Run events (pas.run.<run_id>.>) become `working` status
updates; the end of the run becomes completed / failed / canceled with the final run status as a
data artifact. Cancelling the A2A task cancels the run.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from a2a.helpers.proto_helpers import get_data_parts, new_data_part, new_task, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, TaskState
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_CURRENT, TransportProtocol
from starlette.applications import Starlette
from starlette.middleware import Middleware

from pas import __version__
from pas.base.errors import PasError
from pas.protocol import subjects as S
from pas.protocol.ids import check_id
from pas.surfaces.mcp.watch import RunWatch
from pas.transport.client import PasClient

log = logging.getLogger("pas.surfaces.a2a")

RUN_TIMEOUT_S = 3600.0
LEGACY_CARD_PATH = "/.well-known/agent.json"  # where A2A clients before 0.3 look
END_STATE = {"completed": TaskState.TASK_STATE_COMPLETED, "failed": TaskState.TASK_STATE_FAILED,
             "cancelled": TaskState.TASK_STATE_CANCELED, "rejected": TaskState.TASK_STATE_REJECTED}


def agent_card(rpc_url: str) -> AgentCard:
    return AgentCard(
        name="PAS gateway",
        description="PAS, the Polyglot Agent Swarm: a hierarchical multi-agent system (architect, directors, "
                    "managers, programmers) that runs software jobs over NATS, in git worktrees.",
        version=__version__,
        supported_interfaces=[  # one endpoint speaks both (create_jsonrpc_routes(enable_v0_3_compat=True))
            AgentInterface(url=rpc_url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=version)
            for version in (PROTOCOL_VERSION_CURRENT, PROTOCOL_VERSION_0_3)],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(
            id="run-software-job", name="run a software job",
            description=f"Plan and run a software job across lanes ({', '.join(S.LANES)}): send "
                        f"the goal as text, or a data part with the {S.GATEWAY_SUBMIT} body (title, goal, repo, "
                        "lanes, tasks, budget). Streams run and task progress; the final run status (tasks, "
                        "outputs, branches, usage) is the artifact.",
            tags=["software", "agents", "swarm", "git"],
            examples=["Add type hints to src/ and make mypy pass",
                      '{"title": "lint", "repo": "/srv/app", "tasks": [{"lane": "code", "instruction": '
                      '"ruff check .", "command": "ruff check ."}]}'])],
    )


def job_from(context: RequestContext) -> dict[str, Any]:
    msg = context.message
    for data in get_data_parts(list(msg.parts)) if msg else []:
        if isinstance(data, dict) and data.get("title"):
            return dict(data)
    text = context.get_user_input().strip()
    if not text:
        raise PasError("the message has neither text nor a data part with a job (title, goal, tasks ...)")
    return {"title": text.splitlines()[0][:500], "goal": text}


class PasExecutor(AgentExecutor):
    def __init__(self, client: PasClient) -> None:
        self.client = client

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        if context.current_task is None:
            await event_queue.enqueue_event(new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED,
                                                     history=[context.message] if context.message else []))
        up = TaskUpdater(event_queue, task_id, context_id)

        def say(text: str) -> Any:
            return new_text_message(text, context_id=context_id, task_id=task_id)

        try:
            job = {**job_from(context), "run_id": check_id(task_id, "taskId")}  # the run's id (pas.protocol.ids)
            async with RunWatch(self.client, task_id) as watch:
                await self.client.submit(job)
                await up.start_work(say(f"PAS run {task_id} submitted: {job['title']}"))

                async def on_event(n: int, line: str) -> None:
                    await up.update_status(TaskState.TASK_STATE_WORKING, say(line))

                final = await watch.until_done(RUN_TIMEOUT_S, on_event)
        except PasError as e:
            log.info("a2a task %s: %s", task_id, e.message)
            await up.failed(say(f"{e.error}: {e.message}"))
            return
        await up.add_artifact([new_data_part(final)], name="run-status")
        await up.update_status(END_STATE[final["status"]],
                               say(f"run {task_id} {final['status']}" + (f": {final['message']}"
                                                                         if final.get("message") else "")))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        up = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        try:
            await self.client.cancel(context.task_id or "")
        except PasError as e:  # already ended, or unknown: say so, and end the A2A task anyway
            log.info("a2a cancel %s: %s", context.task_id, e.message)
        await up.cancel()


def whole_numbers(v: Any) -> Any:
    """A JSON value with every float that is a whole number made an int (0.0 -> 0)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: whole_numbers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [whole_numbers(x) for x in v]
    return v


def _whole_json(text: bytes) -> bytes:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(whole_numbers(value), ensure_ascii=False, separators=(",", ":")).encode()


class WholeNumbers:
    """ASGI middleware for the A2A replies. A data part is a protobuf Value, which holds every number as a
    double, so the SDK prints a run status's integers as floats (`"exit_code": 0.0`); this writes whole
    numbers as integers again, in JSON replies and in each `data:` line of a stream (SSE)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: list[Any] = []  # a JSON reply's start message, sent with its rewritten body (its length changes)
        body = bytearray()
        stream = False

        async def send_fixed(msg: Any) -> None:
            nonlocal stream
            if msg["type"] == "http.response.start":
                ctype = bytes(dict(msg.get("headers") or []).get(b"content-type", b""))
                stream = ctype.startswith(b"text/event-stream")
                if ctype.startswith(b"application/json"):
                    held.append(msg)
                    return
            elif msg["type"] == "http.response.body" and held:
                body.extend(msg.get("body", b""))
                if msg.get("more_body"):
                    return
                fixed = _whole_json(bytes(body))
                headers = [(k, v) for k, v in held[0].get("headers") or [] if k != b"content-length"]
                await send({**held[0], "headers": [*headers, (b"content-length", str(len(fixed)).encode())]})
                msg = {"type": "http.response.body", "body": fixed}
            elif msg["type"] == "http.response.body" and stream and msg.get("body"):
                msg = {**msg, "body": b"\n".join(_sse_line(ln) for ln in bytes(msg["body"]).split(b"\n"))}
            await send(msg)

        await self.app(scope, receive, send_fixed)


def _sse_line(line: bytes) -> bytes:
    if not line.startswith(b"data:"):
        return line
    cr = b"\r" if line.endswith(b"\r") else b""
    return b"data: " + _whole_json(line[5:].strip()) + cr


def a2a_app(client: PasClient, rpc_url: str) -> Starlette:
    """The card and the JSON-RPC endpoint (rpc_url's path) as one Starlette app."""
    from urllib.parse import urlsplit

    card = agent_card(rpc_url)
    handler = DefaultRequestHandler(agent_executor=PasExecutor(client), task_store=InMemoryTaskStore(),
                                    agent_card=card)
    routes = [*create_agent_card_routes(card),  # A2A 1.0's path; the card carries the v0.3 fields too
              *create_agent_card_routes(card, card_url=LEGACY_CARD_PATH),
              *create_jsonrpc_routes(handler, urlsplit(rpc_url).path, enable_v0_3_compat=True)]
    return Starlette(routes=routes, middleware=[Middleware(WholeNumbers)])
