"""The run context (pas.protocol.wire.RunContext) travels in every work item: set once where a run's
work tree starts, carried unchanged from the architect's lanes through the directors' job cards to
the programmers' tasks, through real agents on a real nats-server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pas.protocol import wire
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from pas.transport.connection import connect as pas_connect
from tests.conftest import make_cfg
from tests.test_pipeline import make_repo, task

AGENTS = ["monitor", "gateway", "root", "architect", "dir-code", "dir-docs", "mgr-code-01", "mgr-docs-01", "prog-001"]
ITEMS = {"pas.work.dir.": wire.LaneWork, "pas.work.mgr.": wire.JobCard, "pas.work.prog.": wire.TaskWork}


async def test_context_set_at_submit_reaches_every_work_item_unchanged(nats_server: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    seen: list[tuple[str, Any]] = []

    async def on_item(m: Any) -> None:  # a JetStream publish reaches core subscribers of its subject too
        typ = next(t for prefix, t in ITEMS.items() if m.subject.startswith(prefix))
        seen.append((m.subject, wire.decode(m.data, typ)))

    watcher = await pas_connect(nats_server.url)
    try:
        await watcher.subscribe("pas.work.dir.>", cb=on_item)
        await watcher.subscribe("pas.work.mgr.>", cb=on_item)
        await watcher.subscribe("pas.work.prog.>", cb=on_item)
        await watcher.flush()
        async with (Stack(make_cfg(), url=nats_server.url, only=AGENTS),
                    await PasClient.connect(nats_server.url, timeout_s=10) as client):
            await client.submit({"title": "ctx", "run_id": "ctx1", "goal": "keep one context", "repo": str(repo),
                                 "env": sys.executable, "priority": 10,
                                 "tasks": [task("code", "true"), task("code", "true"), task("docs", "true")]})
            st = await client.wait("ctx1", timeout_s=60)
        await watcher.flush()
    finally:
        await watcher.close()
    assert st["status"] == "completed", st
    want = wire.RunContext(goal="keep one context", repo=str(repo.resolve()), env=sys.executable, priority=10)
    kinds = sorted(type(item).__name__ for _, item in seen)
    assert kinds == ["JobCard"] * 2 + ["LaneWork"] * 2 + ["TaskWork"] * 3, seen
    assert {item.ctx for _, item in seen} == {want}
    assert {subject for subject, item in seen if isinstance(item, wire.TaskWork)} == {"pas.work.prog.10"}
    # The programmer ran each task where the context said: the job's interpreter.
    assert all(t["env"].startswith(f"interpreter {sys.executable} (job env") for t in st["tasks"]), st["tasks"]
