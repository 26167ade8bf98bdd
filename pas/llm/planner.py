"""Structured planning for the architect, directors and managers.

The model is asked for JSON only, in the shape of one of the plan structs below. Its reply is
extracted (code fences and surrounding prose stripped), decoded and validated with msgspec, then
checked against the request (allowed lanes, the lane of the tasks, the task cap). An invalid or
truncated reply is sent back once with the validation error; a second failure, or no model
answering at all (LLMUnavailable), falls back to the deterministic planner and the returned
:class:`PlanMeta` says ``degraded=True`` with the reason. Nothing a model replies can raise out of
these functions.

Explicit work is never re-planned by a model: a director given tasks groups them into job cards,
and a manager whose tasks are all explicit commands (``command``/``echo``) passes them on 1:1.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from pas.base.errors import BudgetExceeded
from pas.llm.client import Asker, LLMUnavailable
from pas.protocol.wire import Lane, TaskSpec

MAX_TASKS_PER_JOB = 10
NOT_PLANNED = "not planned by a model (see the run's degraded reason)"
"""How the echo task of a lane no model could plan begins (then the goal)."""


# ---- plans ---------------------------------------------------------------------------------
class LanePlan(Struct):
    lane: Lane
    brief: Annotated[str, Meta(min_length=1, max_length=16384)]
    """What the lane's director should achieve, in the architect's words."""


class ArchitectPlan(Struct):
    lanes: Annotated[list[LanePlan], Meta(min_length=1, max_length=5)]


class JobPlan(Struct):
    tasks: Annotated[list[TaskSpec], Meta(min_length=1)]
    manager_hint: str | None = None
    """Optional: the manager (agent id) the director would like to handle this job."""


class DirectorPlan(Struct):
    jobs: Annotated[list[JobPlan], Meta(min_length=1)]


class ManagerPlan(Struct):
    tasks: Annotated[list[TaskSpec], Meta(min_length=1)]


@dataclass
class PlanMeta:
    """How a plan was made."""

    source: str = "deterministic"
    """"llm" or "deterministic"."""
    degraded: bool = False
    """True when a model should have planned but the deterministic planner had to."""
    reason: str = ""
    attempts: int = 0
    """Model replies requested (0, 1 or 2)."""
    profile: str | None = None
    model_used: str | None = None
    failed_over: bool = False
    tokens: int = 0
    cost_usd: float | None = 0.0
    errors: list[str] = field(default_factory=list)


# ---- deterministic planners ----------------------------------------------------------------
def deterministic_architect(
    goal: str, lanes_allowed: list[str], requested: list[str] | None = None
) -> ArchitectPlan:
    """The requested lanes (default ["code"]) that have a director, each with brief=goal."""
    allowed = list(lanes_allowed)
    lanes = [ln for ln in (requested or ["code"]) if not allowed or ln in allowed]
    if not lanes:
        lanes = allowed[:1] or ["code"]
    brief = goal.strip() or "(no goal given)"
    return ArchitectPlan([LanePlan(ln, brief) for ln in dict.fromkeys(lanes)])  # type: ignore[arg-type]


def deterministic_director(
    lane: str, goal: str, tasks: list[TaskSpec], max_tasks_per_job: int = MAX_TASKS_PER_JOB
) -> DirectorPlan:
    """Tasks split into job cards of at most `max_tasks_per_job`; without tasks, one echo task."""
    n = max(1, max_tasks_per_job)
    if tasks:
        return DirectorPlan([JobPlan(list(tasks[i : i + n])) for i in range(0, len(tasks), n)])
    instr = goal.strip() or "(no goal given)"
    return DirectorPlan([JobPlan([TaskSpec(lane=lane, instruction=instr, executor="echo")])])  # type: ignore[arg-type]


def deterministic_manager(tasks: list[TaskSpec]) -> ManagerPlan:
    """The job's tasks as they are (1:1)."""
    return ManagerPlan(list(tasks))


# ---- reply parsing -------------------------------------------------------------------------
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)```", re.S)


class PlanInvalid(ValueError):
    pass


def extract_json(text: str) -> Any:
    """The JSON object in a reply: inside ``` fences if present, else from the first { to the last }."""
    t = text.strip()
    m = _FENCE.search(t)
    if m:
        t = m.group(1).strip()
    elif t.startswith("```"):  # an opening fence with no closing one: a truncated reply
        t = t.split("\n", 1)[1] if "\n" in t else ""
    if not t.startswith("{"):
        i, j = t.find("{"), t.rfind("}")
        if i < 0 or j <= i:
            raise PlanInvalid("no JSON object in the reply")
        t = t[i : j + 1]
    try:
        return json.loads(t)
    except ValueError as e:
        raise PlanInvalid(f"invalid JSON: {e}") from None


def _fill_lane(tasks: Any, lane: str) -> None:
    if not isinstance(tasks, list):
        return
    for t in tasks:
        if isinstance(t, dict):
            t.setdefault("lane", lane)
            if t["lane"] != lane:
                raise PlanInvalid(f"task lane {t['lane']!r} is not this lane {lane!r}")


def _convert(obj: Any, typ: type[Any]) -> Any:
    try:
        return msgspec.convert(obj, type=typ)
    except msgspec.ValidationError as e:
        raise PlanInvalid(f"does not match the schema: {e}") from None


def parse_architect(text: str, lanes_allowed: list[str]) -> ArchitectPlan:
    plan: ArchitectPlan = _convert(extract_json(text), ArchitectPlan)
    seen = set()
    for lp in plan.lanes:
        if lanes_allowed and lp.lane not in lanes_allowed:
            raise PlanInvalid(f"lane {lp.lane!r} is not one of {lanes_allowed}")
        if lp.lane in seen:
            raise PlanInvalid(f"lane {lp.lane!r} listed twice")
        seen.add(lp.lane)
    return plan


def parse_director(text: str, lane: str, max_tasks_per_job: int) -> DirectorPlan:
    obj = extract_json(text)
    if isinstance(obj, dict) and isinstance(obj.get("jobs"), list):
        for j in obj["jobs"]:
            if isinstance(j, dict):
                _fill_lane(j.get("tasks"), lane)
    plan: DirectorPlan = _convert(obj, DirectorPlan)
    for j in plan.jobs:
        if len(j.tasks) > max_tasks_per_job:
            raise PlanInvalid(f"a job has {len(j.tasks)} tasks, more than {max_tasks_per_job}")
    return plan


def parse_manager(text: str, lane: str, max_tasks: int) -> ManagerPlan:
    obj = extract_json(text)
    if isinstance(obj, dict):
        _fill_lane(obj.get("tasks"), lane)
    plan: ManagerPlan = _convert(obj, ManagerPlan)
    if len(plan.tasks) > max_tasks:
        raise PlanInvalid(f"{len(plan.tasks)} tasks, more than {max_tasks}")
    return plan


# ---- prompts -------------------------------------------------------------------------------
_JSON_ONLY = (
    "Reply with one JSON object and nothing else: no prose, no markdown fences. "
    "It must match the schema exactly; unknown fields are errors."
)
_TASK_SCHEMA = (
    '{"instruction": str (what to do, self-contained), "executor": "llm"|"aider"|"command"|"echo" '
    '(optional), "command": str (only for executor command), "files": [str] (paths relative to the '
    'repository), "acceptance": str (optional shell command that must exit 0, e.g. "python -m pytest -q '
    'tests/test_x.py")}'
)
_CAP = 32 * 1024


def _clip(s: str) -> str:
    return s if len(s) <= _CAP else s[:_CAP] + "\n[... truncated]"


def architect_messages(goal: str, lanes_allowed: list[str]) -> list[dict[str, str]]:
    sys = (
        "You are the Architect of PAS, a hierarchical software-engineering agent swarm. Split the "
        "goal into lanes, one brief per lane, for the lane directors. Lanes available: "
        f"{', '.join(lanes_allowed)}. Use only the lanes the goal needs. "
        f'{_JSON_ONLY} Schema: {{"lanes": [{{"lane": one of the lanes, "brief": str}}]}}'
    )
    return [{"role": "system", "content": sys}, {"role": "user", "content": f"Goal:\n{_clip(goal)}"}]


def director_messages(lane: str, goal: str, brief: str, max_tasks_per_job: int) -> list[dict[str, str]]:
    sys = (
        f"You are the Director of the {lane!r} lane of PAS. Turn the brief into job cards for your "
        f"managers; each job has 1 to {max_tasks_per_job} tasks that belong together. "
        f'{_JSON_ONLY} Schema: {{"jobs": [{{"manager_hint": str (optional), "tasks": [TASK]}}]}} '
        f"where TASK is {_TASK_SCHEMA}"
    )
    user = f"Goal:\n{_clip(goal)}\n\nBrief for the {lane} lane:\n{_clip(brief or goal)}"
    return [{"role": "system", "content": sys}, {"role": "user", "content": user}]


def manager_messages(lane: str, goal: str, tasks: list[TaskSpec], max_tasks: int) -> list[dict[str, str]]:
    sys = (
        f"You are a Manager of the {lane!r} lane of PAS. Decompose the job into surgical tasks for "
        "programmers: each task is atomic and touches a single file (name it in files), tasks are "
        f"independent so they can run in parallel, at most {max_tasks} tasks in all. Keep each "
        f'task\'s acceptance command if it has one. {_JSON_ONLY} Schema: {{"tasks": [TASK]}} '
        f"where TASK is {_TASK_SCHEMA}"
    )
    listed = json.dumps([msgspec.to_builtins(t) for t in tasks], indent=1)
    user = f"Goal:\n{_clip(goal)}\n\nJob tasks:\n{_clip(listed)}"
    return [{"role": "system", "content": sys}, {"role": "user", "content": user}]


# ---- driver --------------------------------------------------------------------------------
async def _ask(who: Asker, messages: list[dict[str, str]], parse: Any, meta: PlanMeta) -> Any | None:
    """Ask, validate, retry once with the error. None means: use the deterministic planner."""
    msgs = list(messages)
    for attempt in (1, 2):
        meta.attempts = attempt
        try:
            res = await who.complete(msgs)
        except LLMUnavailable as e:
            meta.errors.extend(e.errors)
            meta.degraded, meta.reason = True, f"llm unavailable: {'; '.join(e.errors)}"[:1000]
            return None
        except BudgetExceeded as e:  # no budget left for planning: the offline planner does it
            meta.errors.append(e.message)
            meta.degraded, meta.reason = True, e.message[:1000]
            return None
        meta.profile, meta.model_used = res.profile, res.model_used
        meta.failed_over = meta.failed_over or res.failed_over
        meta.errors.extend(res.errors)
        meta.tokens += res.tokens
        meta.cost_usd = None if meta.cost_usd is None or res.cost_usd is None else meta.cost_usd + res.cost_usd
        try:
            plan = parse(res.text)
        except (ValueError, TypeError, RecursionError) as e:  # PlanInvalid and anything odd
            why = f"{e}" + (" (reply truncated at max_tokens)" if res.finish_reason == "length" else "")
            meta.errors.append(f"invalid plan (attempt {attempt}): {why}"[:1000])
            msgs = [*msgs, {"role": "assistant", "content": _clip(res.text)},
                    {"role": "user", "content": f"That reply was rejected: {why}. {_JSON_ONLY}"}]
            continue
        meta.source = "llm"
        return plan
    meta.degraded = True
    meta.reason = "invalid plan after retry: " + meta.errors[-1]
    return None


def _no_model(meta: PlanMeta, primary: str | None) -> bool:
    if primary:
        return False
    meta.reason = "no model configured"
    return True


async def plan_architect(
    who: Asker,
    goal: str,
    lanes_allowed: list[str],
    requested: list[str] | None = None,
) -> tuple[ArchitectPlan, PlanMeta]:
    """Lanes and briefs for a goal. `requested` (the submitter's lanes) narrows what may be chosen."""
    meta = PlanMeta()
    allowed = [ln for ln in lanes_allowed if not requested or ln in requested]
    if not goal.strip() or _no_model(meta, who.primary):
        meta.reason = meta.reason or "no goal"
        return deterministic_architect(goal, lanes_allowed, requested), meta
    plan = await _ask(who, architect_messages(goal, allowed), lambda t: parse_architect(t, allowed), meta)
    return plan or deterministic_architect(goal, lanes_allowed, requested), meta


async def plan_director(
    who: Asker,
    lane: str,
    goal: str,
    brief: str,
    tasks: list[TaskSpec],
    max_tasks_per_job: int = MAX_TASKS_PER_JOB,
) -> tuple[DirectorPlan, PlanMeta]:
    """Job cards for a lane: explicit tasks grouped as given, else planned from the brief."""
    meta = PlanMeta()
    if tasks:
        meta.reason = "explicit tasks"
        return deterministic_director(lane, goal, tasks, max_tasks_per_job), meta
    if _no_model(meta, who.primary):
        return deterministic_director(lane, goal or brief, tasks, max_tasks_per_job), meta
    plan = await _ask(who, director_messages(lane, goal, brief, max_tasks_per_job),
                      lambda t: parse_director(t, lane, max_tasks_per_job), meta)
    if plan is not None:
        return plan, meta
    # No model planned this lane: its one echo task says so (the run ends `completed`, marked degraded,
    # having only echoed the goal, and a reader of its tasks must not take that for the work done).
    return deterministic_director(lane, f"{NOT_PLANNED}: {goal or brief}", tasks, max_tasks_per_job), meta


def _explicit(t: TaskSpec) -> bool:
    return t.executor in ("command", "echo") or (t.executor is None and t.command is not None)


async def plan_manager(
    who: Asker,
    lane: str,
    goal: str,
    tasks: list[TaskSpec],
    max_tasks_per_job: int = MAX_TASKS_PER_JOB,
) -> tuple[ManagerPlan, PlanMeta]:
    """Surgical decomposition of a job card's model tasks (llm/aider/unspecified executor) into at
    most `max_tasks_per_job` single-file tasks. Explicit command/echo tasks are kept as they are and
    come first."""
    meta = PlanMeta()
    explicit = [t for t in tasks if _explicit(t)]
    vague = [t for t in tasks if not _explicit(t)]
    if not vague:
        meta.reason = "explicit tasks" if tasks else "no tasks"
        return deterministic_manager(tasks), meta
    if _no_model(meta, who.primary):
        return deterministic_manager(tasks), meta
    plan = await _ask(who, manager_messages(lane, goal, vague, max_tasks_per_job),
                      lambda t: parse_manager(t, lane, max_tasks_per_job), meta)
    if plan is None:
        return deterministic_manager(tasks), meta
    return ManagerPlan(explicit + plan.tasks), meta


__all__ = [
    "NOT_PLANNED",
    "ArchitectPlan",
    "DirectorPlan",
    "JobPlan",
    "LanePlan",
    "ManagerPlan",
    "PlanInvalid",
    "PlanMeta",
    "deterministic_architect",
    "deterministic_director",
    "deterministic_manager",
    "extract_json",
    "parse_architect",
    "parse_director",
    "parse_manager",
    "plan_architect",
    "plan_director",
    "plan_manager",
]
