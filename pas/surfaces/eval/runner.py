"""`pas eval`: run the task set through the swarm and through one model alone, and score the results.

Modes (both are ordinary PAS runs: `pas status`, `pas log --run` work on them):

- ``swarm``: a job with the task's goal and lanes; architect, directors and managers plan with the
  model, the programmers (the `llm` executor) edit with it. Their task branches are integrated
  into ``pas/<run>/result`` by PAS Root when the run ends (pas.execution.integrate); a conflict fails the run,
  and the task, with the reason.
- ``solo``: the same model, no planning tiers: a job with ONE explicit `llm` task carrying the
  goal, every file of the repository and the visible acceptance command. The planning agents run
  without a model, so the job passes through them unchanged (no LLM call above the programmer).

Each (task, mode, repeat) gets a fresh copy of the task's repository. The verdict comes from the
task's hidden tests, run by the harness on a copy of the result branch, never by a task process.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pas.base.errors import PasError
from pas.config.model import PasConfig
from pas.execution.integrate import checkout
from pas.execution.policy import repo_roots
from pas.runtime import comms
from pas.surfaces.eval.tasks import EvalTask, make_repo, run_hidden
from pas.surfaces.stack import Stack
from pas.transport.client import GatewayTimeout, PasClient

MODES = ("swarm", "solo")
TIERS = {"architect": "architect", "dir": "director", "mgr": "manager", "prog": "programmer"}


@dataclass
class Outcome:
    task: str
    category: str
    mode: str
    repeat: int
    run_id: str
    passed: bool
    reason: str
    run_status: str
    wall_s: float
    tokens: int = 0
    cost_usd: float | None = 0.0
    """None when some call's cost is unknown (an unpriced model)."""
    llm_calls: dict[str, int] = field(default_factory=dict)
    tokens_by_tier: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    tasks: int = 0
    merged: int = 0
    conflicts: list[str] = field(default_factory=list)
    result_branch: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalOptions:
    profile: str
    modes: tuple[str, ...] = MODES
    programmers: int = 4
    repeat: int = 1
    tokens_max: int = 200_000
    cost_usd_max: float = 5.0
    timeout_s: float = 600.0
    env: str | None = None
    """The tasks' Python (job `env`) when a repository has no .venv: default python3 on PATH."""
    workdir: Path | None = None
    parallel: int = 1
    """Runs in flight at once within a mode (wall times then include the contention)."""


def mode_config(base: PasConfig, mode: str, profile: str, programmers: int) -> PasConfig:
    """The agents of one mode: `programmers` programmers; every model set to `profile` (no backup) on
    the programmers, and on the planning tiers only in swarm mode."""
    if profile not in base.models:
        raise PasError(f"eval: no model profile {profile!r} (profiles: {', '.join(sorted(base.models))})")
    cfg = base.model_copy(deep=True)
    progs = [a.id for a in cfg.agents if a.role == "prog"][: max(1, programmers)]
    cfg.agents = [a for a in cfg.agents if a.role != "prog" or a.id in progs]
    for a in cfg.agents:
        uses = a.role == "prog" or (mode == "swarm" and a.role in ("architect", "dir", "mgr"))
        a.model, a.backup_model = (profile if uses else None), None
    return cfg


def tier_of(cfg: PasConfig, agent_id: str) -> str:
    a = next((a for a in cfg.agents if a.id == agent_id), None)
    return TIERS.get(a.role, a.role) if a is not None else agent_id


def build_job(task: EvalTask, mode: str, run_id: str, repo: Path, opts: EvalOptions) -> dict[str, Any]:
    job: dict[str, Any] = {"title": f"eval {mode} {task.name}", "run_id": run_id, "repo": str(repo),
                           "budget": {"tokens_max": opts.tokens_max, "cost_usd_max": opts.cost_usd_max}}
    if opts.env:
        job["env"] = opts.env
    if mode == "swarm":
        job.update(goal=task.prompt(), lanes=task.lanes)
    else:
        job["tasks"] = [{"lane": task.lanes[0], "instruction": task.prompt(), "executor": "llm",
                         "files": task.files, "acceptance": task.acceptance}]
    return job


class Harness:
    """One mode's stack on a NATS server, running tasks one after another."""

    def __init__(self, cfg: PasConfig, url: str, mode: str, opts: EvalOptions, workdir: Path,
                  data_dir: Path | None = None) -> None:
        self.cfg, self.url, self.mode, self.opts, self.workdir = cfg, url, mode, opts, workdir
        if data_dir is not None:  # the embedded server's (its users' creds are there): this mode's own config
            cfg.settings.nats.data_dir = str(data_dir)
        self.stack = Stack(cfg, url=url, name=f"pas-eval-{mode}")
        self.client: PasClient | None = None

    async def __aenter__(self) -> Harness:
        await self.stack.start()
        # A client like any other (the `client` NATS user when the server has users).
        self.client = await PasClient.connect(self.url, self.cfg.settings.nats.request_timeout_s,
                                              creds=self.stack.creds.get("client"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()
        await self.stack.stop()

    async def run(self, task: EvalTask, rep: int) -> Outcome:
        assert self.client is not None
        run_id = f"ev-{self.mode}-{task.name[:36]}-{rep}-{uuid.uuid4().hex[:6]}"
        repo = await asyncio.to_thread(make_repo, task, self.workdir / run_id)
        t0 = time.monotonic()
        await self.client.submit(build_job(task, self.mode, run_id, repo, self.opts))
        try:
            st = await self.client.wait(run_id, timeout_s=self.opts.timeout_s)
        except GatewayTimeout:
            await self.client.cancel(run_id)
            st = await self.client.wait(run_id, timeout_s=60)
            st["message"] = f"did not finish in {self.opts.timeout_s:.0f}s (cancelled)"
        out = Outcome(task=task.name, category=task.category, mode=self.mode, repeat=rep, run_id=run_id,
                      passed=False, reason="", run_status=st["status"], wall_s=0.0)
        usage = st.get("usage") or {}
        out.tokens = int(usage.get("tokens") or 0)
        out.cost_usd = None if usage.get("unknown_cost_calls") else float(usage.get("cost_usd") or 0.0)
        await self._llm_calls(run_id, out)
        out.tasks = len(st.get("tasks") or [])
        out.conflicts = list(st.get("conflicts") or [])
        branch = st.get("result_branch") or "main"  # no result branch: no task changed anything
        out.result_branch = st.get("result_branch")
        if st.get("result_branch"):
            done = sum(1 for t in st.get("tasks") or [] if t.get("status") == "completed" and t.get("branch"))
            out.merged = done - len(out.conflicts)
        if out.conflicts:
            out.reason = "merge conflict: " + "; ".join(out.conflicts)
        else:
            dest = Path(tempfile.mkdtemp(prefix="pas-eval-check-", dir=self.workdir))
            await asyncio.to_thread(checkout, repo, branch, dest)
            hidden = await asyncio.to_thread(run_hidden, task, dest)
            out.passed, out.reason = hidden.passed, hidden.summary
            if not hidden.passed and st["status"] != "completed":
                out.reason += f" (run {st['status']}: {(st.get('message') or '')[:200]})"
        out.wall_s = round(time.monotonic() - t0, 3)
        # The verdict goes into the run's comms log through PAS Root's connection (this process runs
        # the agents; a NATS `client` user may read the log, not write it).
        root = next(a for a in self.stack.agents if a.cfg.id == "root")
        await root.comms.log(comms.Entry(
            "eval", "root", "RESPONSE",
            ("" if out.conflicts else f"hidden tests on {branch}: ") +
            f"verdict {'PASS' if out.passed else 'FAIL'}: {out.reason}", run_id,
            "pass" if out.passed else "fail", metadata={"branch": branch, "passed": out.passed}))
        return out

    async def _llm_calls(self, run_id: str, out: Outcome) -> None:
        assert self.client is not None
        async for e in comms.read(self.client.nc.jetstream(), run_id=run_id, msg_type="LLM"):
            if e.msg_type != "LLM" or e.to_agent != "llm":
                continue
            tier = tier_of(self.cfg, e.from_agent)
            out.llm_calls[tier] = out.llm_calls.get(tier, 0) + 1
            out.tokens_by_tier[tier] = out.tokens_by_tier.get(tier, 0) + int(e.tokens or 0)
            out.tokens_in += int(e.metadata.get("tokens_in") or 0)
            out.tokens_out += int(e.metadata.get("tokens_out") or 0)


async def run_eval(cfg: PasConfig, tasks: list[EvalTask], opts: EvalOptions, url: str | None = None,
                   progress: Callable[[Outcome | str], None] | None = None) -> list[Outcome]:
    """Every task x mode x repeat (`opts.parallel` at a time; modes one after another). Starts the
    embedded nats-server unless `url`."""
    configs = {mode: mode_config(cfg, mode, opts.profile, opts.programmers) for mode in opts.modes}
    workdir = Path(opts.workdir or tempfile.mkdtemp(prefix="pas-eval-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for c in configs.values():  # the harness makes the task repositories: jobs may name them
        c.settings.policy.repo_roots = [*map(str, repo_roots(c.settings.policy.repo_roots)), str(workdir)]
    if progress:
        progress(f"repositories (task branches, pas/<run>/result) in {workdir}")
    server, data_dir = None, None
    if not url:  # the embedded server, with PAS's NATS users unless settings.nats.auth is off (like `pas up`)
        from pas.transport import auth
        from pas.transport.server import EmbeddedServer

        data_dir, block = workdir / "nats", ""
        if cfg.settings.nats.auth == "on":
            block = auth.server_block(cfg, auth.ensure_creds(auth.creds_dir(cfg, data_dir), auth.users(cfg)))
        server = EmbeddedServer(data_dir, port=-1, auth_block=block)
        await asyncio.to_thread(server.start)
        url = server.url
    results: list[Outcome] = []
    from pas.llm.client import preload

    await asyncio.wrap_future(preload())  # litellm's import costs seconds: not inside the first task's wall time
    try:
        for mode in opts.modes:
            async with Harness(configs[mode], url, mode, opts, workdir, data_dir) as h:
                gate = asyncio.Semaphore(max(1, opts.parallel))

                async def one(task: EvalTask, rep: int, h: Harness = h, gate: asyncio.Semaphore = gate) -> Outcome:
                    async with gate:
                        o = await h.run(task, rep)
                    if progress:
                        progress(o)
                    return o

                jobs = [one(task, rep) for rep in range(1, opts.repeat + 1) for task in tasks]
                results.extend(await asyncio.gather(*jobs))  # in task order, whatever finished first
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
    return results
