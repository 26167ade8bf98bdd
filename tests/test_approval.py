"""Approval mode end to end through a real nats-server: the run waits in waiting_approval after
planning, with no task on any programmer, until approve (optionally dropping tasks), reject or the
approval timeout; the wait survives a restart of every PAS process."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from pas.base.errors import BadRequest, Conflict, NotFound
from pas.runtime import comms as comms_mod
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from tests.conftest import make_cfg, wait_for

TASKS = [{"lane": "code", "instruction": "echo alpha", "command": "echo alpha", "executor": "command"},
         {"lane": "code", "instruction": "echo beta", "command": "echo beta", "executor": "command"},
         {"lane": "docs", "instruction": "echo gamma", "command": "echo gamma", "executor": "command"}]


def job(run_id: str, **kw: Any) -> dict[str, Any]:
    return {"title": "needs approval", "run_id": run_id, "approval_mode": True, "tasks": TASKS, **kw}


async def waiting(client: PasClient, run_id: str, timeout_s: float = 30) -> dict[str, Any]:
    async def check() -> Any:
        st = await client.status(run_id)
        return st if st["status"] == "waiting_approval" else None
    return await wait_for(check, timeout_s, 0.1)


async def comms(nc: Any, run_id: str) -> list[Any]:
    return [e async for e in comms_mod.read(nc.jetstream(), run_id=run_id)]


def ran(entries: list[Any]) -> list[str]:
    """Tasks a programmer ran: its "task <id> <status>" result entries (a task this short reports no start:
    settings.pool.start_report_after_s)."""
    return [e.message.split()[1] for e in entries if e.from_agent.startswith("prog-") and e.msg_type == "RESPONSE"]


async def test_plan_visible_then_approve_with_a_task_dropped(stack: Stack, client: PasClient) -> None:
    await client.submit(job("ap1"))
    st = await waiting(client, "ap1")
    assert st["approval"]["status"] == "pending" and st["approval"]["deadline"]
    plan = await client.plan("ap1")
    assert plan["complete"] and plan["status"] == "waiting_approval" and plan["approval_mode"]
    tasks = {t["task_id"]: t for j in plan["jobs"] for t in j["tasks"]}
    assert sorted(t["spec"]["command"] for t in tasks.values()) == ["echo alpha", "echo beta", "echo gamma"]
    assert {t["status"] for t in tasks.values()} == {"queued"}
    assert ran(await comms(client.nc, "ap1")) == []  # the plan is complete, nothing has run
    drop = next(t for t, v in tasks.items() if v["spec"]["command"] == "echo beta")

    with pytest.raises(BadRequest):  # an unknown task id is refused, and nothing is decided
        await client.approve("ap1", by="alice", drop=["code-1-99"])
    with pytest.raises(NotFound):
        await client.approve("nope", by="alice")
    res = await client.approve("ap1", by="alice", drop=[drop], reason="beta is not needed")
    assert res["status"] == "running"
    with pytest.raises(Conflict):  # decided once
        await client.reject("ap1", reason="too late", by="bob")

    final = await client.wait("ap1", timeout_s=60)
    assert final["status"] == "completed", final
    by_id = {t["task_id"]: t for t in final["tasks"]}
    assert by_id[drop]["status"] == "skipped" and "alice" in by_id[drop]["error"]
    assert {t["status"] for k, t in by_id.items() if k != drop} == {"completed"}
    assert final["approval"]["decided_by"] == "alice" and final["approval"]["dropped"] == [drop]
    entries = await comms(client.nc, "ap1")
    assert sorted(ran(entries)) == sorted(k for k in by_id if k != drop)  # the dropped task never ran
    decision = [e for e in entries if e.message.startswith("approve plan of ap1")]
    assert len(decision) == 1 and decision[0].metadata["by"] == "alice"
    assert decision[0].from_agent == "anonymous"  # who asked (no NATS user here), never the `by` it states
    assert decision[0].metadata["dropped"] == [drop]
    # Order: waiting_approval announced before any programmer started a task.
    msgs = [e.message for e in entries]
    first_run = next(i for i, e in enumerate(entries) if e.from_agent.startswith("prog-"))
    assert any("waiting for approval" in m for m in msgs[:first_run])
    assert msgs.index(decision[0].message) < first_run


async def test_reject_ends_the_run_and_nothing_runs(stack: Stack, client: PasClient) -> None:
    await client.submit(job("rj1"))
    await waiting(client, "rj1")
    with pytest.raises(BadRequest):
        await client.request("pas.gateway.reject", {"run_id": "rj1", "drop": ["x"]})
    res = await client.reject("rj1", reason="touches the wrong module", by="carol")
    assert res["status"] == "rejected"
    final = await client.wait("rj1", timeout_s=10)
    assert final["status"] == "rejected" and "carol" in final["message"] and "wrong module" in final["message"]
    # The managers mark the held tasks skipped; no programmer ever starts one.
    await wait_for(lambda: _all_skipped(client, "rj1"), 20, 0.1)
    # The tree ends too: every job and lane `rejected`, announced the usual way (done events).
    lanes = await wait_for(lambda: _lanes_ended(client, "rj1"), 20, 0.1)
    assert lanes == {"code": "rejected", "docs": "rejected"}
    entries = await comms(client.nc, "rj1")
    assert ran(entries) == []
    decision = [e for e in entries if e.message.startswith("reject plan of rj1")]
    assert len(decision) == 1 and decision[0].metadata == {"by": "carol", "decision": "rejected", "dropped": [],
                                                           "reason": "touches the wrong module"}
    with pytest.raises(Conflict):
        await client.approve("rj1", by="carol")


async def _lanes_ended(client: PasClient, run_id: str) -> dict[str, str] | None:
    js = client.nc.jetstream()
    kv = await js.key_value("pas_tree")
    out = {}
    for lane in ("code", "docs"):
        out[lane] = json.loads((await kv.get(f"{run_id}.lane.{lane}")).value)["status"]
    return out if "running" not in out.values() else None


async def _all_skipped(client: PasClient, run_id: str) -> bool:
    st = await client.status(run_id)
    return len(st["tasks"]) == 3 and {t["status"] for t in st["tasks"]} == {"skipped"}


@pytest.mark.parametrize("cfg", [make_cfg("settings.work.approval_timeout_s=1")])
async def test_approval_timeout_rejects(stack: Stack, client: PasClient) -> None:
    await client.submit(job("to1"))
    final = await client.wait("to1", timeout_s=30)
    assert final["status"] == "rejected" and final["approval"]["reason"] == "approval timed out"
    assert final["approval"]["decided_by"] == "gateway"
    await wait_for(lambda: _all_skipped(client, "to1"), 20, 0.1)
    entries = await comms(client.nc, "to1")
    assert ran(entries) == []
    assert any(e.message == "reject plan of to1: approval timed out" and e.metadata["by"] == "gateway"
               for e in entries)


async def test_wait_survives_restart_of_every_process(nats_server: Any, client: PasClient) -> None:
    cfg = make_cfg()
    first = Stack(cfg, url=nats_server.url)
    await first.start()
    try:
        await client.submit(job("rs1"))
        await waiting(client, "rs1")
    finally:
        await first.stop()  # every agent gone; only nats-server holds the state
    second = Stack(make_cfg(), url=nats_server.url)
    await second.start()
    try:
        plan = await client.plan("rs1")
        assert plan["status"] == "waiting_approval" and plan["complete"]
        assert len([t for j in plan["jobs"] for t in j["tasks"]]) == 3
        await client.approve("rs1", by="dave")
        final = await client.wait("rs1", timeout_s=60)
        assert final["status"] == "completed", final
        assert {t["status"] for t in final["tasks"]} == {"completed"}
        assert sorted(ran(await comms(client.nc, "rs1"))) == sorted(t["task_id"] for t in final["tasks"])
    finally:
        await second.stop()


async def test_http_plan_approve_reject(nats_server: Any) -> None:
    """Gateway port (GET /runs/{id}/plan, POST /runs/{id}/approve) and HMI (/api/runs/{id}/plan, /reject)."""
    from tests.http_support import http_cfg, poll

    st = Stack(http_cfg(), url=nats_server.url, http=True)
    await st.start()
    gw, hmi = st.http_server.url("gateway"), st.http_server.url()
    try:
        async with httpx.AsyncClient(timeout=30) as c:
            async def status(run_id: str) -> dict[str, Any]:
                return (await c.get(f"{gw}/runs/{run_id}")).json()

            r = await c.post(f"{gw}/submit", json=job("h1"))
            assert r.status_code == 200, r.text
            await poll(lambda: status("h1"), lambda s: s.get("status") == "waiting_approval", 30, 0.1)
            r = await c.get(f"{gw}/runs/h1/plan")
            assert r.status_code == 200 and r.json()["complete"]
            drop = r.json()["jobs"][0]["tasks"][0]["task_id"]
            assert (await c.get(f"{gw}/runs/nope/plan")).status_code == 404
            r = await c.post(f"{gw}/runs/h1/approve", json={"drop": [drop], "by": "erin"})
            assert r.status_code == 200 and r.json()["status"] == "running", r.text
            r = await c.post(f"{gw}/runs/h1/approve", json={})
            assert r.status_code == 409 and "not waiting_approval" in json.dumps(r.json())
            final = await poll(lambda: status("h1"), lambda s: s.get("status") in ("completed", "failed"), 60, 0.2)
            assert final["status"] == "completed"
            assert {t["task_id"]: t["status"] for t in final["tasks"]}[drop] == "skipped"

            r = await c.post(f"{hmi}/api/submit", json=job("h2"))
            assert r.status_code == 200, r.text
            await poll(lambda: status("h2"), lambda s: s.get("status") == "waiting_approval", 30, 0.1)
            r = await c.get(f"{hmi}/api/runs/h2/plan")
            assert r.status_code == 200 and len(r.json()["jobs"]) == 2
            r = await c.post(f"{hmi}/api/runs/h2/reject", json={"reason": "not now", "drop": ["x"]})
            assert r.status_code == 400  # drop is for approve
            r = await c.post(f"{hmi}/api/runs/h2/reject", json={"reason": "not now"})
            assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
            final = await status("h2")
            assert final["approval"]["decided_by"] == "http:127.0.0.1" and final["approval"]["reason"] == "not now"
    finally:
        await st.stop()


def test_cli_plan_approve(nats_server: Any, pas_procs: Any, tmp_path: Any) -> None:
    """`pas submit --approval`, `pas plan`, `pas approve --drop`, in separate processes."""
    import subprocess
    import sys

    from tests.conftest import fast_args

    pas_procs("--nats-url", nats_server.url, *fast_args())

    def pas(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pas", *args, "--nats-url", nats_server.url],
                              capture_output=True, text=True, timeout=60)

    r = pas("submit", "cli approval", "--approval", "--priority", "10", "--run-id", "c1",
            "--task", "code:echo one", "--task", "code:echo two")
    assert r.returncode == 0 and r.stdout.strip() == "c1", r.stderr
    deadline = time.monotonic() + 30
    while True:
        p = pas("plan", "c1", "--json")
        plan = json.loads(p.stdout) if p.returncode == 0 else {}
        if plan.get("status") == "waiting_approval":
            break
        assert time.monotonic() < deadline, p.stdout + p.stderr
    text = pas("plan", "c1").stdout
    assert "approval: pending" in text and "code-1-01" in text and "echo two" in text
    r = pas("approve", "c1", "--drop", "code-1-02", "--by", "frank")
    assert r.returncode == 0 and r.stdout.strip() == "c1 running (dropped code-1-02)", r.stdout + r.stderr
    r = pas("reject", "c1", "--reason", "late")
    assert r.returncode == 1 and "not waiting_approval" in r.stderr
    r = pas("status", "c1", "--json")
    st = json.loads(r.stdout)
    assert st["priority"] == 10 and st["approval"]["decided_by"] == "frank"


async def test_hmi_plan_view_approve_and_reject_buttons(nats_server: Any) -> None:
    """Debian Chromium + Playwright: the plan view of a waiting run, Approve with a task unticked,
    Reject with a reason."""
    from playwright.async_api import expect

    from tests.http_support import http_cfg
    from tests.test_hmi_browser import ARTIFACTS, WAIT_MS, hmi_on

    async with hmi_on(http_cfg(), nats_server.url) as hmi:
        await hmi.open()
        page = hmi.page
        await hmi.client.submit(job("b1"))
        row = page.get_by_test_id("run-b1")
        await expect(row).to_have_attribute("data-status", "waiting_approval", timeout=WAIT_MS)
        await row.click()
        plan = page.get_by_test_id("plan-view")
        await expect(plan).to_be_visible(timeout=WAIT_MS)
        await expect(plan.locator('[data-testid^="plan-task-"]')).to_have_count(3)
        await expect(plan).to_contain_text("echo beta")
        await page.get_by_test_id("plan-keep-code-1-02").uncheck()
        await page.get_by_test_id("approve-b1").click()
        await expect(row).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
        await expect(plan).to_be_hidden()
        view = page.get_by_test_id("run-view")
        await expect(view.get_by_test_id("task-code-1-02")).to_have_attribute("data-status", "skipped",
                                                                            timeout=WAIT_MS)
        await expect(view.locator('[data-testid^="task-"][data-status="completed"]')).to_have_count(2)
        st = await hmi.client.status("b1")
        assert st["approval"]["dropped"] == ["code-1-02"] and st["approval"]["decided_by"] == "http:127.0.0.1"

        await hmi.client.submit(job("b2"))
        row2 = page.get_by_test_id("run-b2")
        await expect(row2).to_have_attribute("data-status", "waiting_approval", timeout=WAIT_MS)
        await row2.click()
        await expect(plan.locator('[data-testid^="plan-task-"]')).to_have_count(3, timeout=WAIT_MS)
        await page.get_by_test_id("plan-reason").fill("wrong lane split")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "hmi-plan-view.png"))
        await page.get_by_test_id("reject-b2").click()
        await expect(row2).to_have_attribute("data-status", "rejected", timeout=WAIT_MS)
        st = await hmi.client.status("b2")
        assert st["status"] == "rejected" and st["approval"]["reason"] == "wrong lane split"


async def test_approval_and_priority_with_permissions_on(tmp_path: Any) -> None:
    """The embedded server as `pas up` starts it (NATS users on): every role's new subjects are granted
    (plan/approve/reject requests, pas.work.approval, release events, priority bands): no violation but
    the one provoked, a programmer trying to approve."""
    from pas.protocol import subjects as S
    from pas.transport import auth
    from pas.transport.bus import connect

    cfg = make_cfg("settings.nats.port=-1", "settings.work.approval_timeout_s=600")
    assert cfg.settings.nats.auth == "on"
    cfg.settings.nats.data_dir = str(tmp_path / "data")
    st = Stack(cfg, only=["monitor", "gateway", "root", "architect", "dir-code", "mgr-code-01", "prog-001"])
    await st.start()
    assert st.server is not None and st.server.log_path is not None
    server_log = st.server.log_path
    client = await PasClient.connect(st.url or "", 10, creds=st.creds["client"])
    code = [t for t in TASKS if t["lane"] == "code"]
    try:
        await client.submit({"title": "secured approval", "run_id": "sa1", "approval_mode": True, "priority": 20,
                             "tasks": code})
        await waiting(client, "sa1")
        plan = await client.plan("sa1")
        assert [t["task_id"] for j in plan["jobs"] for t in j["tasks"]] == ["code-1-01", "code-1-02"]
        await client.approve("sa1", by="gina", drop=["code-1-01"])
        final = await client.wait("sa1", timeout_s=60)
        assert final["status"] == "completed" and [t["status"] for t in final["tasks"]] == ["skipped", "completed"]
        await client.submit({"title": "secured reject", "run_id": "sa2", "approval_mode": True, "tasks": code})
        await waiting(client, "sa2")
        # A programmer may not decide: the server refuses its publish, and the run keeps waiting.
        prog = await connect(st.url or "", name="test-programmer", **auth.connect_kw(st.creds["prog-001"]))
        try:
            await prog.publish(S.GATEWAY_APPROVE, b'{"run_id":"sa2","by":"prog"}')
            await prog.flush()
            await wait_for(lambda: 'Publish Violation - Subject "pas.gateway.approve"' in server_log.read_text(), 10)
        finally:
            await prog.close()
        assert (await client.status("sa2"))["status"] == "waiting_approval"
        await client.reject("sa2", reason="no", by="gina")
        await wait_for(lambda: _skipped(client, "sa2", 2), 20, 0.1)
        for prio in (1, 10):
            await client.submit({"title": f"p{prio}", "run_id": f"sp{prio}", "priority": prio, "tasks": code})
            assert (await client.wait(f"sp{prio}", timeout_s=60))["status"] == "completed"
    finally:
        await client.close()
        await st.stop()
    violations = [line for line in server_log.read_text().splitlines() if "Violation" in line]
    assert len(violations) == 1 and 'user:prog-001" - Publish Violation' in violations[0], violations


async def _skipped(client: PasClient, run_id: str, n: int) -> bool:
    st = await client.status(run_id)
    return len(st["tasks"]) == n and {t["status"] for t in st["tasks"]} == {"skipped"}
