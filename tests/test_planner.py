"""pas.llm.planner: model plans validated, bad replies retried once, then the deterministic planner."""

from __future__ import annotations

import json

import pytest

from pas.llm.client import Asker, LLMClient
from pas.llm.planner import (
    NOT_PLANNED,
    ArchitectPlan,
    DirectorPlan,
    ManagerPlan,
    PlanInvalid,
    deterministic_architect,
    deterministic_director,
    deterministic_manager,
    extract_json,
    plan_architect,
    plan_director,
    plan_manager,
)
from pas.protocol.wire import TaskSpec
from tests.fakellm import Fail, FakeLLM, Reply, fake_llm  # noqa: F401

LANES = ["code", "models", "data", "devsecops", "docs"]


def client(fake: FakeLLM) -> LLMClient:
    return LLMClient({"p": fake.profile("plan-a"), "b": fake.profile("plan-b")})


# ---- deterministic planners ----------------------------------------------------------------
def test_deterministic_architect() -> None:
    p = deterministic_architect("build it", LANES)
    assert [(lp.lane, lp.brief) for lp in p.lanes] == [("code", "build it")]
    p = deterministic_architect("g", LANES, ["docs", "code", "docs"])
    assert [lp.lane for lp in p.lanes] == ["docs", "code"]
    assert [lp.lane for lp in deterministic_architect("g", ["docs"]).lanes] == ["docs"]


def test_deterministic_director_and_manager() -> None:
    tasks = [TaskSpec(lane="code", instruction=f"t{i}", executor="echo") for i in range(23)]
    p = deterministic_director("code", "goal", tasks, 10)
    assert [len(j.tasks) for j in p.jobs] == [10, 10, 3]
    assert [t.instruction for j in p.jobs for t in j.tasks] == [f"t{i}" for i in range(23)]
    p = deterministic_director("data", "load the csv", [], 10)
    [job] = p.jobs
    assert job.tasks == [TaskSpec(lane="data", instruction="load the csv", executor="echo")]
    assert deterministic_manager(tasks[:3]).tasks == tasks[:3]


def test_extract_json() -> None:
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('Sure! Here it is:\n{"a": {"b": 2}}\nHope that helps') == {"a": {"b": 2}}
    with pytest.raises(PlanInvalid):
        extract_json('{"lanes": [{"lane": "code", "br')
    with pytest.raises(PlanInvalid):
        extract_json("no json here")


# ---- architect ------------------------------------------------------------------------------
async def test_architect_plan_from_fenced_reply(fake_llm: FakeLLM) -> None:
    plan = {"lanes": [{"lane": "code", "brief": "write the parser"}, {"lane": "docs", "brief": "document it"}]}
    fake_llm.script("plan-a", Reply("```json\n" + json.dumps(plan) + "\n```", prompt_tokens=50, completion_tokens=20))
    p, meta = await plan_architect(Asker(client(fake_llm), "architect", "p", "b", "r1"), "parser + docs", LANES)
    assert isinstance(p, ArchitectPlan)
    assert [(lp.lane, lp.brief) for lp in p.lanes] == [("code", "write the parser"), ("docs", "document it")]
    assert (meta.source, meta.degraded, meta.attempts, meta.tokens) == ("llm", False, 1, 70)
    req = fake_llm.requests[0]
    assert "JSON" in req.messages[0]["content"] and "parser + docs" in req.text()


async def test_architect_garbage_retried_once_then_deterministic(fake_llm: FakeLLM) -> None:
    fake_llm.script("plan-a", Reply("I think you should write some code."), Reply('{"lanes": [{"lane": "co'))
    p, meta = await plan_architect(Asker(client(fake_llm), "architect", "p", None, "r1"), "the goal", LANES, ["code"])
    assert [(lp.lane, lp.brief) for lp in p.lanes] == [("code", "the goal")]
    assert meta.degraded and meta.source == "deterministic" and meta.attempts == 2
    assert meta.reason.startswith("invalid plan after retry")
    assert len(fake_llm.requests) == 2
    retry = fake_llm.requests[1].messages
    assert retry[-2] == {"role": "assistant", "content": "I think you should write some code."}
    assert "rejected" in retry[-1]["content"] and "no JSON object" in retry[-1]["content"]


async def test_truncated_reply_then_valid_reply(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        "plan-a",
        Reply('{"lanes": [{"lane": "code", "brief": "do', finish_reason="length"),
        Reply('{"lanes": [{"lane": "code", "brief": "done right"}]}'),
    )
    p, meta = await plan_architect(Asker(client(fake_llm), "architect", "p", None, None), "g", LANES)
    assert [lp.brief for lp in p.lanes] == ["done right"]
    assert (meta.source, meta.degraded, meta.attempts) == ("llm", False, 2)
    assert "truncated" in meta.errors[0]


async def test_architect_rejects_lanes_not_allowed(fake_llm: FakeLLM) -> None:
    bad = '{"lanes": [{"lane": "models", "brief": "train"}]}'
    fake_llm.script("plan-a", Reply(bad), Reply(bad))
    p, meta = await plan_architect(Asker(client(fake_llm), "architect", "p", None, None), "g", ["code", "docs"])
    assert [lp.lane for lp in p.lanes] == ["code"] and meta.degraded
    assert "not one of" in meta.reason


async def test_llm_unavailable_falls_back_degraded(fake_llm: FakeLLM) -> None:
    fake_llm.script("plan-a", Fail(500))
    fake_llm.script("plan-b", Fail(503))
    p, meta = await plan_architect(Asker(client(fake_llm), "architect", "p", "b", "r9"), "g", LANES, ["docs"])
    assert [lp.lane for lp in p.lanes] == ["docs"]
    assert meta.degraded and meta.reason.startswith("llm unavailable") and len(meta.errors) == 2


async def test_no_model_configured_is_not_degraded(fake_llm: FakeLLM) -> None:
    p, meta = await plan_architect(Asker(client(fake_llm), "architect", None, None, None), "g", LANES)
    assert [lp.lane for lp in p.lanes] == ["code"]
    assert not meta.degraded and meta.reason == "no model configured" and not fake_llm.requests


# ---- director -------------------------------------------------------------------------------
async def test_director_explicit_tasks_are_grouped_without_a_model(fake_llm: FakeLLM) -> None:
    tasks = [TaskSpec(lane="code", instruction=f"t{i}", command="true") for i in range(12)]
    p, meta = await plan_director(Asker(client(fake_llm), "dir-code", "p", None, "r"), "code", "g", "b", tasks, 5)
    assert [len(j.tasks) for j in p.jobs] == [5, 5, 2]
    assert meta.reason == "explicit tasks" and not meta.degraded and not fake_llm.requests


async def test_director_plan_fills_lane_and_checks_cap(fake_llm: FakeLLM) -> None:
    plan = {
        "jobs": [
            {"manager_hint": "mgr-code-02", "tasks": [
                {"instruction": "add parse()", "executor": "llm", "files": ["p.py"], "acceptance": "python -m pytest -q"},
                {"instruction": "add tests", "files": ["test_p.py"]},
            ]},
        ]
    }
    fake_llm.script("plan-a", Reply(json.dumps(plan)))
    p, meta = await plan_director(Asker(client(fake_llm), "dir-code", "p", None, "r"), "code", "parser", "brief", [], 10)
    assert isinstance(p, DirectorPlan) and meta.source == "llm"
    [job] = p.jobs
    assert job.manager_hint == "mgr-code-02"
    assert [(t.lane, t.instruction, t.files) for t in job.tasks] == [
        ("code", "add parse()", ["p.py"]),
        ("code", "add tests", ["test_p.py"]),
    ]
    # a job over the cap, then a task in the wrong lane: both rejected, deterministic fallback
    over = {"jobs": [{"tasks": [{"instruction": f"t{i}"} for i in range(3)]}]}
    wrong = {"jobs": [{"tasks": [{"lane": "docs", "instruction": "x"}]}]}
    fake_llm.script("plan-a", Reply(json.dumps(over)), Reply(json.dumps(wrong)))
    p, meta = await plan_director(Asker(client(fake_llm), "dir-code", "p", None, "r"), "code", "the goal", "", [], 2)
    assert meta.degraded and "not this lane" in meta.reason
    assert "more than 2" in meta.errors[0]
    assert p.jobs[0].tasks == [TaskSpec(lane="code", instruction=f"{NOT_PLANNED}: the goal", executor="echo")]


async def test_director_rejects_unknown_task_fields(fake_llm: FakeLLM) -> None:
    bad = {"jobs": [{"tasks": [{"instruction": "x", "priority": "high"}]}]}
    fake_llm.script("plan-a", Reply(json.dumps(bad)), Reply("[]"))
    _, meta = await plan_director(Asker(client(fake_llm), "dir-code", "p", None, "r"), "code", "g", "", [], 10)
    assert meta.degraded and "priority" in meta.errors[0]


# ---- manager --------------------------------------------------------------------------------
async def test_manager_keeps_explicit_tasks_and_decomposes_model_tasks(fake_llm: FakeLLM) -> None:
    explicit = [TaskSpec(lane="code", instruction="lint", executor="command", command="ruff check .")]
    p, meta = await plan_manager(Asker(client(fake_llm), "mgr-code-01", "p", None, "r"), "code", "g", explicit)
    assert p.tasks == explicit and meta.reason == "explicit tasks" and not fake_llm.requests

    vague = [TaskSpec(lane="code", instruction="add a CLI and its tests", executor="llm")]
    reply = {"tasks": [
        {"instruction": "add cli.py", "executor": "llm", "files": ["cli.py"]},
        {"instruction": "add test_cli.py", "executor": "llm", "files": ["test_cli.py"], "acceptance": "python -m pytest -q"},
    ]}
    fake_llm.script("plan-a", Reply(json.dumps(reply)))
    p, meta = await plan_manager(Asker(client(fake_llm), "mgr-code-01", "p", None, "r"), "code", "g", explicit + vague, 10)
    assert isinstance(p, ManagerPlan) and meta.source == "llm"
    assert [t.instruction for t in p.tasks] == ["lint", "add cli.py", "add test_cli.py"]
    prompt = fake_llm.requests[0].text()
    assert "single file" in prompt and "add a CLI and its tests" in prompt and "ruff check" not in prompt


async def test_manager_too_many_tasks_falls_back_1_to_1(fake_llm: FakeLLM) -> None:
    vague = [TaskSpec(lane="code", instruction="refactor everything")]
    many = json.dumps({"tasks": [{"instruction": f"t{i}", "files": [f"f{i}.py"]} for i in range(4)]})
    fake_llm.script("plan-a", Reply(many), Reply(many))
    p, meta = await plan_manager(Asker(client(fake_llm), "mgr-code-01", "p", None, "r"), "code", "g", vague, 3)
    assert p.tasks == vague and meta.degraded and "more than 3" in meta.reason
