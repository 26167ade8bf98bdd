"""The run views PAS answers with: a run with a page of its tasks, a page of runs; each cut to fit a reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pas.protocol import wire
from pas.transport.bus import Bus

if TYPE_CHECKING:
    from pas.runtime.store.runstore import RunStore


REPLY_HEADROOM = 64 * 1024
"""What a reply leaves free of the server's max_payload (headers, the service envelope)."""


def reply_budget(bus: Bus) -> int:
    """Bytes a status or runs reply may use: the connection's max_payload less the headroom."""
    return max(REPLY_HEADROOM, int(bus.nc.max_payload or 1024 * 1024) - REPLY_HEADROOM)


def fitting(items: list[Any], budget: int) -> int:
    """How many of items, from the first, fit in budget bytes encoded (at least one: every record
    is bounded where it is stored, so one always fits; a page never stalls)."""
    used = 0
    for n, item in enumerate(items):
        used += len(wire.encode(item)) + 1
        if used > budget and n:
            return n
    return len(items)


async def run_view(store: RunStore, run_id: str, offset: int = 0, limit: int | None = None) -> wire.RunStatus | None:
    """The run with a page of its tasks (task id order, from offset, at most limit): the page is
    cut where the reply would pass max_payload, and next_offset says where the rest starts."""
    got = await store.run(run_id)
    if got is None:
        return None
    run = got.record
    tasks = await store.tasks(run_id)
    tasks.sort(key=lambda t: t.task_id)
    page = tasks[offset:offset + limit if limit else None]
    # Outputs are capped tighter for big pages (the full output is in each task's KV record), so a
    # big run usually fits in one reply; the cut below makes sure any page does.
    cap = wire.MAX_OUTPUT if len(page) <= 50 else max(200, 600_000 // len(page))
    for t in page:
        if len(t.output) > cap:
            t.output = "..." + t.output[-cap:]
    from pas.runtime.usage import get_usage

    used, _ = await get_usage(store.bus, run_id)  # every LLM call of the run, at every tier
    unknown = used.unknown_cost_calls + sum(1 for t in tasks if t.cost_usd is None)  # aider tasks
    conflicts = [c[:1000] for c in run.conflicts[:50]]
    if len(run.conflicts) > len(conflicts):
        conflicts.append(f"... {len(run.conflicts) - len(conflicts)} more conflicts")
    view = wire.RunStatus(
        run_id=run.run_id, title=run.title, status=run.status, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at, lanes=run.lanes, tasks=[],
        usage=wire.Usage(tokens=used.tokens, cost_usd=round(used.cost_usd, 8), llm_calls=used.calls,
                         unknown_cost_calls=unknown),
        message=run.message[:8192], degraded=run.degraded, priority=run.priority, approval=run.approval,
        result_branch=run.result_branch, conflicts=conflicts, tasks_total=len(tasks), offset=offset,
    )
    view.tasks = page[:fitting(page, reply_budget(store.bus) - len(wire.encode(view)))]
    end = offset + len(view.tasks)
    view.next_offset = end if end < len(tasks) else None
    return view


async def list_runs(store: RunStore, limit: int = 50, status: str | None = None, offset: int = 0) -> wire.RunsReply:
    """The newest runs (optionally with one status), a page of at most `limit` from `offset`."""
    runs = await store.runs()
    if status:
        runs = [r for r in runs if r.status == status]
    runs.sort(key=lambda r: r.created_at, reverse=True)
    page = [
        wire.RunSummary(run_id=r.run_id, title=r.title, status=r.status, created_at=r.created_at,
                        finished_at=r.finished_at)
        for r in runs[offset:offset + limit]
    ]
    page = page[:fitting(page, reply_budget(store.bus))]
    end = offset + len(page)
    return wire.RunsReply(runs=page, total=len(runs), next_offset=end if end < len(runs) else None)
