"""`pas rerun RUN`: a new run, linked to its parent, driven by the parent's recorded model replies.

The CLI (`prepare`) reads the parent's comms `LLM` entries (PAS_COMMS) into a RerunSpec, stores it at
KV pas_tree[<new>.rerun] (the link to the parent) and submits the parent's request (pas_tree[<parent>.request])
under the new run id. In every process, RunLLM asks the Replayer first: a call of a run that has a spec
is answered from PAS_RECORDINGS when its prompt matches a recorded one (prompt_key: the messages, the
run id written as <run>), with 0 tokens and no model call. A prompt with no recording is a divergence:
the first one is stored at pas_tree[<new>.divergence] (create: the first wins) and logged (comms ERROR);
then the run is cancelled (on_diverge="stop", the default) or the call goes live ("live").

A fork (`--from STEP`) replays until STEP, then goes live: STEP is `task:<task_id>`, `lane:<lane>`, an
agent id or a role[-lane] (`architect`, `dir-docs`, `mgr-code`, `prog`, `prog-003`). Calls at STEP go to
the model (noted at pas_tree[<run>.forked]); after that, a prompt with no recording is the fork's
consequence and goes live too, while calls whose prompts still match (other lanes) stay replayed.
`--model AGENT=PROFILE` chooses the profile of live calls by that agent (or role).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

import msgspec
from nats.js.errors import KeyNotFoundError

from pas.llm import recording
from pas.llm.client import LLMResult, LLMUnavailable
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import Entry

if TYPE_CHECKING:
    from pas.runtime.comms import CommsLog
    from pas.transport.bus import Bus

log = logging.getLogger("pas.runtime.rerun")

DIVERGED = "rerun diverged"


class RecordedCall(msgspec.Struct):
    index: int
    agent: str
    profile: str
    prompt_key: str
    recording_seq: int


class RerunSpec(msgspec.Struct):
    parent: str
    on_diverge: str = "stop"  # stop | live
    from_step: str | None = None
    models: dict[str, str] = {}
    calls: list[RecordedCall] = []


class Divergence(msgspec.Struct):
    run_id: str
    parent: str
    agent: str
    call: int
    """The call's ordinal among this agent's calls in the rerun (1 = its first)."""
    expected: RecordedCall | None
    message_index: int | None
    role: str | None
    diff: str
    action: str


spec_key, divergence_key, forked_key = S.rerun_key, S.divergence_key, S.forked_key


def role_key(agent: str) -> str:
    """prog-003 -> prog, mgr-code-01 -> mgr-code, dir-docs -> dir-docs, architect -> architect."""
    return re.sub(r"-\d+$", "", agent)


def lane_of(agent: str) -> str | None:
    """The lane in a director's or manager's id (dir-docs, mgr-code-01)."""
    m = re.fullmatch(r"(?:dir|mgr)-([a-z]+)(?:-\d+)?", agent)
    return m.group(1) if m else None


def matches_step(agent: str, ctx: dict[str, str | None], step: str | None) -> bool:
    """STEP: task:<task_id> (the programmer running that task), lane:<lane> (its director, managers and
    programmers), or an agent id / role[-lane] (architect, dir-docs, mgr-code, prog, prog-003)."""
    if not step:
        return False
    if step.startswith("task:"):
        return ctx.get("task_id") == step[5:]
    if step.startswith("lane:"):
        return ctx.get("lane") == step[5:]
    return agent == step or role_key(agent) == step


def first_difference(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> tuple[int | None, str | None, str]:
    """(index, role, unified diff) of the first message that differs."""
    for i in range(max(len(expected), len(got))):
        a = expected[i] if i < len(expected) else None
        b = got[i] if i < len(got) else None
        if a == b:
            continue
        role = (b or a or {}).get("role")
        ta = "" if a is None else str(a.get("content", ""))
        tb = "" if b is None else str(b.get("content", ""))
        diff = "\n".join(list(difflib.unified_diff(ta.splitlines(), tb.splitlines(), "recorded", "now",
                                                   lineterm="", n=1))[:60])
        return i, role, diff or f"message {i}: {a!r} -> {b!r}"[:2000]
    return None, None, ""


class Replayer:
    """The answer from the recording, or None for a live call (RunLLM calls it first)."""

    def __init__(self, bus: Bus, comms: CommsLog) -> None:
        self.bus, self.comms = bus, comms
        self.specs: dict[str, RerunSpec | None] = {}
        self.used: dict[str, set[int]] = {}
        self.counts: dict[tuple[str, str], int] = {}

    async def spec(self, run_id: str) -> RerunSpec | None:
        if run_id not in self.specs:
            if len(self.specs) > 5000:
                self.specs.clear()
            try:
                e = await self.bus.kv[S.KV_TREE].get(spec_key(run_id))
                self.specs[run_id] = msgspec.json.decode(e.value, type=RerunSpec) if e.value else None
            except KeyNotFoundError:
                self.specs[run_id] = None
        return self.specs[run_id]

    def live_profile(self, spec: RerunSpec, agent: str) -> str | None:
        return spec.models.get(agent) or spec.models.get(role_key(agent))

    async def answer(self, *, agent: str, messages: list[dict[str, Any]], run_id: str) -> tuple[LLMResult | None, str | None]:
        """(recorded result, None) to replay; (None, profile or None) to go live (with that profile)."""
        spec = await self.spec(run_id)
        if spec is None:
            return None, None
        n = self.counts[(run_id, agent)] = self.counts.get((run_id, agent), 0) + 1
        live = self.live_profile(spec, agent)
        if spec.from_step and matches_step(agent, await self._context(run_id, agent), spec.from_step):
            await self._mark_forked(run_id, agent)
            return None, live
        key = recording.prompt_key(messages, run_id)
        used = self.used.setdefault(run_id, set())
        hit = next((c for c in spec.calls if c.prompt_key == key and c.index not in used), None)
        if hit is None:
            if spec.from_step and await self._forked(run_id):
                return None, live  # downstream of the fork: a new prompt is expected, not a divergence
            await self._diverged(spec, run_id, agent, n, messages)
            return None, live
        used.add(hit.index)
        rec = await recording.load(self.bus.js, hit.recording_seq)
        await self.comms.log(Entry(agent, "llm", "LLM", f"{rec.profile}: replayed recording {rec.request_sha[:12]} "
                                   f"(seq {hit.recording_seq}) of run {spec.parent}: 0 tokens", run_id, "ok",
                                   llm_model=rec.model_used, tokens=0, cost_usd=0.0,
                                   metadata={"profile": rec.profile, "model_requested": rec.model_requested,
                                             "model_used": rec.model_used, "tokens_in": 0, "tokens_out": 0,
                                             "latency_s": 0.0, "ok": True, "error": None, "cost": 0.0, "replayed": True,
                                             "recording": rec.request_sha, "recording_seq": hit.recording_seq,
                                             "prompt_key": key, "parent": spec.parent}))
        return LLMResult(rec.reply or "", rec.profile, rec.model_used or rec.model_requested, 0, 0, 0.0, 0.0,
                         False, [], rec.finish_reason), None

    async def _context(self, run_id: str, agent: str) -> dict[str, str | None]:
        """The lane (and, for a programmer, the task it is running: its KV record) of a call."""
        if role_key(agent) != "prog":
            return {"lane": lane_of(agent), "task_id": None}
        tasks = await self.bus.kv_values(S.KV_TREE, S.tasks_of(run_id), wire.TaskRecord)
        t = next((t for t in tasks if t.programmer == agent and t.status == "running"), None)
        return {"lane": t.lane if t else None, "task_id": t.task_id if t else None}

    async def _mark_forked(self, run_id: str, agent: str) -> None:
        try:
            await self.bus.kv_create(S.KV_TREE, forked_key(run_id), {"agent": agent})
        except Exception:
            pass

    async def _forked(self, run_id: str) -> bool:
        try:
            await self.bus.kv[S.KV_TREE].get(forked_key(run_id))
        except KeyNotFoundError:
            return False
        return True

    async def _diverged(self, spec: RerunSpec, run_id: str, agent: str, n: int, messages: list[dict[str, Any]]) -> None:
        used = self.used.get(run_id, set())
        cands = [c for c in spec.calls if c.index not in used and role_key(c.agent) == role_key(agent)] or \
                [c for c in spec.calls if c.index not in used]
        expected, best, idx, role, diff = None, -1.0, None, None, "no recorded call left to compare with"
        now = json.dumps(messages, sort_keys=True)
        for c in cands[:20]:
            rec = await recording.load(self.bus.js, c.recording_seq)
            ratio = difflib.SequenceMatcher(None, json.dumps(rec.request["messages"], sort_keys=True)[:20000],
                                            now[:20000]).quick_ratio()
            if ratio > best:
                best, expected = ratio, c
                idx, role, diff = first_difference(rec.request["messages"], messages)
        action = "live" if spec.on_diverge == "live" else "stop"
        d = Divergence(run_id, spec.parent, agent, n, expected, idx, role, diff, action)
        where = f"{agent} call {n}" + (f" (recorded: {expected.agent} call #{expected.index}, recording seq "
                                        f"{expected.recording_seq})" if expected else "")
        text = f"{DIVERGED} at {where}: message {idx} ({role}) differs; {action}"
        try:
            await self.bus.kv_create(S.KV_TREE, divergence_key(run_id), d)
        except Exception as e:
            log.debug("divergence of %s not stored: %r", run_id, e)
        await self.comms.log(Entry(agent, "client", "ERROR", f"{text}\n{diff}", run_id, "diverged",
                                   metadata={"divergence": msgspec.to_builtins(d)}))
        if action == "stop":
            try:
                await self.bus.nc.request(S.GATEWAY_CANCEL, json.dumps({"run_id": run_id}).encode(), timeout=10)
            except Exception as e:
                log.warning("could not cancel diverged rerun %s: %r", run_id, e)
            raise LLMUnavailable(text, [text])


# ---- the CLI side --------------------------------------------------------------------------
async def recorded_calls(js: Any, parent: str) -> list[RecordedCall]:
    from pas.runtime import comms

    calls: list[RecordedCall] = []
    async for e in comms.read(js, run_id=parent, msg_type="LLM"):
        md = e.metadata
        if md.get("ok") and md.get("recording_seq") and md.get("prompt_key"):
            calls.append(RecordedCall(len(calls) + 1, e.from_agent, str(md.get("profile")), md["prompt_key"],
                                      int(md["recording_seq"])))
    return calls


def apply_sets(job: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """--set key=value on the submitted job (dotted keys reach inside: budget.tokens_max=1000);
    the value is JSON when it parses as JSON, else a string."""
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = job
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return job


async def prepare(bus: Bus, asked: RerunSpec, new_run: str, sets: list[str] | None = None
                  ) -> tuple[dict[str, Any], RerunSpec]:
    """Store the spec (`asked`, with the parent's recorded calls filled in); return the job to submit
    (the parent's request, under the new id, with `sets` applied) and the spec."""
    parent = asked.parent
    got = await bus.kv_get(S.KV_TREE, S.request_key(parent), wire.JobSubmit)
    if got is None:
        raise KeyError(f"run {parent!r}: no request in KV {S.KV_TREE} (unknown run, or aged out)")
    spec = msgspec.structs.replace(asked, calls=await recorded_calls(bus.js, parent))
    await bus.kv_put(S.KV_TREE, spec_key(new_run), spec)
    job = wire.to_builtins(got[0])
    job.pop("idempotency_key", None)
    job["run_id"] = new_run
    return apply_sets(job, sets or []), spec


async def divergence(bus: Any, run_id: str) -> dict[str, Any] | None:
    try:
        e = await bus.kv[S.KV_TREE].get(divergence_key(run_id))
    except KeyNotFoundError:
        return None
    return json.loads(e.value) if e.value else None
