"""The LLM layer: one client for every model call PAS makes, with failover, a circuit breaker,
usage accounting and budgets. Its parts live beside it and are re-exported here: the profiles'
environment overrides (pas.llm.modelenv), the breaker (pas.llm.breaker) and the budgets (pas.llm.budget).

This is the only module that imports litellm, and it does so lazily (the import costs seconds);
``LITELLM_LOCAL_MODEL_COST_MAP`` is set first so that litellm never fetches its price list. `pas up`
starts the import in a thread at start (:func:`preload`) when one of its agents can call a model; a call
awaits that import off the event loop, and the wait counts in the call's latency. A call that cannot be
made (no key) fails before it, at once.

    client = LLMClient(apply_env_overrides(cfg.models), on_call=log_call)
    res = await client.complete(agent="mgr-code-01", primary="gemini-flash", backup="claude-haiku",
                                messages=[{"role": "user", "content": "..."}], run_id=run_id)

Each attempt is one litellm call with ``num_retries=0`` and the profile's timeout: the primary
profile first, the backup on any error, timeout or empty reply. Every call made (success or failure)
yields a :class:`CallRecord` handed to ``on_call``; a profile skipped because its breaker is open
makes no call and no record, only an entry in the errors. Tokens and cost come from the provider's
response (``usage`` and ``litellm.completion_cost``); a cost litellm cannot price is ``None``
("unknown"), never an estimate.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from pas.base.errors import Unavailable
from pas.base.redact import redact
from pas.config.model import ModelProfile
from pas.llm.breaker import CircuitBreaker
from pas.llm.budget import BudgetTracker
from pas.llm.modelenv import apply_env_overrides, env_key
from pas.transport import tracing


class LLMUnavailable(Unavailable):
    """Neither the primary nor the backup profile produced a reply. `errors` lists each attempt."""

    error = "llm_unavailable"

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message, detail={"errors": errors})
        self.errors = errors


@dataclass
class CallRecord:
    """One model call, as reported to ``on_call`` (for the comms log and usage accounting)."""

    agent: str
    run_id: str | None
    profile: str
    model_requested: str
    """The litellm model string of the profile."""
    model_used: str | None
    """The model named in the provider's response (None when the call failed)."""
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    """Provider cost as priced by litellm; None means unknown (an unpriced model, or a failed call
    that may have been billed such as a timeout). A call refused with an HTTP error costs 0."""
    latency_s: float
    ok: bool
    error: str | None = None
    backup: bool = False
    """The call went to the backup profile: the primary failed or its breaker was open (a failover)."""
    ts: float = field(default_factory=time.time)
    request: dict[str, Any] | None = None
    """What litellm was sent ({model, messages, temperature, max_tokens}); None if no call was made."""
    reply: str | None = None
    finish_reason: str | None = None

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass
class LLMResult:
    text: str
    profile: str
    """The profile that answered."""
    model_used: str
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    latency_s: float
    failed_over: bool
    """True when the answer came from the backup profile."""
    errors: list[str] = field(default_factory=list)
    """Errors of the attempts that failed before this answer."""
    finish_reason: str | None = None
    """"length" means the reply was cut at max_tokens."""

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


OnCall = Callable[[CallRecord], Awaitable[None]]


# ---- client --------------------------------------------------------------------------------
_litellm: Any = None


_loading: Future[Any] | None = None
_loading_lock = threading.Lock()


def _lite() -> Any:
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


def preload() -> Future[Any]:
    """Import litellm in a daemon thread, once per process (5-11 s of CPU: never on the event loop);
    the future holds the module. Later calls return the same future."""
    global _loading
    with _loading_lock:
        if _loading is None:
            fut: Future[Any] = Future()

            def load() -> None:
                try:
                    lite = _lite()
                    _warm(lite)
                    fut.set_result(lite)
                except BaseException as e:  # the first call reports it
                    fut.set_exception(e)

            threading.Thread(target=load, name="litellm-import", daemon=True).start()
            _loading = fut
    return _loading


def _warm(lite: Any) -> None:
    """One call through litellm's own path with a mock reply (no network), and its cost: the first real
    call of a process then skips what litellm sets up lazily (measured: 1.5 s -> 0.35 s on a busy machine)."""
    try:
        resp = lite.completion(model="openai/pas-warm-up", messages=[{"role": "user", "content": "-"}],
                               mock_response="-", api_key="-")
        _cost(lite, resp)
    except Exception:  # a warm-up only: a real call reports real problems
        pass


async def _lite_async() -> Any:
    """litellm, waiting (off the event loop) for the import preload() started, or starting it."""
    return _litellm if _litellm is not None else await asyncio.wrap_future(preload())


def _err_text(e: BaseException) -> str:
    """One line for a failed call; a provider that echoes the key in its error does not leak it."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return redact(f"{type(e).__name__}: {msg}")[:500]


def _cost(lite: Any, resp: Any) -> float | None:
    try:
        c = lite.completion_cost(completion_response=resp)
    except Exception:
        return None
    if c is None:
        return None
    try:
        c = float(c)
    except (TypeError, ValueError):
        return None
    return c if c >= 0 else None


class Completer(Protocol):
    """What planners and the edit loop call: LLMClient, or pas.runtime.usage.RunLLM (the same with run budgets)."""

    async def complete(self, *, agent: str, primary: str, backup: str | None, messages: list[dict[str, Any]],
                       run_id: str | None = None, max_tokens: int | None = None) -> LLMResult: ...


@dataclass(frozen=True)
class Asker:
    """Who asks which models, for which run: what every model call of one agent's step carries
    (the planners, the edit loop), one value instead of five arguments."""

    llm: Completer
    agent: str
    primary: str | None
    backup: str | None = None
    run_id: str | None = None

    async def complete(self, messages: list[dict[str, Any]]) -> LLMResult:
        return await self.llm.complete(agent=self.agent, primary=self.primary or "", backup=self.backup,
                                       messages=messages, run_id=self.run_id)


class LLMClient:
    """Calls model profiles by name with failover, a per-profile breaker and usage records."""

    def __init__(
        self,
        profiles: Mapping[str, ModelProfile],
        *,
        breaker_failures: int = 3,
        breaker_window_s: float = 600.0,
        breaker_cooldown_s: float = 300.0,
        on_call: OnCall | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profiles = dict(profiles)
        self.on_call = on_call
        self.clock = clock
        self.breaker = CircuitBreaker(breaker_failures, breaker_window_s, breaker_cooldown_s, clock)

    def breaker_state(self) -> dict[str, dict[str, Any]]:
        """{profile: {"state": "closed"|"open"|"half_open", "failures": n, "open_until": t|None}}
        (`open_until` is on the client's clock, time.monotonic by default)."""
        return {name: self.breaker.state(name) for name in self.profiles}

    async def _emit(self, rec: CallRecord) -> None:
        if self.on_call is not None:
            try:
                await self.on_call(rec)
            except Exception:  # a broken log sink must not fail the call
                pass

    async def _attempt(
        self,
        name: str,
        agent: str,
        messages: list[dict[str, Any]],
        run_id: str | None,
        max_tokens: int | None,
        backup: bool = False,
    ) -> tuple[str, str, int, int, float | None, float, str | None]:
        prof = self.profiles[name]
        kwargs: dict[str, Any] = {
            "model": prof.model,
            "messages": messages,
            "temperature": prof.temperature,
            "max_tokens": max_tokens or prof.max_tokens,
            "timeout": prof.timeout_s,
            "num_retries": 0,
        }
        if prof.api_base:
            kwargs["api_base"] = prof.api_base
        sent = {k: kwargs[k] for k in ("model", "temperature", "max_tokens")}  # for the recording
        sent["messages"] = [dict(m) for m in messages]  # a copy: callers append to theirs
        t0 = time.monotonic()
        if prof.api_key_env:
            kwargs["api_key"] = os.environ.get(prof.api_key_env)
            if not kwargs["api_key"]:
                # No key: fail at once rather than let the provider (unreachable offline) time out.
                err = f"missing API key: set {prof.api_key_env}"
                await self._emit(CallRecord(agent, run_id, name, prof.model, None, 0, 0, 0.0, 0.0, False, err,
                                            backup))
                raise _AttemptFailed(err)
        try:
            lite = await _lite_async()  # the first call of a process may wait for the import: part of its latency
            resp = await _call(lite, kwargs, prof.timeout_s + 1.0, agent, name, run_id)
            choice = resp.choices[0]
            text = choice.message.content
            usage = getattr(resp, "usage", None)
            t_in = int(getattr(usage, "prompt_tokens", 0) or 0)
            t_out = int(getattr(usage, "completion_tokens", 0) or 0)
            model_used = str(getattr(resp, "model", None) or prof.model)
            if not text or not str(text).strip():
                raise ValueError("empty reply")
        except Exception as e:
            latency = time.monotonic() - t0
            if isinstance(e, asyncio.TimeoutError):
                err = f"Timeout: no reply within {prof.timeout_s:g}s"
            else:
                err = _err_text(e)
            # An HTTP error reply is not billed; a timeout or a broken reply may have been.
            status = getattr(e, "status_code", None)
            fail_cost = 0.0 if isinstance(status, int) and status >= 400 and "Timeout" not in err else None
            await self._emit(CallRecord(agent, run_id, name, prof.model, None, 0, 0, fail_cost, latency, False, err,
                                        backup, request=sent))
            raise _AttemptFailed(err) from e
        latency = time.monotonic() - t0
        cost = _cost(lite, resp)
        fin = getattr(choice, "finish_reason", None)
        await self._emit(CallRecord(agent, run_id, name, prof.model, model_used, t_in, t_out, cost, latency, True,
                                    backup=backup, request=sent, reply=str(text), finish_reason=fin))
        return str(text), model_used, t_in, t_out, cost, latency, fin

    async def complete(
        self,
        *,
        agent: str,
        primary: str,
        backup: str | None,
        messages: list[dict[str, Any]],
        run_id: str | None = None,
        max_tokens: int | None = None,
    ) -> LLMResult:
        """Ask `primary`, then `backup`; raise LLMUnavailable when neither answers."""
        errors: list[str] = []
        order = [primary] + ([backup] if backup and backup != primary else [])
        for i, name in enumerate(order):
            if name not in self.profiles:
                errors.append(f"{name}: unknown model profile")
                continue
            if not self.breaker.allow(name):
                until = self.breaker.state(name)["open_until"]
                left = max(0.0, (until or 0) - self.clock())
                errors.append(f"{name}: circuit open ({left:.0f}s left)")
                continue
            try:
                text, used, t_in, t_out, cost, lat, fin = await self._attempt(
                    name, agent, messages, run_id, max_tokens, backup=name != primary
                )
            except _AttemptFailed as e:
                self.breaker.failure(name)
                errors.append(f"{name}: {e}")
                continue
            self.breaker.success(name)
            return LLMResult(text, name, used, t_in, t_out, cost, lat, i > 0, errors, fin)
        raise LLMUnavailable(f"no model answered for {agent}: {'; '.join(errors)}", errors)


class _AttemptFailed(Exception):
    pass


async def _call(lite: Any, kwargs: dict[str, Any], timeout_s: float, agent: str, profile: str,
                run_id: str | None) -> Any:
    """One litellm call; with tracing on, in a span "chat <model>" whose traceparent the request carries."""
    if not tracing.enabled():
        return await asyncio.wait_for(lite.acompletion(**kwargs), timeout_s)
    with tracing.span(f"chat {kwargs['model']}", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": kwargs["model"],
        "gen_ai.request.max_tokens": kwargs.get("max_tokens"), "gen_ai.request.temperature": kwargs.get("temperature"),
        "pas.agent": agent, "pas.model_profile": profile, "pas.run_id": run_id,
    }) as sp:
        kwargs = {**kwargs, "extra_headers": tracing.inject(dict(kwargs.get("extra_headers") or {}))}
        resp = await asyncio.wait_for(lite.acompletion(**kwargs), timeout_s)
        usage = getattr(resp, "usage", None)
        tracing.annotate(sp, {"gen_ai.response.model": getattr(resp, "model", None),
                              "gen_ai.usage.input_tokens": getattr(usage, "prompt_tokens", None),
                              "gen_ai.usage.output_tokens": getattr(usage, "completion_tokens", None)})
        return resp


__all__ = [
    "Asker",
    "BudgetTracker",
    "CallRecord",
    "CircuitBreaker",
    "LLMClient",
    "LLMResult",
    "LLMUnavailable",
    "apply_env_overrides",
    "env_key",
    "preload",
]
