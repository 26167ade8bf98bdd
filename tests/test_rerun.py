"""Recordings of model exchanges (PAS_RECORDINGS), `pas rerun` driven by them, forks and `pas diff`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pas.llm import recording
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.surfaces.stack import Stack
from tests.fakellm import Fail, Reply
from tests.test_llm_pipeline import EDIT_OK, llm_entries, swarm_cfg
from tests.test_pipeline import make_repo


async def test_every_exchange_is_recorded(nats_server: Any, client: Any, fake_llm: Any) -> None:
    big = "x " * 20000  # a large prompt: ~40 kB of goal text in every planning prompt
    fake_llm.script("pa", Fail(500))
    fake_llm.script("pb", Reply('{"lanes": [{"lane": "docs", "brief": "document the API"}]}',
                                prompt_tokens=100, completion_tokens=20))
    fake_llm.script("pd", Reply('{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"}]}]}',
                                prompt_tokens=50, completion_tokens=30))
    cfg = swarm_cfg(fake_llm, architect="pa/pb", dir_docs="pd")
    async with Stack(cfg, url=nats_server.url) as st:
        await client.submit({"title": "rec", "goal": "Document the calc API " + big, "run_id": "rec1"})
        res = await client.wait("rec1", timeout_s=60)
        entries = await llm_entries(st, "rec1")
        js = st.bus.js
        recs = [await recording.load(js, e.metadata["recording_seq"]) for e in entries]
        info = await js.stream_info(S.STREAM_RECORDINGS)
    assert res["status"] == "completed"
    sent = fake_llm.requests
    assert len(entries) == len(recs) == len(sent) == 3
    for e, r, req in zip(entries, recs, sent, strict=False):
        # the comms entry points to its recording; the address is the sha256 of the canonical request
        assert e.metadata["recording"] == r.request_sha == recording.sha256(r.request)
        assert r.request["messages"] == req.messages and r.request["model"] == f"openai/{req.model}"
        assert r.agent == e.from_agent and r.run_id == "rec1" and r.profile == e.metadata["profile"]
        assert r.latency_s == e.metadata["latency_s"] and r.tokens_in + r.tokens_out == e.tokens
    assert [(r.profile, r.ok, r.reply) for r in recs] == [
        ("pa", False, None), ("pb", True, '{"lanes": [{"lane": "docs", "brief": "document the API"}]}'),
        ("pd", True, '{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"}]}]}')]
    assert "scripted failure" in (recs[0].error or "") and recs[1].model_used and recs[1].tokens_in == 100
    assert recs[0].request_sha != recs[1].request_sha  # another model: another request
    # storage cost: the JSON per call, the stream's accounting, and the S2-compressed blocks on disk
    raw = [e.metadata["recording_bytes"] for e in entries]
    assert info.state.messages == 3 and min(raw) > 16384
    blocks = list((nats_server.data_dir / "jetstream").rglob("PAS_RECORDINGS/msgs/*.blk"))
    on_disk = sum(b.stat().st_size for b in blocks)
    print(f"\nrecording storage, 3 calls (each with a 16 kB goal in its prompt): JSON {raw} B, stream accounts "
          f"{info.state.bytes} B, {on_disk} B on disk")
    # per call: the recording's JSON plus ~250 B of subject, headers and index (the open block is
    # not compressed yet: S2 applies to sealed blocks)
    assert blocks and 0 < info.state.bytes - sum(raw) < 3 * 400 and on_disk >= sum(raw)


PLAN_A = '{"lanes": [{"lane": "code", "brief": "add a double() helper to calc"}]}'
PLAN_D = json.dumps({"jobs": [{"tasks": [{"instruction": "add a double() helper", "executor": "llm",
                                          "files": ["src/calc/__init__.py"],
                                          "acceptance": "python -m pytest -q -p no:cacheprovider tests"}]}]})


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


async def pas(url: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import os

    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pas", *args, "--nats-url", url,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def planned_and_edited(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> tuple[Any, Path]:
    """A run planned by models (architect, director) and edited by a model (llm executor)."""
    fake_llm.script("pa", Reply(PLAN_A, prompt_tokens=90, completion_tokens=20))
    fake_llm.script("pd", Reply(PLAN_D, prompt_tokens=70, completion_tokens=40))
    fake_llm.default("pp", Reply(EDIT_OK, prompt_tokens=200, completion_tokens=60))
    cfg = swarm_cfg(fake_llm, architect="pa", dir_code="pd", **{f"prog_{i:03d}": "pp" for i in range(1, 11)})
    repo = make_repo(tmp_path)
    st = await Stack(cfg, url=nats_server.url).start()
    await client.submit({"title": "dbl", "goal": "Give calc a double() helper", "run_id": "par1",
                         "repo": str(repo), "env": sys.executable})
    res = await client.wait("par1", timeout_s=90)
    assert res["status"] == "completed" and res["usage"]["tokens"] == 110 + 110 + 260, res
    return st, repo


async def job_specs(st: Stack, run_id: str) -> bytes:
    got = await st.bus.kv_get(S.KV_TREE, f"{run_id}.job.code-1", wire.JobRecord)
    assert got is not None
    return wire.encode(got[0].specs)


async def test_rerun_replays_recorded_replies(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> None:
    st, repo = await planned_and_edited(nats_server, client, fake_llm, tmp_path)
    try:
        asked = len(fake_llm.requests)
        assert asked == 3
        rc, out, err = await pas(nats_server.url, "rerun", "par1", "--run-id", "par1-r1", "--json")
        assert rc == 0, out + err
        rep = json.loads(out)
        assert rep == {"run_id": "par1-r1", "parent": "par1", "status": "completed", "tokens": 0, "cost_usd": 0.0,
                       "replayed_calls": 3, "live_calls": 0, "divergence": None}
        assert len(fake_llm.requests) == asked  # the model server got no request during the rerun
        # the same plan, the same tasks, the same diff, byte for byte
        assert await job_specs(st, "par1-r1") == await job_specs(st, "par1")
        plans = [await st.bus.kv_get(S.KV_TREE, f"{r}.plan", wire.PlanRecord) for r in ("par1", "par1-r1")]
        assert plans[0] and plans[1] and plans[0][0].lanes == plans[1][0].lanes == ["code"]
        d1 = git(repo, "diff", "main...pas/par1/code-1-01")
        d2 = git(repo, "diff", "main...pas/par1-r1/code-1-01")
        assert "def double" in d1 and d1.encode() == d2.encode()
        # the link: the spec names the parent
        spec = json.loads((await st.bus.kv[S.KV_TREE].get("par1-r1.rerun")).value)
        assert spec["parent"] == "par1" and len(spec["calls"]) == 3
        rc, out, _ = await pas(nats_server.url, "replay", "par1-r1", "--json")
        tl = json.loads(out)  # the rerun's timeline names its parent and shows every call replayed
        assert tl["parent"] == "par1" and [c["replayed"] for c in tl["llm_calls"]] == [True] * 3
        assert tl["totals"]["tokens"] == 0 and tl["tasks"][0]["status"] == "completed"

        # changed code: the programmer's prompt differs from the recording -> named precisely, and stopped
        (repo / "src" / "calc" / "__init__.py").write_text(
            "# changed after the run\n" + (repo / "src" / "calc" / "__init__.py").read_text())
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "change")
        rc, out, err = await pas(nats_server.url, "rerun", "par1", "--run-id", "par1-r2", "--json")
        rep = json.loads(out)
        div = rep["divergence"]
        assert rc == 1 and rep["status"] == "cancelled" and rep["replayed_calls"] == 2, rep
        assert div["agent"].startswith("prog-") and div["call"] == 1 and div["action"] == "stop"
        assert div["expected"]["agent"].startswith("prog-") and div["expected"]["index"] == 3
        assert div["message_index"] == 1 and div["role"] == "user"
        assert "+# changed after the run" in div["diff"]
        assert len(fake_llm.requests) == asked
        # --on-diverge live: the diverging call goes to the model, the rest is replayed
        rc, out, err = await pas(nats_server.url, "rerun", "par1", "--run-id", "par1-r3", "--on-diverge", "live",
                                 "--json")
        rep = json.loads(out)
        assert rc == 0 and rep["status"] == "completed" and rep["replayed_calls"] == 2 and rep["live_calls"] == 1
        assert rep["tokens"] == 260 and rep["divergence"]["action"] == "live"
        assert len(fake_llm.requests) == asked + 1 and fake_llm.requests[-1].model == "pp"
    finally:
        await st.stop()


EDIT_FORK = EDIT_OK.replace("return b + a", "return int(a) + int(b)").replace("2 * x", "x + x")


async def test_fork_from_a_step_and_diff(nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path) -> None:
    fake_llm.default("pp2", Reply(EDIT_FORK, prompt_tokens=150, completion_tokens=50))
    st, repo = await planned_and_edited(nats_server, client, fake_llm, tmp_path)
    st.cfg.models["pp2"] = fake_llm.profile("pp2")
    st.llm.client.profiles["pp2"] = fake_llm.profile("pp2")  # the agents know the fork's model
    try:
        asked = len(fake_llm.requests)
        rc, out, err = await pas(nats_server.url, "rerun", "par1", "--run-id", "fork1", "--from", "task:code-1-01",
                                 "--model", "prog=pp2", "--set", "title=forked", "--json")
        rep = json.loads(out)
        assert rc == 0 and rep["status"] == "completed", out + err
        # the plan replayed (architect, director), the programmers live on the other model
        assert rep["replayed_calls"] == 2 and rep["live_calls"] == 1 and rep["tokens"] == 200
        assert rep["divergence"] is None
        assert [r.model for r in fake_llm.requests[asked:]] == ["pp2"]
        assert (await client.status("fork1"))["title"] == "forked"
        rc, out, _ = await pas(nats_server.url, "diff", "par1", "fork1", "--json")
        d = json.loads(out)
        assert rc == 1 and not d["same"] and d["plan"]["same"] and d["status"] == ["completed", "completed"]
        assert d["tokens"] == [480, 200] and d["llm_calls"] == [3, 1]
        [t] = d["tasks"]
        assert t["task_id"] == "code-1-01" and t["same_outcome"] is False and t["same_diff"] is False
        assert "+    return b + a" in t["diff_a"] and "+    return int(a) + int(b)" in t["diff_b"]
        assert t["diff_b"] == git(repo, "show", "--format=", "--no-color", "pas/fork1/code-1-01")
        rc, text, _ = await pas(nats_server.url, "diff", "par1", "fork1")
        assert "plan: same" in text and "task code-1-01: completed vs completed, diff different" in text
        assert "tokens: 480 vs 200" in text
        # a fork at the plan with a changed goal: the architect goes live, and every prompt downstream of
        # it (no recording: the fork's consequence, not a divergence) goes live too
        fake_llm.script("pa", Reply(PLAN_A.replace("double", "triple")))
        fake_llm.script("pd", Reply(PLAN_D.replace("double", "triple")))
        asked = len(fake_llm.requests)
        rc, out, err = await pas(nats_server.url, "rerun", "par1", "--run-id", "fork2", "--from", "architect",
                                 "--set", "goal=Give calc a triple() helper", "--json")
        rep = json.loads(out)
        assert rc == 0 and rep["status"] == "completed" and rep["divergence"] is None, out + err
        assert rep["replayed_calls"] == 0 and rep["live_calls"] == 3
        assert [r.model for r in fake_llm.requests[asked:]] == ["pa", "pd", "pp"]
        assert "triple" in fake_llm.requests[asked].messages[-1]["content"]
        rc, out, _ = await pas(nats_server.url, "diff", "par1", "fork2", "--json")
        d = json.loads(out)
        assert rc == 1 and not d["plan"]["same"] and "triple" in json.dumps(d["plan"]["jobs"]["code-1"]["b"])
        # a faithful rerun is the same as its parent
        rc, _, err = await pas(nats_server.url, "rerun", "par1", "--run-id", "par1-r1")
        assert rc == 0, err
        rc, out, _ = await pas(nats_server.url, "diff", "par1", "par1-r1", "--json")
        d = json.loads(out)
        assert rc == 0 and d["same"] and d["tokens"] == [480, 0]
    finally:
        await st.stop()


async def test_replay_rerun_diff_with_permissions_on(tmp_path: Path, fake_llm: Any) -> None:
    """NATS users on (the default of `pas up`): recordings written as each tier's user, replay/rerun/diff as
    `client`, the timeline endpoint as `adapter`, with no permission violation."""
    import httpx

    from pas.transport.client import PasClient
    from tests.http_support import free_port_offset

    fake_llm.script("pa", Reply('{"lanes": [{"lane": "docs", "brief": "document the API"}]}'))
    fake_llm.script("pd", Reply('{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"}]}]}'))
    cfg = swarm_cfg(fake_llm, architect="pa", dir_docs="pd")
    cfg.settings.nats.port = -1
    cfg.settings.http.port_offset = free_port_offset(cfg)
    cfg.settings.nats.data_dir = str(tmp_path / "data")
    st = Stack(cfg, only=["monitor", "gateway", "root", "architect", "dir-docs", "mgr-docs-01", "prog-001"], http=True)
    await st.start()
    env = {"PAS_CREDS_DIR": str(tmp_path / "data" / "creds")}
    try:
        client = await PasClient.connect(st.url or "", 10, creds=st.creds["client"])
        try:
            await client.submit({"title": "docs", "goal": "Document the calc API", "run_id": "sec1"})
            assert (await client.wait("sec1", timeout_s=60))["status"] == "completed"
        finally:
            await client.close()
        url = st.url or ""
        rc, out, err = await pas(url, "replay", "sec1", "--json", env=env)
        assert rc == 0 and len(json.loads(out)["llm_calls"]) == 2, err
        rc, _, err = await pas(url, "replay", "sec1", "--rebuild", env=env)
        assert rc == 0, err
        rc, out, err = await pas(url, "replay", "sec1", "--speed", "0", env=env)
        assert rc == 0 and "re-published" in out, err
        asked = len(fake_llm.requests)
        rc, out, err = await pas(url, "rerun", "sec1", "--run-id", "sec1-r1", "--json", env=env)
        assert rc == 0 and json.loads(out)["replayed_calls"] == 2, out + err
        assert len(fake_llm.requests) == asked
        rc, out, err = await pas(url, "diff", "sec1", "sec1-r1", env=env)
        assert rc == 0 and "plan: same" in out, out + err
        async with httpx.AsyncClient(timeout=30) as h:
            r = await h.get(f"{st.http_server.url('hmi')}/api/runs/sec1/timeline")  # type: ignore[union-attr]
            assert r.status_code == 200 and r.json()["status"] == "completed"
    finally:
        await st.stop()
    text = (tmp_path / "data" / "nats-server.log").read_text()
    assert "Publish Violation" not in text and "Subscription Violation" not in text, \
        [ln for ln in text.splitlines() if "Violation" in ln][:5]
