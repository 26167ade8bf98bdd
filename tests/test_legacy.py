"""The original HTTP PAS's clients against PAS (pas/surfaces/http/legacy.py, README "Coming from the HTTP PAS").

The original is TrentCarter/lnsp-phase-4, branch feature/aider-lco-p0. Its code is not vendored: each
test below reproduces one of its clients -- the same requests, bodies, fields read and polling loop
(polled faster here: the loop and its end condition are the client's, the interval is not) -- and
names the file it reproduces. Everything runs through the real adapter, bus and agents; the only
fake is the LLM (tests/fakellm.py), where a model must answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from pas.config.model import PasConfig
from pas.protocol import subjects as S
from tests.fakellm import Reply
from tests.http_support import http_cfg
from tests.shared_server import EmbeddedServer
from tests.test_http_adapter import Http, _http
from tests.test_llm_pipeline import EDIT_OK
from tests.test_pipeline import make_repo

shared = pytest.mark.asyncio(loop_scope="module")
LANE_NAMES = {"code": "Code", "models": "Models", "data": "Data", "devsecops": "DevSecOps", "docs": "Docs"}


def original_name(agent_id: str, role: str, lane: str | None) -> str:
    """The original's service names (its services' /health): Manager-Code-01, Programmer-001, ..."""
    n = agent_id.rsplit("-", 1)[-1]
    return {"gateway": "PAS Gateway", "root": "PAS Root", "architect": "Architect", "monitor": "Heartbeat Monitor",
            "dir": f"Director-{LANE_NAMES.get(lane or '')}", "mgr": f"Manager-{LANE_NAMES.get(lane or '')}-{n}",
            "prog": f"Programmer-{n}"}[role]
ORIGIN = "http://legacy-hmi.test:5173"  # where the original's HMI pages are served from, in these tests
POLL_S = 0.3  # the originals poll every 3-10 s; the loops are theirs, the interval is shortened


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A git repository that the adapter's process runs in, as `pas up` does for the originals'
    `repo_root: "."` (they ran from the repository root)."""
    path = make_repo(tmp_path_factory.mktemp("legacy"))
    before = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(before)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(module_server: EmbeddedServer, repo: Path) -> AsyncIterator[Http]:
    async with _http(http_cfg(), module_server.url) as h:
        yield h


# ---- bin/verdict -> tools/verdict_cli_p0.py --------------------------------------------------
class Verdict:
    """tools/verdict_cli_p0.py's calls, made as it makes them: urllib, JSON bodies, the same URLs
    and the same fields read (each cmd_* returns what it would print from)."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway

    def _get(self, url: str) -> Any:
        try:
            with urllib.request.urlopen(url, timeout=15) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise AssertionError(f"HTTP Error {e.code}: {e.reason}: {e.read().decode()}") from None

    def _post(self, url: str, data: dict[str, Any]) -> Any:
        req = urllib.request.Request(url, data=json.dumps(data).encode("utf-8"),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise AssertionError(f"HTTP Error {e.code}: {e.reason}: {e.read().decode()}") from None

    def health(self) -> Any:
        return self._get(f"{self.gateway}/health")

    def send(self, title: str, goal: str, entry_files: list[str], repo_root: str) -> tuple[str, str]:
        res = self._post(f"{self.gateway}/prime_directives", {
            "title": title, "description": "CLI submission", "repo_root": repo_root, "goal": goal,
            "entry_files": entry_files})
        return res.get("run_id"), res.get("status")

    def status(self, run_id: str) -> dict[str, Any]:
        res = self._get(f"{self.gateway}/runs/{run_id}")
        return {k: res.get(k) for k in ("run_id", "status", "message", "duration_s")}

    def list(self, limit: int = 50, status: str | None = None) -> list[tuple[str, str, str]]:
        params = f"?limit={limit}" + (f"&status={status}" if status else "")
        res = self._get(f"{self.gateway}/runs{params}")
        return [(r["run_id"][:8], r["status"], r.get("title", "N/A")) for r in res.get("runs", [])]


@shared
async def test_verdict_cli_p0(http: Http, repo: Path) -> None:
    """tools/verdict_cli_p0.py: health, send, status polled to completed, list, list --status error."""
    v = Verdict(http.u("gateway"))
    failed = await http.c.post(http.u("gateway", "/submit"), json={  # a run that fails, for --status error
        "title": "fails", "repo": str(repo), "tasks": [{"lane": "code", "instruction": "no such ref",
                                                        "executor": "command",
                                                        "command": "git rev-parse --verify no-such-ref"}]})
    failed_id = failed.json()["run_id"]

    def flow() -> dict[str, Any]:
        health = v.health()
        run_id, queued = v.send("verdict run", "say hello", ["src/calc/__init__.py"], os.getcwd())
        deadline = time.monotonic() + 60
        st = v.status(run_id)
        while st["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(POLL_S)
            st = v.status(run_id)
        return {"health": health, "queued": queued, "status": st, "run_id": run_id,
                "list": v.list(), "errors": v.list(status="error")}

    out = await asyncio.to_thread(flow)
    assert out["health"]["service"] == "PAS Gateway" and out["queued"] == "queued"
    st = out["status"]
    assert st["run_id"] == out["run_id"] and st["status"] == "completed" and st["duration_s"] > 0
    assert (out["run_id"][:8], "completed", "verdict run") in out["list"]
    await http.run_done(failed_id)
    errors = await asyncio.to_thread(v.list, 50, "error")  # `verdict list --status error`
    assert (failed_id[:8], "failed", "fails") in errors and all(s == "failed" for _, s, _ in errors)
    r = await http.c.get(http.u("gateway", "/runs"), params={"status": "broken"})
    assert r.status_code == 422 and "status" in r.text


# ---- tests/pas/test_integration.py -----------------------------------------------------------
def make_prime_directive(title: str, goal: str, description: str = "", repo_root: str = ".",
                         entry_files: list[str] | None = None, budget_tokens_max: int = 25000,
                         budget_cost_usd_max: float = 2.0) -> dict[str, Any]:
    """tests/pas/test_integration.py's helper, as there."""
    return {"title": title, "description": description or goal, "repo_root": repo_root,
            "entry_files": entry_files or [], "goal": goal, "budget_tokens_max": budget_tokens_max,
            "budget_cost_usd_max": budget_cost_usd_max}


async def _until_done(c: httpx.AsyncClient, url: str, timeout_s: float = 60) -> dict[str, Any]:
    """The originals' loop: GET /runs/{id} until status is completed or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = (await c.get(url)).json()
        if status["status"] in ["completed", "failed"]:
            break
        await asyncio.sleep(POLL_S)
    return status


@shared
async def test_integration_py(http: Http) -> None:
    """tests/pas/test_integration.py (its Aider RPC at a programmer's port; without the two tests that
    sleep 3 and 5 minutes): health of every service, a prime directive to completion, the multi-lane
    directive, the Architect's plan, a Director's job card, an invalid directive, three at once."""
    c = http.c
    services = {"gateway": "PAS Gateway", "root": "PAS Root", "architect": "Architect", **{
        f"dir-{k.lower()}": f"Director-{k}" for k in ("Code", "Models", "Data", "DevSecOps", "Docs")}}
    for agent, name in services.items():
        r = await c.get(http.u(agent, "/health"), timeout=2.0)
        assert r.status_code == 200 and r.json()["service"] == name, (agent, r.text)
    assert (await c.get(http.u("prog-001", "/health"))).status_code == 200  # "Aider RPC"

    pd = make_prime_directive(title="Add hello function", goal="Add a hello() function to utils.py that returns "
                              "'Hello, World!'", entry_files=["utils.py"], budget_tokens_max=10000)
    r = await c.post(http.u("gateway", "/prime_directives"), json=pd, timeout=60.0)
    assert r.status_code == 200
    status = await _until_done(c, http.u("gateway", f"/runs/{r.json()['run_id']}"))
    assert status["status"] == "completed" and "artifacts" in status
    assert status["actuals"]["tokens_used"] == status["usage"]["tokens"] and status["acceptance_results"] == {}

    pd = make_prime_directive(title="Train Text Classifier", goal="Build and train a text classification model",
                              entry_files=["models/train.py"], budget_tokens_max=100000)
    r = await c.post(http.u("gateway", "/prime_directives"), json=pd, timeout=60.0)
    assert r.status_code == 200
    assert (await _until_done(c, http.u("gateway", f"/runs/{r.json()['run_id']}")))["status"] == "completed"

    body = {"run_id": f"test-decomp-{int(time.time())}", "prd": "Add user authentication with tests and "
            "documentation", "title": "User Auth", "entry_files": ["auth.py"], "budget": {}, "policy": {},
            "approval_mode": "auto"}
    r = await c.post(http.u("architect", "/submit"), json=body, timeout=60.0)
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert "Code" in plan["lane_allocations"] and plan["complete"] is True
    code = plan["lane_allocations"]["Code"]
    assert code["director"] == "dir-code" and code["jobs"][0]["tasks"][0]["instruction"].startswith("Add user auth")

    job_card = {"job_card_id": f"jc-test-{int(time.time())}", "description": "Implement authentication logic in "
                "auth.py", "files": ["auth.py", "models.py", "routes.py"], "priority": "high",
                "budget": {"tokens_max": 20000}}
    r = await c.post(http.u("dir-code", "/submit"), json={"job_card": job_card}, timeout=60.0)
    assert r.status_code in [200, 202], r.text
    st = await http.run_done(job_card["job_card_id"])
    assert st["priority"] == 10 and st["lanes"] == ["code"] and "routes.py" in st["tasks"][0]["instruction"]

    r = await c.post(http.u("gateway", "/prime_directives"), json={"title": "", "goal": ""}, timeout=10.0)
    assert r.status_code in [400, 422]

    tasks = []
    for i in range(3):
        pd = make_prime_directive(title=f"Task {i}", goal=f"Add function_{i}() to utils.py", entry_files=["utils.py"],
                                  budget_tokens_max=5000)
        r = await c.post(http.u("gateway", "/prime_directives"), json=pd, timeout=60.0)
        assert r.status_code == 200
        tasks.append(r.json()["run_id"])
    done = [await _until_done(c, http.u("gateway", f"/runs/{t}")) for t in tasks]
    assert [d["status"] for d in done] == ["completed"] * 3


# ---- test_manager_e2e.py ---------------------------------------------------------------------
@shared
async def test_manager_e2e_py(http: Http) -> None:
    """test_manager_e2e.py: Director-Code's health, its job card, /status/{job_card_id} polled while
    the state is one of the original's in-progress states. What changed: PAS leaves the working tree
    alone (results go to the branch pas/<run>/result), so its step 5 (the file edited in place) is not
    reproduced."""
    r = await http.c.get(http.u("dir-code", "/health"), timeout=5)
    health = r.json()
    assert (health["service"], health["agent"], health["llm_model"]) == ("Director-Code", "dir-code", None)
    assert health["agent_metadata"]["children"] == ["mgr-code-01", "mgr-code-02", "mgr-code-03"]
    card = {"id": f"test-manager-e2e-{int(time.time())}", "task": "Add a simple hello_world() function to "
            "test_utils.py", "lane": "Code", "inputs": [{"type": "file", "path": "test_utils.py", "required": True}],
            "expected_artifacts": [{"type": "code", "path": "test_utils.py",
                                    "description": "Python file with hello_world() function"}],
            "acceptance": [{"check": "lint==0"}], "budget": {"max_tokens": 10000, "max_duration_s": 300}}
    r = await http.c.post(http.u("dir-code", "/submit"), json={"job_card": card}, timeout=300)
    assert r.status_code in [200, 202], r.text
    result = r.json()
    assert result["status"] == "planning" and result["state"] == "planning"
    job_card_id = result["job_card_id"]
    assert job_card_id == card["id"]
    seen = []
    for _ in range(200):
        status = (await http.c.get(http.u("dir-code", f"/status/{job_card_id}"), timeout=5)).json()
        state = status["state"]
        seen.append(state)
        if state in ("completed", "failed"):
            break
        assert state in ["planning", "decomposing", "delegating", "executing", "monitoring", "validating"], state
        await asyncio.sleep(POLL_S)
    assert state == "completed", seen
    assert status["duration_s"] > 0 and list(status["managers"].values()) == ["completed"]
    st = (await http.c.get(http.u("gateway", f"/runs/{job_card_id}"))).json()
    goal = st["tasks"][0]["instruction"]  # nothing of the card was dropped on the way
    assert "Files: test_utils.py" in goal and "- lint==0" in goal and "hello_world() function" in goal


# ---- tests/test_parallel_execution.py --------------------------------------------------------
def parallel_cards() -> list[dict[str, Any]]:
    return [{"id": f"test-job-{i + 1}", "task": f"Add a comment '# Parallel test {i + 1}' to the top of a new test file",
             "goal": f"Create tests/parallel_test_{i + 1}.py with a simple function",
             "entry_file": f"tests/parallel_test_{i + 1}.py",
             "requirements": [f"Create tests/parallel_test_{i + 1}.py", f"Add a comment '# Parallel test {i + 1}'",
                              "Add a simple test function"],
             "constraints": ["Keep it simple", "No external dependencies"],
             "llm_config": {"provider": "ollama", "model": "qwen2.5-coder:7b", "max_tokens": 2000},
             "priority": "normal", "estimated_complexity": "low"} for i in range(3)]


async def _submit_task(c: httpx.AsyncClient, url: str, job_card: dict[str, Any]) -> dict[str, Any]:
    """test_parallel_execution.py's submit_task: POST {"job_card"}, then GET /status/{id}'s state
    until completed or failed."""
    response = await c.post(f"{url}/submit", json={"job_card": job_card}, timeout=5.0)
    response.raise_for_status()
    result = response.json()
    job_card_id = result.get("job_card_id")
    for _ in range(100):
        await asyncio.sleep(POLL_S)
        status_response = await c.get(f"{url}/status/{job_card_id}", timeout=5.0)
        status_response.raise_for_status()
        status = status_response.json()
        if status.get("state", "unknown") in ["completed", "failed"]:
            return {"result": status, "submitted": result, "success": status["state"] == "completed"}
    return {"error": "Timeout waiting for completion", "success": False}


@shared
async def test_parallel_execution_py(http: Http) -> None:
    """tests/test_parallel_execution.py: Manager-Code-01's health, three job cards at once, then one
    after another. Its cards name a model (llm_config) for the programmers, which PAS cannot honour
    for a job card (its programmers' models come from the topology): 400 naming the field. Without
    llm_config the same cards run, in parallel and again in sequence (the same ids: the same runs)."""
    url = http.h.url("mgr-code-01")
    health = (await http.c.get(f"{url}/health")).json()
    assert health["status"] == "ok" and health["service"] == "Manager-Code-01"
    cards = parallel_cards()
    r = await http.c.post(f"{url}/submit", json={"job_card": cards[0]})
    assert r.status_code == 400 and r.json()["info"]["field"] == "job_card.llm_config"
    assert "'ollama/qwen2.5-coder:7b'" in r.json()["detail"] and "no programmer has it" in r.json()["detail"]
    for card in cards:
        del card["llm_config"]
    parallel = await asyncio.gather(*[_submit_task(http.c, url, card) for card in cards])
    assert [p["success"] for p in parallel] == [True] * 3, parallel
    assert all(p["submitted"]["status"] == "accepted" and p["submitted"]["manager"] == "mgr-code-01"
               for p in parallel)
    assert parallel[0]["result"]["programmers"] and parallel[0]["result"]["errors"] == []
    sequential = [await _submit_task(http.c, url, card) for card in cards]
    assert [s["success"] for s in sequential] == [True] * 3
    assert all(s["submitted"]["duplicate"] is True for s in sequential)


# ---- the services' calls to each other -------------------------------------------------------
@shared
async def test_root_architect_director_calls(http: Http) -> None:
    """services/pas/root/app.py -> Architect POST /submit (PrimeDirective) then GET /status/{run}'s
    state until completed/failed; services/pas/architect/app.py -> Director POST /submit
    {"job_card": asdict(JobCard)} (services/common/job_queue.py); approval_mode "human"."""
    run_id = f"root-{int(time.time() * 1000)}"
    pd = {"run_id": run_id, "prd": "Write the release notes", "title": "Notes", "entry_files": ["NOTES.md"],
          "budget": {"tokens_max": 25000, "duration_max_mins": 30, "cost_usd_max": 2.0},
          "policy": {"require_cross_vendor_review": False, "protected_paths": []}, "approval_mode": "auto"}
    r = await http.c.post(http.u("architect", "/submit"), json=pd)
    assert r.status_code == 200 and r.json()["run_id"] == run_id, r.text
    for _ in range(200):
        architect_status = (await http.c.get(http.u("architect", f"/status/{run_id}"))).json()
        if architect_status.get("state") in ["completed", "failed"]:
            break
        assert architect_status["state"] in ("planning", "executing", "validating"), architect_status
        await asyncio.sleep(POLL_S)
    assert architect_status["state"] == "completed" and architect_status["lanes"]["Code"]["state"] == "completed"
    root = (await http.c.get(http.u("root", f"/status/{run_id}"))).json()
    assert root["state"] == "completed" and root["lanes"] == architect_status["lanes"]

    card = {"id": f"jc-{run_id}-docs-001", "parent_id": run_id, "role": "director", "lane": "Docs",
            "task": "Document the API", "inputs": [{"path": "docs/api.md"}],
            "expected_artifacts": [{"path": "artifacts/runs/x/docs/"}], "acceptance": [{"check": "pytest>=0.90"}],
            "risks": [], "budget": {"tokens_target_ratio": 1}, "metadata": {"from": "architect"}, "priority": 5,
            "created_at": time.time(), "submitted_by": "Architect"}
    r = await http.c.post(http.u("dir-docs", "/submit"), json={"job_card": card})
    assert r.status_code == 200 and r.json()["job_card_id"] == card["id"], r.text
    assert (await http.run_done(card["id"]))["lanes"] == ["docs"]
    st = (await http.c.get(http.u("dir-docs", f"/status/{card['id']}"))).json()
    assert st["state"] == "completed" and st["lane"] == "Docs"
    r = await http.c.get(http.u("dir-code", f"/status/{card['id']}"))  # not a job card of that lane
    assert r.status_code == 404 and "no Code lane" in r.json()["detail"]
    mgr = (await http.c.get(http.u("mgr-docs-01", f"/status/{card['id']}"))).json()
    assert mgr["state"] == "completed" and mgr["managers"] == ["mgr-docs-01"]
    native = (await http.c.get(http.u("mgr-docs-01", f"/status/{card['id']}:docs-1"))).json()
    assert native["status"] == "completed" and native["state"] == "completed"

    human = {**pd, "run_id": run_id + "-h", "approval_mode": "human"}
    r = await http.c.post(http.u("architect", "/submit"), json=human)
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert plan["approval_mode"] == "human" and plan["complete"] and plan["status"] == "waiting_approval"
    st = (await http.c.get(http.u("architect", f"/status/{run_id}-h"))).json()
    assert st["state"] == "awaiting_approval" and st["lanes"]["Code"]["state"] == "awaiting_approval"
    assert (await http.c.get(http.u("dir-code", f"/status/{run_id}-h"))).json()["state"] == "awaiting_approval"
    assert (await http.c.post(http.u("gateway", f"/runs/{run_id}-h/approve"), json={})).status_code == 200
    assert (await http.run_done(run_id + "-h"))["status"] == "completed"


@shared
async def test_bad_legacy_bodies_name_the_field(http: Http) -> None:
    """Every field that changes behaviour is honoured or refused, never dropped: 400/422 naming it."""
    async def post(agent: str, path: str, body: Any) -> httpx.Response:
        return await http.c.post(http.u(agent, path), json=body)

    cases: list[tuple[str, str, Any, int, str]] = [
        ("dir-code", "/submit", {"job_card": {"id": "x1"}}, 422, "task, description, goal"),
        # blank is missing (a tab once made a 500: the fuzz test, CI)
        ("mgr-code-01", "/submit", {"job_card": {"id": "x8", "goal": "\t", "task": " \n"}}, 422, "not blank"),
        ("dir-code", "/submit", {"job_card": {"id": "x2", "task": "t", "owner": "me"}}, 422, "owner"),
        ("dir-code", "/submit", {"job_card": {"id": "x3", "task": "t", "priority": "urgent"}}, 422, "priority"),
        ("dir-code", "/submit", {"job_card": {"id": "x4", "task": "t", "priority": 7}}, 400, "job_card.priority"),
        ("dir-code", "/submit", {"job_card": {"id": "x5", "task": "t", "lane": "Docs"}}, 400, "job_card.lane"),
        ("dir-code", "/submit", {"job_card": {"id": "x6", "task": "t", "role": "manager"}}, 400, "job_card.role"),
        ("dir-code", "/submit", {"job_card": {"id": "a b", "task": "t"}}, 422, "id"),
        ("mgr-code-01", "/submit", {"job_card": {"id": "x7", "task": "t", "budget": {"tokens_max": 1,
                                                                                     "max_tokens": 2}}}, 422,
         "one of tokens_max and max_tokens"),
        ("architect", "/submit", {"title": "t", "prd": "p", "policy": {"protected_paths": ["secrets/"]}}, 400,
         "policy.protected_paths"),
        ("architect", "/submit", {"title": "t", "prd": "p", "policy": {"require_cross_vendor_review": True}}, 400,
         "policy.require_cross_vendor_review"),
        ("architect", "/submit", {"title": "t", "prd": "p", "approval_mode": "sometimes"}, 422, "approval_mode"),
        ("prog-001", "/execute", {"task": "t", "llm_params": {"top_p": 0.5}}, 400, "llm_params.top_p"),
        ("prog-001", "/execute", {"task": "t", "llm_params": {"temperature": 1.5}}, 400, "llm_params.temperature"),
        ("prog-001", "/execute", {"task": "t", "llm_provider": "openai"}, 400, "llm_model"),
        ("prog-001", "/execute", {"task": "t", "llm_provider": "openai", "llm_model": "gpt-4o"}, 400,
         f"prog-008 (port {http.h.ports['prog-008']})"),
        ("prog-001", "/execute", {"task": "t", "budget_usd": -1}, 422, "budget_usd"),
    ]
    for agent, path, body, code, named in cases:
        r = await post(agent, path, body)
        assert r.status_code == code and named in r.text, (agent, body, r.status_code, r.text)
    for ref in ("x1", "x4", "x5"):  # nothing was submitted for the refused cards
        assert (await http.c.get(http.u("gateway", f"/runs/{ref}"))).status_code == 404


@shared
async def test_health_names_and_metadata_of_every_agent(http: Http) -> None:
    cfg = http.stack.cfg
    for a in cfg.agents:
        h = (await http.c.get(http.u(a.id, "/health"))).json()
        meta = h["agent_metadata"]
        assert h["service"] == original_name(a.id, a.role, a.lane) and meta["parent"] == a.parent
        assert meta["tier"] == a.tier
        assert meta["children"] == [c.id for c in cfg.agents if c.parent == a.id]
    for agent, name in (("mgr-devsecops-01", "Manager-DevSecOps-01"), ("prog-010", "Programmer-010")):
        assert (await http.c.get(http.u(agent, "/health"))).json()["service"] == name
    arch = (await http.c.get(http.u("architect", "/health"))).json()["agent_metadata"]
    assert arch["role"] == "architect" and arch["children"] == [f"dir-{x}" for x in S.LANES]
    # No CORS by default (settings.http.cors_origins: none): browsers of other origins get nothing.
    r = await http.c.options(http.u("gateway", "/prime_directives"), headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers and r.status_code == 405
    r = await http.c.get(http.u("gateway", "/health"), headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


# ---- Manager -> Programmer POST /execute, acceptance results, CORS (a stack with a fake LLM) -----
def _branches(repo: Path) -> list[str]:
    out = subprocess.run(["git", "branch", "--list", "pas/*", "--format=%(refname:short)"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture
def fake_cfg(fake_llm: Any) -> PasConfig:
    """prog-001 has the fake profiles pp (primary) and pq (backup); every other programmer pp;
    settings.http.cors_origins allows ORIGIN."""
    cfg = http_cfg(f"settings.http.cors_origins=[\"{ORIGIN}\"]")
    for name in ("pp", "pq"):
        cfg.models[name] = fake_llm.profile(name)
    for a in cfg.by_role("prog"):
        a.model, a.backup_model = "pp", ("pq" if a.id == "prog-001" else None)
    return cfg


async def test_manager_execute_body(nats_server: EmbeddedServer, fake_llm: Any, fake_cfg: PasConfig,
                                    tmp_path: Path) -> None:
    """services/common/manager_executor.py's Programmer call shape, POST /execute {task, files,
    llm_provider, llm_model, llm_params, run_id, job_id, budget_usd, timeout_s, dry_run}: dry_run runs
    nothing, llm_model picks the backup profile, budget_usd caps the cost and budget_exceeded is
    reported as itself; GET /runs/{id} shows each acceptance command's result."""
    repo = make_repo(tmp_path)
    fake_llm.default("pq", Reply(EDIT_OK, prompt_tokens=200, completion_tokens=60))
    fake_llm.default("pp", Reply(EDIT_OK, prompt_tokens=200, completion_tokens=60))
    pq = fake_cfg.models["pq"].model
    async with _http(fake_cfg, nats_server.url) as http:
        url = http.u("prog-001", "/execute")
        body = {"task": "add a double() helper", "files": ["src/calc/__init__.py"], "llm_provider": "openai",
                "llm_model": pq.split("/", 1)[1], "llm_params": {"temperature": fake_cfg.models["pq"].temperature},
                "run_id": None, "job_id": "jc-1", "budget_usd": 1.0, "timeout_s": 60, "dry_run": True}
        r = await http.c.post(url, json={**body, "repo": str(repo), "env": sys.executable})
        assert r.status_code == 200, r.text
        dry = r.json()
        assert dry["status"] == "success" and dry["dry_run"] is True and dry["would_run"]["model"] == "pq"
        assert fake_llm.requests_for("pq") == [] and fake_llm.requests_for("pp") == []
        assert _branches(repo) == []  # no workspace was opened

        r = await http.c.post(url, json={**body, "dry_run": False, "repo": str(repo), "env": sys.executable,
                                         "acceptance": "python -m pytest -q -p no:cacheprovider tests"},
                              timeout=150)  # the first model call of a process imports litellm
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["status"] == "success" and done["artifacts"]["model"] == "pq" and done["job_id"] == "jc-1"
        assert len(fake_llm.requests_for("pq")) == 1 and fake_llm.requests_for("pp") == []
        assert len(_branches(repo)) == 1

        r = await http.c.post(url, json={**body, "dry_run": False, "budget_usd": 0.0})
        assert r.status_code == 200 and r.json()["status"] == "budget_exceeded", r.text
        assert len(fake_llm.requests_for("pq")) == 1  # capped before any call

        r = await http.c.post(http.u("prog-002", "/execute"), json=body)  # pq is not prog-002's
        assert r.status_code == 400 and "programmers that have it: prog-001" in r.json()["detail"]

        r = await http.c.post(http.u("gateway", "/submit"), json={
            "title": "acceptance", "repo": str(repo), "env": sys.executable, "tasks": [{
                "lane": "code", "instruction": "add a double() helper", "executor": "llm",
                "files": ["src/calc/__init__.py"], "acceptance": "python -m pytest -q -p no:cacheprovider tests"}]})
        run_id = r.json()["run_id"]
        st = await http.run_done(run_id, 90)
        assert st["status"] == "completed", st
        acc = st["acceptance_results"]["code-1-01"]
        assert acc["command"] == "python -m pytest -q -p no:cacheprovider tests" and acc["exit_code"] == 0
        assert acc["passed"] is True and "passed" in acc["output_tail"] and acc["output_tail"].startswith("--- accept")
        art = st["artifacts"]
        assert art["result_branch"] == f"pas/{run_id}/result"
        assert art["tasks"]["code-1-01"]["branch"] == f"pas/{run_id}/code-1-01"
        assert "extra.py" in art["tasks"]["code-1-01"]["diff_stat"]
        assert st["actuals"]["tokens_used"] == 260 and st["actuals"]["cost_known"] in (True, False)


async def test_protected_paths(nats_server: EmbeddedServer, fake_llm: Any, fake_cfg: PasConfig,
                               tmp_path: Path) -> None:
    """The Architect's policy.protected_paths (services/pas/architect/app.py's PrimeDirective): a task
    whose branch changes one is left out of the result and fails the run, naming task and path."""
    repo = make_repo(tmp_path)
    fake_llm.default("pp", Reply(EDIT_OK, prompt_tokens=20, completion_tokens=10))  # edits __init__, adds extra.py
    task = {"lane": "code", "instruction": "add a double() helper", "executor": "llm",
            "files": ["src/calc/__init__.py"]}
    async with _http(fake_cfg, nats_server.url) as http:
        runs = {}
        for name, protected in (("guarded", ["src/calc/extra.py"]), ("open", ["docs/", "*.key"])):
            r = await http.c.post(http.u("architect", "/submit"), json={
                "run_id": f"{name}-{int(time.time())}", "prd": "add a helper", "title": name, "repo": str(repo),
                "env": sys.executable, "tasks": [task], "budget": {}, "approval_mode": "auto",
                "policy": {"require_cross_vendor_review": False, "protected_paths": protected}}, timeout=120)
            assert r.status_code == 200, r.text
            runs[name] = await http.run_done(r.json()["run_id"], 120)
    guarded, ok = runs["guarded"], runs["open"]
    assert guarded["tasks"][0]["status"] == "completed" and guarded["status"] == "failed"
    why = f"task code-1-01 changed protected path(s) src/calc/extra.py (branch pas/{guarded['run_id']}/code-1-01)"
    assert guarded["conflicts"] == [why] and why in guarded["message"]
    merged = subprocess.run(["git", "log", "--format=%s", guarded["artifacts"]["result_branch"]], cwd=repo,
                            capture_output=True, text=True, check=True).stdout
    assert "integrate task code-1-01" not in merged
    assert ok["status"] == "completed" and ok["conflicts"] == [] and ok["result_branch"] == f"pas/{ok['run_id']}/result"


async def test_cors_origins(nats_server: EmbeddedServer, fake_cfg: PasConfig) -> None:
    """settings.http.cors_origins: the original HMI pages (another origin) may call every port,
    preflights included; any other origin gets no CORS headers and cannot write."""
    async with _http(fake_cfg, nats_server.url) as http:
        pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type"}
        for name, path in (("gateway", "/prime_directives"), ("dir-code", "/submit"), ("hmi", "/api/runs")):
            r = await http.c.options(http.u(name, path), headers=pre)
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN, (name, r.text)
            r = await http.c.options(http.u(name, path), headers={**pre, "Origin": "http://evil.test"})
            assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = await http.c.get(http.u("mgr-code-01", "/health"), headers={"Origin": ORIGIN})
        assert r.headers["access-control-allow-origin"] == ORIGIN and r.json()["service"] == "Manager-Code-01"
        r = await http.c.post(http.u("gateway", "/prime_directives"), json={"title": "from the HMI"},
                              headers={"Origin": ORIGIN})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        r = await http.c.post(http.u("gateway", "/prime_directives"), json={"title": "x"},
                              headers={"Origin": "http://evil.test"})
        assert r.status_code == 403
