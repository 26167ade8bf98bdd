"""Live events for the HMI: a few NATS subscriptions fanned out to every SSE client.

    pas.hb.*                      -> "beats"  (coalesced: latest beat per agent, flushed every flush_s)
    pas.alert.agent.*             -> "alert"  (dead / recovered, from the heartbeat monitor)
    pas.run.<run>.{status,lane,job,task}.* -> "run" {kind, run_id, data}
    pas.comms.>                   -> "comms"  (one CommsEntry)
    pas.ctl.*.model_changed       -> "model"  (the change an agent announces after set_model)

One subscription per kind for the whole adapter, whatever the number of browsers. Runs and comms
are subscribed only while at least one browser listens: with none, a job costs the adapter no
message. A browser whose queue overflows gets a "resync" event (it reloads its state over /api)
instead of a stalled stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from pas import subjects as S

log = logging.getLogger("pas.http.events")

RUN_KINDS = {"status", "lane", "job", "task"}
_CLOSE = object()


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


@dataclass(eq=False)
class SseClient:
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(maxsize=5000))
    overflow: bool = False


class EventHub:
    def __init__(self, nc: Client, flush_s: float = 0.5, ping_s: float = 10.0) -> None:
        self.nc = nc
        self.flush_s = flush_s
        self.ping_s = ping_s
        self.clients: set[SseClient] = set()
        self._beats: dict[str, Any] = {}
        self._subs: list[Any] = []
        self.live: list[Any] = []  # the runs and comms subscriptions, held while a browser listens
        self._follow_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[Any] | None = None
        self.closed = False

    async def start(self) -> None:
        self._subs = [
            await self.nc.subscribe(S.HEARTBEAT_ALL, cb=self._on_beat),
            await self.nc.subscribe(S.alert_agent("*"), cb=self._on_alert),
            await self.nc.subscribe(S.ctl("*", "model_changed"), cb=self._on_model),
        ]
        self._flusher = asyncio.ensure_future(self._flush_loop())

    async def follow(self) -> None:
        """Hold the runs and comms subscriptions while there are browsers, drop them when the last
        one leaves."""
        async with self._follow_lock:
            if self.clients and not self.live and not self.closed:
                self.live = [await self.nc.subscribe(S.EVENTS_ALL, cb=self._on_run),
                             await self.nc.subscribe(S.COMMS_ALL, cb=self._on_comms)]
                await self.nc.flush()  # live at the server before the browser hears "hello"
            elif (not self.clients or self.closed) and self.live:
                subs, self.live = self.live, []
                for sub in subs:
                    try:
                        await sub.unsubscribe()
                    except Exception:
                        pass

    async def close(self) -> None:
        self.closed = True
        if self._flusher:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.follow()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        for c in list(self.clients):
            self._put(c, _CLOSE, force=True)

    # ---- fan-out ---------------------------------------------------------------------------
    def _put(self, c: SseClient, item: Any, force: bool = False) -> None:
        if force:
            while c.queue.full():
                c.queue.get_nowait()
        try:
            c.queue.put_nowait(item)
        except asyncio.QueueFull:
            c.overflow = True

    def broadcast(self, event: str, data: Any) -> None:
        if not self.clients:
            return
        text = sse(event, data)
        for c in list(self.clients):
            self._put(c, text)

    @staticmethod
    def _json(msg: Msg) -> Any:
        try:
            return json.loads(msg.data)
        except ValueError:
            return None

    async def _on_beat(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict) and isinstance(d.get("agent"), str):
            self._beats[d["agent"]] = {k: d.get(k) for k in ("ts", "status", "run_id", "message")}

    async def _on_alert(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict):
            self.broadcast("alert", d)

    async def _on_run(self, msg: Msg) -> None:
        ev = S.parse_run(msg.subject)
        if ev is None or ev.kind not in RUN_KINDS:
            return  # done.* and cancel: internal hand-offs, already visible as status changes
        d = self._json(msg)
        if isinstance(d, dict):
            self.broadcast("run", {"kind": ev.kind, "run_id": ev.run_id, "data": d})

    async def _on_comms(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict):
            self.broadcast("comms", d)

    async def _on_model(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict):
            self.broadcast("model", d)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            if self._beats:
                beats, self._beats = self._beats, {}
                self.broadcast("beats", beats)

    # ---- one browser -----------------------------------------------------------------------
    async def stream(self, hello: dict[str, Any]) -> AsyncIterator[str]:
        """The text/event-stream of one client; ends when the adapter stops."""
        c = SseClient()
        self.clients.add(c)
        try:
            await self.follow()
            yield "retry: 1000\n\n"  # EventSource reconnects after 1 s, never faster
            yield sse("hello", hello)
            while not self.closed:
                if c.overflow:
                    while not c.queue.empty():
                        c.queue.get_nowait()
                    c.overflow = False
                    yield sse("resync", {"reason": "client too slow; reload state"})
                try:
                    item = await asyncio.wait_for(c.queue.get(), self.ping_s)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                if item is _CLOSE:
                    return
                yield item
        finally:
            self.clients.discard(c)
            if not self.clients:  # (a task: a generator being closed may not wait)
                t = asyncio.ensure_future(self.follow())
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
