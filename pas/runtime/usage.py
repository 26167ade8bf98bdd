"""LLM wiring for a PAS process: one LLMClient, every call logged to the comms log and charged to
its run, and the run's budget enforced before each call, whichever tier or process makes it.

Run usage lives in KV pas_tree[<run>.usage] (tokens, cost_usd, calls), updated with
compare-and-set: LLM calls are seconds apart, so one small key per run does not contend.
Circuit-breaker state is published to KV pas_breakers[<agent_id>.<profile>], under the calling agent's own
key (the only one it may write), so `pas agents` can show it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from pas.base.errors import BudgetExceeded
from pas.llm.budget import BudgetTracker
from pas.llm.client import CallRecord, LLMClient, LLMResult
from pas.llm.modelenv import apply_env_overrides
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import CommsLog, Entry
from pas.transport.bus import Bus

log = logging.getLogger("pas.runtime.usage")

BUDGET_EXCEEDED = "budget exceeded"


class RunUsage(msgspec.Struct):
    tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    unknown_cost_calls: int = 0


usage_key = S.usage_key


async def get_usage(bus: Bus, run_id: str) -> tuple[RunUsage, int]:
    try:
        e = await bus.kv[S.KV_TREE].get(usage_key(run_id))
    except KeyNotFoundError:
        return RunUsage(), 0
    return (wire.decode(e.value, RunUsage) if e.value else RunUsage()), e.revision or 0


async def charge(bus: Bus, run_id: str, tokens: int, cost_usd: float | None) -> RunUsage:
    for _ in range(50):
        u, rev = await get_usage(bus, run_id)
        u.tokens += tokens
        u.calls += 1
        if cost_usd is None:
            u.unknown_cost_calls += 1
        else:
            u.cost_usd = round(u.cost_usd + cost_usd, 8)
        try:
            await bus.kv_update(S.KV_TREE, usage_key(run_id), wire.encode(u), rev)  # rev 0: create
            return u
        except KeyWrongLastSequenceError:
            await asyncio.sleep(0.005)
    raise RuntimeError(f"could not record usage of run {run_id}")


async def run_budget(bus: Bus, run_id: str) -> wire.Budget:
    got = await bus.kv_get(S.KV_RUNS, run_id, wire.RunRecord)
    return got[0].budget if got is not None else wire.Budget()


async def remaining(bus: Bus, run_id: str) -> tuple[int, float]:
    budget = await run_budget(bus, run_id)
    used, _ = await get_usage(bus, run_id)
    return budget.tokens_max - used.tokens, budget.cost_usd_max - used.cost_usd


class RunLLM:
    """The LLMClient as the agents use it: run budgets checked before every call."""

    def __init__(self, bus: Bus, comms: CommsLog) -> None:
        self.bus = bus
        self.comms = comms
        self.client = LLMClient(apply_env_overrides(bus.cfg.models), on_call=self._on_call)
        self.profiles = self.client.profiles
        from pas.runtime.rerun import Replayer

        self.replayer = Replayer(bus, comms)  # `pas rerun`: recorded replies instead of live calls

    async def complete(self, *, agent: str, primary: str, backup: str | None, messages: list[dict[str, Any]],
                       run_id: str | None = None, max_tokens: int | None = None) -> LLMResult:
        if run_id:
            replayed, live_profile = await self.replayer.answer(agent=agent, messages=messages, run_id=run_id)
            if replayed is not None:
                return replayed
            if live_profile:  # a fork's --model AGENT=PROFILE
                primary, backup = live_profile, None
            tokens_left, cost_left = await remaining(self.bus, run_id)
            if tokens_left <= 0 or cost_left <= 0:
                await self.comms.log(Entry(agent, "llm", "LLM", f"{BUDGET_EXCEEDED}: no further LLM calls for this run",
                                           run_id, "budget_exceeded"))
                raise BudgetExceeded(f"{BUDGET_EXCEEDED} for run {run_id}: no further LLM calls",
                                     detail={"tokens_left": tokens_left, "cost_usd_left": cost_left})
        try:
            return await self.client.complete(agent=agent, primary=primary, backup=backup, messages=messages,
                                              run_id=run_id, max_tokens=max_tokens)
        finally:
            await self._publish_breakers(agent, primary, backup)

    async def _publish_breakers(self, agent: str, *profiles: str | None) -> None:
        states = self.client.breaker_state()
        for p in profiles:
            st = states.get(p or "")
            if st is None:
                continue
            doc = {**st, "agent": agent, "profile": p, "ts": time.time()}
            if st.get("open_until") is not None:
                doc["open_until"] = time.time() + st["open_until"] - self.client.clock()  # wall clock
            try:
                await self.bus.kv_put(S.KV_BREAKERS, S.breaker_key(agent, p or ""), doc)
            except Exception as e:
                log.debug("breaker state not published: %r", e)

    async def task_budget(self, run_id: str) -> BudgetTracker:
        """What one programmer task may spend: the smaller of the run's remainder and the per-job caps."""
        tokens_left, cost_left = await remaining(self.bus, run_id)
        s = self.bus.cfg.settings.llm
        return BudgetTracker(tokens_max=max(0, min(tokens_left, s.max_tokens_per_job)),
                             cost_usd_max=max(0.0, min(cost_left, s.max_cost_per_job_usd)))

    def breaker_state(self) -> dict[str, dict[str, Any]]:
        return self.client.breaker_state()

    async def _record(self, rec: CallRecord) -> dict[str, Any]:
        """Store the exchange in PAS_RECORDINGS; what the comms entry says about it."""
        if rec.request is None:
            return {}
        from pas.llm import recording

        r = recording.Recording(
            request_sha=recording.sha256(rec.request), ts=rec.ts, agent=rec.agent, run_id=rec.run_id,
            profile=rec.profile, model_requested=rec.model_requested, model_used=rec.model_used, request=rec.request,
            reply=rec.reply, finish_reason=rec.finish_reason, ok=rec.ok, error=rec.error, tokens_in=rec.tokens_in,
            tokens_out=rec.tokens_out, cost_usd=rec.cost_usd, latency_s=round(rec.latency_s, 4))
        out: dict[str, Any] = {"recording": r.request_sha,
                               "prompt_key": recording.prompt_key(rec.request["messages"], rec.run_id)}
        try:
            out["recording_seq"], out["recording_bytes"] = await recording.store(self.bus.js, r)
        except Exception as e:
            log.warning("exchange of %s not recorded: %r", rec.agent, e)
            out["recording_error"] = repr(e)[:300]
        return out

    async def _on_call(self, rec: CallRecord) -> None:
        cost = "unknown" if rec.cost_usd is None else f"${rec.cost_usd:.6f}"
        text = (f"{rec.profile}: {rec.model_requested} -> {rec.model_used or '-'} "
                f"in={rec.tokens_in} out={rec.tokens_out} cost={cost} {rec.latency_s * 1000:.0f}ms")
        if not rec.ok:
            text += f" FAILED: {rec.error}"
        recorded = await self._record(rec)
        await self.comms.log(Entry(
            rec.agent, "llm", "LLM", text, rec.run_id, "ok" if rec.ok else "error",
            llm_model=rec.model_used or rec.model_requested, tokens=rec.tokens, cost_usd=rec.cost_usd,
            metadata={"profile": rec.profile, "model_requested": rec.model_requested, "model_used": rec.model_used,
                      "tokens_in": rec.tokens_in, "tokens_out": rec.tokens_out, "latency_s": round(rec.latency_s, 4),
                      "ok": rec.ok, "error": rec.error, "cost": "unknown" if rec.cost_usd is None else rec.cost_usd,
                      "backup": rec.backup,
                      **recorded},
        ))
        if rec.run_id:
            try:
                await charge(self.bus, rec.run_id, rec.tokens, rec.cost_usd)
            except Exception as e:
                log.warning("could not charge run %s: %r", rec.run_id, e)
