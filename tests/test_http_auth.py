"""Who may call the HTTP adapter (pas/surfaces/http/trust.py, README "Who is trusted"), end to end: a real
nats-server, the module's agents, adapters started per test on free ports, real HTTP (httpx, and curl
run as another OS uid through setpriv), Chromium for the login link.

The tests run as root; another local user is uid 65534 (`setpriv --reuid=65534 ... curl`). Tests of the
token itself turn settings.http.trust_same_user off, so the same-uid rule cannot let them pass by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from pas.surfaces.http.adapter import AdapterHandle, start_adapter
from pas.surfaces.http.trust import MAX_CODES, http_token, peer_uid, stored_token
from pas.transport.client import PasClient
from pas.transport.connection import connect as pas_connect
from pas.transport.server import EmbeddedServer
from tests.http_support import BROWSER_ARGS, CHROMIUM, http_cfg, poll
from tests.module_stack import module_stack

stack, nc, client = module_stack()
shared = pytest.mark.asyncio(loop_scope="module")  # the async tests run in the module stack's loop

OTHER_UID = 65534
ECHO = {"lane": "code", "instruction": "echo hi", "command": "echo hi", "executor": "command"}
NO_SAME_USER = "settings.http.trust_same_user=false"


@contextlib.asynccontextmanager
async def adapter(url: str, token_dir: Path, *overrides: str) -> AsyncIterator[AdapterHandle]:
    """An adapter of its own (free ports) in front of the module's agents."""
    a = await start_adapter(http_cfg(*overrides), url, token_dir=token_dir)
    try:
        yield a
    finally:
        await a.stop()


def curl(url: str, *args: str, uid: int | None = OTHER_UID) -> tuple[int, str]:
    """(status, body) of curl, run as `uid` (None: as this process's user)."""
    argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10", *args, url]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    body, _, code = p.stdout.rpartition("\n")
    assert code.isdigit(), (argv, p.stdout[-500:], p.stderr[-500:])
    return int(code), body


def endpoints(a: AdapterHandle) -> list[tuple[str, str, str]]:
    """(method, url, what) of every kind of endpoint on every port, reads and writes, /health excepted."""
    out: list[tuple[str, str, str]] = []
    for name in a.ports:
        base = a.url(name)
        out += [("GET", base + "/openapi.json" if name != "hmi" else base + "/api/openapi.json", name)]
    gw, hmi = a.url("gateway"), a.url("hmi")
    out += [("GET", gw + p, "gateway") for p in ("/docs", "/runs", "/runs/r-x", "/runs/r-x/timeline", "/runs/r-x/plan",
                                                "/status/r-x", "/.well-known/agent-card.json")]
    out += [("POST", gw + p, "gateway") for p in ("/submit", "/prime_directives", "/runs/r-x/cancel", "/mcp", "/a2a")]
    out += [("GET", hmi + p, "hmi") for p in ("/", "/api/docs", "/api/config", "/api/agents", "/api/models", "/api/runs",
                                             "/api/runs/r-x/timeline.html", "/api/comms", "/api/events",
                                             "/static/app.js")]
    out += [("POST", hmi + "/api/submit", "hmi"), ("POST", hmi + "/login/code", "hmi"),
            ("POST", a.url("prog-001") + "/execute", "prog-001"), ("GET", a.url("architect") + "/status/r-x", "arch")]
    return out


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests run curl as uid 65534 through setpriv: run them as root (the CI does)")


async def job_completes(c: httpx.AsyncClient, a: AdapterHandle, **kw: Any) -> None:
    """A normal job, submitted through this adapter, completes."""
    r = await c.post(a.url("gateway") + "/submit", json={"title": "after", "tasks": [ECHO]}, **kw)
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]

    async def get() -> Any:
        return (await c.get(a.url("gateway") + f"/runs/{run_id}", **kw)).json()
    st = await poll(get, lambda s: s.get("status") in ("completed", "failed", "cancelled"), 30)
    assert st["status"] == "completed", st


# ---- the token --------------------------------------------------------------------------------
def test_token_is_made_once_0600_and_pas_http_token_overrides(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAS_HTTP_TOKEN", raising=False)
    d = tmp_path / "creds"
    assert stored_token(d) is None  # a client never makes one
    token, hint = http_token(d)
    assert len(token) >= 40 and hint == f"$(cat {(d / 'http-token').resolve()})"
    assert stat.S_IMODE((d / "http-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert http_token(d)[0] == token == stored_token(d)  # the second start finds it
    monkeypatch.setenv("PAS_HTTP_TOKEN", "from-env")
    assert http_token(d) == ("from-env", "$PAS_HTTP_TOKEN") and stored_token(d) == "from-env"


@shared
async def test_every_endpoint_needs_the_token_but_health(stack: Any, tmp_path: Path) -> None:
    """trust_same_user off: reads included (runs, comms, SSE, timeline, MCP, A2A, docs), on every port,
    everything but /health is 401 without the token; with it, none is; then a job completes."""
    async with adapter(stack.url, tmp_path, NO_SAME_USER) as a, httpx.AsyncClient(timeout=10) as c:
        token = a.gate.token
        assert token == (tmp_path / "http-token").read_text().strip()
        for port_name in a.ports:
            r = await c.get(a.url(port_name) + "/health")
            assert r.status_code in (200, 503), (port_name, r.text)  # 503: an agent not running; never 401
        for method, url, _ in endpoints(a):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                            {"Cookie": f"{a.gate.cookie_name}=wrong"}):
                r = await c.request(method, url, headers=headers, json={} if method == "POST" else None)
                assert r.status_code == 401, (method, url, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer" and r.json()["error"] == "unauthorized"
        ok = {"Authorization": f"Bearer {token}"}
        for method, url, _ in endpoints(a):
            if url.endswith("/api/events"):
                async with c.stream("GET", url, headers=ok) as r:
                    assert r.status_code == 200
                continue
            r = await c.request(method, url, headers={**ok, "Accept": "application/json, text/event-stream"},
                                json={} if method == "POST" else None)
            assert r.status_code != 401, (method, url, r.text)
        await job_completes(c, a, headers=ok)


@shared
async def test_login_link_sets_a_strict_httponly_cookie(stack: Any, tmp_path: Path) -> None:
    async with adapter(stack.url, tmp_path, NO_SAME_USER) as a, httpx.AsyncClient(timeout=10) as c:
        link = a.login_url()
        assert link.startswith(a.url("hmi") + "/login?code=")
        r = await c.get(link)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{a.gate.cookie_name}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert a.gate.token is not None and a.gate.token not in cookie  # a value derived from it
        c.cookies.clear()  # sent by hand below
        sent = {"Cookie": cookie.split(";")[0]}
        # The cookie works on the HMI port, and on the others (a browser sends it to every port of the host).
        for url in (a.url("hmi") + "/api/runs", a.url("gateway") + "/runs"):
            assert (await c.get(url, headers=sent)).status_code == 200
        assert (await c.get(a.url("hmi") + "/api/runs")).status_code == 401  # not without it
        r = await c.get(link)  # one time only
        assert r.status_code == 401 and "used already" in r.text
        assert (await c.get(a.url("hmi") + f"/login?token={a.gate.token}")).status_code == 303  # the token logs in too
        c.cookies.clear()
        # `pas login`'s request: a new link, for a token holder only.
        assert (await c.post(a.url("hmi") + "/login/code")).status_code == 401
        r = await c.post(a.url("hmi") + "/login/code", headers={"Authorization": f"Bearer {a.gate.token}"})
        fresh = r.json()["url"]
        c.cookies.clear()
        assert fresh.startswith(a.url("hmi") + "/login?code=") and (await c.get(fresh)).status_code == 303
        forgotten = a.login_url()  # unused links do not pile up: the oldest goes after MAX_CODES newer ones
        for _ in range(MAX_CODES):
            a.gate.mint_code()
        assert (await c.get(forgotten)).status_code == 401


@shared
async def test_hmi_in_chromium_through_the_login_link(stack: Any, tmp_path: Path) -> None:
    """A browser of another user (trust_same_user off here) opens the printed link: the dashboard
    loads and goes live (its fetches and EventSource carry the cookie), and the page cannot read it."""
    from playwright.async_api import async_playwright, expect

    async with adapter(stack.url, tmp_path, NO_SAME_USER) as a, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            page = await browser.new_page()
            r = await page.goto(a.url("hmi") + "/")
            assert r is not None and r.status == 401
            await expect(page.locator("body")).to_contain_text("one-time login link")
            await page.goto(a.login_url())
            assert page.url == a.url("hmi") + "/"
            await expect(page.get_by_test_id("conn")).to_have_attribute("data-state", "live", timeout=15000)
            await expect(page.locator('[data-testid^="agent-"]')).to_have_count(26, timeout=15000)
            assert a.gate.cookie_name not in await page.evaluate("document.cookie")  # HttpOnly
        finally:
            await browser.close()


@shared
async def test_auth_off_is_open_with_a_warning(stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with adapter(stack.url, tmp_path, "settings.http.auth=off", NO_SAME_USER) as a, \
            httpx.AsyncClient(timeout=10) as c:
        assert "settings.http.auth is off" in caplog.text and a.login_url() == a.url("hmi") + "/"
        assert not (tmp_path / "http-token").exists()
        assert (await c.get(a.url("gateway") + "/runs")).status_code == 200
        assert (await c.get(a.url("hmi") + "/api/config")).json()["auth_required"] is False
        assert (await c.get(a.url("gateway") + "/runs", headers={"Host": "evil.example"})).status_code == 421
        await job_completes(c, a)


# ---- the same OS user, another OS user, another site ---------------------------------------------
@shared
async def test_another_uid_gets_401_everywhere_but_health(stack: Any, tmp_path: Path) -> None:
    """Defaults: uid 65534 (curl through setpriv) gets 401 on every port and endpoint but /health; with
    the token it is served. The same user's tokenless curl is served, and its job completes."""
    _need_root()
    async with adapter(stack.url, tmp_path) as a, httpx.AsyncClient(timeout=10) as c:
        for name in a.ports:
            code, _ = await asyncio.to_thread(curl, a.url(name) + "/health")
            assert code in (200, 503), name
        for method, url, _ in endpoints(a):
            code, body = await asyncio.to_thread(curl, url, "-X", method)
            assert code == 401, (method, url, body)
        code, body = await asyncio.to_thread(curl, a.url("gateway") + "/runs", "-H",
                                             f"Authorization: Bearer {a.gate.token}")
        assert code == 200 and "runs" in json.loads(body)
        code, body = await asyncio.to_thread(curl, a.url("gateway") + "/runs", uid=None)  # the same user, no token
        assert code == 200, body
        code, body = await asyncio.to_thread(curl, a.url("gateway") + "/submit", "-H", "content-type: application/json",
                                             "-d", json.dumps({"title": "same user", "tasks": [ECHO]}), uid=None)
        assert code == 200, body
        await job_completes(c, a)  # httpx of this process: the same user, tokenless


@shared
async def test_foreign_host_gets_421_on_every_port(stack: Any, tmp_path: Path) -> None:
    """DNS rebinding: a Host that is not a loopback name or settings.http.allowed_hosts is 421 on every
    port, /health included, token or not; an allowed name is served."""
    async with adapter(stack.url, tmp_path, "settings.http.allowed_hosts=[pas.example]") as a, \
            httpx.AsyncClient(timeout=10) as c:
        ok = {"Authorization": f"Bearer {a.gate.token}"}
        for name in a.ports:
            for path in ("/health", "/openapi.json"):
                r = await c.get(a.url(name) + path, headers={"Host": f"rebound.example:{a.ports[name]}", **ok})
                assert r.status_code == 421 and r.json()["error"] == "misdirected", (name, r.text)
            r = await c.get(a.url(name) + "/health", headers={"Host": f"pas.example:{a.ports[name]}"})
            assert r.status_code in (200, 503), (name, r.text)
        r = await c.post(a.url("gateway") + "/submit", json={"title": "t", "tasks": [ECHO]},
                         headers={"Host": "rebound.example", "Origin": "http://rebound.example", **ok})
        assert r.status_code == 421
        # An allowed name is not a loopback name: it needs the token even from this user.
        r = await c.get(a.url("gateway") + "/runs", headers={"Host": "pas.example"})
        assert r.status_code == 401
        assert (await c.get(a.url("gateway") + "/runs", headers={"Host": "pas.example", **ok})).status_code == 200
        await job_completes(c, a)


@shared
async def test_same_user_from_another_site_needs_the_token(stack: Any, tmp_path: Path) -> None:
    """The same OS user's connection is trusted only as its own request: a foreign Origin or a cross-site
    Sec-Fetch-Site (a page of another site in the user's browser) needs the token; a foreign Origin on
    a write is 403 even with it."""
    async with adapter(stack.url, tmp_path) as a, httpx.AsyncClient(timeout=10) as c:
        runs, own = a.url("gateway") + "/runs", a.url("gateway")
        assert (await c.get(runs)).status_code == 200
        for h in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                  {"Origin": "null"}):
            r = await c.get(runs, headers=h)
            assert r.status_code == 401, (h, r.text)
            assert (await c.get(runs, headers={**h, "Authorization": f"Bearer {a.gate.token}"})).status_code == 200
        for h in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {"Origin": own}):
            assert (await c.get(runs, headers=h)).status_code == 200, h
        body = {"title": "t", "tasks": [ECHO]}
        r = await c.post(own + "/submit", json=body, headers={"Origin": "http://evil.example",
                                                              "Authorization": f"Bearer {a.gate.token}"})
        assert r.status_code == 403 and r.json()["error"] == "refused"
        r = await c.post(own + "/submit", json=body, headers={"Origin": a.url("hmi")})  # another port: another origin
        assert r.status_code == 403
        r = await c.post(own + "/submit", json=body, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 200, r.text


def test_peer_uid_asks_the_kernel() -> None:
    """The uid of the client end of a loopback connection, for IPv4, IPv6 and an IPv4 client of a
    dual-stack socket; another user's socket has its uid; a connection that is not there has none."""
    cases = [(socket.AF_INET, "127.0.0.1", "127.0.0.1", False), (socket.AF_INET6, "::1", "::1", False),
             (socket.AF_INET6, "::", "127.0.0.1", True)]
    for family, bind, connect_to, dual in cases:
        with socket.create_server((bind, 0), family=family, dualstack_ipv6=dual) as srv:
            port = srv.getsockname()[1]
            with socket.create_connection((connect_to, port)) as _c:
                conn, addr = srv.accept()
                with conn:
                    assert peer_uid(addr[:2], conn.getsockname()[:2]) == os.getuid(), (bind, connect_to)
    assert peer_uid(("127.0.0.1", 1), ("127.0.0.1", 2)) is None
    _need_root()
    with socket.create_server(("127.0.0.1", 0)) as srv:  # a client of another uid: python run through setpriv
        port = srv.getsockname()[1]
        code = f"import socket,time; s=socket.create_connection(('127.0.0.1',{port})); time.sleep(5)"
        p = subprocess.Popen(["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups",
                              sys.executable, "-c", code])
        try:
            conn, addr = srv.accept()
            with conn:
                assert peer_uid(addr, conn.getsockname()) == OTHER_UID
        finally:
            p.kill()
            p.wait()


# ---- caps -------------------------------------------------------------------------------------
@shared
async def test_more_event_streams_than_the_cap_get_503_and_pas_goes_on(stack: Any, tmp_path: Path) -> None:
    async with adapter(stack.url, tmp_path, "settings.http.max_sse=3") as a, httpx.AsyncClient(timeout=10) as c:
        events = a.url("hmi") + "/api/events"
        async with contextlib.AsyncExitStack() as streams:
            readers = []  # held: a line iterator dropped closes its stream
            for _ in range(3):
                r = await streams.enter_async_context(c.stream("GET", events))
                assert r.status_code == 200
                readers.append(r.aiter_lines())
                while (await anext(readers[-1])) != "event: hello":  # after the stream's `retry:` line
                    pass
            for url, headers in ((events, {}), (a.url("gateway") + "/mcp", {"Accept": "text/event-stream"})):
                r = await c.get(url, headers=headers)
                assert r.status_code == 503 and "settings.http.max_sse=3" in r.json()["detail"], r.text
                assert r.headers["connection"] == "close"
            assert (await c.get(a.url("hmi") + "/health")).status_code == 200
            await job_completes(c, a)

        async def opens() -> int:
            async with c.stream("GET", events) as r:
                return r.status_code
        await poll(opens, lambda code: code == 200, 10, 0.1)  # the streams closed: room again, once the server sees it


@shared
async def test_connections_past_the_cap_get_503_and_idle_ones_are_closed(stack: Any, tmp_path: Path) -> None:
    async with adapter(stack.url, tmp_path, "settings.http.max_connections=4") as a:
        host, port = a.host, a.ports["hmi"]
        idle = [socket.create_connection((host, port)) for _ in range(4)]
        try:
            async with httpx.AsyncClient(timeout=10) as c:
                r = await poll(lambda: c.get(a.url("hmi") + "/health"), lambda r: r.status_code == 503, 5, 0.05)
                assert "settings.http.max_connections=4" in r.json()["detail"]
                # A connection that never sends a request is closed by the server (uvicorn's keep-alive
                # timeout, 5 s, also runs from the moment it opens), so they cannot pile up.
                t0 = time.monotonic()
                for s in idle:
                    s.settimeout(15)
                    assert await asyncio.to_thread(s.recv, 1) == b""
                assert time.monotonic() - t0 < 12
                r = await c.get(a.url("hmi") + "/health")
                assert r.status_code == 200
                await job_completes(c, a)
        finally:
            for s in idle:
                s.close()


@shared
async def test_a_used_connection_outlives_httpx_keepalive(stack: Any, tmp_path: Path) -> None:
    """After a response the server keeps the connection longer than httpx keeps it in its pool (5 s): a
    pooled client never sends a request on a connection the server is closing (CI: httpx.ReadError at
    uvicorn's 5 s). Asked twice on one socket, 6 s apart: the second is answered."""
    async with adapter(stack.url, tmp_path) as a:
        s = socket.create_connection((a.host, a.ports["hmi"]))
        s.settimeout(15)
        ask = f"GET /health HTTP/1.1\r\nHost: {a.host}:{a.ports['hmi']}\r\n\r\n".encode()
        try:
            for _ in range(2):
                s.sendall(ask)
                got = b""
                while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                    chunk = await asyncio.to_thread(s.recv, 4096)
                    assert chunk, f"closed by the server after {got!r}"
                    got += chunk
                assert got.startswith(b"HTTP/1.1 200"), got
                await asyncio.sleep(6)
        finally:
            s.close()


# ---- numbers and durations --------------------------------------------------------------------
@shared
async def test_out_of_range_numbers_are_422_naming_the_field(stack: Any, tmp_path: Path, client: PasClient) -> None:
    async with adapter(stack.url, tmp_path) as a, httpx.AsyncClient(timeout=10) as c:
        gw, hmi = a.url("gateway"), a.url("hmi")
        cases = [(gw + "/submit", b'{"title":"t","budget":{"tokens_max":1e400}}', "tokens_max"),
                 (gw + "/submit", b'{"title":"t","budget":{"cost_usd_max":1e400}}', "cost_usd_max"),
                 (gw + "/submit", b'{"title":"t","budget":{"cost_usd_max":-1e400}}', "cost_usd_max"),
                 (gw + "/submit", b'{"title":"t","budget":{"tokens_max":1e30}}', "tokens_max"),
                 (gw + "/prime_directives", b'{"title":"t","budget_cost_usd_max":1e400}', "budget_cost_usd_max"),
                 (hmi + "/api/submit", b'{"title":"t","priority":1e400}', "priority"),
                 (a.url("prog-001") + "/execute", b'{"instruction":"x","timeout_s":1e400}', "timeout_s")]
        for url, body, field in cases:
            r = await c.post(url, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, (url, body, r.text)
            assert any(field in err["loc"] for err in r.json()["detail"]), r.text
        r = await c.get(gw + "/runs", params={"limit": "1e400"})
        assert r.status_code == 422 and "limit" in r.text
    # The same over NATS: the wire types are bounded too.
    for raw, field in ((b'{"title":"t","budget":{"tokens_max":1e400}}', "budget.tokens_max"),
                       (b'{"title":"t","budget":{"cost_usd_max":1e400}}', "budget.cost_usd_max"),
                       (b'{"title":"t","budget":{"tokens_max":10000000000}}', "budget.tokens_max")):
        msg = await client.nc.request("pas.gateway.submit", raw, timeout=10)
        assert msg.headers["Nats-Service-Error-Code"] == "400" and field in msg.data.decode(), msg.data


@shared
async def test_mcp_since_out_of_range_is_a_bad_request(stack: Any, tmp_path: Path) -> None:
    async with adapter(stack.url, tmp_path) as a:
        async with streamable_http_client(a.url("gateway") + "/mcp") as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            for since in ("99999999d", "1e400s", "36501d"):
                res = await session.call_tool("run_log", {"since": since})
                assert res.is_error and res.content[0].text.startswith(f"bad_request (400): since {since!r}"), res
            assert not (await session.call_tool("run_log", {"since": "10m", "limit": 1})).is_error


def _pas(*args: str, url: str = "nats://127.0.0.1:1") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PAS_NATS_URL", "PAS_HTTP_TOKEN")}
    return subprocess.run([sys.executable, "-m", "pas", *args, "--nats-url", url], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL, cwd=Path(__file__).parent)


def test_cli_durations_out_of_range_name_the_option() -> None:
    for argv, option in ((["log", "--since", "99999999d"], "--since"), (["log", "--since", "1e400d"], "--since"),
                         (["submit", "t", "--timeout", "inf"], "--timeout"), (["submit", "t", "--timeout", "nan"], "--timeout"),
                         (["rerun", "r-1", "--timeout", "1e400"], "--timeout"),
                         (["replay", "r-1", "--speed", "-1"], "--speed"), (["agents", "--connect-timeout", "0"],
                                                                           "--connect-timeout")):
        p = _pas(*argv)
        assert p.returncode == 2 and f"argument {option}" in p.stderr and "Traceback" not in p.stderr, (argv, p.stderr)


# ---- pas submit's idempotency key -------------------------------------------------------------
@shared
async def test_pas_submit_twice_with_a_key_is_one_run(stack: Any) -> None:
    first = await asyncio.to_thread(_pas, "submit", "once", "--task", "code:true", "--idempotency-key", "k-auth-1",
                                    url=stack.url)
    second = await asyncio.to_thread(_pas, "submit", "once", "--task", "code:true", "--idempotency-key", "k-auth-1",
                                     url=stack.url)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert first.stdout.strip() == second.stdout.strip()
    assert "already submitted with idempotency key k-auth-1" in second.stderr


@shared
async def test_pas_submit_sends_a_key_and_asks_again_with_it_after_a_timeout(tmp_path: Path) -> None:
    """A gateway stand-in on a bare server (a real NATS subscriber) leaves the first request unanswered,
    as a gateway whose reply was lost: `pas submit` asks again with the same Nats-Msg-Id."""
    srv = EmbeddedServer(tmp_path / "nats", port=-1)
    url = srv.start()
    seen: list[str] = []
    try:
        conn = await pas_connect(url)

        async def gateway(m: Any) -> None:
            seen.append((m.headers or {}).get("Nats-Msg-Id", ""))
            if len(seen) > 1:
                await m.respond(json.dumps({"run_id": "r-retried", "status": "queued", "duplicate": True}).encode())

        await conn.subscribe("pas.gateway.submit", cb=gateway)
        await conn.flush()
        p = await asyncio.to_thread(_pas, "submit", "t", "--task", "code:true", "-c",
                                    "settings.nats.request_timeout_s=1", url=url)
        await conn.close()
    finally:
        srv.stop()
    assert p.returncode == 0 and p.stdout.strip() == "r-retried", (p.stdout, p.stderr)
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0].startswith("pas-submit-"), seen
    assert "asking again with the same idempotency key" in p.stderr
