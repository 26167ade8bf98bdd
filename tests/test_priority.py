"""Priority bands end to end through a real nats-server: a priority-20 job's tasks start before the
waiting tasks of a priority-5 job, and aging lets low-priority work through a stream of high-priority
work. Order is read from PAS_EVENTS (the programmers' "running" task events, in stream order); the
pool is held busy with tasks that wait for a gate file, so nothing depends on how fast anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pas.config.model import PasConfig
from pas.protocol import subjects as S
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from tests.conftest import make_cfg, wait_for

GATED = "python -c \"import os,time; [time.sleep(0.02) for _ in iter(lambda: os.path.exists('{gate}'), True)]\""


def pool_cfg(gate: Path, *extra: str) -> PasConfig:
    cfg = make_cfg("settings.pool.start_report_after_s=0", *extra)  # every start reported: the order is read off them
    cfg.settings.policy.command_allowlist.append("python -c *")  # the gate below
    gate.parent.mkdir()
    cfg.settings.policy.sandbox_ro.append(str(gate.parent))  # tasks see the gate file appear (a live bind)
    return cfg


def tasks(n: int, command: str) -> list[dict[str, Any]]:
    return [{"lane": "code", "instruction": f"{command} #{i}", "command": command, "executor": "command"}
            for i in range(n)]


async def starts(client: PasClient) -> list[tuple[str, str]]:
    """(run_id, task_id) of every task start, in the order PAS_EVENTS stored them."""
    js = client.nc.jetstream()
    info = await js.add_consumer("PAS_EVENTS", ConsumerConfig(
        filter_subject="pas.run.*.task.*", deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0))
    psub = await js.pull_subscribe_bind(durable=None, stream="PAS_EVENTS", name=info.name)  # type: ignore[call-arg]
    out: list[tuple[str, str]] = []
    left = info.num_pending
    try:
        while left > 0:
            for m in await psub.fetch(min(left, 256), timeout=5):
                left -= 1
                rec = json.loads(m.data)
                if rec["status"] == "running":
                    out.append((rec["run_id"], rec["task_id"]))
    finally:
        await psub.unsubscribe()
        await js.delete_consumer("PAS_EVENTS", info.name)
    return out


async def running(client: PasClient, run_id: str, n: int) -> bool:
    st = await client.status(run_id)
    return sum(1 for t in st["tasks"] if t["status"] == "running") >= n


async def pending(client: PasClient, priority: int) -> int:
    return (await client.nc.jetstream().consumer_info("PAS_WORK", S.consumer_prog(priority))).num_pending


async def test_high_priority_job_overtakes_waiting_low_priority_tasks(nats_server: Any, client: PasClient,
                                                                      tmp_path: Path) -> None:
    gate = tmp_path / "gate" / "go"
    st = Stack(pool_cfg(gate), url=nats_server.url, exclude=["prog-00[3-9]", "prog-010"])  # a pool of 2
    await st.start()
    try:
        await client.submit({"title": "low", "run_id": "low", "priority": 5,
                             "tasks": tasks(8, GATED.format(gate=gate))})
        await wait_for(lambda: running(client, "low", 2), 30)  # the pool is full; 6 low tasks wait
        await client.submit({"title": "high", "run_id": "high", "priority": 20, "tasks": tasks(3, "echo high")})
        await wait_for(lambda: _eq(pending(client, 20), 3), 30)  # every high task is queued behind them
        assert await pending(client, 5) == 6
        gate.touch()
        for run_id in ("low", "high"):
            assert (await client.wait(run_id, timeout_s=60))["status"] == "completed"
        order = [run for run, _ in await starts(client)]
        # The two that filled the pool, then all of the high job, then the six low tasks that waited.
        assert order == ["low"] * 2 + ["high"] * 3 + ["low"] * 6, order
    finally:
        await st.stop()


async def test_aging_lets_low_priority_work_through(nats_server: Any, client: PasClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate" / "go"
    cfg = pool_cfg(gate, "settings.pool.priority_burst=2")
    st = Stack(cfg, url=nats_server.url, exclude=["prog-00[2-9]", "prog-010"])  # a pool of 1
    await st.start()
    try:
        await client.submit({"title": "low", "run_id": "low", "priority": 1,
                             "tasks": tasks(3, GATED.format(gate=gate))})
        await wait_for(lambda: running(client, "low", 1), 30)
        await client.submit({"title": "high", "run_id": "high", "priority": 20, "tasks": tasks(8, "echo high")})
        await wait_for(lambda: _eq(pending(client, 20), 8), 30)
        gate.touch()
        for run_id in ("low", "high"):
            assert (await client.wait(run_id, timeout_s=60))["status"] == "completed"
        order = [run for run, _ in await starts(client)]
        # Strict priority would run all 8 high tasks first; with a burst of 2, a low task goes
        # through after every 2 high ones, so the low job ends long before the high one does.
        assert order == ["low", "high", "high", "low", "high", "high", "low"] + ["high"] * 4, order
    finally:
        await st.stop()


async def _eq(value: Any, want: int) -> bool:
    return (await value) == want
