"""One PAS stack for all the tests of a module, when they only submit and read independent runs.

In such a module:

    pytestmark = pytest.mark.asyncio(loop_scope="module")
    stack, nc, client = module_stack()

The stack runs on the module's own nats-server (not the session's: tests of other modules, or a
test of this one that starts its own agents, would meet this stack's agent ids on the bus), in the
module's event loop, and is stopped after the module's last test. `nc` and `client` are fresh per
test. A test that kills, stops or reconfigures agents keeps its own stack instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from pas.transport.connection import connect as pas_connect
from pas.transport.server import EmbeddedServer


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(Path(tmp_path_factory.mktemp("nats-module")), port=-1)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def module_stack(*overrides: str) -> tuple[Any, Any, Any]:
    """The fixtures `stack` (module-scoped), `nc` and `client` for a module's shared stack."""
    from tests.conftest import make_cfg

    @pytest_asyncio.fixture(scope="module", loop_scope="module", name="stack")
    async def stack(module_server: EmbeddedServer) -> AsyncIterator[Stack]:
        async with Stack(make_cfg(*overrides), url=module_server.url) as st:
            yield st

    @pytest_asyncio.fixture(loop_scope="module", name="nc")
    async def nc(stack: Stack) -> AsyncIterator[Any]:
        c = await pas_connect(stack.url or "")
        try:
            yield c
        finally:
            await c.close()

    @pytest_asyncio.fixture(loop_scope="module", name="client")
    async def client(stack: Stack) -> AsyncIterator[PasClient]:
        async with await PasClient.connect(stack.url or "", timeout_s=10) as c:
            yield c

    return stack, nc, client
