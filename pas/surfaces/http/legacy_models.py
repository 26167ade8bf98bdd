"""The request bodies of the original HTTP PAS (TrentCarter/lnsp-phase-4), as its clients send them,
translated onto PAS's own bodies (pas.surfaces.http.models) so nothing new reaches NATS.

Every field the original accepted is either honoured, or refused with 400/422 naming it: unknown
fields are refused (extra="forbid"), and a field PAS cannot honour (a protected path, a cross-vendor
review, a model the programmer does not have) is a 400 that says why, never silently dropped.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from pas.base.errors import BadRequest
from pas.protocol import subjects as S
from pas.surfaces.http.models import MAX_TEXT, ArchitectSubmitIn, ExecuteIn, In, Path1k, RunIdStr

LANE_NAMES = {"code": "Code", "models": "Models", "data": "Data", "devsecops": "DevSecOps", "docs": "Docs"}
"""PAS lane -> the original's lane name (its job cards, plans and service names)."""
PRIORITY_NAMES = {"low": 1, "normal": 5, "high": 10, "critical": 20}
Short = Annotated[str, StringConstraints(max_length=2000)]


def lane_of(name: str) -> str | None:
    """The PAS lane of an original lane name ("Code", "DevSecOps"; any case), None if none."""
    low = name.strip().lower()
    return low if low in S.LANES else None


class LegacyPolicyIn(In):
    """The original Architect's `policy`: protected_paths become the job's (a task branch touching
    one fails the run); PAS has no cross-vendor review, so asking for one is refused."""

    require_cross_vendor_review: bool = False
    protected_paths: list[Path1k] = Field(default_factory=list, max_length=200)

    def job_fields(self, repo: str | None) -> dict[str, Any]:
        """What the policy adds to the JobSubmit (400 for what PAS cannot do)."""
        if self.require_cross_vendor_review:
            raise BadRequest("policy.require_cross_vendor_review: PAS has no cross-vendor review; send false or "
                             "leave it out", detail={"field": "policy.require_cross_vendor_review"})
        if self.protected_paths and not repo:
            raise BadRequest("policy.protected_paths needs `repo`: without a repository no task's change is kept",
                             detail={"field": "policy.protected_paths"})
        return {"protected_paths": self.protected_paths} if self.protected_paths else {}


class LegacyBudgetIn(In):
    """The original's budget dicts: the Architect's {tokens_max, cost_usd_max, duration_max_mins} and
    the job cards' {tokens_max | max_tokens, cost_usd_max | max_cost_usd, max_duration_s}."""

    tokens_max: int | None = Field(None, ge=0, le=10**9)
    max_tokens: int | None = Field(None, ge=0, le=10**9)
    cost_usd_max: float | None = Field(None, ge=0, le=10**6)
    max_cost_usd: float | None = Field(None, ge=0, le=10**6)
    duration_max_mins: float | None = Field(None, gt=0, le=7 * 24 * 60)
    max_duration_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    tokens_target_ratio: float | None = Field(None, ge=0, le=1, description="the original's hint; "
                                              "refused unless 1 (PAS plans against tokens_max itself)")

    @model_validator(mode="after")
    def _one_name_each(self) -> LegacyBudgetIn:
        for a, b in (("tokens_max", "max_tokens"), ("cost_usd_max", "max_cost_usd"),
                     ("duration_max_mins", "max_duration_s")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ValueError(f"give one of {a} and {b}")
        if self.tokens_target_ratio not in (None, 1):
            raise ValueError("tokens_target_ratio: PAS has no token target below the budget; leave it out")
        return self

    def to_wire(self) -> dict[str, Any]:
        tokens = self.tokens_max if self.tokens_max is not None else self.max_tokens
        cost = self.cost_usd_max if self.cost_usd_max is not None else self.max_cost_usd
        return {"tokens_max": 25000 if tokens is None else tokens, "cost_usd_max": 2.0 if cost is None else cost}

    @property
    def deadline_s(self) -> float | None:
        """The run's time limit in seconds (the adapter cancels the run when it is still going then)."""
        return self.duration_max_mins * 60 if self.duration_max_mins is not None else self.max_duration_s


class LegacyArchitectIn(ArchitectSubmitIn):
    """The original Architect's POST /submit (PrimeDirective): `approval_mode` "auto"/"human", a
    `policy` and a loose `budget`, on top of PAS's own architect body."""

    budget: LegacyBudgetIn | None = None  # type: ignore[assignment]
    policy: LegacyPolicyIn | None = None
    approval_mode: bool | Literal["auto", "human"] = False  # type: ignore[assignment]

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        d.pop("policy", None)
        if self.policy is not None:
            d.update(self.policy.job_fields(self.repo))
        d["approval_mode"] = self.approval_mode in (True, "human")
        if self.budget is not None:
            d["budget"] = self.budget.to_wire()
        return d


class LegacyInput(In):
    """One entry of a job card's `inputs` / `expected_artifacts`: a file (or a description)."""

    type: str = Field("file", max_length=100)
    path: Path1k | None = None
    required: bool = True
    description: Short = ""


class LegacyAcceptance(In):
    check: Short


class LlmConfigIn(In):
    provider: str | None = Field(None, max_length=100)
    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1, le=10**6)

    def litellm_name(self) -> str:
        return litellm_name(self.provider, self.model)


def litellm_name(provider: str | None, model: str) -> str:
    """"provider/model" as litellm names it (the original sent the two apart)."""
    return f"{provider}/{model}" if provider and "/" not in model else model


class LegacyJobCard(In):
    """A job card as the original Architect, Directors and its tests sent it ({"job_card": {...}}).

    It becomes one PAS run of the receiving agent's lane, whose id is the card's id: the lane's
    director and managers plan it from the text (task, requirements, constraints, files, expected
    artifacts and acceptance checks, all in the goal), and /status/{job_card_id} reads that run."""

    id: RunIdStr | None = None
    job_card_id: RunIdStr | None = None
    parent_id: str = Field("", max_length=256)
    role: Literal["director", "manager"] | None = None
    lane: str | None = Field(None, max_length=50)
    task: str | None = Field(None, max_length=MAX_TEXT)
    description: str | None = Field(None, max_length=MAX_TEXT)
    goal: str | None = Field(None, max_length=MAX_TEXT)
    files: list[Path1k] = Field(default_factory=list, max_length=200)
    entry_file: Path1k | None = None
    inputs: list[LegacyInput] = Field(default_factory=list, max_length=200)
    expected_artifacts: list[LegacyInput] = Field(default_factory=list, max_length=200)
    acceptance: list[LegacyAcceptance] = Field(default_factory=list, max_length=50)
    requirements: list[Short] = Field(default_factory=list, max_length=100)
    constraints: list[Short] = Field(default_factory=list, max_length=100)
    risks: list[Short] = Field(default_factory=list, max_length=100)
    budget: LegacyBudgetIn | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="kept out of planning, as there")
    priority: int | Literal["low", "normal", "high", "critical", "LOW", "NORMAL", "HIGH", "CRITICAL"] = 5
    created_at: float | str | None = None
    submitted_by: str | None = Field(None, max_length=256)
    estimated_complexity: str | None = Field(None, max_length=50, description="informational, as there")
    llm_config: LlmConfigIn | None = None
    repo_root: str | None = Field(None, max_length=4096, description="PAS extension: the repository to work "
                                  "in (else a scratch directory)")

    @model_validator(mode="after")
    def _has_text(self) -> LegacyJobCard:
        if not any(x and x.strip() for x in (self.task, self.description, self.goal)):
            raise ValueError("a job card needs one of task, description, goal (not blank)")
        if self.id and self.job_card_id and self.id != self.job_card_id:
            raise ValueError("id and job_card_id differ")
        return self

    @property
    def card_id(self) -> str:
        return self.id or self.job_card_id or f"jc-{secrets.token_hex(6)}"

    def _goal(self) -> str:
        parts = [p for p in (self.task, self.description, self.goal) if p]
        files = [*self.files, *([self.entry_file] if self.entry_file else []),
                 *(i.path for i in self.inputs if i.path)]
        if files:
            parts.append("Files: " + ", ".join(dict.fromkeys(files)))
        lines = [("Requirements", self.requirements), ("Constraints", self.constraints), ("Risks", self.risks),
                 ("Expected artifacts", [f"{a.path or a.type}" + (f": {a.description}" if a.description else "")
                                         for a in self.expected_artifacts]),
                 ("Acceptance checks", [a.check for a in self.acceptance])]
        parts += [f"{name}:\n" + "\n".join(f"- {x}" for x in xs) for name, xs in lines if xs]
        return "\n\n".join(parts)

    def to_job(self, lane: str, agent_id: str, want_role: str, card_id: str) -> dict[str, Any]:
        """The JobSubmit (gateway) body of this card for `lane`; 400 when it names another lane or
        role. (`llm_config` is the caller's to refuse: it needs the topology.)"""
        if self.lane is not None and lane_of(self.lane) != lane:
            raise BadRequest(f"job_card.lane: {agent_id} takes lane {LANE_NAMES[lane]!r}, not {self.lane!r}",
                             detail={"field": "job_card.lane"})
        if self.role is not None and self.role != want_role:
            raise BadRequest(f"job_card.role: {agent_id} is a {want_role}, not a {self.role}",
                             detail={"field": "job_card.role"})
        first = next(iter((self.task or self.description or self.goal or "").strip().splitlines()), "")[:200]
        d: dict[str, Any] = {"run_id": card_id, "title": first or card_id, "goal": self._goal(), "lanes": [lane],
                             "priority": self._priority()}
        if self.budget is not None:
            d["budget"] = self.budget.to_wire()
        if self.repo_root:
            d["repo"] = self.repo_root
        return d

    def _priority(self) -> int:
        if isinstance(self.priority, str):
            return PRIORITY_NAMES[self.priority.lower()]
        if self.priority not in (1, 5, 10, 20):
            raise BadRequest(f"job_card.priority: {self.priority} is not one of 1 (LOW), 5 (NORMAL), 10 (HIGH), "
                             "20 (CRITICAL)", detail={"field": "job_card.priority"})
        return self.priority


class LegacyCardBody(In):
    """Director and Manager POST /submit in the original's shape."""

    job_card: LegacyJobCard


class LlmParamsIn(In):
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=128000)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)


class LegacyExecuteIn(ExecuteIn):
    """Programmer POST /execute with the original Manager's fields on top of PAS's own."""

    llm_provider: str | None = Field(None, max_length=100)
    llm_model: str | None = Field(None, min_length=1, max_length=200,
                                  description="must name this programmer's primary or backup model")
    llm_params: LlmParamsIn | None = Field(None, description="must match the model profile's values")
    parent_log_id: int | None = Field(None, description="informational, as there")
    dry_run: bool = Field(False, description="check the request and the programmer, run nothing")
    run_id: RunIdStr | None = None  # type: ignore[assignment]  # the original sent null for "none"
    job_id: RunIdStr | None = None  # type: ignore[assignment]

    def requested_model(self) -> str | None:
        if self.llm_model is None:
            if self.llm_provider is not None:
                raise BadRequest("llm_provider without llm_model", detail={"field": "llm_model"})
            return None
        return litellm_name(self.llm_provider, self.llm_model)

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        for k in ("llm_provider", "llm_model", "llm_params", "parent_log_id", "dry_run"):
            d.pop(k, None)
        d["run_id"] = self.run_id or "adhoc"
        d["job_id"] = self.job_id or "adhoc"
        return d
