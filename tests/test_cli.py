"""The `pas` CLI against a running stack, and `pas demo` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest


def pas(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pas", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def url(pas_procs: Any, tmp_path: Any, monkeypatch: Any) -> str:
    """`pas up` with its defaults: the embedded server with NATS users on; the `pas` commands below find
    the `client` user's credentials through PAS_CREDS_DIR."""
    from tests.conftest import fast_args

    up = pas_procs("--nats-port", "-1", "--data-dir", str(tmp_path / "d"), *fast_args(), name="cli")
    monkeypatch.setenv("PAS_CREDS_DIR", str(tmp_path / "d" / "creds"))
    return up.url


def no_violations(tmp_path: Any) -> bool:
    """Nothing PAS did was refused by the server (its log names every refused publish/subscribe)."""
    text = (tmp_path / "d" / "nats-server.log").read_text()
    return "Publish Violation" not in text and "Subscription Violation" not in text


def test_submit_wait_status_runs_cancel(url: str, tmp_path: Any) -> None:
    p = pas("submit", "cli job", "--task", "code:echo one", "--task", "docs:true", "--wait", "--nats-url", url)
    assert p.returncode == 0, p.stderr + p.stdout
    run_id = p.stdout.splitlines()[0].strip()
    assert "task code-1-01" in p.stdout and "completed" in p.stdout  # live progress lines
    assert f"run {run_id} COMPLETED" in p.stdout
    st = json.loads(pas("status", run_id, "--json", "--nats-url", url).stdout)
    assert st["status"] == "completed" and [t["output"] for t in st["tasks"]] == ["one\n", ""]
    assert run_id in pas("runs", "--nats-url", url).stdout

    fail = pas("submit", "failing", "--task", "code:python -m pytest --nope", "--wait", "--nats-url", url)
    assert fail.returncode == 1 and "FAILED" in fail.stdout

    bad = pas("submit", "bad", "--task", "code:rm -rf /", "--nats-url", url)
    assert bad.returncode == 1 and "not on the allowlist" in bad.stderr

    long = pas("submit", "long", "--task", "code:sleep 30", "--nats-url", url)
    rid = long.stdout.strip()
    c = pas("cancel", rid, "--nats-url", url)
    assert c.returncode == 0 and c.stdout.strip() == f"{rid} cancelled"
    again = pas("cancel", rid, "--nats-url", url)
    assert again.returncode == 1 and "already cancelled" in again.stderr
    assert pas("status", "nope", "--nats-url", url).returncode == 1
    assert no_violations(tmp_path)


def test_agents_log_and_model_set_with_nats_users(url: str, tmp_path: Any, monkeypatch: Any) -> None:
    """`pas agents` and `pas log` read as `client`; `pas model set` needs `admin`; no credentials: told what to do."""
    import time

    deadline = time.monotonic() + 20
    while True:  # the monitor records each agent's first beat within a heartbeat (1 s here)
        rows = json.loads(pas("agents", "--json", "--nats-url", url).stdout)
        if all(r["state"] == "alive" for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(rows) == 26 and all(r["state"] == "alive" for r in rows), rows
    p = pas("submit", "logged", "--task", "docs:true", "--wait", "--nats-url", url)
    run_id = p.stdout.splitlines()[0].strip()
    while True:  # root's STATUS is the run record's last write, copied into the log a moment after the event
        log = pas("log", "--run", run_id, "--json", "--nats-url", url)
        senders = {json.loads(x)["from_agent"] for x in log.stdout.splitlines()} if log.returncode == 0 else set()
        if {"gateway", "root"} <= senders or time.monotonic() > deadline + 20:
            break
        time.sleep(0.2)
    assert log.returncode == 0 and {"gateway", "root"} <= senders, log.stdout
    m = pas("model", "set", "prog-003", "gpt-4o", "--nats-url", url)
    assert m.returncode == 0 and "prog-003: model=gpt-4o" in m.stdout, m.stderr
    monkeypatch.setenv("PAS_CREDS_DIR", str(tmp_path / "elsewhere"))
    anon = pas("runs", "--nats-url", url)
    assert anon.returncode == 1 and "no credentials were given" in anon.stderr
    assert "--creds-dir" in anon.stderr and "PAS_CREDS_DIR" in anon.stderr
    assert no_violations(tmp_path)


def test_cli_without_server_says_so() -> None:
    p = pas("runs", "--nats-url", "nats://127.0.0.1:1", timeout=60)
    assert p.returncode == 1 and "cannot reach NATS" in p.stderr
