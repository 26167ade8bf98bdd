"""`pas eval`: the task set is sound, and the harness's verdicts are exact against a scripted model
(tests/eval_oracle.py on the fake OpenAI-compatible server; real nats-server, real agents, real git)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pas.base.errors import PasError
from pas.execution.integrate import checkout, integrate
from pas.surfaces.eval.report import estimate_cost, render_html, summarize, table
from pas.surfaces.eval.runner import EvalOptions, run_eval
from pas.surfaces.eval.tasks import CATEGORIES, load_tasks, make_repo, run_hidden
from pas.surfaces.stack import Stack
from tests.conftest import make_cfg
from tests.eval_oracle import Oracle

ALL = load_tasks()


def test_task_set_is_sound(tmp_path: Path) -> None:
    """At least 20 tasks over every category; each hidden suite fails on the repository as given and
    passes with the reference solution laid over it; hidden files never ship in the repository."""
    assert len(ALL) >= 20
    assert {t.category for t in ALL} == set(CATEGORIES)
    assert sum(1 for t in ALL if len(t.solution()) > 1) >= 5  # multi-file features, parallel parts
    assert {"docs", "devsecops", "data"} <= {ln for t in ALL for ln in t.lanes}
    for t in ALL:
        assert not any(f.startswith("test_hidden") for f in t.files), t.name
        before = run_hidden(t, make_repo(t, tmp_path / t.name / "before"))
        assert not before.passed, f"{t.name}: hidden tests pass before any change"
        fixed = tmp_path / t.name / "fixed"
        shutil.copytree(t.repo_dir, fixed)
        for rel, content in t.solution().items():
            (fixed / rel).parent.mkdir(parents=True, exist_ok=True)
            (fixed / rel).write_text(content)
        after = run_hidden(t, fixed)
        assert after.passed, f"{t.name}: reference solution fails: {after.output[-800:]}"
        visible = subprocess.run([sys.executable, "-m", *t.acceptance.split()[2:]], cwd=fixed,
                                 capture_output=True, text=True)
        assert t.acceptance.startswith("python -m ") and visible.returncode == 0, (t.name, visible.stderr[-500:])


def test_bad_task_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "task.yaml").write_text("goal: x\ncategory: nope\n")
    with pytest.raises(PasError, match=r"broken: task\.yaml missing"):
        load_tasks(tmp_path)
    with pytest.raises(PasError, match="no task in"):
        load_tasks(tmp_path, "zzz*")


def test_integrate_merges_in_order_and_reports_conflicts(tmp_path: Path) -> None:
    [t] = load_tasks(pattern="feat-shapes")
    repo = make_repo(t, tmp_path / "r")

    def branch(name: str, path: str, content: str) -> None:
        subprocess.run(["git", "branch", name, "main"], cwd=repo, check=True)
        wt = tmp_path / name.replace("/", "_")
        subprocess.run(["git", "worktree", "add", "-q", str(wt), name], cwd=repo, check=True)
        (wt / path).write_text(content)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", name], cwd=wt,
                       check=True)

    sol = t.solution()
    branch("pas/r1/code-1-01", "shapes/circle.py", sol["shapes/circle.py"])
    branch("pas/r1/code-1-02", "shapes/square.py", sol["shapes/square.py"])
    branch("pas/r1/code-1-03", "shapes/square.py", "class Square:\n    pass\n")
    tasks = [{"task_id": f"code-1-0{i}", "status": "completed", "branch": f"pas/r1/code-1-0{i}"} for i in (1, 2, 3)]
    tasks.append({"task_id": "code-1-04", "status": "failed", "branch": "pas/r1/code-1-01"})
    res = integrate(repo, "r1", tasks)
    assert res.merged == ["code-1-01", "code-1-02"] and res.skipped == ["code-1-04"]
    assert [str(c) for c in res.conflicts] == ["task code-1-03 conflicts in shapes/square.py (branch pas/r1/code-1-03)"]
    assert res.reason().startswith("merge conflict: task code-1-03")
    out = checkout(repo, "pas/r1/result", tmp_path / "out")
    assert (out / "shapes/square.py").read_text() == sol["shapes/square.py"]
    assert run_hidden(t, out).passed


SUBSET = ["fix-add", "fix-clamp", "feat-shapes", "tests-kv", "trap-default-port"]
SCENARIOS = {"fix-add": "right", "fix-clamp": "wrong", "feat-shapes": "right", "tests-kv": "wrong",
             "trap-default-port": "conflict"}


def eval_cfg(fake_llm: Any) -> Any:
    cfg = make_cfg()
    cfg.models["evalm"] = fake_llm.profile("evalm")
    return cfg


async def test_verdicts_swarm_and_solo(nats_server: Any, fake_llm: Any, tmp_path: Path) -> None:
    tasks = [t for t in ALL if t.name in SUBSET]
    Oracle(tasks, SCENARIOS).install(fake_llm, "evalm")
    opts = EvalOptions(profile="evalm", modes=("swarm", "solo"), programmers=2, env=sys.executable,
                       workdir=tmp_path / "w", timeout_s=120)
    res = await run_eval(eval_cfg(fake_llm), tasks, opts, url=nats_server.url)
    got = {(o.task, o.mode): o for o in res}
    assert len(got) == 10
    verdicts = {k: o.passed for k, o in got.items()}
    assert verdicts == {
        ("fix-add", "swarm"): True, ("fix-add", "solo"): True,
        ("feat-shapes", "swarm"): True, ("feat-shapes", "solo"): True,
        ("fix-clamp", "swarm"): False, ("fix-clamp", "solo"): False,
        ("tests-kv", "swarm"): False, ("tests-kv", "solo"): False,
        ("trap-default-port", "swarm"): False, ("trap-default-port", "solo"): True,  # solo: no parallel branches
    }
    conflict = got[("trap-default-port", "swarm")]
    assert conflict.reason == (f"merge conflict: task code-1-03 conflicts in defaults.py "
                               f"(branch pas/{conflict.run_id}/code-1-03)"), conflict.reason
    assert conflict.run_status == "failed" and conflict.merged == 2  # the swarm's root failed the run
    # tests-kv's wrong edit passes the visible acceptance (the swarm says completed); the hidden tests fail it
    kv = got[("tests-kv", "solo")]
    assert kv.run_status == "completed" and kv.reason.startswith("hidden tests failed"), kv
    assert got[("fix-clamp", "solo")].run_status == "failed"
    assert got[("fix-clamp", "solo")].result_branch is None  # no completed task changed anything: main is tested
    # the parallel parts of a multi-file feature were merged
    assert got[("feat-shapes", "swarm")].merged == 2 and got[("feat-shapes", "solo")].merged == 1
    shapes = got[("feat-shapes", "swarm")]
    assert shapes.result_branch == f"pas/{shapes.run_id}/result"
    merged_files = subprocess.run(["git", "diff", "--name-only", "main", shapes.result_branch], capture_output=True,
                                  text=True, cwd=tmp_path / "w" / shapes.run_id).stdout.split()
    assert merged_files == ["shapes/circle.py", "shapes/square.py"]
    # LLM calls per tier: solo never calls a planner; the swarm calls each tier
    assert set(got[("fix-add", "solo")].llm_calls) == {"programmer"}
    assert got[("fix-add", "swarm")].llm_calls == {"architect": 1, "director": 1, "manager": 1, "programmer": 1}
    assert got[("fix-clamp", "solo")].llm_calls == {"programmer": 4}  # 1 + max_fix_iterations
    for o in res:
        assert o.tokens == sum(o.tokens_by_tier.values()) > 0 and o.wall_s > 0
    # no hidden test content was ever shown to a model
    hidden_lines = {ln.strip() for t in tasks for f in t.hidden_dir.glob("*.py")
                    for ln in f.read_text().splitlines() if "assert" in ln}
    prompts = [r.text() for r in fake_llm.requests]
    assert len(prompts) >= 20 and hidden_lines
    leaked = [ln for ln in hidden_lines if any(ln in p for p in prompts)]
    assert leaked == []
    # runs are ordinary PAS runs: the verdict is in the run's comms log
    log = subprocess.run([sys.executable, "-m", "pas", "log", "--run", conflict.run_id, "--nats-url",
                          nats_server.url], capture_output=True, text=True, timeout=60)
    assert "verdict FAIL: merge conflict" in log.stdout, log.stdout[-2000:] + log.stderr[-2000:]
    assert f"integrated 2 task branch(es) into pas/{conflict.run_id}/result; merge conflict" in log.stdout
    async with Stack(make_cfg(), url=nats_server.url, only=["gateway"]):  # `pas status` asks the gateway
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pas", "status", conflict.run_id,
                                                    "--nats-url", nats_server.url, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), 60))
    assert f"result: pas/{conflict.run_id}/result" in out, out + err
    assert "conflict: task code-1-03 conflicts in defaults.py" in out
    # the report
    s = summarize(res)
    assert s["modes"]["swarm"]["pass_rate"]["mean"] == pytest.approx(0.4)
    assert s["modes"]["solo"]["pass_rate"]["mean"] == pytest.approx(0.6)
    text = table(res)
    assert "trap-default-port" in text and "merge conflict" in text
    html = render_html(res)
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    est = estimate_cost(res, 0.15, 0.60)
    assert est["per_task_usd"]["swarm"] > 0 and json.dumps(est)


def test_summary_over_repeats() -> None:
    from pas.surfaces.eval.runner import Outcome

    def o(task: str, rep: int, passed: bool, cost: float | None) -> Outcome:
        return Outcome(task=task, category="fix", mode="solo", repeat=rep, run_id=f"r{rep}{task}", passed=passed,
                       reason="", run_status="completed", wall_s=1.0, tokens=10, cost_usd=cost,
                       llm_calls={"programmer": 2})

    res = [o("a", 1, True, 0.5), o("b", 1, True, 0.5), o("a", 2, True, 0.5), o("b", 2, False, None)]
    m = summarize(res)["modes"]["solo"]
    assert m["pass_rate"]["per_repeat"] == [1.0, 0.5]
    assert m["pass_rate"]["mean"] == 0.75 and m["pass_rate"]["stdev"] == 0.25
    assert (m["pass_rate"]["min"], m["pass_rate"]["max"]) == (0.5, 1.0)
    assert m["cost_usd"] is None and m["tokens"] == 40 and m["llm_calls"] == {"programmer": 8}  # one unknown cost


def test_cli_end_to_end(fake_llm: Any, tmp_path: Path) -> None:
    """`pas eval` as a user runs it (embedded nats-server with NATS users, a packaged profile pointed
    at the fake server, two runs at once): JSON and HTML written, repeats counted, litellm's price
    for the profile applied."""
    [t] = load_tasks(pattern="fix-add")
    Oracle([t]).install(fake_llm, "gpt-4o-mini")
    from tests.fakellm import API_KEY_ENV

    out_json, out_html = tmp_path / "e.json", tmp_path / "e.html"
    p = subprocess.run([sys.executable, "-m", "pas", "eval", "--tasks", "fix-add", "--mode", "both", "--repeat", "2",
                        "--model", "gpt-4o-mini", "--programmers", "2", "--parallel", "2",
                        "--json", str(out_json), "--html",
                        str(out_html), "--workdir", str(tmp_path / "w"), "--env", sys.executable,
                        "-c", f"models.gpt-4o-mini.api_base={fake_llm.api_base}",
                        "-c", f"models.gpt-4o-mini.api_key_env={API_KEY_ENV}"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    data = json.loads(out_json.read_text())
    assert [(r["mode"], r["repeat"], r["passed"]) for r in data["runs"]] == [
        ("swarm", 1, True), ("swarm", 2, True), ("solo", 1, True), ("solo", 2, True)]
    assert data["modes"]["swarm"]["llm_calls"] == {"architect": 2, "director": 2, "manager": 2, "programmer": 2}
    assert data["modes"]["solo"]["pass_rate"]["per_repeat"] == [1.0, 1.0]
    assert data["modes"]["solo"]["cost_usd"] > 0  # litellm knows gpt-4o-mini's price
    assert data["cost_estimate"]["label"] == "estimate"
    assert "fix-add" in p.stdout and "pass rate" in p.stdout and "<svg" in out_html.read_text()
    bad = subprocess.run([sys.executable, "-m", "pas", "eval", "--model", "nope", "--tasks", "fix-add"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no model profile 'nope'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "pas", "eval", "--budget", "tokens=x"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "--budget: cannot read 'tokens=x'" in bad.stderr
