"""LLMs inside the running swarm, against the local OpenAI-compatible fake (litellm's real HTTP path):
planning at every tier, failover you can see, fallback plans, usage and budgets, the llm executor."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pas.base.errors import Unavailable
from pas.runtime import comms
from pas.surfaces.stack import Stack
from tests.conftest import make_cfg, wait_for
from tests.fakellm import Fail, Reply
from tests.test_pipeline import make_repo


def swarm_cfg(fake_llm: Any, **assign: str | None) -> Any:
    """Default config with every agent's models cleared, then `agent=profile` assignments."""
    cfg = make_cfg()
    for name in ("pa", "pb", "pd", "pm", "pp"):
        cfg.models[name] = fake_llm.profile(name)
    for a in cfg.agents:
        a.model = None
        a.backup_model = None
    for agent, prof in assign.items():
        a = cfg.agent(agent.replace("_", "-"))
        if prof and "/" in prof:
            a.model, a.backup_model = prof.split("/")
        else:
            a.model = prof
    return cfg


def failover_swarm(fake_llm: Any) -> Any:
    """The architect's primary fails (500) and its backup answers; the docs director and manager plan:
    a config whose models are these scripted fake profiles."""
    fake_llm.script("pa", Fail(500))
    fake_llm.script("pb", Reply('{"lanes": [{"lane": "docs", "brief": "document the API"}]}',
                                prompt_tokens=100, completion_tokens=20))
    fake_llm.script("pd", Reply('{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"},'
                                ' {"instruction": "write usage"}]}]}', prompt_tokens=50, completion_tokens=30))
    fake_llm.script("pm", Reply('{"tasks": [{"instruction": "usage section", "executor": "echo"}]}',
                                prompt_tokens=40, completion_tokens=10))
    return swarm_cfg(fake_llm, architect="pa/pb", dir_docs="pd", mgr_docs_01="pm")


async def llm_entries(stack: Stack, run_id: str) -> list[Any]:
    return [e async for e in comms.read(stack.bus.js, run_id=run_id, msg_type="LLM")]  # type: ignore[union-attr]


async def test_planning_at_every_tier_with_failover(nats_server: Any, client: Any, fake_llm: Any) -> None:
    cfg = failover_swarm(fake_llm)
    async with Stack(cfg, url=nats_server.url) as st:
        await client.submit({"title": "docs", "goal": "Document the calc API", "run_id": "llm1"})
        res = await client.wait("llm1", timeout_s=60)
        entries = await llm_entries(st, "llm1")
    assert res["status"] == "completed" and res["lanes"] == ["docs"] and not res["degraded"], res
    assert sorted(t["instruction"] for t in res["tasks"]) == ["usage section", "write intro"]
    # failover is visible: the primary's failure, then the backup's answer, as comms entries
    arch = [e for e in entries if e.from_agent == "architect"]
    assert [(e.metadata["profile"], e.metadata["ok"]) for e in arch] == [("pa", False), ("pb", True)]
    assert arch[1].metadata["model_requested"] == "openai/pb" and arch[1].llm_model
    assert arch[1].tokens == 120 and arch[1].metadata["tokens_in"] == 100 and arch[1].metadata["latency_s"] >= 0
    assert arch[1].cost_usd is None and arch[1].metadata["cost"] == "unknown"  # unpriced model: unknown, not 0
    # usage reaches the run's totals (all tiers)
    assert res["usage"]["tokens"] == 120 + 80 + 50 and res["usage"]["llm_calls"] == 4
    assert res["usage"]["unknown_cost_calls"] == 3


async def test_garbage_plan_falls_back_and_marks_degraded(nats_server: Any, client: Any, fake_llm: Any) -> None:
    fake_llm.script("pa", Reply("I think you should use the code lane."), Reply('{"lanes": ['))
    cfg = swarm_cfg(fake_llm, architect="pa")
    async with Stack(cfg, url=nats_server.url) as st:
        await client.submit({"title": "g", "goal": "do things", "lanes": ["data"], "run_id": "llm2"})
        res = await client.wait("llm2", timeout_s=60)
        entries = await llm_entries(st, "llm2")
    assert res["status"] == "completed" and res["degraded"] is True
    assert "invalid plan after retry" in res["message"]
    assert res["lanes"] == ["data"] and [t["executor"] for t in res["tasks"]] == ["echo"]  # offline plan
    assert len(fake_llm.requests_for("pa")) == 2 and len(entries) == 2  # retried once, then gave up


async def test_both_models_down_uses_offline_planner(nats_server: Any, client: Any, fake_llm: Any) -> None:
    fake_llm.script("pa", Fail(500))
    fake_llm.script("pb", Fail(503))
    cfg = swarm_cfg(fake_llm, architect="pa/pb")
    async with Stack(cfg, url=nats_server.url):
        await client.submit({"title": "down", "goal": "anything", "run_id": "llm3"})
        res = await client.wait("llm3", timeout_s=60)
    assert res["status"] == "completed" and res["degraded"] and "llm unavailable" in res["message"]
    assert res["lanes"] == ["code"]


EDIT_OK = """Here you go.
EDIT: src/calc/__init__.py
<<<<<<< SEARCH
    return a + b
=======
    return b + a
>>>>>>> REPLACE
FILE: src/calc/extra.py
<<<<<<< CONTENT
def double(x):
    return 2 * x
>>>>>>> END
"""


async def test_llm_executor_edits_the_worktree(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> None:
    fake_llm.default("pp", Reply(EDIT_OK, prompt_tokens=200, completion_tokens=60))
    progs = {f"prog_{i:03d}": "pp" for i in range(1, 11)}
    cfg = swarm_cfg(fake_llm, **progs)
    repo = make_repo(tmp_path)
    async with Stack(cfg, url=nats_server.url):
        await client.submit({"title": "edit", "run_id": "llm4", "repo": str(repo), "env": sys.executable, "tasks": [{
            "lane": "code", "instruction": "add a double() helper", "executor": "llm",
            "files": ["src/calc/__init__.py"], "acceptance": "python -m pytest -q -p no:cacheprovider tests"}]})
        res = await client.wait("llm4", timeout_s=90)
    t = res["tasks"][0]
    assert res["status"] == "completed" and t["status"] == "completed", t
    assert "+    return b + a" in t["output"] and "def double" in t["output"] and "exit 0" in t["output"]
    assert t["exit_code"] == 0 and t["tokens"] == 260 and t["branch"] == "pas/llm4/code-1-01"
    assert "extra.py" in t["diff_stat"]
    shown = subprocess.run(["git", "show", "pas/llm4/code-1-01:src/calc/extra.py"], cwd=repo,
                           capture_output=True, text=True).stdout
    assert "def double" in shown
    assert res["usage"]["tokens"] == 260


async def test_budget_stops_llm_calls(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> None:
    wrong = EDIT_OK.replace("return b + a", "return a - b")  # breaks the tests: acceptance fails
    fake_llm.default("pp", Reply(wrong, prompt_tokens=30, completion_tokens=30))
    cfg = swarm_cfg(fake_llm, **{f"prog_{i:03d}": "pp" for i in range(1, 11)})
    repo = make_repo(tmp_path)
    async with Stack(cfg, url=nats_server.url):
        await client.submit({"title": "budget", "run_id": "llm5", "repo": str(repo), "env": sys.executable,
                             "budget": {"tokens_max": 50},
                             "tasks": [{"lane": "code", "instruction": "x", "executor": "llm",
                                        "files": ["src/calc/__init__.py"],
                                        "acceptance": "python -m pytest -q -p no:cacheprovider tests"}]})
        res = await client.wait("llm5", timeout_s=90)
    t = res["tasks"][0]
    assert t["status"] == "budget_exceeded", t
    assert len(fake_llm.requests_for("pp")) == 1  # the second call was never made
    assert res["status"] == "failed" and res["usage"]["tokens"] == 60


async def test_breaker_opens_and_shows_in_pas_agents(nats_server: Any, client: Any, fake_llm: Any) -> None:
    fake_llm.default("pa", Fail(500))
    cfg = swarm_cfg(fake_llm, architect="pa")
    async with Stack(cfg, url=nats_server.url):
        for i in range(4):
            await client.submit({"title": "b", "goal": "g", "run_id": f"br{i}"})
            await client.wait(f"br{i}", timeout_s=60)
        from tests.conftest import wait_for

        async def monitor_knows_model() -> bool:
            kv = await client.nc.jetstream().key_value("pas_agents")
            return json.loads((await kv.get("architect")).value).get("model") == "pa"

        await wait_for(monitor_knows_model, 10)
        rows = json.loads(subprocess.run([sys.executable, "-m", "pas", "agents", "--json", "--nats-url",
                                          nats_server.url], capture_output=True, text=True, timeout=60).stdout)
    arch = next(r for r in rows if r["agent"] == "architect")
    assert arch["model"] == "pa" and arch["breaker"].startswith("open"), arch  # the model in use, its breaker
    assert len(fake_llm.requests_for("pa")) == 3  # the 4th run skipped the open circuit
    from pas.protocol import subjects as S
    from pas.transport.bus import connect

    nc = await connect(nats_server.url)
    try:
        kv = await nc.jetstream().key_value(S.KV_BREAKERS)
        st = json.loads((await kv.get(S.breaker_key("architect", "pa"))).value)  # the architect's own breaker
    finally:
        await nc.close()
    assert st["state"] == "open" and st["failures"] >= 3


async def test_set_model_live(stack: Any, client: Any) -> None:
    r = await client.request("pas.ctl.prog-003.set_model", {"primary": "gpt-4o"})
    assert r["model"] == "gpt-4o" and r["previous"]["model"] == "qwen-coder-7b"
    h = await client.request("pas.prog.prog-003.health", {})
    assert h["model"] == "gpt-4o"
    import pytest

    from pas.base.errors import BadRequest

    with pytest.raises(BadRequest):
        await client.request("pas.ctl.prog-003.set_model", {"primary": "nope"})
    # the agents run in this event loop: run the CLI without blocking it
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pas", "model", "set", "prog-003",
                                                "claude-haiku", "--backup", "--nats-url", stack.url,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and b"backup=claude-haiku" in out, err
    rows = json.loads(subprocess.run([sys.executable, "-m", "pas", "agents", "--json", "--nats-url", stack.url],
                                     capture_output=True, text=True, timeout=60).stdout)
    assert next(r for r in rows if r["agent"] == "prog-003")["model"] == "gpt-4o"


async def test_aider_executor_through_the_pool(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> None:
    from tests.test_aider import AIDER
    from tests.test_aider import make_repo as make_small_repo

    assert AIDER is not None, "aider not installed: scripts/setup.sh --dev installs it (uv tool install aider-chat)"
    fake_llm.default("pp", Reply("Fixed.\n\ncalc.py\n```\ndef add(a, b):\n    return a + b\n```\n"))
    cfg = swarm_cfg(fake_llm, **{f"prog_{i:03d}": "pp" for i in range(1, 11)})
    cfg.settings.llm.aider_binary = AIDER
    repo = make_small_repo(tmp_path / "small")
    async with Stack(cfg, url=nats_server.url):
        await client.submit({"title": "aider", "run_id": "aid1", "repo": str(repo), "env": sys.executable, "tasks": [
            {"lane": "code", "instruction": "fix add() so it adds", "executor": "aider", "files": ["calc.py"]}]})
        res = await client.wait("aid1", timeout_s=120)
    t = res["tasks"][0]
    assert t["status"] == "completed", t
    assert "+    return a + b" in t["output"] and t["cost_usd"] is None  # aider reports no cost: unknown
    assert res["usage"]["unknown_cost_calls"] >= 1
    shown = subprocess.run(["git", "show", "pas/aid1/code-1-01:calc.py"], cwd=repo, capture_output=True,
                           text=True).stdout
    assert "return a + b" in shown


async def answers(client: Any, subject: str) -> bool:
    try:
        await client.request(subject, {})
    except Unavailable:
        return False
    return True


async def test_model_switch_survives_a_restart(nats_server: Any, client: Any) -> None:
    cfg = make_cfg()
    async with Stack(cfg, url=nats_server.url, only=["mgr-code-01"]):
        # Once in CI (shared server, after the aider test) this request found no responder right after
        # the stack started; unexplained so far: wait (bounded) until the agent answers, then switch.
        await wait_for(lambda: answers(client, "pas.mgr.mgr-code-01.health"), timeout_s=20)
        # the switcher stores the override (KV pas_models), then the agent takes it live
        await client.set_model("mgr-code-01", cfg.models, primary="claude-sonnet")
    async with Stack(make_cfg(), url=nats_server.url, only=["mgr-code-01"]):
        h = await client.request("pas.mgr.mgr-code-01.health", {})
    assert h["model"] == "claude-sonnet" and h["backup_model"] == "claude-haiku"


async def test_known_cost_and_cost_budget(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> None:
    import litellm

    litellm.register_model({"openai/pp": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
                                          "litellm_provider": "openai", "mode": "chat"}})
    wrong = EDIT_OK.replace("return b + a", "return a - b")  # acceptance keeps failing
    fake_llm.default("pp", Reply(wrong, prompt_tokens=100, completion_tokens=50))
    cfg = swarm_cfg(fake_llm, **{f"prog_{i:03d}": "pp" for i in range(1, 11)})
    repo = make_repo(tmp_path)
    async with Stack(cfg, url=nats_server.url):
        await client.submit({"title": "cost", "run_id": "cost1", "repo": str(repo),
                             "budget": {"tokens_max": 100000, "cost_usd_max": 0.25},
                             "tasks": [{"lane": "code", "instruction": "x", "executor": "llm",
                                        "files": ["src/calc/__init__.py"],
                                        "acceptance": "python -m pytest -q -p no:cacheprovider tests"}]})
        res = await client.wait("cost1", timeout_s=90)
    t = res["tasks"][0]
    # each call costs 100*0.001 + 50*0.002 = 0.2 USD: the second call would pass the 0.25 budget
    assert t["status"] == "budget_exceeded", t
    assert len(fake_llm.requests_for("pp")) == 2
    assert abs(res["usage"]["cost_usd"] - 0.4) < 1e-9 and res["usage"]["unknown_cost_calls"] == 0
