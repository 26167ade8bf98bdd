"""A local OpenAI-compatible chat server for tests: the real litellm (and aider) HTTP path, no mocks.

Serves ``POST /v1/chat/completions`` and ``POST /chat/completions`` on 127.0.0.1 (free port) from a
uvicorn server in a background thread. Each model name has a queue of scripted behaviours, consumed
one per request; when a model's queue is empty its default behaviour is used (if set), else the
request fails with HTTP 500 "no script" so a test never passes by accident.

    def test_x(fake_llm):
        fake_llm.script("m1", Fail(500), Reply("hello", prompt_tokens=12, completion_tokens=3))
        profile = fake_llm.profile("m1")            # ModelProfile(model="openai/m1", api_base=.../v1)
        ...
        assert [r.model for r in fake_llm.requests] == ["m1", "m1"]

Behaviours: Reply(text, ...) answers (streamed as SSE when the request asks for ``stream``),
Fail(status) answers with an HTTP error, Hang(seconds) waits longer than the client's timeout,
Garbage(body) answers HTTP 200 with a body that is not a chat completion (e.g. not JSON),
Dispatch(fn) calls fn(request body) to pick one of the others.
A plan-level "garbage" (non-JSON or truncated JSON content) is simply Reply("{\"lanes\": [").

Use the fixture from a test module with ``from tests.fakellm import fake_llm  # noqa: F401`` or from
tests/conftest.py with ``pytest_plugins = ["tests.fakellm"]``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

API_KEY_ENV = "PAS_FAKE_LLM_KEY"
"""Environment variable the test profiles name as their key (set to a dummy by the fixture)."""


@dataclass
class Reply:
    """Answer with `text`. Token counts default to word counts of the prompt and the reply."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"
    model: str | None = None
    """Model name put in the response (default: the requested one)."""


@dataclass
class Fail:
    """Answer with an HTTP error status and an OpenAI-style error body. "{api_key}" in the message
    is replaced by the bearer token of the request (a provider echoing the key back)."""

    status: int = 500
    message: str = "scripted failure"


@dataclass
class Hang:
    """Wait `seconds` (or until the server stops) before answering 504."""

    seconds: float = 30.0


@dataclass
class Garbage:
    """Answer HTTP 200 with a body that is not a chat completion."""

    body: str = "<html>this is not json"
    content_type: str = "application/json"


@dataclass
class Dispatch:
    """Decide per request: `choose(body)` (the request's JSON body) returns the behaviour to use.
    For scripts that depend on what the model is asked (parallel agents, content-routed replies)."""

    choose: Any


Behaviour = Reply | Fail | Hang | Garbage | Dispatch


@dataclass
class RecordedRequest:
    path: str
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    ts: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    def text(self) -> str:
        """All message contents joined, for asserting what the model was shown."""
        out = []
        for m in self.messages:
            c = m.get("content")
            if isinstance(c, list):
                c = " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
            out.append(str(c or ""))
        return "\n".join(out)


def _words(s: str) -> int:
    return max(1, len(s.split()))


class FakeLLM:
    """The scriptable server. One instance per test session; `reset()` between tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Behaviour]] = {}
        self._defaults: dict[str, Behaviour] = {}
        self.requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = self._make_app()

    # ---- scripting -----------------------------------------------------------------------
    def script(self, model: str, *behaviours: Behaviour) -> None:
        """Append behaviours to `model`'s queue (consumed one per request)."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(behaviours)

    def default(self, model: str, behaviour: Behaviour) -> None:
        """Behaviour used for `model` whenever its queue is empty."""
        with self._lock:
            self._defaults[model] = behaviour

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._defaults.clear()
            self.requests.clear()

    def pending(self, model: str) -> int:
        with self._lock:
            return len(self._scripts.get(model, ()))

    def requests_for(self, model: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.model == model]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    def profile(self, name: str, **kw: Any) -> Any:
        """A ModelProfile for model `name` served here (litellm string openai/<name>)."""
        from pas.config.model import ModelProfile

        args: dict[str, Any] = {
            "model": f"openai/{name}",
            "api_base": self.api_base,
            "api_key_env": API_KEY_ENV,
            "timeout_s": 5.0,
        }
        args.update(kw)
        return ModelProfile(**args)

    def _next(self, model: str) -> Behaviour:
        with self._lock:
            q = self._scripts.get(model)
            if q:
                return q.popleft()
            return self._defaults.get(model) or Fail(500, f"fakellm: no script for model {model!r}")

    # ---- HTTP ----------------------------------------------------------------------------
    def _make_app(self) -> FastAPI:
        app = FastAPI()

        async def chat(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return JSONResponse({"error": {"message": "bad json"}}, status_code=400)
            model = str(body.get("model", ""))
            with self._lock:
                self.requests.append(
                    RecordedRequest(request.url.path, model, body, dict(request.headers))
                )
            b = self._next(model)
            if isinstance(b, Dispatch):
                b = b.choose(body)
            auth = request.headers.get("authorization", "")
            return await self._respond(model, body, b, auth.removeprefix("Bearer ").strip())

        app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
        app.add_api_route("/chat/completions", chat, methods=["POST"])

        async def models() -> dict[str, Any]:
            return {"object": "list", "data": []}

        app.add_api_route("/v1/models", models, methods=["GET"])
        return app

    async def _respond(self, model: str, body: dict[str, Any], b: Behaviour, api_key: str = "") -> Response:
        if isinstance(b, Fail):
            message = b.message.replace("{api_key}", api_key)
            err = {"error": {"message": message, "type": "server_error", "code": b.status}}
            return JSONResponse(err, status_code=b.status)
        if isinstance(b, Hang):
            deadline = time.monotonic() + b.seconds
            while time.monotonic() < deadline and not self._stopping.is_set():
                await asyncio.sleep(0.05)
            return JSONResponse({"error": {"message": "hung"}}, status_code=504)
        if isinstance(b, Garbage):
            return PlainTextResponse(b.body, media_type=b.content_type)
        prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
        p_tok = b.prompt_tokens if b.prompt_tokens is not None else _words(prompt)
        c_tok = b.completion_tokens if b.completion_tokens is not None else _words(b.text)
        usage = {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok}
        rid = "chatcmpl-" + uuid.uuid4().hex[:12]
        name = b.model or model
        created = int(time.time())
        if body.get("stream"):
            return StreamingResponse(
                self._sse(rid, name, created, b, usage, body), media_type="text/event-stream"
            )
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": b.text},
                        "finish_reason": b.finish_reason,
                    }
                ],
                "usage": usage,
            }
        )

    @staticmethod
    def _sse(
        rid: str, name: str, created: int, b: Reply, usage: dict[str, int], body: dict[str, Any]
    ) -> Iterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
            c = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            c.update(extra)
            return f"data: {json.dumps(c)}\n\n"

        yield chunk({"role": "assistant", "content": ""}, None)
        step = 64
        for i in range(0, len(b.text), step):
            yield chunk({"content": b.text[i : i + step]}, None)
        yield chunk({}, b.finish_reason, usage=usage)
        yield "data: [DONE]\n\n"

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fakellm", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fakellm: server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


_SERVER: FakeLLM | None = None
_SERVER_LOCK = threading.Lock()


def get_server() -> FakeLLM:
    """The process-wide server, started on first use and stopped at exit."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            srv = FakeLLM()
            srv.start()
            atexit.register(srv.stop)
            _SERVER = srv
        return _SERVER


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """The fake server, emptied for this test, with the dummy API key variable set."""
    srv = get_server()
    srv.reset()
    monkeypatch.setenv(API_KEY_ENV, "sk-fake-test-key")
    yield srv
    srv.reset()
