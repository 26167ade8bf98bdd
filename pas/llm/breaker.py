"""The circuit breaker of the model profiles (pas.llm.client): one per profile, on an injected clock."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Literal

BreakerStateName = Literal["closed", "open", "half_open"]


class _Breaker:
    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.open_until: float | None = None
        self.half_open = False


class CircuitBreaker:
    """Per-profile breaker: `failures` failures within `window_s` open it for `cooldown_s`.

    While open the profile is skipped. After the cooldown it is half-open: the next call is tried;
    success closes it (failures forgotten), failure opens it again for another cooldown.
    """

    def __init__(
        self, failures: int, window_s: float, cooldown_s: float, clock: Callable[[], float]
    ) -> None:
        self.threshold = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._b: dict[str, _Breaker] = {}

    def _get(self, key: str) -> _Breaker:
        return self._b.setdefault(key, _Breaker())

    def _prune(self, b: _Breaker, now: float) -> None:
        while b.failures and b.failures[0] <= now - self.window_s:
            b.failures.popleft()

    def allow(self, key: str) -> bool:
        b = self._get(key)
        now = self.clock()
        if b.open_until is not None:
            if now < b.open_until:
                return False
            b.open_until = None
            b.half_open = True
        return True

    def success(self, key: str) -> None:
        b = self._get(key)
        b.failures.clear()
        b.half_open = False
        b.open_until = None

    def failure(self, key: str) -> None:
        b = self._get(key)
        now = self.clock()
        b.failures.append(now)
        self._prune(b, now)
        if b.half_open or len(b.failures) >= self.threshold:
            b.open_until = now + self.cooldown_s
            b.half_open = False

    def state(self, key: str) -> dict[str, Any]:
        b = self._get(key)
        now = self.clock()
        self._prune(b, now)
        st: BreakerStateName = "closed"
        if b.open_until is not None:
            st = "open" if now < b.open_until else "half_open"
        elif b.half_open:
            st = "half_open"
        return {"state": st, "failures": len(b.failures), "open_until": b.open_until}
