"""Token and cost budgets of a unit of work, in memory (pas.runtime.usage keeps a run's in KV)."""

from __future__ import annotations

from typing import Any, Protocol

from pas.base.errors import BudgetExceeded


class Charged(Protocol):
    """What a model call used: pas.llm.client's LLMResult or CallRecord."""

    @property
    def tokens(self) -> int: ...

    @property
    def cost_usd(self) -> float | None: ...


class BudgetTracker:
    """Token and cost budget of one unit of work (a run, a job), in memory.

    A limit of None is unlimited. The budget is exceeded once usage reaches a limit (so a limit of
    0 allows nothing). Calls whose cost is unknown add no cost; they are counted in
    `unknown_cost_calls` so a report can say the cost total is a lower bound.
    """

    def __init__(self, tokens_max: int | None = None, cost_usd_max: float | None = None) -> None:
        self.tokens_max = tokens_max
        self.cost_usd_max = cost_usd_max
        self.tokens = 0
        self.cost_usd = 0.0
        self.unknown_cost_calls = 0
        self.calls = 0

    def charge(self, tokens: int, cost_usd: float | None) -> None:
        self.calls += 1
        self.tokens += max(0, int(tokens))
        if cost_usd is None:
            self.unknown_cost_calls += 1
        else:
            self.cost_usd += max(0.0, float(cost_usd))

    def charge_result(self, res: Charged) -> None:
        self.charge(res.tokens, res.cost_usd)

    def merge(self, other: BudgetTracker) -> None:
        """Add another tracker's usage (e.g. a task's) to this one."""
        self.calls += other.calls
        self.tokens += other.tokens
        self.cost_usd += other.cost_usd
        self.unknown_cost_calls += other.unknown_cost_calls

    @property
    def exceeded(self) -> bool:
        if self.tokens_max is not None and self.tokens >= self.tokens_max:
            return True
        return self.cost_usd_max is not None and self.cost_usd >= self.cost_usd_max

    def remaining_tokens(self) -> int | None:
        return None if self.tokens_max is None else max(0, self.tokens_max - self.tokens)

    def check(self) -> None:
        """Raise BudgetExceeded when the budget is used up."""
        if self.exceeded:
            raise BudgetExceeded(
                f"budget exceeded: {self.tokens} tokens (max {self.tokens_max}), "
                f"${self.cost_usd:.4f} (max {self.cost_usd_max})",
                detail=self.snapshot(),
            )

    def snapshot(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "cost_known": self.unknown_cost_calls == 0,
            "unknown_cost_calls": self.unknown_cost_calls,
            "calls": self.calls,
            "tokens_max": self.tokens_max,
            "cost_usd_max": self.cost_usd_max,
        }
