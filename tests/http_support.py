"""Helpers for the HTTP adapter and HMI tests: a free port range, a stack with the adapter on it."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from pas.config.model import PasConfig
from pas.surfaces.http.adapter import port_plan
from tests.conftest import make_cfg

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
CHROMIUM = "/usr/bin/chromium"


def all_free(host: str, ports: list[int]) -> bool:
    socks = []
    try:
        for p in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_port_offset(cfg: PasConfig, tries: int = 200) -> int:
    """An offset that moves every adapter port (agents and HMI) to a range where all of them bind.

    Ports stay below the Linux ephemeral range (32768+) so outgoing connections cannot take them."""
    base = list(port_plan(cfg).values())
    lo, hi = 10000 - min(base), 32000 - max(base)
    rnd = random.Random()
    for _ in range(tries):
        off = rnd.randrange(lo, hi, 7)
        if all_free(cfg.settings.http.host, [p + off for p in base]):
            return off
    raise RuntimeError("no free port range for the HTTP adapter")


def http_cfg(*extra: str, llm_planning: bool = False, no_models: bool = False) -> PasConfig:
    """make_cfg plus settings.http.port_offset pointing at a free range.

    Unless llm_planning, the architect and directors get no model, so a goal-only job is planned
    deterministically (one echo task per lane): no LLM call, whatever API keys the environment has.
    no_models takes every agent's models away (fuzzing submits llm tasks too)."""
    cfg = make_cfg(*extra)
    cfg.settings.http.port_offset = free_port_offset(cfg)
    for a in cfg.agents:
        if no_models or (not llm_planning and a.role in ("architect", "dir")):
            a.model = None
            if no_models:
                a.backup_model = None
    return cfg


def fuzz_operation(base_url: str, method: str, path: str, max_examples: int = 30,
                   openapi_path: str = "/openapi.json") -> dict[str, int]:
    """Schemathesis against one operation of the live OpenAPI at base_url + openapi_path: up to
    max_examples positive and as many negative cases over real HTTP; fails on any 5xx.
    Returns the number of requests made per generation mode (so a caller can tell that cases were
    generated at all). Blocking: run it in a thread while the loop serves."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(base_url + openapi_path)
    op = schema[path][method]
    calls = {"positive": 0, "negative": 0}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=max_examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            resp = case.call(base_url=base_url, timeout=15)
            calls[mode.value] += 1
            case.validate_response(resp, checks=[not_a_server_error])

        try:
            check()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise  # negative cases need a parameter or a body to break; some operations have none
    return calls


async def poll(fn: Callable[[], Any], until: Callable[[Any], bool], timeout_s: float = 20.0,
               interval_s: float = 0.2) -> Any:
    """Call fn (async) at most once per interval until `until(result)`; bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        res = await fn()
        if until(res):
            return res
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s}s; last: {res!r}"[:2000])
        await asyncio.sleep(interval_s)


async def get_json(c: httpx.AsyncClient, url: str) -> Any:
    r = await c.get(url)
    return r.json()
