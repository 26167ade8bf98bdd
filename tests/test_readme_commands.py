"""Every command in README.md's bash blocks, run as a reader runs it: in a non-interactive shell (`bash -c`,
no terminal, stdin closed), from a checkout (a clone of this one with its own `.venv`), against one `pas up`
started in the background as the README starts it (plus the documented flags for a free server port and
HTTP port range; client commands reach it through PAS_NATS_URL). Placeholders come from real runs (RUN_ID, A,
/path/to/repo) and the README's ports are shifted by the same offset. Each command must end as the text
beside it says. The commands run side by side (those that only read first, then those that start runs),
and each test reports its own command's outcome.

A command this machine cannot run (another tool, model keys, other machines, an hour of benchmarks) is in
ELSEWHERE with the test that runs it (or its part) or the reason none can; a README command in neither table
fails test_every_readme_command_is_known, so a new example cannot go untested unnoticed. subjects.md has
no command blocks: its `nats` examples are run by tests/test_natscli.py::test_documented_command."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pas.config.model import load_config
from tests.cli_support import dead_port
from tests.conftest import ROOT
from tests.http_support import BROWSER_ARGS, CHROMIUM, free_port_offset
from tests.natscli_support import until_all_listed

AGENTS = [a.id for a in load_config().agents]
TOOLS = [os.path.expanduser("~/.local/share/pas/bin"), os.path.expanduser("~/.local/bin")]


# ---- the README's commands ------------------------------------------------------------------
def readme_commands() -> list[str]:
    """Each command of the bash blocks as written: continuation lines joined, a heredoc kept with its
    command, several commands on one line (2+ spaces apart) split, comments dropped."""
    out: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S):
        lines = [re.sub(r"\s{2,}#.*$", "", ln) for ln in block.replace("\\\n", " ").splitlines()]
        while lines:
            line = lines.pop(0)
            while line.count("'") % 2 and lines:  # a quoted argument that goes on on the next line
                line += " " + lines.pop(0)
            m = re.search(r"<<'(\w+)'$", line)
            if m:  # a heredoc: its body up to the delimiter
                body = []
                while lines and lines[0] != m.group(1):
                    body.append(lines.pop(0))
                line = "\n".join([line, *body, lines.pop(0)])
            line = line.strip()
            parts = re.split(r"\s{6,}(?=(?:pas|curl) )", line) if "\n" not in line else [line]
            out += [re.sub(r"\s+", " ", p) if "\n" not in p else p for p in parts if p]
    return list(dict.fromkeys(out))


# ---- the reader's machine ------------------------------------------------------------------------
@dataclass
class Reader:
    """A clone of the checkout with `pas up` running in it, and a shell to run the README's commands."""

    home: Path
    port: int
    offset: int
    env: dict[str, str]
    up: subprocess.Popen[bytes] | None = None
    runs: dict[str, str] = field(default_factory=dict)

    def text(self, cmd: str, run_id: str = "") -> str:
        """The command with its placeholders filled and the README's ports shifted."""
        cmd = re.sub(r"127\.0\.0\.1:(61\d\d)", lambda m: f"127.0.0.1:{int(m.group(1)) + self.offset}", cmd)
        return cmd.replace("RUN_ID", run_id).replace("/path/to/repo", str(self.home))

    def sh(self, cmd: str, run_id: str = "", user: str | None = None, timeout: float = 90
           ) -> subprocess.CompletedProcess[str]:
        """`bash -c` in the checkout, after `source .venv/bin/activate` (and `eval "$(pas creds USER)"`)."""
        pre = "source .venv/bin/activate" + (f' && eval "$(pas creds {user})"' if user else "")
        return subprocess.run(["bash", "-c", f"{pre} && {self.text(cmd, run_id)}"], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, cmd: str, run_id: str = "", **kw: Any) -> str:
        r = self.sh(cmd, run_id, **kw)
        assert r.returncode == 0, f"{cmd!r} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def status(self, run_id: str) -> dict[str, Any]:
        return json.loads(self.ok(f"pas status {run_id} --json"))

    def wait(self, run_id: str, statuses: tuple[str, ...] = ("completed", "failed", "cancelled", "rejected"),
             timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.status(run_id)
            if st["status"] in statuses:
                return st
            assert time.monotonic() < deadline, f"{run_id} still {st['status']}"
            time.sleep(0.2)

    def submit(self, *args: str) -> str:
        return self.ok(shlex.join(["pas", "submit", *args])).split()[0]

    def running(self) -> str:
        rid = self.submit("to cancel", "--task", "code:sleep 60")
        self.wait(rid, ("running",))
        return rid

    def waiting(self) -> str:
        rid = self.submit("to decide", "--approval", "--task", "code:true", "--task", "docs:true")
        self.wait(rid, ("waiting_approval",))
        return rid


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    home = tmp_path_factory.mktemp("reader") / "pas"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(home)], check=True, timeout=120)
    uv = ROOT / ".venv" / "bin" / "uv"  # scripts/setup.sh installs it; the clone's own .venv, as a reader has
    subprocess.run([str(uv), "venv", "-q", str(home / ".venv")], check=True, timeout=120)
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(home / ".venv" / "bin" / "python"), "-e",
                    f"{home}[dev]"], check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAS_", "NATS_"))}
    env["PATH"] = os.pathsep.join([*TOOLS, env["PATH"]])
    env["XDG_CONFIG_HOME"] = str(home.parent / "xdg")  # natscli contexts of `pas creds`, never the user's
    r = Reader(home, dead_port(), free_port_offset(load_config()), env)
    log = home.parent / "up.log"
    with log.open("wb") as fh:  # README: `pas up`, with a free port and port range (documented flags)
        r.up = subprocess.Popen(["bash", "-c", f"source .venv/bin/activate && exec pas up --nats-port {r.port} "
                                 f"-c settings.http.port_offset={r.offset}"], cwd=home, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    r.env = {**env, "PAS_NATS_URL": f"nats://127.0.0.1:{r.port}"}
    try:
        deadline = time.monotonic() + 120
        while " agents up on " not in log.read_text():
            assert r.up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        r.runs["up.log"] = str(log)
        yield r
    finally:
        r.up.terminate()
        try:
            r.up.wait(60)
        except subprocess.TimeoutExpired:
            r.up.kill()
            r.up.wait()


@pytest.fixture(scope="module")
def done_run(reader: Reader) -> str:
    """The README's own first job (`pas submit "check" ... --repo . --wait`): its id is RUN_ID below."""
    cmd = next(c for c in readme_commands() if c.startswith('pas submit "check"'))
    out = reader.ok(cmd)
    rid = out.splitlines()[0].strip()
    assert f"run {rid} COMPLETED" in out, out
    return rid


# ---- what each command must do --------------------------------------------------------------------
def _up(r: Reader, cmd: str, rid: str) -> None:
    text = Path(r.runs["up.log"]).read_text()
    assert re.search(rf"^pas: 26 agents up on nats://127\.0\.0\.1:{r.port} \(embedded nats-server, NATS users on",
                     text, re.M), text


def _activate(r: Reader, cmd: str, rid: str) -> None:
    assert r.ok("command -v pas").strip() == str(r.home / ".venv" / "bin" / "pas")


def _submit_check(r: Reader, cmd: str, rid: str) -> None:
    assert r.status(rid)["status"] == "completed"  # done_run ran it


def _status(r: Reader, cmd: str, rid: str) -> None:
    assert r.ok(cmd, rid).startswith(f"run {rid} COMPLETED  (check)")


def _runs(r: Reader, cmd: str, rid: str) -> None:
    out = r.ok(cmd).splitlines()
    assert out[0].split() == ["RUN", "STATUS", "CREATED", "TITLE"] and any(ln.startswith(f"{rid}  ") for ln in out)


def _cancel(r: Reader, cmd: str, rid: str) -> None:
    running = r.running()
    assert r.ok(cmd, running).strip() == f"{running} cancelled"


def _agents(r: Reader, cmd: str, rid: str) -> None:
    rows = r.ok(cmd).splitlines()[1:]
    assert sorted(row.split()[0] for row in rows) == sorted(AGENTS), rows


def _log(r: Reader, cmd: str, rid: str) -> None:
    base = cmd.split(" [")[0]
    for extra, check in ((" --agent gateway", lambda e: "gateway" in (e["from_agent"], e["to_agent"])),
                         (" --type CMD", lambda e: e["msg_type"] == "CMD"), (" --since 10m", lambda e: True),
                         (" --follow", lambda e: True), ("", lambda e: True)):
        lines = r.ok(base + extra + " --json", rid, timeout=60).splitlines()  # --follow ends: the run has ended
        entries = [json.loads(x) for x in lines]
        assert entries and all(e["run_id"] == rid and check(e) for e in entries), (extra, lines)
    text = r.ok(base, rid).splitlines()
    assert text and all(rid in ln for ln in text) and f"run {rid} completed" in text[-1], text


def _mcp(r: Reader, cmd: str, rid: str) -> None:
    p = r.sh(cmd, timeout=120)  # stdin closed: the stdio server ends, having written nothing but MCP
    assert p.returncode == 0 and p.stdout == "", (p.stdout, p.stderr)


def _creds(r: Reader, cmd: str, rid: str) -> None:
    user = cmd.split("creds ")[1].split(")")[0]
    env = r.ok(cmd + " && env")
    assert f"NATS_CONTEXT=pas-{user}\n" in env and f"NATS_USER={user}\n" in env, env


def _as(user: str, cmd: str) -> str:
    return f'eval "$(pas creds {user})" && {cmd}'


def _micro_ls(r: Reader, cmd: str, rid: str) -> None:
    outs: list[str] = []

    def names(out: str) -> set[str]:
        outs.append(out)
        return {a for a in AGENTS if a in out}

    assert until_all_listed(lambda: r.ok(_as("client", cmd)), names, AGENTS) == set(AGENTS), "\n".join(outs)


def _micro_one(r: Reader, cmd: str, rid: str) -> None:
    p = r.sh(_as("client", cmd))
    assert p.returncode == 0 and "mgr-code-01" in p.stdout and "Violation" not in p.stderr, p


def _req_submit(r: Reader, cmd: str, rid: str) -> None:
    p = r.sh(_as("client", cmd))
    assert p.returncode == 0 and "Violation" not in p.stderr, p.stderr
    reply = json.loads(p.stdout)
    assert reply["status"] == "queued" and r.wait(reply["run_id"])["status"] == "completed", reply


def _pub_submit(r: Reader, cmd: str, rid: str) -> None:
    p = r.sh(_as("client", cmd))
    assert p.returncode == 0 and "Violation" not in p.stderr, p.stderr
    deadline = time.monotonic() + 60
    while "no reply wanted" not in r.ok("pas runs --limit 100"):
        assert time.monotonic() < deadline, "the published job never became a run"
        time.sleep(0.2)


def _req_status(r: Reader, cmd: str, rid: str) -> None:
    p = r.sh(_as("client", cmd), rid)
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == "completed", p


def _stream_view(r: Reader, cmd: str, rid: str) -> None:
    p = r.sh(_as("client", cmd))  # "(needs a terminal)": without one, natscli says so
    assert p.returncode != 0 and "requires a valid terminal" in p.stderr, p.stderr


def _sub_hb(r: Reader, cmd: str, rid: str) -> None:
    out = r.ok(_as("adapter", f"{cmd} --count 3"), timeout=60)  # heartbeats: 26 agents, every few seconds
    assert out.count("Received on") == 3 and "pas.hb." in out, out


def _kv_get(r: Reader, cmd: str, rid: str) -> None:
    assert json.loads(r.ok(_as("admin", cmd), rid))["run_id"] == rid


def _approval_submit(r: Reader, cmd: str, rid: str) -> None:
    new = r.ok(cmd).split()[0]
    assert r.wait(new, ("waiting_approval",))["status"] == "waiting_approval"
    r.runs["approval"] = new


def _plan(r: Reader, cmd: str, rid: str) -> None:
    new = r.runs.get("approval") or r.waiting()
    out = r.ok(cmd, new)
    assert "approval: pending" in out and "code-1-01" in out and "docs-1-01" in out, out
    r.runs["approval"] = new


def _approve(r: Reader, cmd: str, rid: str) -> None:
    cmd_sub = next(c for c in readme_commands() if c.startswith('pas submit "refactor"'))
    new = r.ok(cmd_sub).split()[0]
    r.wait(new, ("waiting_approval",))
    assert r.ok(cmd, new).strip() == f"{new} running (dropped docs-1-01)"
    st = r.wait(new)  # the README's pytest task passes in the repository it names
    assert st["status"] == "completed", [(t["task_id"], t["status"], t.get("error"), t.get("output"), t.get("env"))
                                         for t in st["tasks"]]
    assert {t["task_id"]: t["status"] for t in st["tasks"]} == {"code-1-01": "completed", "docs-1-01": "skipped"}


def _reject(r: Reader, cmd: str, rid: str) -> None:
    new = r.waiting()
    assert r.ok(cmd, new).strip() == f"{new} rejected"
    assert r.status(new)["message"].startswith(f"rejected by user {os.environ.get('USER') or ''}".rstrip())


def _model_set(r: Reader, cmd: str, rid: str) -> None:
    base = cmd.split(" [")[0]
    assert r.ok(base).startswith("mgr-code-01: model=claude-sonnet ")
    assert "backup=claude-sonnet" in r.ok(base + " --backup")
    r.ok("pas model set mgr-code-01 gemini-flash && pas model set mgr-code-01 claude-haiku --backup")


def _curl_json(r: Reader, cmd: str, rid: str) -> Any:
    return json.loads(r.ok(cmd + " --silent --show-error --fail", rid))


def _curl_health(r: Reader, cmd: str, rid: str) -> None:
    assert _curl_json(r, cmd, rid)["agent"] == "mgr-code-01"


def _prime(r: Reader, cmd: str, rid: str) -> None:
    new = _curl_json(r, cmd, rid)["run_id"]
    st = r.wait(new)  # no model key: not planned, and it says so
    assert st["status"] == "completed" and st["degraded"] and "missing API key" in st["message"], st
    assert st["tasks"] and all(t["output"].startswith("not planned by a model") for t in st["tasks"]), st
    text = r.ok(f"pas status {new}")
    assert f"run {new} COMPLETED (degraded)" in text and "\ndegraded: " in text, text


def _curl_run(r: Reader, cmd: str, rid: str) -> None:
    assert _curl_json(r, cmd, rid)["status"] == "completed"


def _curl_runs(r: Reader, cmd: str, rid: str) -> None:
    runs = _curl_json(r, cmd, rid)["runs"]
    assert 0 < len(runs) <= 10 and {x["status"] for x in runs} == {"completed"}, runs


def _curl_token(r: Reader, cmd: str, rid: str) -> None:
    assert rid in [x["run_id"] for x in _curl_json(r, cmd, rid)["runs"]]


def _curl_cancel(r: Reader, cmd: str, rid: str) -> None:
    running = r.running()
    assert _curl_json(r, cmd, running)["status"] == "cancelled"


def _docs(r: Reader, cmd: str, rid: str) -> None:
    """`open URL` is a desktop's; the page is checked in Chromium with every request off this host refused."""
    import asyncio

    from playwright.async_api import async_playwright

    url = r.text(cmd).split()[1]

    async def view() -> tuple[int, list[str]]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
            try:
                page = await browser.new_page()
                outside: list[str] = []

                async def only_local(route: Any) -> None:
                    if route.request.url.startswith("http://127.0.0.1:"):
                        await route.continue_()
                    else:
                        outside.append(route.request.url)
                        await route.abort()

                await page.route("**/*", only_local)
                await page.goto(url)
                await page.wait_for_selector(".opblock", timeout=30000)
                return await page.locator(".opblock").count(), outside
            finally:
                await browser.close()

    ops, outside = asyncio.run(view())
    assert ops >= 10 and outside == [], (ops, outside)


def _card(r: Reader, cmd: str, rid: str) -> None:
    card = _curl_json(r, cmd, rid)
    assert [s["name"] for s in card["skills"]] == ["run a software job"], card


def _a2a(r: Reader, cmd: str, rid: str) -> None:
    res = _curl_json(r, cmd, rid)["result"]
    assert res["kind"] == "task" and res["status"]["state"] == "completed", res
    [final] = [p["data"] for a in res["artifacts"] for p in a["parts"] if "data" in p]
    assert all(type(t["exit_code"]) is int for t in final["tasks"]), final


def _replay(r: Reader, cmd: str, rid: str) -> None:
    out = r.ok(cmd, rid, timeout=60)
    if cmd.endswith("--json"):
        assert json.loads(out)["run_id"] == rid
    elif "--html" in cmd:
        assert 'id="gantt"' in (r.home / "run.html").read_text()
    elif "--speed" in cmd:
        assert out.startswith("pas: re-published ") and f"pas.replay.{rid}.>" in out, out
    elif "--rebuild" in cmd:
        assert out.strip().endswith("in KV: identical"), out
    elif "--follow" in cmd:  # a run that has ended: its steps, to the end
        # the ending is one write (the run record), which the server fans out twice: root's STATUS entry
        # (PAS_COMMS) and the run's terminal event (PAS_EVENTS); the two streams arrive in either order
        last = out.splitlines()[-2:]
        assert any(ln.endswith(f"root -> gateway: run {rid} completed") for ln in last), out
        assert any(ln.split()[2:6] == ["root", "root", "run", "completed"] for ln in last), out
    else:
        assert out.startswith(f"run {rid} 'check' completed in "), out


def _rerun(r: Reader, cmd: str, rid: str) -> None:
    parent = r.submit("to rerun", "--task", "code:true")
    r.wait(parent)
    p = r.sh(cmd, parent, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    if "--json" in cmd:
        assert json.loads(p.stdout)["status"] == "completed", p.stdout
    else:
        assert re.match(rf"run {parent}-r\d \(completed\): rerun of {parent}", p.stdout), p.stdout
    if "--from" not in cmd:
        d = r.sh(f"pas diff {parent} {parent}-r1")
        assert d.returncode == 0 and d.stdout.startswith(f"{parent} (completed) vs {parent}-r1 (completed): same")


def _diff(r: Reader, cmd: str, rid: str) -> None:
    r.ok(f"pas rerun {rid}", timeout=120)
    assert r.ok(cmd, rid).startswith(f"{rid} (completed) vs {rid}-r1 (completed): same")


RUN: dict[str, Callable[[Reader, str, str], None]] = {
    "source .venv/bin/activate": _activate,
    "pas up": _up,
    "pas submit \"check\" --task code:'python -m compileall -q pas' --task docs:'git log --oneline -3' --repo . --wait":
        _submit_check,
    "pas status RUN_ID": _status,
    "pas runs": _runs,
    "pas cancel RUN_ID": _cancel,
    "pas agents": _agents,
    "pas log --run RUN_ID [--agent A] [--type CMD] [--since 10m] [--follow] [--json]": _log,
    "pas mcp": _mcp,
    'eval "$(pas creds client)"': _creds,
    "nats micro ls": _micro_ls,
    "nats micro info mgr-code-01": _micro_one,
    "nats micro stats mgr-code-01": _micro_one,
    "nats req pas.gateway.submit '{\"title\":\"hello\",\"tasks\":[{\"lane\":\"code\",\"instruction\":\"true\","
    "\"command\":\"true\"}]}'": _req_submit,
    "nats req -H Nats-Msg-Id:k1 pas.gateway.submit '{\"title\":\"once\",\"tasks\":[{\"lane\":\"code\","
    "\"instruction\":\"true\",\"command\":\"true\"}]}'": _req_submit,
    "nats pub pas.gateway.submit '{\"title\":\"no reply wanted\",\"tasks\":[{\"lane\":\"code\","
    "\"instruction\":\"true\",\"command\":\"true\"}]}'": _pub_submit,
    "nats req pas.gateway.status '{\"run_id\":\"RUN_ID\"}'": _req_status,
    "nats stream view PAS_COMMS": _stream_view,
    'eval "$(pas creds adapter)"': _creds,
    "nats sub 'pas.hb.*'": _sub_hb,
    'eval "$(pas creds admin)"': _creds,
    "nats kv get pas_runs RUN_ID --raw": _kv_get,
    "pas submit \"refactor\" --approval --priority 20 --repo . --task code:'python -m pytest -q tests/test_names.py' "
    "--task docs:'git log --oneline -3'": _approval_submit,
    "pas plan RUN_ID": _plan,
    "pas approve RUN_ID --drop docs-1-01": _approve,
    'pas reject RUN_ID --reason "too broad"': _reject,
    "pas model set mgr-code-01 claude-sonnet [--backup]": _model_set,
    "curl 127.0.0.1:6141/health": _curl_health,
    'curl -H "Authorization: Bearer $(cat .pas/creds/http-token)" 127.0.0.1:6120/runs': _curl_token,
    "curl -X POST 127.0.0.1:6120/prime_directives -H 'Idempotency-Key: k2' -H 'content-type: application/json' -d "
    "'{\"title\":\"check\",\"goal\":\"run the tests\",\"repo_root\":\"/path/to/repo\"}'": _prime,
    "curl 127.0.0.1:6120/runs/RUN_ID": _curl_run,
    "curl '127.0.0.1:6120/runs?limit=10&status=completed'": _curl_runs,
    "curl -X POST 127.0.0.1:6120/runs/RUN_ID/cancel": _curl_cancel,
    "open http://127.0.0.1:6120/docs": _docs,
    "curl 127.0.0.1:6120/.well-known/agent-card.json": _card,
    "curl 127.0.0.1:6120/a2a -H 'content-type: application/json' -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
    "\"message/send\", \"params\":{\"message\":{\"role\":\"user\",\"messageId\":\"m1\",\"kind\":\"message\","
    "\"parts\":[{\"kind\":\"text\",\"text\":\"check the docs\"}]}}}'": _a2a,
    "pas replay RUN_ID": _replay,
    "pas replay RUN_ID --json": _replay,
    "pas replay RUN_ID --html run.html": _replay,
    "pas replay RUN_ID --follow": _replay,
    "pas replay RUN_ID --speed 10": _replay,
    "pas replay RUN_ID --rebuild": _replay,
    "pas rerun RUN_ID": _rerun,
    "pas rerun RUN_ID --on-diverge live --json": _rerun,
    "pas rerun RUN_ID --from task:code-1-01 --model prog=gpt-4o --set title=forked": _rerun,
    "pas diff RUN_ID RUN_ID-r1": _diff,
}

# command -> the test that runs it (or its part here), or why nothing can on this machine
ELSEWHERE: dict[str, str] = {
    "bash scripts/demo.sh": "tests/test_fresh_install.py::test_readme_demo_on_a_fresh_clone",
    "bash scripts/test.sh": "CI: .ci/run is this script",
    "bash scripts/test.sh -k pipeline": "CI: .ci/run is this script (here with pytest arguments)",
    "pas up --except 'prog-*' --http": "tests/test_multiproc.py::test_readme_multi_process_recipe_runs_a_job",
    "pas up --nats-url nats://127.0.0.1:4222 --only 'prog-*'":
        "tests/test_multiproc.py::test_readme_multi_process_recipe_runs_a_job",
    "cat > extra.yaml <<'YAML'\nagents:\n  - {id: prog-101, role: prog, model: qwen-coder-7b, backup_model: "
    "qwen-coder-14b}\n  - {id: prog-102, role: prog, model: qwen-coder-7b, backup_model: qwen-coder-14b}\nYAML":
        "tests/test_multiproc.py::test_overlay_programmers_from_the_readme_take_tasks",
    "pas up --nats-url nats://HOST:4222 --agents extra.yaml --only 'prog-1*'":
        "tests/test_multiproc.py::test_overlay_programmers_from_the_readme_take_tasks",
    "nats sub 'pas.run.RUN_ID.>'": "tests/test_natscli.py::test_documented_command (a run started after it)",
    "PAS_NODE_NAME=a PAS_HOST=0.0.0.0 PAS_CLIENT_PORT=4222 PAS_CLUSTER_PORT=6222 PAS_MONITOR_PORT=8222 "
    "PAS_ROUTES='[nats://a:6222, nats://b:6222, nats://c:6222]' PAS_STORE_DIR=/var/lib/pas-nats nats-server -c "
    "configs/nats/cluster.conf": "tests/test_compose.py::test_nats_server_accepts_the_config_with_each_nodes_environment"
                                 " (machines a, b, c: tests/test_cluster.py runs 3 nodes on one machine)",
    "export PAS_NATS_URL=nats://a:4222,nats://b:4222,nats://c:4222": "three machines: tests/test_cluster.py",
    "pas up --except 'prog-*' -c settings.nats.replicas=3": "three machines: tests/test_cluster.py",
    "pas up --only 'prog-*' --no-http -c settings.nats.replicas=3": "three machines: tests/test_cluster.py",
    "export GEMINI_API_KEY=... ANTHROPIC_API_KEY=... OPENAI_API_KEY=...":
        "model keys: tests/test_llm_pipeline.py::test_planning_at_every_tier_with_failover (a local model server)",
    'pas submit "add a median()" --goal "Add calc.median with tests" --repo path/to/repo --wait':
        "model keys: tests/test_llm_pipeline.py::test_llm_executor_edits_the_worktree (a local model server)",
    "pas up -c models.gemini-flash.model=ollama/qwen2.5-coder:7b-instruct -c "
    "models.gemini-flash.api_base=http://127.0.0.1:11434": "Ollama: tests/test_llm_pipeline.py (a local model server)",
    "PAS_MODEL_GPT_4O_API_BASE=http://127.0.0.1:8000/v1 pas up":
        "an OpenAI-compatible server: tests/test_llm.py (PAS_MODEL_* overrides)",
    "open http://127.0.0.1:6101/": "tests/test_hmi_browser.py::test_page_shows_every_agent_alive",
    'claude mcp add pas -- "$(command -v pas)" mcp --creds-dir "$PWD/.pas/creds"':
        "Claude Code: tests/test_mcp.py::test_with_nats_users_on_it_connects_as_client runs what it registers",
    "pas login": "tests/test_http_adapter.py::test_pas_up_serves_the_shifted_ports (with the port offset of its "
                 "pas up, which the README's command does not name)",
    "claude mcp add --transport http pas http://127.0.0.1:6120/mcp":
        "Claude Code: tests/test_mcp.py::test_mcp_over_streamable_http",
    'codex mcp add pas -- "$(command -v pas)" mcp --creds-dir "$PWD/.pas/creds"':
        "Codex CLI: tests/test_mcp.py::test_with_nats_users_on_it_connects_as_client",
    'code --add-mcp "{\\"name\\":\\"pas\\",\\"command\\":\\"$(command -v pas)\\",\\"args\\":[\\"mcp\\",\\"--creds-dir\\",'
    '\\"$PWD/.pas/creds\\"]}"': "VS Code: tests/test_mcp.py::test_with_nats_users_on_it_connects_as_client",
    "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 pas up":
        "tests/test_tracing.py::test_otel_variables_export_over_otlp_from_pas_up",
    "OTEL_TRACES_EXPORTER=console pas up": "tests/test_tracing.py::test_setting_and_variables_decide",
    "pas up -c settings.tracing.enabled=true": "tests/test_tracing.py::test_settings_tracing_exports_to_its_endpoint",
    "pas bench --quick": "tests/test_bench_pas.py::test_no_producer_failed_and_table_printed",
    "pas bench --json benchmarks/full.json --markdown BENCHMARKS.md": "the full run takes about an hour: BENCHMARKS.md",
    "python -m benchmarks --quick": "tests/test_bench_pas.py::test_no_producer_failed_and_table_printed",
    "pas bench --figure hmi --json hmi.json": "a 2,000-task job beside 5 Chromium pages, minutes: the figure "
        "runs in tests/test_bench_pas.py (pas bench --quick), the option in tests/test_bench_cli.py",
    "pas eval --model gpt-4o-mini --mode both --json eval.json --html eval.html":
        "model keys: tests/test_eval.py::test_cli_end_to_end (a local model server)",
    "pas eval --tasks 'fix-*,feat-*' --mode swarm --model qwen-coder-7b --programmers 4 --repeat 3":
        "Ollama: tests/test_eval.py::test_cli_end_to_end (a local model server)",
}


def test_every_readme_command_is_known() -> None:
    found = readme_commands()
    assert len(found) > 60, found
    unknown = [c for c in found if c not in RUN and c not in ELSEWHERE]
    assert not unknown, f"README commands no test runs (add them to RUN or ELSEWHERE): {unknown}"
    gone = [c for c in [*RUN, *ELSEWHERE] if c not in found]
    assert not gone, f"commands no longer in the README: {gone}"
    for where in ELSEWHERE.values():  # a named test exists
        m = re.match(r"(?:[^:]*: )?(tests/\S+\.py)(?:::(\w+))?", where)
        if m:
            text = (ROOT / m.group(1)).read_text()
            assert m.group(2) is None or f"def {m.group(2)}(" in text, where


# The commands that start runs of their own. They start after every other command has ended, so that a
# command reading the run list (`pas runs`, `GET /runs`) or replaying RUN_ID sees the same runs as a reader
# who goes down the README, and RUN_ID is rerun (`pas diff`) only after it was replayed.
MAKES_RUNS = {_cancel, _req_submit, _pub_submit, _approval_submit, _plan, _approve, _reject, _prime, _curl_cancel,
              _a2a, _rerun, _diff}
# How many commands run at once: each is a shell and a `pas` process, mostly waiting for a run or a reply.
AT_ONCE = 4


@pytest.fixture(scope="module")
def outcomes(reader: Reader, done_run: str) -> Iterator[dict[str, Future[None]]]:
    """Every RUN command, started at once (AT_ONCE at a time): the commands that read, then those that start
    runs. Each test below waits for its own command's outcome, so a failure is still reported per command."""
    with ThreadPoolExecutor(AT_ONCE, thread_name_prefix="readme") as pool:
        reads = {c: pool.submit(RUN[c], reader, c, done_run) for c in RUN if RUN[c] not in MAKES_RUNS}

        def after_reads(cmd: str) -> None:
            wait(reads.values())  # queued behind every read, so no read is left waiting for a thread
            RUN[cmd](reader, cmd, done_run)

        yield {**reads, **{c: pool.submit(after_reads, c) for c in RUN if RUN[c] in MAKES_RUNS}}


# A test waits for the commands before its own too (a command that starts runs, for every read): the timeout
# covers all of them. Each command is bounded by its own timeouts (Reader.sh, Reader.wait) in any case.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("cmd", list(RUN), ids=[re.sub(r"\W+", "_", c)[:60] for c in RUN])
def test_readme_command(outcomes: dict[str, Future[None]], cmd: str) -> None:
    outcomes[cmd].result()  # the command's own assertion error, if it failed

