"""`pas replay`: a run's timeline from JetStream alone (PAS_EVENTS, PAS_COMMS), its Gantt page in
Chromium, --follow, --speed (re-publishing on pas.replay.<run>.>), --rebuild against KV, and the
adapter's timeline endpoints. A run planned by models (fake server, with a failover) feeds them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pas.protocol import subjects as S
from pas.surfaces.replay import live, timeline
from pas.surfaces.stack import Stack
from pas.transport.streams import read_raw
from tests.conftest import ROOT, wait_for
from tests.fakellm import Fail, Reply
from tests.http_support import BROWSER_ARGS, CHROMIUM, http_cfg
from tests.test_llm_pipeline import swarm_cfg

RUN = "rp1"


def script_models(fake_llm: Any) -> None:
    fake_llm.script("pa", Fail(500))
    fake_llm.script("pb", Reply('{"lanes": [{"lane": "docs", "brief": "document the API"}]}',
                                prompt_tokens=100, completion_tokens=20))
    fake_llm.script("pd", Reply('{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"},'
                                ' {"instruction": "write usage", "executor": "echo"}]}]}',
                                prompt_tokens=50, completion_tokens=30))


async def pas(url: str, *args: str, timeout: float = 90) -> tuple[int, str, str]:
    """Run the CLI without blocking the agents that run in this event loop."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pas", *args, "--nats-url", url,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def run_planned(st: Stack, client: Any) -> dict[str, Any]:
    await client.submit({"title": "docs", "goal": "Document the calc API", "run_id": RUN})
    return await client.wait(RUN, timeout_s=60)


def check_timeline(tl: dict[str, Any]) -> None:
    assert tl["run_id"] == RUN and tl["status"] == "completed" and tl["title"] == "docs"
    steps = tl["steps"]
    assert [s["t"] for s in steps] == sorted(s["t"] for s in steps)  # in order, relative to submit
    assert {"client", "gateway", "root", "architect", "director", "manager", "programmer"} <= {s["tier"] for s in steps}
    kinds = [(s["tier"], s["kind"], s["status"]) for s in steps]
    # causal order across tiers: submit, run running, plan, lane, tasks, run completed
    order = [kinds.index(("gateway", "run", "queued")), kinds.index(("architect", "run", "running")),
             kinds.index(("director", "lane", "running")), kinds.index(("director", "lane", "completed")),
             kinds.index(("root", "run", "completed"))]
    assert order == sorted(order), kinds
    # task bars: queued <= running <= done, by whom, how many attempts
    assert sorted(x["instruction"] for x in tl["tasks"]) == ["write intro", "write usage"]
    for x in tl["tasks"]:
        assert x["status"] == "completed" and x["programmer"].startswith("prog-") and x["attempts"] == 1, x
        assert 0 <= x["queued_t"] <= x["running_t"] <= x["done_t"] <= tl["duration_s"], x
    # model, tokens, cost per call; the failover pa -> pb is named
    calls = [(c["agent"], c["profile"], c["ok"], c["tokens"], c["failover"]) for c in tl["llm_calls"]]
    assert calls == [("architect", "pa", False, 0, False), ("architect", "pb", True, 120, True),
                     ("dir-docs", "pd", True, 80, False)], calls
    assert tl["failovers"] == [{"t": tl["llm_calls"][1]["t"], "agent": "architect", "from": "pa", "to": "pb",
                                "error": tl["llm_calls"][0]["error"]}]
    assert tl["llm_calls"][1]["model"] and tl["llm_calls"][1]["cost_usd"] is None  # unpriced: unknown, not 0
    assert tl["totals"] == {"tokens": 200, "cost_usd": 0.0, "llm_calls": 3, "unknown_cost_calls": 2, "failovers": 1}
    # the critical path: the last lane, its last job, that job's last task
    path = tl["critical_path"]
    assert [p["kind"] for p in path] == ["lane", "job", "task"] and path[0]["id"] == "docs"
    last = max(tl["tasks"], key=lambda x: x["done_t"])
    assert path[2]["id"] == last["task_id"]


async def wait_for_rebuild_identical(url: str) -> None:
    """Until `pas replay --rebuild` finds KV and the events agree (a write reaches PAS_EVENTS a moment later)."""
    async def same() -> bool:
        rc, out, _ = await pas(url, "replay", RUN, "--rebuild")
        return rc == 0 and "identical" in out

    await wait_for(same, timeout_s=30, interval_s=0.2)


async def delete_kv(st: Stack, run_id: str) -> int:
    js = st.bus.js
    n = 0
    kv = await js.key_value(S.KV_TREE)
    for k in await kv.keys():
        if k.startswith(run_id + "."):
            await kv.purge(k)
            n += 1
    await (await js.key_value(S.KV_RUNS)).purge(run_id)
    return n + 1


async def test_replay_without_kv_and_rebuild(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> None:
    script_models(fake_llm)
    async with Stack(swarm_cfg(fake_llm, architect="pa/pb", dir_docs="pd"), url=nats_server.url) as st:
        res = await run_planned(st, client)
        assert res["status"] == "completed", res
        url = nats_server.url
        rc, out, err = await pas(url, "replay", RUN, "--rebuild")
        assert rc == 0 and "identical" in out, out + err
        # a KV value that disagrees with the events is named, field by field. Every KV write is its own
        # event (sourced into PAS_EVENTS), so only a lost event can make them differ: delete the task's last.
        task = res["tasks"][0]
        js = st.bus.js
        *before, last = [m async for m in read_raw(js, S.STREAM_EVENTS, S.run_task(RUN, task["task_id"]))]
        said = json.loads(before[-1].data)["status"]  # running (queued, if the running write was replaced at once)
        await js.delete_msg(S.STREAM_EVENTS, last.seq)
        rc, out, _ = await pas(url, "replay", RUN, "--rebuild")
        assert rc == 1 and f"{RUN}.task.{task['task_id']}.status: events say '{said}', KV holds 'completed'" in out
        await (await js.key_value(S.KV_TREE)).put(S.task_key(RUN, task["task_id"]), last.data)  # written again
        await wait_for_rebuild_identical(url)

        rc, before, err = await pas(url, "replay", RUN, "--json")
        assert rc == 0, err
        check_timeline(json.loads(before))
        assert await delete_kv(st, RUN) >= 6  # run, plan, lane, job, 2 tasks (+ request, usage)
        rc, after, err = await pas(url, "replay", RUN, "--json")
        assert rc == 0, err
        assert json.loads(after) == json.loads(before)  # the same timeline without a single KV key
        rc, text, _ = await pas(url, "replay", RUN)
        assert "critical path: lane docs" in text and "FAILOVER" in text
        rc, out, _ = await pas(url, "replay", RUN, "--rebuild", "--json")
        rep = json.loads(out)
        assert rc == 1 and not rep["same"] and rep["keys_in_kv"] == 0
        assert {d["problem"] for d in rep["differences"]} == {"missing in KV"}
        assert {d["key"] for d in rep["differences"]} == set(rep["derived"]) and len(rep["derived"]) == 6
        rc, _, err = await pas(url, "replay", "nosuchrun")
        assert rc == 1 and "nothing in PAS_EVENTS" in err


async def test_follow_and_speed(nats_server: Any, client: Any, fake_llm: Any) -> None:
    script_models(fake_llm)
    async with Stack(swarm_cfg(fake_llm, architect="pa/pb", dir_docs="pd"), url=nats_server.url) as st:
        url = nats_server.url
        # --follow started before the run exists: it prints every step, and exits when the run ends
        follow = asyncio.create_task(pas(url, "replay", RUN, "--follow", "--json"))
        res = await run_planned(st, client)
        assert res["status"] == "completed"
        rc, out, err = await asyncio.wait_for(follow, 90)
        assert rc == 0, err
        head, _, body = out.partition("{")
        tl = json.loads("{" + body)
        check_timeline(tl)
        lines = head.splitlines()  # one line per step as it arrived (after the time column)
        assert Counter(ln[13:] for ln in lines) == Counter(timeline.format_step(s)[13:] for s in tl["steps"])

        # --speed: the run happens again on pas.replay.<run>.>, in stored order, then .end
        got: list[Any] = []
        ended = asyncio.Event()

        async def on(m: Any) -> None:
            got.append(m)
            if m.subject.endswith(".end"):
                ended.set()

        sub = await client.nc.subscribe(S.replay(RUN, ">"), cb=on)
        await client.nc.flush()
        rc, out, err = await pas(url, "replay", RUN, "--speed", "0")
        assert rc == 0 and "re-published" in out, err
        await asyncio.wait_for(ended.wait(), 10)
        await sub.unsubscribe()
        n = json.loads(got[-1].data)["messages"]
        msgs = got[:-1]
        assert n == len(msgs) == len(tl["steps"])
        originals = [m.headers["Pas-Replay-Subject"] for m in msgs]
        assert all(m.subject == live.replay_subject(RUN, o) for m, o in zip(msgs, originals, strict=False))
        assert f"pas.run.{RUN}.status" in originals and any(o.startswith(f"pas.comms.{RUN}.") for o in originals)
        ts = [float(m.headers["Pas-Replay-T"]) for m in msgs]
        assert ts == sorted(ts) and ts[0] == 0.0
        # pacing: the gaps slept are the stored gaps divided by the speed (a recorded sleep, no clock)
        slept: list[float] = []

        async def sleep(s: float) -> None:
            slept.append(s)

        assert await live.republish(st.bus.js, RUN, 4.0, sleep=sleep) == n
        assert abs(sum(slept) - ts[-1] / 4.0) < 1e-3


async def test_timeline_endpoints_and_html_in_chromium(nats_server: Any, client: Any, fake_llm: Any,
                                                         tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    script_models(fake_llm)
    cfg = swarm_cfg(fake_llm, architect="pa/pb", dir_docs="pd")
    cfg.settings.http.port_offset = http_cfg().settings.http.port_offset
    async with Stack(cfg, url=nats_server.url, http=True) as st:
        await run_planned(st, client)
        page_file = tmp_path / "rp1.html"
        rc, _, err = await pas(nats_server.url, "replay", RUN, "--html", str(page_file))
        assert rc == 0, err
        rc, out, _ = await pas(nats_server.url, "replay", RUN, "--json")
        cli_tl = json.loads(out)
        hmi = st.http_server.url("hmi")  # type: ignore[union-attr]
        gw = st.http_server.url("gateway")  # type: ignore[union-attr]
        async with httpx.AsyncClient(timeout=30) as h:
            assert (await h.get(f"{hmi}/api/runs/{RUN}/timeline")).json() == cli_tl
            assert (await h.get(f"{gw}/runs/{RUN}/timeline")).json() == cli_tl
            assert (await h.get(f"{hmi}/api/runs/nope/timeline")).status_code == 404
            page = await h.get(f"{hmi}/api/runs/{RUN}/timeline.html")
            assert page.status_code == 200 and 'id="gantt"' in page.text
    text = page_file.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            pg = await browser.new_page(viewport={"width": 1300, "height": 700})
            await pg.goto(page_file.as_uri())
            out_dir = ROOT / "test-artifacts"
            out_dir.mkdir(exist_ok=True)
            await pg.screenshot(path=str(out_dir / "replay-timeline.png"), full_page=True)
            bars = await pg.eval_on_selector_all("rect.bar", """els => els.map(e => ({kind: e.dataset.kind,
                id: e.dataset.id, status: e.dataset.status, x: e.getBBox().x, w: e.getBBox().width,
                start: +e.dataset.start, end: +e.dataset.end, crit: e.classList.contains('crit')}))""")
            status = await pg.text_content("#run-status")
        finally:
            await browser.close()
    assert status == "completed"
    by_kind: dict[str, list[Any]] = {}
    for b in bars:
        by_kind.setdefault(b["kind"], []).append(b)
    assert len(by_kind["run"]) == 1 and len(by_kind["lane"]) == 1 and len(by_kind["llm"]) == 3
    running = by_kind["task-running"]
    assert sorted(b["id"] for b in running) == sorted(x["task_id"] for x in cli_tl["tasks"])
    assert all(b["status"] == "completed" and b["w"] >= 1 for b in running)
    assert [b["status"] for b in by_kind["llm"]] == ["failed", "ok", "ok"]
    run_bar = by_kind["run"][0]
    for b in bars:  # every bar inside the run's span, drawn where its times say
        assert run_bar["x"] - 0.5 <= b["x"] and b["x"] + b["w"] <= run_bar["x"] + run_bar["w"] + 1.5, b
        assert (b["end"] - b["start"]) * run_bar["w"] / (run_bar["end"] - run_bar["start"]) <= b["w"] + 1.01
    # one queued bar precedes each running bar of the same task
    for r in running:
        q = next(b for b in by_kind["task-queued"] if b["id"] == r["id"])
        assert q["x"] <= r["x"] + 0.01
    crit = [b for b in bars if b["crit"]]
    assert {b["kind"] for b in crit} == {"lane", "job", "task-running"}
