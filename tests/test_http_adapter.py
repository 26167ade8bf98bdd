"""The port-based HTTP adapter and the HMI JSON API, end to end: real nats-server, real agents,
real HTTP through uvicorn (httpx), every port shifted to a free range with settings.http.port_offset."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio

from pas.base.errors import PasError
from pas.config.model import PasConfig
from pas.protocol import wire
from pas.surfaces.http import models as M
from pas.surfaces.http.adapter import port_plan, start_adapter
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from pas.transport.server import EmbeddedServer
from tests.conftest import fast_args, make_cfg, wait_for
from tests.http_support import all_free, free_port_offset, fuzz_operation, http_cfg, poll

ECHO = {"lane": "code", "instruction": "echo hello", "command": "echo hello", "executor": "command"}


class Http:
    """An httpx client plus the adapter's ports."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.h = stack.http_server
        self.c = httpx.AsyncClient(timeout=30)

    def u(self, name: str, path: str = "") -> str:
        return self.h.url(name) + path

    async def run_done(self, run_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            return (await self.c.get(self.u("gateway", f"/runs/{run_id}"))).json()
        return await poll(get, lambda st: st.get("status") in wire.TERMINAL_RUN, timeout_s, 0.2)


@contextlib.asynccontextmanager
async def _http(cfg: PasConfig, url: str, **kw: Any) -> AsyncIterator[Http]:
    st = Stack(cfg, url=url, http=True, **kw)
    await st.start()
    h = Http(st)
    try:
        yield h
    finally:
        await h.c.aclose()
        await st.stop()


@pytest.fixture
def hcfg() -> PasConfig:
    return http_cfg()


# The tests marked `shared` only read and submit runs of their own: they share one stack with the
# adapter on the module's own server, in the module's event loop. A test that changes an agent's
# model (own_http) or starts agents of its own keeps its own stack.
shared = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(module_server: EmbeddedServer) -> AsyncIterator[Http]:
    async with _http(http_cfg(), module_server.url) as h:
        yield h


@pytest.fixture
async def own_http(nats_server: EmbeddedServer, hcfg: PasConfig) -> AsyncIterator[Http]:
    async with _http(hcfg, nats_server.url) as h:
        yield h


@shared
async def test_the_adapter_serves_while_the_agents_loop_is_busy(http: Http) -> None:
    """The adapter (with the HMI's event hub) runs on an event loop of its own in a thread of its own: an
    agent step that holds the agents' loop (0.3-0.9 s at a big job's start) does not hold HTTP. This test's
    loop is the agents' loop; it is blocked until the request, sent from another thread, is answered."""
    assert http.h.thread is not threading.current_thread() and http.h.thread.is_alive()
    url = http.u("hmi", "/health")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        r = ex.submit(httpx.get, url, timeout=5).result(timeout=10)  # blocks the agents' loop meanwhile
    assert r.status_code == 200, r.text


# ---- every agent: /health, /status/{id} ------------------------------------------------------
@shared
async def test_health_of_a_manager_is_live(http: Http) -> None:
    assert http.h.ports["mgr-code-01"] == 6141 + http.stack.cfg.settings.http.port_offset

    async def get() -> httpx.Response:
        return await http.c.get(http.u("mgr-code-01", "/health"))
    r = await poll(get, lambda r: r.json().get("beat_age_s") is not None, 10, 0.2)
    assert r.status_code == 200
    h = r.json()
    assert (h["agent"], h["tier"], h["lane"], h["parent"]) == ("mgr-code-01", "manager", "code", "dir-code")
    assert h["state"] == "alive" and h["reachable"] is True and h["status"] == "ok"
    assert h["model"] == "gemini-flash" and h["llm_model"] == "gemini/gemini-2.5-flash"
    assert 0 <= h["beat_age_s"] < 5 and h["started_at"]
    r = await http.c.get(http.u("prog-004", "/health"))
    assert r.status_code == 200 and r.json()["tier"] == "programmer"


async def test_health_503_when_the_agent_does_not_answer(nats_server: EmbeddedServer, hcfg: PasConfig) -> None:
    async with _http(hcfg, nats_server.url, exclude=["mgr-code-03"]) as http:
        r = await http.c.get(http.u("mgr-code-03", "/health"))  # never started: no KV record
        assert r.status_code == 503
        b = r.json()
        assert b["state"] == "unknown" and b["reachable"] is False and b["model"] == "gemini-flash"
        assert b["agent"] == "mgr-code-03" and b["lane"] == "code" and "no agent answers" in b["error"]
        # Start it elsewhere, then stop it: the monitor marks it dead and /health says so.
        other = await Stack(hcfg, url=nats_server.url, only=["mgr-code-03"], name="other").start()

        async def get() -> httpx.Response:
            return await http.c.get(http.u("mgr-code-03", "/health"))
        r = await poll(get, lambda r: r.status_code == 200 and r.json()["beat_age_s"] is not None, 10, 0.2)
        assert r.json()["state"] == "alive"
        await other.stop()
        r = await poll(get, lambda r: r.json()["state"] == "dead", 10, 0.2)
        assert r.status_code == 503 and r.json()["beat_age_s"] >= 1


@shared
async def test_status_endpoints(http: Http) -> None:
    r = await http.c.post(http.u("mgr-code-02", "/submit"),
                          json={"job_id": "j1", "run_id": "adhoc-1", "tasks": [{"lane": "code", "instruction": "hi",
                                                                              "executor": "echo"}]})
    assert r.status_code == 200 and r.json() == {"job_id": "j1", "run_id": "adhoc-1", "status": "queued"}

    async def job() -> httpx.Response:
        return await http.c.get(http.u("mgr-code-01", "/status/adhoc-1:j1"))
    r = await poll(job, lambda r: r.status_code == 200 and r.json()["status"] == "completed", 10, 0.2)
    assert r.json()["tasks"] == ["j1-01"] and r.json()["lane"] == "code"
    r = await http.c.get(http.u("mgr-code-01", "/status/adhoc-1:nope"))
    assert r.status_code == 404 and "no job" in r.json()["detail"]
    r = await http.c.get(http.u("dir-code", "/status/anything"))
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await http.c.get(http.u("gateway", "/status/missing-run"))
    assert r.status_code == 404
    for bad in ("a.b", "run:job", "x" * 65):  # ids become KV keys: refused before NATS
        assert (await http.c.get(http.u("gateway", f"/status/{bad}"))).status_code == 422, bad
    assert (await http.c.get(http.u("mgr-code-01", "/status/a:b:c"))).status_code == 422
    r = await http.c.get(http.u("root", "/"))
    assert r.status_code == 200 and "GET /health" in r.json()["endpoints"]


# ---- gateway ---------------------------------------------------------------------------------
@shared
async def test_prime_directives_run_completes(http: Http) -> None:
    body = {"title": "legacy directive", "description": "say hello", "entry_files": ["src/app.py"],
            "budget_tokens_max": 1000, "budget_cost_usd_max": 0.5}
    r = await http.c.post(http.u("gateway", "/prime_directives"), json=body)
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    st = await http.run_done(run_id)
    assert st["status"] == "completed" and st["lanes"] == ["code"]
    assert st["tasks"][0]["output"] == "say hello\n\nEntry files: src/app.py"
    assert st["completed_at"] == st["finished_at"] and st["duration_s"] >= 0
    r = await http.c.get(http.u("gateway", "/runs"), params={"status": "completed", "limit": 5})
    assert run_id in [x["run_id"] for x in r.json()["runs"]]
    r = await http.c.get(http.u("gateway", f"/status/{run_id}"))  # the legacy GET /status/{id}
    assert r.status_code == 200 and r.json()["status"] == "completed"
    r = await http.c.post(http.u("gateway", f"/runs/{run_id}/cancel"))
    assert r.status_code == 409 and r.json()["detail"] == f"run {run_id!r} already completed"


@shared
async def test_idempotency_key_returns_the_same_run(http: Http) -> None:
    body = {"title": "once", "goal": "only once"}
    h = {"Idempotency-Key": "key-42"}
    a = (await http.c.post(http.u("gateway", "/prime_directives"), json=body, headers=h)).json()
    b = (await http.c.post(http.u("gateway", "/prime_directives"), json=body, headers=h)).json()
    assert a["run_id"] == b["run_id"] and a["duplicate"] is False and b["duplicate"] is True
    c = (await http.c.post(http.u("gateway", "/submit"), json={"title": "x"}, headers=h)).json()
    assert c["run_id"] == a["run_id"]
    d = (await http.c.post(http.u("gateway", "/submit"), json={"title": "x"}, headers={"Idempotency-Key": "other"}))
    assert d.json()["run_id"] != a["run_id"]
    r = await http.c.post(http.u("gateway", "/submit"), json={"title": "x"}, headers={"Idempotency-Key": "k" * 300})
    assert r.status_code == 422


@shared
async def test_submit_runs_list_and_filters(http: Http) -> None:
    r = await http.c.post(http.u("gateway", "/submit"),
                          json={"title": "two tasks", "run_id": "r-http-1", "tasks": [ECHO, {**ECHO, "lane": "docs"}]})
    assert r.status_code == 200 and r.json()["run_id"] == "r-http-1"
    st = await http.run_done("r-http-1")
    assert st["status"] == "completed" and sorted(st["lanes"]) == ["code", "docs"]
    assert all(t["output"] == "hello\n" and t["attempts"] == 1 and t["programmer"] for t in st["tasks"])
    r = await http.c.post(http.u("gateway", "/submit"), json={"title": "again", "run_id": "r-http-1"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    runs = (await http.c.get(http.u("gateway", "/runs"), params={"limit": 1})).json()["runs"]
    assert len(runs) == 1
    assert (await http.c.get(http.u("gateway", "/runs"), params={"status": "failed"})).json()["runs"] == []
    for bad in ({"limit": 0}, {"limit": 5000}, {"status": "bogus"}, {"limit": "x"}):
        assert (await http.c.get(http.u("gateway", "/runs"), params=bad)).status_code == 422


@shared
async def test_bad_bodies_are_4xx(http: Http) -> None:
    url = http.u("gateway", "/submit")
    for body in ({}, {"title": ""}, {"title": "x", "extra": 1}, {"title": "x", "lanes": ["nope"]},
                 {"title": "x", "tasks": [{"lane": "code"}]}, {"title": "x", "priority": 3},
                 {"title": "x", "run_id": "bad id!"}, {"title": "x", "budget": {"tokens_max": -1}}, [1, 2], "text",
                 {"title": "x", "tasks": [{**ECHO, "files": ["a\u0000"]}]}, {"title": "x", "repo": "/tmp/\u0000"}):
        r = await http.c.post(url, json=body)
        assert r.status_code == 422, (body, r.text)
        assert "detail" in r.json()
    r = await http.c.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    # Valid shape, refused by the gateway itself: 400 with its reason.
    r = await http.c.post(url, json={"title": "x", "tasks": [{**ECHO, "command": "rm -rf /"}]})
    assert r.status_code == 400 and r.json()["error"] == "bad_request" and "tasks[0]" in r.json()["detail"]
    r = await http.c.post(url, json={"title": "x", "repo": "/tmp/pas-nonexistent/repo"})
    assert r.status_code == 400 and "git" in r.json()["detail"]
    r = await http.c.post(url, json={"title": "x", "repo": "/nonexistent/repo"})
    assert r.status_code == 400 and "repo_roots" in r.json()["detail"]
    r = await http.c.post(http.u("gateway", "/prime_directives"), json={"title": "x", "repo_root": "/nonexistent"})
    assert r.status_code == 400
    r = await http.c.post(http.u("gateway", "/prime_directives"), json={"description": "no title"})
    assert r.status_code == 422
    r = await http.c.post(url, content=b"x" * (3 * 1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "detail" in r.json()
    # A browser page of another origin may not write (CSRF); the adapter's own pages may.
    r = await http.c.post(http.u("gateway", "/runs/r-1/cancel"), headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = await http.c.post(http.u("hmi", "/api/submit"), json={"title": "t"}, headers={"Origin": "null"})
    assert r.status_code == 403
    hmi = http.u("hmi")
    r = await http.c.post(hmi + "/api/submit", json={"title": "same origin"}, headers={"Origin": hmi})
    assert r.status_code == 200
    r = await http.c.post(hmi + "/api/submit", content=b'{"title": "x"}', headers={"content-type": "text/plain"})
    assert r.status_code == 422  # a simple (preflight-free) cross-site form post cannot carry JSON


@shared
async def test_unknown_run_and_cancel(http: Http) -> None:
    r = await http.c.get(http.u("gateway", "/runs/no-such-run"))
    assert r.status_code == 404 and r.json() == {"detail": "no run 'no-such-run'", "error": "not_found", "info": None}
    assert (await http.c.post(http.u("gateway", "/runs/no-such-run/cancel"))).status_code == 404
    assert (await http.c.get(http.u("gateway", "/runs/bad.id"))).status_code == 422
    slow = {"lane": "code", "instruction": "sleep 30", "command": "sleep 30", "executor": "command"}
    run_id = (await http.c.post(http.u("gateway", "/submit"), json={"title": "slow", "tasks": [slow]})).json()["run_id"]

    async def get() -> dict[str, Any]:
        return (await http.c.get(http.u("gateway", f"/runs/{run_id}"))).json()
    await poll(get, lambda st: any(t["status"] == "running" for t in st["tasks"]), 10, 0.2)
    r = await http.c.post(http.u("gateway", f"/runs/{run_id}/cancel"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await http.c.post(http.u("gateway", f"/runs/{run_id}/cancel"))
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]
    st = await poll(get, lambda st: st["tasks"][0]["status"] == "cancelled", 10, 0.2)
    assert st["status"] == "cancelled"


# ---- architect, directors, managers, programmers ---------------------------------------------
@shared
async def test_architect_and_director_submit(http: Http) -> None:
    r = await http.c.post(http.u("architect", "/submit"),
                          json={"title": "prd", "prd": "build it", "entry_files": ["a.py"]})
    assert r.status_code == 200, r.text
    st = await http.run_done(r.json()["run_id"])
    assert st["status"] == "completed" and st["tasks"][0]["output"] == "build it\n\nEntry files: a.py"
    r = await http.c.post(http.u("architect", "/submit"), json={"title": "p", "policy": {"bogus": 1}})
    assert r.status_code == 422 and "bogus" in r.text
    r = await http.c.post(http.u("dir-docs", "/submit"), json={"title": "docs only", "goal": "write docs"})
    assert r.status_code == 200
    st = await http.run_done(r.json()["run_id"])
    assert st["lanes"] == ["docs"] and st["tasks"][0]["lane"] == "docs" and st["status"] == "completed"
    r = await http.c.post(http.u("dir-docs", "/submit"), json={"title": "x", "tasks": [ECHO]})
    assert r.status_code == 400 and "lane 'docs'" in r.json()["detail"]
    r = await http.c.post(http.u("dir-docs", "/submit"), json={"title": "x", "lanes": ["code"]})
    assert r.status_code == 400


@shared
async def test_manager_submit_errors(http: Http) -> None:
    url = http.u("mgr-docs-01", "/submit")
    card = {"job_id": "j9", "run_id": "adhoc-9", "tasks": [{**ECHO, "lane": "docs"}]}
    assert (await http.c.post(url, json={**card, "lane": "code"})).status_code == 400
    assert (await http.c.post(url, json={**card, "tasks": [ECHO]})).status_code == 400
    assert (await http.c.post(url, json={**card, "tasks": []})).status_code == 422
    assert (await http.c.post(url, json={"job_card": card})).status_code == 422
    assert (await http.c.post(url, json={**card, "job_id": "a b"})).status_code == 422
    r = await http.c.post(url, json=card)
    assert r.status_code == 200 and r.json()["status"] == "queued"


@shared
async def test_programmer_execute(http: Http) -> None:
    url = http.u("prog-003", "/execute")
    r = await http.c.post(url, json={"task": "echo hi", "executor": "command", "command": "echo hi", "timeout_s": 30})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["status"] == "success" and b["programmer"] == "prog-003" and b["output"] == "hi\n"
    r = await http.c.post(url, json={"instruction": "just echo", "executor": "echo"})
    assert r.status_code == 200 and r.json()["output"] == "just echo"
    r = await http.c.post(url, json={"instruction": "x", "command": "false", "executor": "command"})
    assert r.status_code in (200, 403) and (r.status_code == 403 or r.json()["status"] == "error")
    for bad in ({"task": "a", "instruction": "b"}, {}, {"instruction": "x", "timeout_s": 5},
                {"instruction": "x", "timeout_s": 7200}, {"instruction": "x", "llm_params": {"seed": 1}}):
        assert (await http.c.post(url, json=bad)).status_code == 422, bad
    r = await http.c.post(url, json={"instruction": "x", "llm_model": "gpt"})  # a model no programmer has
    assert r.status_code == 400 and r.json()["info"]["field"] == "llm_model"


# ---- no responders, timeouts, auth -----------------------------------------------------------
async def test_503_when_no_agent_answers(nats_server: EmbeddedServer, hcfg: PasConfig) -> None:
    async with _http(hcfg, nats_server.url, only=["monitor"]) as http:
        r = await http.c.post(http.u("gateway", "/submit"), json={"title": "nobody home"})
        assert r.status_code == 503 and "no agent answers" in r.json()["detail"]
        assert (await http.c.get(http.u("gateway", "/runs"))).status_code == 503
        assert (await http.c.get(http.u("gateway", "/runs/r-1"))).status_code == 503
        assert (await http.c.post(http.u("mgr-code-01", "/submit"), json={
            "job_id": "j", "run_id": "r", "tasks": [ECHO]})).status_code == 503
        assert (await http.c.post(http.u("prog-001", "/execute"), json={"instruction": "x"})).status_code == 503
        assert (await http.c.get(http.u("dir-code", "/status/x"))).status_code == 503
        r = await http.c.get(http.u("hmi", "/api/agents"))  # KV and config still answer
        assert r.status_code == 200 and len(r.json()["agents"]) == 26
        assert (await http.c.post(http.u("hmi", "/api/agents/mgr-code-01/model"),
                                  json={"primary": "gpt-4o"})).status_code == 503


async def test_504_when_an_agent_hangs(nats_server: EmbeddedServer, nc: Any) -> None:
    cfg = http_cfg("settings.nats.request_timeout_s=0.3")

    async def swallow(msg: Any) -> None:  # a hung gateway: receives, never replies
        pass

    await nc.subscribe("pas.gateway.runs", cb=swallow)
    await nc.flush()
    async with _http(cfg, nats_server.url, only=["monitor"]) as http:
        r = await http.c.get(http.u("gateway", "/runs"))
        assert r.status_code == 504 and "within 0.3s" in r.json()["detail"]


async def test_port_in_use_fails_start_up_naming_the_agent(hcfg: PasConfig) -> None:
    plan = port_plan(hcfg)
    blocker = socket.create_server((hcfg.settings.http.host, plan["architect"]))
    try:
        with pytest.raises(PasError, match=rf"{plan['architect']} for architect"):
            await start_adapter(hcfg, "nats://127.0.0.1:1")
    finally:
        blocker.close()
    for port in plan.values():  # nothing left bound
        socket.create_server((hcfg.settings.http.host, port)).close()


@shared
async def test_openapi_per_port(http: Http) -> None:
    r = await http.c.get(http.u("gateway", "/docs"))
    assert r.status_code == 200 and "swagger" in r.text.lower()
    paths = (await http.c.get(http.u("gateway", "/openapi.json"))).json()["paths"]
    assert {"/health", "/status/{ref}", "/submit", "/prime_directives", "/runs", "/runs/{run_id}",
            "/runs/{run_id}/cancel"} <= set(paths)
    assert "/execute" in (await http.c.get(http.u("prog-010", "/openapi.json"))).json()["paths"]
    mgr = (await http.c.get(http.u("mgr-data-01", "/openapi.json"))).json()["paths"]
    assert "/submit" in mgr and "/prime_directives" not in mgr
    assert "/api/events" in (await http.c.get(http.u("hmi", "/api/openapi.json"))).json()["paths"]


def test_http_models_mirror_the_wire_types() -> None:
    pairs = [(M.TaskIn, wire.TaskSpec), (M.BudgetIn, wire.Budget), (M.JobSubmitIn, wire.JobSubmit),
             (M.JobCardIn, wire.JobCardSubmit), (M.ExecuteIn, wire.ExecuteRequest)]
    for model, struct in pairs:
        wire_fields = {f.name for f in msgspec.structs.fields(struct)}
        assert set(model.model_fields) - {"task"} == wire_fields, model.__name__
    # What the adapter sends decodes as the wire type.
    job = M.JobSubmitIn(title="t", tasks=[M.TaskIn(**ECHO)], budget=M.BudgetIn(tokens_max=5))
    assert wire.decode(json.dumps(job.to_wire()).encode(), wire.JobSubmit).budget.tokens_max == 5
    pd = M.PrimeDirectivesIn(title="t", description="d", repo_root="/r", budget_cost_usd_max=1)
    assert wire.decode(json.dumps(pd.to_wire()).encode(), wire.JobSubmit).repo == "/r"
    ex = M.ExecuteIn(task="do", timeout_s=20)
    assert wire.decode(json.dumps(ex.to_wire()).encode(), wire.ExecuteRequest).instruction == "do"


# ---- the HMI's JSON API and live events ------------------------------------------------------
async def test_hmi_api(own_http: Http) -> None:
    http = own_http
    hmi = lambda path: http.u("hmi", path)  # noqa: E731
    page = await http.c.get(hmi("/"))
    assert page.status_code == 200 and 'data-testid="tree"' in page.text
    assert (await http.c.get(hmi("/static/app.js"))).status_code == 200
    assert (await http.c.get(hmi("/health"))).json()["nats_connected"] is True
    agents = (await http.c.get(hmi("/api/agents"))).json()["agents"]
    assert len(agents) == 26 and {a["tier"] for a in agents} >= {"manager", "programmer", "director"}
    mgr = next(a for a in agents if a["id"] == "mgr-code-02")
    assert mgr["model_editable"] and mgr["http_port"] == http.h.ports["mgr-code-02"]
    models = (await http.c.get(hmi("/api/models"))).json()
    assert "claude-haiku" in models["profiles"] and models["agents"]["mgr-code-02"]["model"] == "gemini-flash"

    r = await http.c.post(hmi("/api/agents/mgr-code-02/model"), json={"primary": "claude-haiku"})
    assert r.status_code == 200 and r.json()["model"] == "claude-haiku"
    assert r.json()["previous"]["model"] == "gemini-flash"
    assert (await http.c.get(http.u("mgr-code-02", "/health"))).json()["model"] == "claude-haiku"
    assert (await http.c.get(hmi("/api/models"))).json()["agents"]["mgr-code-02"]["model"] == "claude-haiku"
    r = await http.c.post(hmi("/api/agents/mgr-code-02/model"), json={"primary": "no-such-profile"})
    assert r.status_code == 400 and "unknown model profile" in r.json()["detail"]
    assert (await http.c.post(hmi("/api/agents/mgr-code-02/model"), json={})).status_code == 400
    assert (await http.c.post(hmi("/api/agents/nobody/model"), json={"primary": "gpt-4o"})).status_code == 404
    assert (await http.c.post(hmi("/api/agents/mgr-code-02/model"), json={"primary": ""})).status_code == 422
    assert (await http.c.post(hmi("/api/agents/mgr-code-02/model"), json={"model": "x"})).status_code == 422

    r = await http.c.post(hmi("/api/submit"), json={"title": "from the hmi", "tasks": [ECHO]})
    assert r.status_code == 200
    run_id = r.json()["run_id"]
    st = await http.run_done(run_id)
    d = (await http.c.get(hmi(f"/api/runs/{run_id}"))).json()
    assert d["status"] == st["status"] == "completed"
    assert d["lane_states"] == [{"lane": "code", "status": "completed", "director": "dir-code", "jobs": ["code-1"]}]
    assert run_id in [x["run_id"] for x in (await http.c.get(hmi("/api/runs"))).json()["runs"]]
    assert (await http.c.get(hmi("/api/runs/nope"))).status_code == 404
    assert (await http.c.post(hmi(f"/api/runs/{run_id}/cancel"))).status_code == 409
    assert (await http.c.post(hmi("/api/runs/nope/cancel"))).status_code == 404
    assert (await http.c.post(hmi("/api/submit"), json={"title": ""})).status_code == 422

    entries = (await http.c.get(hmi("/api/comms"), params={"run": run_id})).json()["entries"]
    assert entries and all(e["run_id"] == run_id for e in entries)
    assert entries[-1]["message"] == f"run {run_id} completed"
    cmds = (await http.c.get(hmi("/api/comms"), params={"type": "CMD", "limit": 500})).json()["entries"]
    assert cmds and {e["msg_type"] for e in cmds} == {"CMD"}
    prog = st["tasks"][0]["programmer"]
    mine = (await http.c.get(hmi("/api/comms"), params={"agent": prog})).json()["entries"]
    assert mine and all(prog in (e["from_agent"], e["to_agent"]) for e in mine)
    assert len((await http.c.get(hmi("/api/comms"), params={"limit": 2})).json()["entries"]) == 2
    assert (await http.c.get(hmi("/api/comms"), params={"type": "a.b"})).status_code == 422
    assert (await http.c.get(hmi("/api/comms"), params={"limit": 0})).status_code == 422


async def test_hmi_events_stream(own_http: Http) -> None:
    http = own_http
    seen: list[tuple[str, Any]] = []

    async def until(pred: Any, lines: Any) -> None:
        event = ""
        async for line in lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                seen.append((event, json.loads(line[6:])))
                if pred():
                    return

    async with http.c.stream("GET", http.u("hmi", "/api/events")) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.aiter_lines()
        await asyncio.wait_for(until(lambda: seen[-1][0] == "hello", lines), 5)
        run_id = (await http.c.post(http.u("gateway", "/submit"), json={"title": "live", "tasks": [ECHO]})).json()["run_id"]
        await http.c.post(http.u("hmi", "/api/agents/prog-002/model"), json={"primary": "gpt-4o"})

        def items() -> list[dict[str, Any]]:  # run states arrive in batches ("runs": {t, items})
            return [it for k, d in seen if k == "runs" for it in d["items"] if isinstance(it, dict)]

        def task_rows() -> list[dict[str, Any]]:  # a task's state: ["task", run_id, *task_fields] ("hello")
            hello = next(d for k, d in seen if k == "hello")
            return [{**dict(zip(hello["task_fields"], it[2:], strict=True)), "run_id": it[1]}
                    for k, d in seen if k == "runs" for it in d["items"] if isinstance(it, list)]

        def done() -> bool:
            kinds = {k for k, _ in seen}
            final = any(it["kind"] == "status" and it["run_id"] == run_id and it["data"]["status"] == "completed"
                        for it in items())
            return final and {"beats", "comms", "model"} <= kinds
        await asyncio.wait_for(until(done, lines), 10)
    tasks = task_rows()
    hello = next(d for k, d in seen if k == "hello")
    assert tasks and hello["task_states"][tasks[-1]["status"]] == "completed" and tasks[-1]["run_id"] == run_id
    entries = [e for k, d in seen if k == "comms" for e in d["entries"]]
    assert entries and all(isinstance(e["seq"], int) for e in entries)
    assert any(k == "model" and d["agent"] == "prog-002" and d["model"] == "gpt-4o" for k, d in seen)
    beats = next(d for k, d in seen if k == "beats")
    assert all(set(b) == {"ts", "status", "run_id", "message"} for b in beats.values())


# ---- the gateway's OpenAPI, fuzzed (schemathesis) --------------------------------------------
GATEWAY_OPS = [("GET", "/"), ("GET", "/health"), ("GET", "/status/{ref}"), ("POST", "/submit"),
               ("POST", "/prime_directives"), ("GET", "/runs"), ("GET", "/runs/{run_id}"),
               ("POST", "/runs/{run_id}/cancel"), ("GET", "/runs/{run_id}/timeline"), ("GET", "/runs/{run_id}/plan"),
               ("POST", "/runs/{run_id}/approve"), ("POST", "/runs/{run_id}/reject")]


@pytest.fixture
async def fuzz_http(nats_server: EmbeddedServer) -> AsyncIterator[Http]:
    async with _http(http_cfg(no_models=True), nats_server.url) as h:
        yield h


@shared
async def test_fuzz_covers_every_gateway_operation(http: Http) -> None:
    paths = (await http.c.get(http.u("gateway", "/openapi.json"))).json()["paths"]
    assert {(m.upper(), p) for p, ops in paths.items() for m in ops} == set(GATEWAY_OPS)


async def test_gateway_openapi_fuzz_no_5xx(fuzz_http: Http) -> None:
    """Every gateway operation, ~30 positive and ~30 negative cases each: never a 5xx."""
    failures = {}
    for method, path in GATEWAY_OPS:
        try:
            await asyncio.to_thread(fuzz_operation, fuzz_http.u("gateway"), method, path, 30)
        except Exception as e:
            failures[f"{method} {path}"] = str(e)[:3000]
    assert not failures, json.dumps(failures, indent=1)


# ---- the other agent ports and the HMI's API, fuzzed -----------------------------------------
AGENT_OPS = {
    "architect": [("GET", "/"), ("GET", "/health"), ("GET", "/status/{ref}"), ("POST", "/submit")],
    "dir-code": [("GET", "/"), ("GET", "/health"), ("GET", "/status/{ref}"), ("POST", "/submit")],
    "mgr-code-01": [("GET", "/"), ("GET", "/health"), ("GET", "/status/{ref}"), ("POST", "/submit")],
    "prog-001": [("GET", "/"), ("GET", "/health"), ("GET", "/status/{ref}"), ("POST", "/execute")],
}
HMI_OPS = [("GET", "/health"), ("GET", "/api/config"), ("GET", "/api/agents"), ("GET", "/api/models"),
           ("POST", "/api/agents/{agent_id}/model"), ("GET", "/api/runs"), ("GET", "/api/runs/{run_id}"),
           ("POST", "/api/runs/{run_id}/cancel"), ("POST", "/api/submit"), ("GET", "/api/comms"),
           ("GET", "/api/runs/{run_id}/timeline"), ("GET", "/api/runs/{run_id}/timeline.html"),
           ("GET", "/api/runs/{run_id}/plan"), ("POST", "/api/runs/{run_id}/approve"),
           ("POST", "/api/runs/{run_id}/reject"), ("POST", "/login/code")]
HMI_SSE = ("GET", "/api/events")  # never ends: a fuzzer's request would hang; tested by test_hmi_events_stream
FUZZ_TARGETS = [*((name, "/openapi.json", ops) for name, ops in AGENT_OPS.items()),
                ("hmi", "/api/openapi.json", HMI_OPS)]


@shared
async def test_fuzz_covers_every_operation_of_the_other_ports(http: Http) -> None:
    for name, spec, ops in FUZZ_TARGETS:
        paths = (await http.c.get(http.u(name, spec))).json()["paths"]
        live = {(m.upper(), p) for p, methods in paths.items() for m in methods}
        assert live == set(ops) | ({HMI_SSE} if name == "hmi" else set()), name


async def test_agent_ports_and_hmi_openapi_fuzz_no_5xx(fuzz_http: Http) -> None:
    """architect, dir-code, mgr-code-01, prog-001 and the HMI's API: every operation (the SSE stream
    aside), 10 positive and 10 negative cases each, over real HTTP: never a 5xx."""
    failures, calls = {}, {}
    for name, spec, ops in FUZZ_TARGETS:
        for method, path in ops:
            key = f"{name}: {method} {path}"
            try:
                calls[key] = await asyncio.to_thread(fuzz_operation, fuzz_http.u(name), method, path, 10, spec)
            except Exception as e:
                failures[key] = str(e)[:3000]
    assert not failures, json.dumps(failures, indent=1)
    # Cases were really sent: every operation got positive ones; those with a body or a path
    # parameter to break got negative ones too.
    assert all(1 <= c["positive"] <= 10 and c["negative"] <= 10 for c in calls.values()), calls
    assert all(c["negative"] >= 1 for k, c in calls.items() if "POST" in k or "{" in k), calls


# ---- the adapter from the CLI: `pas up` (with HTTP) and `pas http` ---------------------------
def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PAS_NATS_URL", "PAS_HTTP_TOKEN")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int | None:
    """SIGTERM, then the exit code; None (after a SIGKILL) if it did not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
    return proc.returncode


def test_pas_up_serves_the_shifted_ports(tmp_path: Path) -> None:
    """`pas up` without --no-http: the adapter comes up with the agents, on ports moved by
    settings.http.port_offset, answers with live data, and SIGTERM ends it cleanly (exit 0)."""
    cfg = make_cfg()
    off = free_port_offset(cfg)
    host = cfg.settings.http.host
    ready, log = tmp_path / "up.ready", tmp_path / "up.log"
    argv = [sys.executable, "-m", "pas", "up", "--nats-port", "-1", "--data-dir", str(tmp_path / "data"),
            "--except", "prog-*", "--http", "-c", f"settings.http.port_offset={off}", *fast_args(), "--ready-file", str(ready)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path,
                                start_new_session=True, env=_cli_env())
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, f"pas up exited {proc.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"pas up not ready in 60s: {log.read_text()[-3000:]}"
            time.sleep(0.05)
        assert ready.read_text().startswith("nats://")
        url = f"http://{host}:{6141 + off}/health"
        with httpx.Client(timeout=10) as c:
            deadline = time.monotonic() + 15
            while True:  # the first beat lands within a heartbeat interval (1 s here)
                r = c.get(url)
                if (r.status_code == 200 and r.json().get("beat_age_s") is not None) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 200, r.text
            h = r.json()
            assert (h["agent"], h["tier"], h["lane"], h["parent"]) == ("mgr-code-01", "manager", "code", "dir-code")
            assert h["state"] == "alive" and h["reachable"] is True and h["status"] == "ok"
            assert 0 <= h["beat_age_s"] < 5 and h["started_at"] and h["http_port"] == 6141 + off
            # --except 'prog-*': their ports are served (by the adapter), the agents are not there.
            r = c.get(f"http://{host}:{6151 + off}/health")
            assert r.status_code == 503 and r.json()["reachable"] is False
            hmi = c.get(f"http://{host}:{cfg.settings.http.hmi_port + off}/api/config")
            assert hmi.status_code == 200 and hmi.json()["heartbeat_interval_s"] == 1
            # The one-time login link it printed logs a browser in; `pas login` makes another.
            hmi_url = f"http://{host}:{cfg.settings.http.hmi_port + off}"
            link = next(w for w in log.read_text().split() if w.startswith(f"{hmi_url}/login?code="))
            r = c.get(link)
            assert r.status_code == 303 and "HttpOnly; SameSite=Strict" in r.headers["set-cookie"]
            assert c.get(link).status_code == 401  # used
            assert f"Authorization: Bearer $(cat {(tmp_path / 'data' / 'creds' / 'http-token').resolve()})" \
                in log.read_text()
            login = subprocess.run([sys.executable, "-m", "pas", "login", "--data-dir", str(tmp_path / "data"),
                                    "-c", f"settings.http.port_offset={off}"], capture_output=True, text=True,
                                   cwd=tmp_path, env=_cli_env(), timeout=60)
            assert login.returncode == 0 and login.stdout.startswith(f"{hmi_url}/login?code="), login.stderr
            assert c.get(login.stdout.strip()).status_code == 303
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert all_free(host, [p + off for p in port_plan(cfg).values()])  # every port released


async def test_pas_http_alone_against_a_running_stack(stack: Stack, client: PasClient, tmp_path: Path) -> None:
    """`PAS_NATS_URL=... pas http`: only the adapter, in its own process, on an existing server
    and stack; GET /runs on the gateway's shifted port lists a run submitted over NATS."""
    run_id = (await client.submit({"title": "before pas http", "tasks": [ECHO]}))["run_id"]
    await client.wait(run_id, timeout_s=20)
    cfg = make_cfg()
    off = free_port_offset(cfg)
    host = cfg.settings.http.host
    log = tmp_path / "http.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pas", "http", "-c", f"settings.http.port_offset={off}"],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path,
                                start_new_session=True, env=_cli_env(PAS_NATS_URL=stack.url))
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            async def runs() -> httpx.Response | None:
                assert proc.poll() is None, f"pas http exited {proc.returncode}: {log.read_text()[-3000:]}"
                try:
                    return await c.get(f"http://{host}:{6120 + off}/runs")
                except httpx.TransportError:
                    return None  # not listening yet
            r = await poll(runs, lambda r: r is not None, 30, 0.1)
            assert r.status_code == 200, r.text
            assert run_id in [x["run_id"] for x in r.json()["runs"]]
            r = await c.get(f"http://{host}:{6141 + off}/health")  # the stack's agent, through the new process
            assert r.status_code == 200 and r.json()["state"] == "alive"
        # printed once start-up returns, which may be just after the ports began answering
        await wait_for(lambda: "pas http: serving" in log.read_text(), 10)
    finally:
        code = await asyncio.to_thread(_stop, proc)
    assert code == 0, log.read_text()[-3000:]
    assert all_free(host, [p + off for p in port_plan(cfg).values()])
