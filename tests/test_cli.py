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
def url(pas_procs: Any, tmp_path: Any) -> str:
    from tests.conftest import fast_args

    return pas_procs("--nats-port", "-1", "--data-dir", str(tmp_path / "d"), *fast_args(), name="cli").url


def test_submit_wait_status_runs_cancel(url: str) -> None:
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


def test_cli_without_server_says_so() -> None:
    p = pas("runs", "--nats-url", "nats://127.0.0.1:1", timeout=60)
    assert p.returncode == 1 and "cannot reach NATS" in p.stderr
