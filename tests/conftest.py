"""Shared fixtures: a real nats-server with JetStream on a free port and a temporary store dir,
a PAS stack on it (in-process), and helpers to run `pas` in separate processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pas.config.model import PasConfig, load_config
from pas.surfaces.stack import Stack
from pas.transport import auth
from pas.transport.bus import connect
from pas.transport.client import PasClient
from pas.transport.connection import connect as pas_connect
from pas.transport.server import EmbeddedServer
from tests.shared_server import SharedServer

ROOT = Path(__file__).resolve().parent.parent
# The JSON schemas the `nats` CLI validates $SRV replies against (copied from shared/reference).
SCHEMAS = ROOT / "tests" / "nats-micro-schemas"

# Tests make their repositories in temporary directories (pytest's tmp_path) or use this checkout.
REPO_ROOTS = [tempfile.gettempdir(), str(ROOT)]
# Fast settings for tests: 1 s heartbeats, short ack deadlines so redelivery is observable; the
# repositories tests make are allowed (settings.policy.repo_roots, pas.execution.policy.admit).
FAST = [
    "settings.heartbeat.interval_s=1",
    "settings.pool.ack_wait_s=2",
    "settings.work.ack_wait_s=2",
    f"settings.policy.repo_roots={json.dumps(REPO_ROOTS)}",
]

pytest_plugins = ["tests.fakellm", "tests.module_stack", "tests.fresh_support"]


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    shared = SharedServer(tmp_path_factory.mktemp("nats-shared"))
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def nats_server(shared_server: SharedServer) -> EmbeddedServer:
    """The session's nats-server (one per session; a test that stops, kills, clusters or secures a
    server starts its own EmbeddedServer). After every test that used it, the teardown hook below
    checks the test left no connection open and deletes every stream, KV bucket and consumer."""
    return shared_server.use()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    res = yield  # every function-scoped fixture (stacks, clients, `pas up` processes) is torn down
    shared = SharedServer.current
    if shared is not None and shared.dirty:
        shared.reset()  # raises, failing this test's teardown, when the test left the server in use
    return res


# The longest test modules (wall time per module, measured with 3 workers on 2 cores), run first: under
# pytest-xdist (scripts/test.sh runs the suite with --dist loadfile, one module per worker at a time) a long module
# that starts last would leave the other workers idle at the end. The first three mix the CPU-bound `pas bench
# --quick`, a cluster test that mostly waits for elections and redeliveries, and the fresh clone's demo. The
# fresh tests share one wheelhouse, built under a lock by whichever comes first (tests/fresh_support.py).
LONGEST_FIRST = [
    "test_bench_pas.py",
    "test_cluster.py",
    "test_fresh_install.py",
    "test_readme_commands.py",
    "test_fresh_wheel.py",
    "test_eval.py",
    "test_hmi_browser.py",
    "test_http_adapter.py",
    "test_trust_exec.py",
    "test_natscli.py",
    "test_rerun.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(rank)))  # stable: the rest keep their order


def make_cfg(*extra: str) -> PasConfig:
    return load_config(overrides=[*FAST, *extra])


@pytest.fixture
def cfg() -> PasConfig:
    return make_cfg()


CODE_LANE = ["monitor", "gateway", "root", "architect", "dir-code", "mgr-code-01", "prog-001", "prog-002"]
"""Every tier a code-lane job passes through, one agent each (two programmers): the agents a test needs
when all its jobs are code tasks; the other lanes' directors and managers and eight programmers stay off."""


@pytest.fixture
def stack_agents() -> list[str] | None:
    """The agents (ids or globs) the `stack` fixture starts; None starts every agent. A module whose jobs
    use fewer roles overrides this fixture (e.g. returning CODE_LANE): a smaller stack starts and stops
    in about half the time and loads the machine less while its tests run."""
    return None


@pytest.fixture
async def stack(nats_server: EmbeddedServer, cfg: PasConfig, stack_agents: list[str] | None) -> AsyncIterator[Stack]:
    st = Stack(cfg, url=nats_server.url, only=stack_agents)
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[Any]:
    c = await pas_connect(nats_server.url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[PasClient]:
    c = await PasClient.connect(nats_server.url, timeout_s=10)
    try:
        yield c
    finally:
        await c.close()


class PasProcess:
    """`pas up ...` in its own process (its own process group, so SIGKILL takes it alone)."""

    def __init__(self, args: list[str], tmp: Path, name: str) -> None:
        self.ready = tmp / f"{name}.ready"
        self.log = tmp / f"{name}.log"
        if self.ready.exists():
            self.ready.unlink()
        self.args = [sys.executable, "-m", "pas", "up", "--no-http", "--ready-file", str(self.ready), *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> PasProcess:
        with self.log.open("ab") as fh:  # the child has its own copy of the descriptor
            self.proc = subprocess.Popen(self.args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=str(self.log.parent), start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pas up exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pas up not ready in {timeout_s}s: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return self.ready.read_text().strip()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


@pytest.fixture
def pas_procs(tmp_path: Path) -> Iterator[Any]:
    procs: list[PasProcess] = []

    def spawn(*args: str, name: str | None = None) -> PasProcess:
        p = PasProcess(list(args), tmp_path, name or f"pas{len(procs)}")
        procs.append(p)
        return p.start()

    try:
        yield spawn
    finally:
        for p in procs:
            p.kill()


def fast_args() -> list[str]:
    out: list[str] = []
    for o in FAST:
        out += ["-c", o]
    return out


async def wait_for(pred: Any, timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    """Poll an async or sync predicate until it returns a truthy value (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


async def as_user(st: Stack, user: str) -> Any:
    """A connection to a stack's embedded server as one of its NATS users (an agent id, client, admin ...)."""
    return await connect(st.url or "", name=f"test-{user}", **auth.connect_kw(st.creds[user]))
