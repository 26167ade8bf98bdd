"""The programmer pool: parallel dispatch, and no task lost when a programmer or all of PAS dies."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pas.surfaces.stack import Stack
from tests.conftest import fast_args, make_cfg, wait_for


def task(lane: str, command: str) -> dict[str, Any]:
    return {"lane": lane, "instruction": command, "command": command, "executor": "command"}


def ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


async def test_twenty_tasks_run_in_parallel_on_ten_programmers(stack: Any, client: Any) -> None:
    lanes = ["code", "models", "data", "devsecops", "docs"]
    tasks = [task(lanes[i % 5], "sleep 1") for i in range(20)]
    await client.submit({"title": "parallel", "run_id": "par1", "tasks": tasks})
    st = await client.wait("par1", timeout_s=120)
    assert st["status"] == "completed" and len(st["tasks"]) == 20
    windows = [(ts(t["started_at"]), ts(t["finished_at"])) for t in st["tasks"]]
    # how many task windows overlap at the busiest instant
    peak = max(sum(1 for s, e in windows if s <= start < e) for start, _ in windows)
    assert peak >= 5, f"peak concurrency {peak}"
    assert peak <= 10  # capacity 1 per programmer, 10 programmers
    assert len({t["programmer"] for t in st["tasks"]}) == 10
    assert all(t["attempts"] == 1 for t in st["tasks"])


async def test_killed_programmer_task_is_redelivered(nats_server: Any, client: Any, pas_procs: Any, nc: Any) -> None:
    cfg = make_cfg()
    busy = pas_procs("--nats-url", nats_server.url, "--only", "prog-001", *fast_args(), name="prog001")
    async with Stack(cfg, url=nats_server.url, exclude=["prog-*"]) as st:
        await client.submit({"title": "failover", "run_id": "fo1", "tasks": [task("code", "sleep 2")]})

        async def running_on_001() -> bool:
            s = await client.status("fo1")
            return bool(s["tasks"]) and s["tasks"][0]["status"] == "running" and s["tasks"][0]["programmer"] == "prog-001"

        await wait_for(running_on_001, 20)
        busy.kill()
        # another programmer, in this process, takes the task after the ack deadline
        from pas.roles import new_agent
        from pas.runtime.comms import CommsLog

        other = new_agent(st.bus, cfg.agent("prog-002"), CommsLog(st.bus.nc), process=st.process)  # type: ignore[arg-type]
        await other.start()
        try:
            final = await client.wait("fo1", timeout_s=60)
        finally:
            await other.stop()
    t = final["tasks"][0]
    assert final["status"] == "completed"
    assert t["attempts"] == 2 and t["programmer"] == "prog-002" and t["status"] == "completed"
    # exactly one result went up
    from tests.test_runtime import task_results

    assert await task_results(nc, "fo1", "code-1-01") == ["completed"]


async def test_whole_pas_process_killed_mid_run_recovers(nats_server: Any, client: Any, pas_procs: Any) -> None:
    first = pas_procs("--nats-url", nats_server.url, *fast_args(), name="whole1")
    tasks = [task("code", "sleep 2"), task("docs", "sleep 2"), task("data", "true")]
    await client.submit({"title": "survive", "run_id": "kill1", "tasks": tasks})

    async def some_running() -> bool:
        s = await client.status("kill1")
        return any(t["status"] == "running" for t in s["tasks"])

    await wait_for(some_running, 20)
    first.kill()  # SIGKILL the whole PAS process; nats-server keeps the state
    pas_procs("--nats-url", nats_server.url, *fast_args(), name="whole2")
    try:
        st = await client.wait("kill1", timeout_s=90)
    except Exception:
        js = client.nc.jetstream()
        infos = [await js.consumer_info(s_, c) for s_, c in (("PAS_WORK", "prog-5"), ("PAS_WORK", "mgr-code"),
                                                                ("PAS_EVENTS", "root-done"))]
        print(json.dumps(await client.status("kill1"), indent=1))
        print([(i.name, i.num_pending, i.num_ack_pending, i.num_redelivered) for i in infos])
        raise
    assert st["status"] == "completed", st
    assert {t["status"] for t in st["tasks"]} == {"completed"}
    assert max(t["attempts"] for t in st["tasks"]) == 2


async def test_task_fails_after_max_attempts(nats_server: Any, client: Any, pas_procs: Any) -> None:
    cfg = make_cfg("settings.pool.max_deliver=1")
    busy = pas_procs("--nats-url", nats_server.url, "--only", "prog-001", *fast_args(), name="p1")
    async with Stack(cfg, url=nats_server.url, exclude=["prog-*"]) as st:
        await client.submit({"title": "doomed", "run_id": "ma1", "tasks": [task("code", "sleep 5")]})

        async def running() -> bool:
            s = await client.status("ma1")
            return bool(s["tasks"]) and s["tasks"][0]["status"] == "running"

        await wait_for(running, 20)
        busy.kill()
        from pas.roles import new_agent
        from pas.runtime.comms import CommsLog

        other = new_agent(st.bus, cfg.agent("prog-002"), CommsLog(st.bus.nc), process=st.process)  # type: ignore[arg-type]
        await other.start()
        try:
            final = await client.wait("ma1", timeout_s=60)
        finally:
            await other.stop()
    t = final["tasks"][0]
    assert final["status"] == "failed" and t["status"] == "failed" and t["attempts"] == 2
    assert "gave up after 1 attempts" in t["error"]


async def test_command_timeout_and_output_cap(nats_server: Any, client: Any) -> None:
    cfg = make_cfg("settings.pool.task_timeout_s=1", "settings.pool.output_cap_bytes=100")
    async with Stack(cfg, url=nats_server.url):
        await client.submit({"title": "limits", "run_id": "lim1", "tasks": [
            task("code", "sleep 5"), task("docs", "echo " + "x" * 300)]})
        st = await client.wait("lim1", timeout_s=60)
    t = {x["lane"]: x for x in st["tasks"]}
    assert t["code"]["status"] == "timeout" and "timed out after 1.0s" in t["code"]["error"]
    assert t["docs"]["status"] == "completed" and "bytes cut" in t["docs"]["output"]
    assert len(t["docs"]["output"]) < 200
    assert st["status"] == "failed"
