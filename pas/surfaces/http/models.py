"""HTTP request bodies: pydantic models that mirror the wire types (pas.protocol.wire) field for field, with
extra="forbid" and limits, so a bad body is a 422 before anything reaches NATS.

Each model's `to_wire()` gives the dict sent on NATS; the agent validates it again with msgspec.
tests/test_http_models.py checks every field (name, type, default, limits) against the wire structs
through the JSON Schema of each, so the two cannot drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pas.protocol import wire
from pas.protocol.ids import ID_PATTERN

Lane = wire.Lane
Executor = wire.Executor
RunIdStr = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Path1k = Annotated[str, StringConstraints(max_length=1024)]
MAX_TEXT = wire.MAX_TEXT
MAX_TASKS = 1000  # per HTTP request (the body limit caps it anyway)


def _has_nul(v: Any, depth: int = 0) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if depth > 20:
        return False
    if isinstance(v, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(x, depth + 1) for k, x in v.items())
    if isinstance(v, list):
        return any(_has_nul(x, depth + 1) for x in v)
    return False


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # Paths, commands and argv cannot hold NUL; refuse it here for every text field.
        if _has_nul(data):
            raise ValueError("NUL characters are not allowed")
        return data

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class TaskIn(In):
    """One atomic task (wire.TaskSpec)."""

    lane: Lane
    instruction: str = Field(min_length=1, max_length=MAX_TEXT)
    executor: Executor | None = None
    command: str | None = Field(None, max_length=4096)
    files: list[Path1k] = Field(default_factory=list, max_length=200)
    acceptance: str | None = Field(None, max_length=4096)


class BudgetIn(In):
    tokens_max: int = Field(25000, ge=0, le=10**9)
    cost_usd_max: float = Field(2.0, ge=0, le=10**6)


class JobSubmitIn(In):
    """Body of gateway POST /submit (wire.JobSubmit)."""

    title: str = Field(min_length=1, max_length=500)
    run_id: RunIdStr | None = None
    goal: str | None = Field(None, max_length=MAX_TEXT)
    repo: str | None = Field(None, max_length=4096)
    env: str | None = Field(None, max_length=4096, description="Python environment of the tasks when the repo "
                            "has no .venv: a venv or conda directory, or an interpreter")
    lanes: list[Lane] | None = Field(None, max_length=5)
    tasks: list[TaskIn] | None = Field(None, max_length=MAX_TASKS)
    budget: BudgetIn | None = None
    priority: Literal[1, 5, 10, 20] = 5
    approval_mode: bool = False
    idempotency_key: str | None = Field(None, max_length=256)
    protected_paths: list[Path1k] = Field(default_factory=list, max_length=200,
                                          description="paths no task may change (globs; dir/ for a tree)")

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        if self.budget is not None:
            d["budget"] = self.budget.model_dump(mode="json")
        return d


def _with_entry_files(goal: str, entry_files: list[str]) -> str:
    if not entry_files:
        return goal
    return (goal + "\n\n" if goal else "") + "Entry files: " + ", ".join(entry_files)


class PrimeDirectivesIn(In):
    """The legacy gateway body (POST /prime_directives), mapped onto wire.JobSubmit."""

    title: str = Field(min_length=1, max_length=500)
    description: str = Field("", max_length=MAX_TEXT)
    goal: str | None = Field(None, max_length=MAX_TEXT)
    repo_root: str | None = Field(None, max_length=4096)
    entry_files: list[Path1k] = Field(default_factory=list, max_length=200)
    budget_tokens_max: int = Field(25000, ge=0, le=10**9)
    budget_cost_usd_max: float = Field(2.0, ge=0, le=10**6)

    def to_wire(self) -> dict[str, Any]:
        goal = _with_entry_files(self.goal or self.description, self.entry_files)
        d: dict[str, Any] = {
            "title": self.title,
            "budget": {"tokens_max": self.budget_tokens_max, "cost_usd_max": self.budget_cost_usd_max},
        }
        if goal:
            d["goal"] = goal
        if self.repo_root:
            d["repo"] = self.repo_root
        return d


class ArchitectSubmitIn(JobSubmitIn):
    """Architect POST /submit: a JobSubmit plus the legacy `prd` (the goal) and `entry_files`."""

    prd: str | None = Field(None, max_length=MAX_TEXT)
    entry_files: list[Path1k] = Field(default_factory=list, max_length=200)

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        d.pop("prd", None)
        d.pop("entry_files", None)
        goal = _with_entry_files(self.goal or self.prd or "", self.entry_files)
        if goal:
            d["goal"] = goal
        return d


class JobCardIn(In):
    """Manager POST /submit (wire.JobCardSubmit). `lane` defaults to the manager's lane."""

    job_id: RunIdStr
    run_id: RunIdStr
    lane: Lane | None = None
    tasks: list[TaskIn] = Field(min_length=1, max_length=MAX_TASKS)
    goal: str = Field("", max_length=MAX_TEXT)
    repo: str | None = Field(None, max_length=4096)
    env: str | None = Field(None, max_length=4096)
    parent_id: str = Field("", max_length=256)
    submitted_by: str = Field("", max_length=256)
    priority: int = Field(5, ge=1, le=20)
    approval: bool = Field(False, description="refused here: approval mode needs a run (POST /submit)")


class DecisionIn(In):
    """Body of POST /runs/{run_id}/approve and /reject (wire.Decision without run_id)."""

    by: str | None = Field(None, max_length=200, description="who decides (default: http:<client address>)")
    drop: list[RunIdStr] = Field(
        default_factory=list, max_length=10000, description="approve only: task ids removed from the plan")
    reason: str = Field("", max_length=2000)


class ExecuteIn(In):
    """Programmer POST /execute (pas.protocol.wire.ExecuteRequest); legacy `task` = instruction."""

    instruction: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    task: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="legacy name of instruction")
    executor: Executor | None = None
    command: str | None = Field(None, max_length=4096)
    files: list[Path1k] = Field(default_factory=list, max_length=200)
    acceptance: str | None = Field(None, max_length=4096)
    model: str | None = Field(None, min_length=1, max_length=128,
                              description="model profile: this programmer's primary (default) or its backup")
    budget_usd: float | None = Field(None, ge=0, le=10**6, description="cost cap of this task (llm tasks)")
    repo: str | None = Field(None, max_length=4096)
    env: str | None = Field(None, max_length=4096)
    run_id: RunIdStr = "adhoc"
    job_id: RunIdStr = "adhoc"
    timeout_s: float = Field(300.0, ge=10, le=3600)

    @model_validator(mode="after")
    def _one_instruction(self) -> ExecuteIn:
        if (self.instruction is None) == (self.task is None):
            raise ValueError("give exactly one of instruction and task")
        return self

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        d["instruction"] = d.pop("task", None) or d["instruction"]
        d["timeout_s"] = self.timeout_s
        return d


class SetModelIn(In):
    """Body of POST /api/agents/{id}/model (pas.ctl.<id>.set_model)."""

    primary: str | None = Field(None, min_length=1, max_length=128)
    backup: str | None = Field(None, min_length=1, max_length=128)

