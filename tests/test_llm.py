"""pas.llm.client against a real HTTP server speaking the OpenAI protocol (tests/fakellm.py), through the
real litellm client: failover, timeouts, usage and cost, the circuit breaker, env overrides, budgets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pas.base.errors import BudgetExceeded, ConfigError
from pas.config.model import ModelProfile
from pas.llm.client import (
    BudgetTracker,
    CallRecord,
    LLMClient,
    LLMUnavailable,
    _lite,
    apply_env_overrides,
    env_key,
)
from tests.fakellm import API_KEY_ENV, Fail, FakeLLM, Garbage, Hang, Reply, fake_llm  # noqa: F401

MSG = [{"role": "user", "content": "say hi"}]
ROOT = Path(__file__).resolve().parent.parent

# $1 per million input tokens, $2 per million output tokens: a known price.
PRICE_IN, PRICE_OUT = 1e-6, 2e-6


@pytest.fixture(scope="module", autouse=True)
def _priced_model() -> None:
    _lite().register_model(
        {
            "openai/priced-model": {
                "input_cost_per_token": PRICE_IN,
                "output_cost_per_token": PRICE_OUT,
                "litellm_provider": "openai",
                "mode": "chat",
                "max_tokens": 4096,
            }
        }
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_client(fake: FakeLLM, clock: Clock | None = None, **timeouts: float) -> tuple[LLMClient, list[CallRecord]]:
    records: list[CallRecord] = []

    async def on_call(rec: CallRecord) -> None:
        records.append(rec)

    profiles = {
        "main": fake.profile("main-model", timeout_s=timeouts.get("main", 5.0)),
        "spare": fake.profile("spare-model", timeout_s=timeouts.get("spare", 5.0)),
        "priced": fake.profile("priced-model"),
    }
    kw = {"clock": clock} if clock else {}
    return LLMClient(profiles, on_call=on_call, **kw), records


async def test_answer_with_usage_and_known_cost(fake_llm: FakeLLM) -> None:
    fake_llm.script("priced-model", Reply("hello", prompt_tokens=1200, completion_tokens=300))
    client, records = make_client(fake_llm)
    res = await client.complete(agent="mgr-code-01", primary="priced", backup=None, messages=MSG, run_id="r1")
    assert res.text == "hello"
    assert (res.profile, res.model_used, res.failed_over, res.errors) == ("priced", "priced-model", False, [])
    assert (res.tokens_in, res.tokens_out) == (1200, 300)
    assert res.cost_usd == pytest.approx(1200 * PRICE_IN + 300 * PRICE_OUT)
    [rec] = records
    assert (rec.agent, rec.run_id, rec.profile, rec.ok) == ("mgr-code-01", "r1", "priced", True)
    assert (rec.model_requested, rec.model_used) == ("openai/priced-model", "priced-model")
    assert rec.cost_usd == pytest.approx(0.0018)
    assert rec.latency_s > 0
    # what actually went over the wire: the profile's parameters and key
    [req] = fake_llm.requests
    assert req.path == "/v1/chat/completions"
    assert req.body["temperature"] == 0.3 and req.body["max_tokens"] == 4096
    assert req.headers["authorization"] == "Bearer sk-fake-test-key"
    assert req.messages == MSG


async def test_unknown_cost_is_none_not_zero(fake_llm: FakeLLM) -> None:
    fake_llm.script("main-model", Reply("hi", prompt_tokens=10, completion_tokens=2))
    client, records = make_client(fake_llm)
    res = await client.complete(agent="a", primary="main", backup=None, messages=MSG, max_tokens=77)
    assert res.cost_usd is None and records[0].cost_usd is None
    assert (res.tokens_in, res.tokens_out) == (10, 2)
    assert fake_llm.requests[0].body["max_tokens"] == 77


async def test_failover_primary_to_backup_visible_in_records(fake_llm: FakeLLM) -> None:
    fake_llm.script("main-model", Fail(500, "primary is down"))
    fake_llm.script("spare-model", Reply("from backup", prompt_tokens=5, completion_tokens=3))
    client, records = make_client(fake_llm)
    res = await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert (res.text, res.profile, res.failed_over) == ("from backup", "spare", True)
    assert len(res.errors) == 1 and res.errors[0].startswith("main:") and "primary is down" in res.errors[0]
    assert [(r.profile, r.ok) for r in records] == [("main", False), ("spare", True)]
    assert "primary is down" in (records[0].error or "")
    assert records[0].model_used is None and records[0].tokens == 0
    assert [r.model for r in fake_llm.requests] == ["main-model", "spare-model"]


async def test_hang_times_out_then_backup(fake_llm: FakeLLM) -> None:
    fake_llm.script("main-model", Hang(30))
    fake_llm.script("spare-model", Reply("quick"))
    client, records = make_client(fake_llm, main=0.5)
    res = await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert res.text == "quick" and res.failed_over
    assert not records[0].ok and "timeout" in (records[0].error or "").lower()
    assert 0.4 < records[0].latency_s < 3.0
    assert records[0].cost_usd is None  # a timed-out call may have been billed: unknown


async def test_both_fail_raises_llm_unavailable(fake_llm: FakeLLM) -> None:
    fake_llm.script("main-model", Fail(500))
    fake_llm.script("spare-model", Garbage("not json at all"))
    client, records = make_client(fake_llm)
    with pytest.raises(LLMUnavailable) as ei:
        await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert len(ei.value.errors) == 2
    assert ei.value.errors[0].startswith("main:") and ei.value.errors[1].startswith("spare:")
    assert ei.value.code == 503
    assert [(r.profile, r.ok) for r in records] == [("main", False), ("spare", False)]


async def test_empty_reply_and_unknown_profile_fail_over(fake_llm: FakeLLM) -> None:
    fake_llm.script("main-model", Reply("   "))
    fake_llm.script("spare-model", Reply("ok"))
    client, _ = make_client(fake_llm)
    res = await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert res.profile == "spare" and "empty reply" in res.errors[0]
    fake_llm.script("spare-model", Reply("ok"))
    res = await client.complete(agent="a", primary="nope", backup="spare", messages=MSG)
    assert res.profile == "spare" and res.errors == ["nope: unknown model profile"]


async def test_broken_on_call_sink_does_not_fail_the_call(fake_llm: FakeLLM) -> None:
    async def boom(rec: CallRecord) -> None:
        raise RuntimeError("log sink down")

    fake_llm.script("main-model", Reply("fine"))
    client = LLMClient({"main": fake_llm.profile("main-model")}, on_call=boom)
    assert (await client.complete(agent="a", primary="main", backup=None, messages=MSG)).text == "fine"


async def test_breaker_opens_after_three_failures_and_closes_after_cooldown(fake_llm: FakeLLM) -> None:
    clock = Clock()
    client, records = make_client(fake_llm, clock)
    fake_llm.default("spare-model", Reply("backup answer"))
    fake_llm.script("main-model", Fail(500), Fail(500), Fail(500))
    for _i in range(3):
        res = await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
        assert res.failed_over
        clock.t += 60  # three failures within ten minutes
    st = client.breaker_state()["main"]
    assert st["state"] == "open" and st["failures"] == 3
    assert st["open_until"] == pytest.approx(1000 + 120 + 300)
    assert client.breaker_state()["spare"]["state"] == "closed"

    # open: the primary is skipped without a request and without a call record
    n_main = len(fake_llm.requests_for("main-model"))
    res = await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert res.profile == "spare" and "circuit open" in res.errors[0]
    assert len(fake_llm.requests_for("main-model")) == n_main
    assert [r.profile for r in records[-1:]] == ["spare"]

    # after the cooldown: half-open, one trial call; success closes it
    clock.t += 301
    assert client.breaker_state()["main"]["state"] == "half_open"
    fake_llm.script("main-model", Reply("primary is back"))
    res = await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert (res.profile, res.failed_over) == ("main", False)
    assert client.breaker_state()["main"] == {"state": "closed", "failures": 0, "open_until": None}


async def test_breaker_half_open_failure_reopens_and_window_forgets(fake_llm: FakeLLM) -> None:
    clock = Clock()
    client, _ = make_client(fake_llm, clock)
    fake_llm.default("spare-model", Reply("b"))
    fake_llm.default("main-model", Fail(500))
    # failures 11 minutes apart never open it
    for _ in range(4):
        await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
        assert client.breaker_state()["main"]["state"] == "closed"
        clock.t += 660
    for _ in range(3):
        await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert client.breaker_state()["main"]["state"] == "open"
    clock.t += 301
    await client.complete(agent="a", primary="main", backup="spare", messages=MSG)  # trial fails
    st = client.breaker_state()["main"]
    assert st["state"] == "open" and st["open_until"] == pytest.approx(clock.t + 300)


async def test_breaker_open_on_both_raises(fake_llm: FakeLLM) -> None:
    clock = Clock()
    client, _ = make_client(fake_llm, clock)
    client.breaker = type(client.breaker)(1, 600, 300, clock)  # threshold 1
    fake_llm.script("main-model", Fail(500))
    fake_llm.script("spare-model", Fail(500))
    with pytest.raises(LLMUnavailable):
        await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    n = len(fake_llm.requests)
    with pytest.raises(LLMUnavailable) as ei:
        await client.complete(agent="a", primary="main", backup="spare", messages=MSG)
    assert all("circuit open" in e for e in ei.value.errors)
    assert len(fake_llm.requests) == n


def test_env_overrides_are_pure_and_validated() -> None:
    base = {
        "gemini-flash": ModelProfile(model="gemini/gemini-2.5-flash", api_key_env="GEMINI_API_KEY"),
        "qwen.coder": ModelProfile(model="ollama/qwen", api_base="http://127.0.0.1:11434"),
    }
    assert env_key("gemini-flash", "api_base") == "PAS_MODEL_GEMINI_FLASH_API_BASE"
    env = {
        "PAS_MODEL_GEMINI_FLASH_API_BASE": "http://127.0.0.1:9/v1",
        "PAS_MODEL_GEMINI_FLASH_TIMEOUT_S": "12.5",
        "PAS_MODEL_GEMINI_FLASH_MAX_TOKENS": "1000",
        "PAS_MODEL_QWEN_CODER_API_BASE": "",
        "PAS_MODEL_OTHER_MODEL": "ignored",
    }
    out = apply_env_overrides(base, env)
    assert out["gemini-flash"].api_base == "http://127.0.0.1:9/v1"
    assert out["gemini-flash"].timeout_s == 12.5 and out["gemini-flash"].max_tokens == 1000
    assert out["gemini-flash"].model == "gemini/gemini-2.5-flash"
    assert out["qwen.coder"].api_base is None
    assert base["gemini-flash"].api_base is None  # inputs untouched
    assert apply_env_overrides(base, {}) == base
    with pytest.raises(ConfigError, match="PAS_MODEL_GEMINI_FLASH_TEMPERATURE"):
        apply_env_overrides(base, {"PAS_MODEL_GEMINI_FLASH_TEMPERATURE": "warm"})


def test_budget_tracker() -> None:
    b = BudgetTracker(tokens_max=1000, cost_usd_max=0.5)
    b.charge(400, 0.1)
    b.charge(100, None)
    assert (b.tokens, b.cost_usd, b.unknown_cost_calls, b.calls) == (500, pytest.approx(0.1), 1, 2)
    assert not b.exceeded and b.remaining_tokens() == 500
    b.check()
    other = BudgetTracker()
    other.charge(600, 0.05)
    b.merge(other)
    assert b.tokens == 1100 and b.exceeded
    with pytest.raises(BudgetExceeded) as ei:
        b.check()
    assert ei.value.code == 402 and ei.value.detail["cost_known"] is False
    c = BudgetTracker(cost_usd_max=0.2)
    c.charge(10, 0.25)
    assert c.exceeded
    assert BudgetTracker(tokens_max=0).exceeded
    assert not BudgetTracker().exceeded


def test_litellm_is_imported_lazily() -> None:
    code = (
        "import sys, pas.llm.client, pas.llm.planner, pas.execution.edit_loop, pas.execution.aider\n"
        "assert 'litellm' not in sys.modules, 'litellm imported at module import'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    src = [p for p in (ROOT / "pas").rglob("*.py") if "import litellm" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in src] == ["pas/llm/client.py"]


async def test_pas_up_loads_litellm_only_for_a_model_server_that_listens() -> None:
    """`pas up` imports litellm at start (about 190 MB) only for profiles that could answer now: a local
    api_base is probed (one connection per address), a remote one or none is taken as callable."""
    import asyncio as aio

    from pas.llm.reachable import listening

    server = await aio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    closed = await aio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    gone = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    profiles = {
        "up": ModelProfile(model="openai/x", api_base=f"http://127.0.0.1:{port}/v1"),
        "up-too": ModelProfile(model="openai/y", api_base=f"http://localhost:{port}"),
        "down": ModelProfile(model="ollama/z", api_base=f"http://127.0.0.1:{gone}"),
        "down-v6": ModelProfile(model="ollama/z", api_base=f"http://[::1]:{gone}"),  # local too: probed, not taken as remote
        "remote": ModelProfile(model="openai/r", api_base="https://models.example.invalid/v1"),
        "hosted": ModelProfile(model="gemini/gemini-2.5-flash"),
    }
    try:
        assert await listening(list(profiles), profiles) == ["up", "up-too", "remote", "hosted"]
        assert await listening(["down", "down-v6"], profiles) == []
    finally:
        server.close()
        await server.wait_closed()
