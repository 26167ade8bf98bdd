"""Watch one run through its events (pas.run.<run_id>.>), for the MCP progress notifications and
the A2A stream: subscribe first, then read the status once, then only react to pushed events.

    async with RunWatch(client, run_id) as w:      # subscribed from here on
        await client.submit(job)                   # nothing it publishes can be missed
        final = await w.until_done(timeout_s, on_event)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.client import GatewayTimeout, PasClient, event_fields

OnEvent = Callable[[int, str], Awaitable[None]]


def describe(subject: str, body: dict[str, Any]) -> str | None:
    """One line for an event: "task t-3 completed (code)", "lane docs running", "run completed";
    None for the tiers' internal done.* hand-offs (they repeat what the task/job/lane event said)."""
    ev = S.parse_run(subject)
    kind = ev.kind if ev else "?"
    if kind == "done":
        return None
    status = body.get("status", "?")
    if kind == "task":
        return f"task {body.get('task_id')} {status} ({body.get('lane')})"
    if kind == "lane":
        return f"lane {body.get('lane')} {status}"
    if kind == "job":
        return f"job {body.get('job_id')} {status} ({body.get('lane')})"
    if kind == "status":
        return f"run {status}" + (f": {body['message']}" if body.get("message") else "")
    return f"{'.'.join((kind, *ev.rest)) if ev else '?'} {status}"


def is_run_end(subject: str, body: dict[str, Any], run_id: str) -> bool:
    return subject == S.run_status(run_id) and body.get("status") in wire.TERMINAL_RUN


class RunWatch:
    def __init__(self, client: PasClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.sub: Any = None

    async def __aenter__(self) -> RunWatch:
        async def cb(m: Any) -> None:
            if (body := event_fields(m.subject, m.data)) is not None:
                self.queue.put_nowait((m.subject, body))

        self.sub = await self.client.nc.subscribe(S.run_events(S.token(self.run_id)), cb=cb)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except Exception:
                pass

    async def until_done(self, timeout_s: float, on_event: OnEvent | None = None) -> dict[str, Any]:
        """The run's final status. on_event(n, line) is awaited with n = 1, 2, ...: first the run's
        state, read once after subscribing (a run that already ended returns at once, without
        notifications), then one per event. GatewayTimeout when the run has not ended in timeout_s."""
        st = await self.client.status(self.run_id)
        if st["status"] in wire.TERMINAL_RUN:
            return st
        n = 1  # the first notification: where the run stands now (sent once subscribed)
        if on_event is not None:
            ended = sum(t["status"] in wire.TERMINAL_TASK for t in st["tasks"])
            await on_event(n, f"run {st['status']}: {ended}/{len(st['tasks'])} tasks ended")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            left = deadline - loop.time()
            try:
                subject, body = await asyncio.wait_for(self.queue.get(), max(left, 0.0))
            except TimeoutError:
                raise GatewayTimeout(f"run {self.run_id} has not ended after {timeout_s:g}s "
                                     f"(it goes on; wait again with wait_run)") from None
            line = describe(subject, body)
            if line is not None and on_event is not None:
                n += 1
                await on_event(n, line)
            if is_run_end(subject, body, self.run_id):
                return await self.client.status(self.run_id)
