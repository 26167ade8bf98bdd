"""The MCP tools of PAS: name, description, JSON schema (from the msgspec wire types) and what
each does. Every tool is a NATS request to the subjects the CLI and the HTTP adapter use, or a
read of the same streams and buckets (`pas log`, `pas agents`); run_diff runs PAS's hardened
`git diff` (pas.execution.gitsafe) in the repository the run's record names, never one the caller names.
Errors are PasError; the server turns them into MCP tool errors."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct
from nats.js.errors import KeyNotFoundError

from pas.base.errors import BadRequest, NotFound, PasError
from pas.execution.gitsafe import git
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import comms as comms_mod
from pas.surfaces.http.backend import Backend
from pas.surfaces.mcp.watch import OnEvent, RunWatch
from pas.transport.client import PasClient
from pas.transport.streams import ReadOptions

DIFF_MAX_CHARS = 200_000
WAIT_DEFAULT_S = 600.0
Timeout = Annotated[float, Meta(gt=0, le=86400, description="give up waiting after this many seconds")]


class Args(Struct, forbid_unknown_fields=True):
    pass


class WaitArgs(Args):
    run_id: wire.RunId
    timeout_s: Timeout = WAIT_DEFAULT_S


class SubmitExtra(Args):
    wait: Annotated[bool, Meta(description="wait until the run ends, with progress notifications, and return "
                                           "its final status")] = False
    timeout_s: Timeout = WAIT_DEFAULT_S


class LogArgs(Args):
    run_id: Annotated[wire.RunId | None, Meta(description="entries of this run")] = None
    agent: Annotated[str | None, Meta(description="entries sent or received by this agent")] = None
    msg_type: Annotated[str | None, Meta(description="CMD, STATUS, RESPONSE, ERROR, LLM ...")] = None
    since: Annotated[str | None, Meta(description="ISO time, or a duration such as 10m, 2h, 1d")] = None
    limit: Annotated[int, Meta(ge=1, le=5000, description="the newest entries, at most this many")] = 200


class DiffArgs(Args):
    run_id: wire.RunId
    task_id: Annotated[wire.TaskId | None, Meta(description="one task's branch; default: the run's merged result "
                                                    "(pas/<run_id>/result) once it exists, else every task's")] = None
    per_task: Annotated[bool, Meta(description="every task's branch even when the run has a merged result")] = False
    base: Annotated[str, Meta(max_length=256, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./~^@{}-]*$",
                              description="a revision: diff from its merge base with the task branch")] = "HEAD"


class AgentsArgs(Args):
    probe: Annotated[bool, Meta(description="also ask every agent for its health now (pas.<role>.<id>.health, "
                                            "2 s each, in parallel): reachable, in_flight, handled")] = False


def schema(*types: type[Any]) -> dict[str, Any]:
    """The JSON schema of one or more structs as one object: properties and required fields merged,
    nested definitions kept under $defs (what MCP wants: `type: object` at the root)."""
    out: dict[str, Any] = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    defs: dict[str, Any] = {}
    for typ in types:
        s = msgspec.json.schema(typ)
        d = s.get("$defs", {})
        root = d.pop(typ.__name__)
        _describe(root, typ.__name__)
        for name, sub in d.items():
            _describe(sub, name)
        defs.update(d)
        out["properties"].update(root.get("properties", {}))
        out["required"] += root.get("required", [])
        if root.get("description") and "description" not in out:
            out["description"] = root["description"]
    if defs:
        out["$defs"] = defs
    if not out["required"]:
        del out["required"]
    return out


# Descriptions of the wire types' fields, for the assistants reading the schemas (pas.protocol.wire keeps none).
FIELD_DOCS: dict[str, dict[str, str]] = {
    "JobSubmit": {
        "title": "short name of the job",
        "run_id": "choose the run id (default: the gateway makes one)",
        "goal": "what to achieve, in words: the architect plans lanes and tasks from it (needs no `tasks`)",
        "repo": "path of a git repository on the PAS host; every task works in its own worktree on branch "
                "pas/<run_id>/<task_id>",
        "env": "the tasks' Python environment when the repo has no .venv: a venv/conda dir or an interpreter",
        "lanes": "open only these lanes for the goal",
        "tasks": "explicit tasks (no planning): each runs in its lane on the programmer pool",
        "budget": "per-run LLM budget across every tier",
        "priority": "one of 1, 5, 10, 20; default 5",
        "approval_mode": "hold the planned tasks until approve_run (or reject_run): the run waits in "
                         "waiting_approval",
        "idempotency_key": "the same key within the dedupe window returns the same run",
        "protected_paths": "paths no task may change (globs; dir/ for a tree): a task branch touching one is "
                           "left out of the result and fails the run; needs `repo`",
    },
    "TaskSpec": {
        "lane": "the lane whose manager and programmers run the task",
        "instruction": "what to do (for an llm/aider task: the prompt; for a command task: a note)",
        "executor": "command (run `command`), echo, llm (built-in edit loop) or aider; default: command if "
                    "`command` is given, else llm",
        "command": "a command line from the allowlist (settings.policy.command_allowlist), run without a shell",
        "files": "files the task may edit (llm/aider)",
        "acceptance": "a command that must pass after an llm/aider task's edits",
    },
    "Budget": {"tokens_max": "LLM tokens for the whole run", "cost_usd_max": "LLM cost in USD for the whole run"},
}


def _describe(obj: dict[str, Any], name: str) -> None:
    for field_name, text in FIELD_DOCS.get(name, {}).items():
        prop = obj.get("properties", {}).get(field_name)
        if prop is not None:
            prop.setdefault("description", text)


def parse(args: dict[str, Any], typ: type[Any]) -> Any:
    try:
        return msgspec.convert(args, typ)
    except msgspec.ValidationError as e:
        raise BadRequest(f"invalid arguments: {e}") from None


def parse_since(text: str | None) -> datetime | None:
    from pas.surfaces.cliutil import parse_since as cli_parse

    try:
        return cli_parse(text)
    except ValueError as e:
        raise BadRequest(f"since {text!r}: expected an ISO time or a duration such as 10m, 2h, 1d ({e})") from None


class Ops:
    """The tools' implementations over one NATS connection: a Backend, the adapter's own, or one
    `pas mcp` opens at the first tool call (so the server starts, and says why, without NATS)."""

    def __init__(self, backend: Backend | None = None,
                 opener: Callable[[], Awaitable[Backend]] | None = None) -> None:
        self.backend = backend
        self._opener = opener
        self._lock = asyncio.Lock()

    async def ready(self) -> Backend:
        async with self._lock:
            if self.backend is None:
                assert self._opener is not None
                self.backend = await self._opener()
        return self.backend

    async def pas(self) -> PasClient:
        return (await self.ready()).client

    async def submit_job(self, args: dict[str, Any], progress: OnEvent) -> Any:
        extra = parse({k: args[k] for k in ("wait", "timeout_s") if k in args}, SubmitExtra)
        job = {k: v for k, v in args.items() if k not in ("wait", "timeout_s")}
        if isinstance(job.get("repo"), str) and job["repo"]:
            job["repo"] = str(Path(job["repo"]).expanduser().resolve())
        if not extra.wait:
            return await (await self.pas()).submit(job)
        if not job.get("run_id"):
            from pas.roles.gateway import new_run_id

            job["run_id"] = new_run_id()
        async with RunWatch(await self.pas(), job["run_id"]) as w:
            await (await self.pas()).submit(job)
            return await w.until_done(extra.timeout_s, progress)

    async def wait_run(self, args: dict[str, Any], progress: OnEvent) -> Any:
        a = parse(args, WaitArgs)
        async with RunWatch(await self.pas(), a.run_id) as w:
            return await w.until_done(a.timeout_s, progress)

    async def run_status(self, args: dict[str, Any], progress: OnEvent) -> Any:
        return await (await self.pas()).status(parse(args, wire.RunRef).run_id)

    async def list_runs(self, args: dict[str, Any], progress: OnEvent) -> Any:
        q = parse(args, wire.RunsQuery)
        return await (await self.pas()).runs(q.limit, q.status, q.offset)

    async def cancel_run(self, args: dict[str, Any], progress: OnEvent) -> Any:
        return await (await self.pas()).cancel(parse(args, wire.RunRef).run_id)

    async def approve_run(self, args: dict[str, Any], progress: OnEvent) -> Any:
        d = parse(args, wire.Decision)
        return await (await self.pas()).approve(d.run_id, by=d.by or "mcp", drop=d.drop, reason=d.reason)

    async def reject_run(self, args: dict[str, Any], progress: OnEvent) -> Any:
        d = parse(args, wire.Decision)
        return await (await self.pas()).reject(d.run_id, reason=d.reason, by=d.by or "mcp")

    async def run_log(self, args: dict[str, Any], progress: OnEvent) -> Any:
        a = parse(args, LogArgs)
        since = parse_since(a.since)
        b = await self.ready()
        if a.run_id or since:
            out: collections.deque[Any] = collections.deque(maxlen=a.limit)
            async for e in comms_mod.read(b.bus.js, run_id=a.run_id, agent=a.agent, msg_type=a.msg_type,
                                          how=ReadOptions(since=since)):
                out.append(wire.to_builtins(e))
            entries = list(out)
        else:
            entries = await b.comms_tail(agent=a.agent, msg_type=a.msg_type, limit=a.limit)
        return {"entries": entries, "count": len(entries)}

    async def run_diff(self, args: dict[str, Any], progress: OnEvent) -> Any:
        if "repo" in args:
            raise BadRequest("run_diff: `repo` is not an argument: the diff runs in the run's own repository, "
                             "the one its record names", detail={"field": "repo"})
        a = parse(args, DiffArgs)
        st = await (await self.pas()).status(a.run_id)
        repo = await self._run_repo(a.run_id)
        if not repo:
            raise BadRequest(f"run {a.run_id} has no repository (it was submitted without `repo`)")
        root = Path(repo)
        if not (root / ".git").exists():
            raise BadRequest(f"the repository of run {a.run_id}, {repo!r}, is not a git repository on this machine")
        tasks = [t for t in st["tasks"] if a.task_id in (None, t["task_id"])]
        if a.task_id and not tasks:
            raise NotFound(f"run {a.run_id} has no task {a.task_id!r}")
        if not a.task_id and not a.per_task and st.get("result_branch"):  # the tasks' branches, merged by Root
            tasks = [{"task_id": None, "branch": st["result_branch"], "status": st["status"], "diff_stat": None}]
        diffs = []
        for t in tasks:
            if not t.get("branch"):
                continue
            text = await git("diff", "--end-of-options", f"{a.base}...{t['branch']}", "--", cwd=root, check=False)
            if text.startswith(("fatal:", "error:")):
                raise PasError(f"git diff {a.base}...{t['branch']} in {root}: {text.strip()[:500]}")
            diffs.append({"task_id": t["task_id"], "branch": t["branch"], "status": t["status"],
                          "diff_stat": t.get("diff_stat"), "diff": text})
        if not diffs:
            raise NotFound(f"run {a.run_id}: no task branch yet" + (f" for task {a.task_id}" if a.task_id else "") +
                           " (tasks get a branch when the run has a repo)")
        share = DIFF_MAX_CHARS // len(diffs)  # the reply stays readable: each task's diff is capped alike
        if sum(len(d["diff"]) for d in diffs) > DIFF_MAX_CHARS:
            for d in diffs:
                if len(d["diff"]) > share:
                    d["diff"] = d["diff"][:share] + f"\n[... diff truncated at {share} characters]"
        return {"run_id": a.run_id, "repo": str(root), "base": a.base, "result_branch": st.get("result_branch"),
                "conflicts": st.get("conflicts", []), "diffs": diffs}

    async def _run_repo(self, run_id: str) -> str | None:
        """The repository of a run: the job as the gateway stored it, with the path it admitted
        (pas.execution.policy.admit). Read through a bucket handle of its own (`pas mcp` binds none)."""
        kv = await (await self.ready()).bus.js.key_value(S.KV_TREE)
        try:
            e = await kv.get(S.request_key(run_id))
        except KeyNotFoundError:
            return None
        return wire.decode(e.value, wire.JobSubmit).repo if e.value else None

    async def agents(self, args: dict[str, Any], progress: OnEvent) -> Any:
        a = parse(args, AgentsArgs)
        b = await self.ready()
        if a.probe:
            rows = [body for _, body in await asyncio.gather(*(b.health(x) for x in b.cfg.agents))]
        else:
            states, overrides = await b.agent_states(), await b.model_overrides()
            rows = [b.agent_row(x, states.get(x.id), overrides.get(x.id)) for x in b.cfg.agents]
        return {"agents": rows, "at": datetime.now(UTC).isoformat()}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    fn: Callable[[Ops, dict[str, Any], OnEvent], Awaitable[Any]]
    read_only: bool = True


TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("submit_job",
         f"Hand a software job to the PAS swarm ({S.GATEWAY_SUBMIT}). Give a title and either a goal (the "
         "architect plans lanes and tasks) or explicit tasks (lane + instruction, optionally an allow-listed "
         "command). `repo` is a git repository: each task works in its own worktree on branch "
         "pas/<run_id>/<task_id>. Returns the run id at once, or with wait=true the final run status, "
         "sending progress notifications as lanes and tasks change.",
         schema(wire.JobSubmit, SubmitExtra), Ops.submit_job, read_only=False),
    Tool("wait_run",
         f"Wait until a run ends, with a progress notification per run event ({S.run_events('<run_id>')}); "
         "returns "
         "the final status (tasks, outputs, usage).",
         schema(WaitArgs), Ops.wait_run),
    Tool("run_status", "Status of one run: its tasks with status, output, branch and diff stat, and usage "
                       f"({S.GATEWAY_STATUS}).", schema(wire.RunRef), Ops.run_status),
    Tool("list_runs", f"Recent runs, newest first, optionally only those with one status ({S.GATEWAY_RUNS}).",
         schema(wire.RunsQuery), Ops.list_runs),
    Tool("cancel_run", f"Cancel a run at every tier ({S.GATEWAY_CANCEL}); an ended run gives a conflict error.",
         schema(wire.RunRef), Ops.cancel_run, read_only=False),
    Tool("approve_run", f"Approve the plan of a run submitted with approval_mode ({S.GATEWAY_APPROVE}): its held "
                        "tasks run; `drop` removes task ids from the plan (they end skipped).",
         schema(wire.Decision), Ops.approve_run, read_only=False),
    Tool("reject_run", f"Reject the plan of a run submitted with approval_mode ({S.GATEWAY_REJECT}): the run ends "
                       "rejected, with `reason`.", schema(wire.Decision), Ops.reject_run, read_only=False),
    Tool("run_log", f"Read the comms log (stream {S.STREAM_COMMS}), like `pas log`: every message between "
                    "agents, "
                    "filtered by run, agent, message type and time.", schema(LogArgs), Ops.run_log),
    Tool("run_diff", "The changes a run made, in its repository: `git diff <base>...<branch>` of the run's "
                     "merged result pas/<run_id>/result (with the conflicts, if any), of one task's branch "
                     "pas/<run_id>/<task_id>, or of every task's branch.", schema(DiffArgs), Ops.run_diff),
    Tool("agents", "Every agent of the topology with its health (alive/dead from heartbeats, status, age of "
                   "the last beat) and its model (live switches included), like `pas agents`; probe=true also "
                   "asks each agent directly.", schema(AgentsArgs), Ops.agents),
]}
