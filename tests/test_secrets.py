"""Secrets stay out of the logs: comms entries, task errors and `pas log` never show an API key,
even when the provider's error message echoes it (through the real litellm HTTP path)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pas.base.redact import redact, register_value
from pas.runtime import comms
from pas.surfaces.stack import Stack
from tests.conftest import CODE_LANE, ROOT, make_cfg
from tests.fakellm import Fail
from tests.test_pipeline import make_repo

KEY = "sk-live-4242-abcdefghijklmnopqrstuvwxyz"


def test_redact_names_values_and_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("PAS_HTTP_TOKEN", "tok-0123456789")
    monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("PAGER", "less-is-more-than-8")  # not a secret name: kept
    register_value("nats-generated-password-1")
    text = (f"key {KEY} tok-0123456789 hunter2hunter2 nats-generated-password-1 less-is-more-than-8 "
            "nats://pas:s3cr3t@127.0.0.1:4222")
    out = redact(text)
    for s in (KEY, "tok-0123456789", "hunter2hunter2", "nats-generated-password-1", "s3cr3t"):
        assert s not in out
    assert "[redacted $ANTHROPIC_API_KEY]" in out and "[redacted $PAS_HTTP_TOKEN]" in out
    assert "less-is-more-than-8" in out and "nats://pas:[redacted]@127.0.0.1:4222" in out


async def test_key_echoed_by_provider_error_is_not_logged(nats_server: Any, client: Any, fake_llm: Any,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The key lives in a variable whose name does not look secret: the model profile names it.
    monkeypatch.setenv("LLM_ACCESS_PHRASE", KEY)
    fake_llm.default("pk", Fail(401, "Incorrect API key provided: {api_key}. Find your key at example"))
    cfg = make_cfg()
    cfg.models["pk"] = fake_llm.profile("pk", api_key_env="LLM_ACCESS_PHRASE")
    for a in cfg.agents:
        a.model, a.backup_model = ("pk" if a.role == "prog" else None), None
    repo = make_repo(tmp_path)
    async with Stack(cfg, url=nats_server.url, only=CODE_LANE):
        await client.submit({"title": "leaky provider", "run_id": "sec1", "repo": str(repo), "tasks": [{
            "lane": "code", "instruction": "edit", "executor": "llm", "files": ["README.md"]}]})
        st = await client.wait("sec1", timeout_s=60)
    reqs = fake_llm.requests_for("pk")
    assert reqs and reqs[0].headers["authorization"] == f"Bearer {KEY}"  # the provider did get (and echo) it
    t = st["tasks"][0]
    assert t["status"] == "failed" and "AuthenticationError" in t["error"], t
    assert KEY not in t["error"] and KEY not in t["output"] and "[redacted $LLM_ACCESS_PHRASE]" in t["error"]
    entries = [e async for e in comms.read(client.nc.jetstream(), run_id="sec1")]
    llm = [e for e in entries if e.msg_type == "LLM"]
    assert llm and "[redacted" in str(llm[0].metadata), [e.metadata for e in llm]
    for e in entries:
        assert KEY not in e.message and KEY not in str(e.metadata), e
    for args in (["--run", "sec1"], ["--run", "sec1", "--json"]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pas", "log", "--nats-url", nats_server.url, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode()
        assert proc.returncode == 0 and "AuthenticationError" in text and KEY not in text, text[-2000:]
