"""Live events for the HMI: a few NATS subscriptions fanned out to every SSE client.

    pas.hb.*                      -> "beats"  {agent: latest beat}
    pas.alert.agent.*             -> "alert"  (dead / recovered, from the heartbeat monitor)
    pas.run.<run>.{status,lane,job,task}.* -> "runs" {t, items: [{kind, run_id, data}]}
    PAS_COMMS (pas.comms.>)       -> "comms"  {t, entries: [CommsEntry + seq]}
    pas.ctl.*.model_changed       -> "model"  (the change an agent announces after set_model)

Nothing is lost between the bus and the page, and no browser can make the hub's memory grow with the
event rate (issue 22):
- run state is coalesced: each client holds the latest state of each run, lane, job and task it has
  not been sent yet (a dict keyed by object), so a browser that falls behind gets the current state
  of everything that changed, in one batch, never a gap. Its backlog is bounded by the number of
  live objects, not by the number of events;
- comms entries are read from PAS_COMMS with their stream sequence; each client keeps at most
  COMMS_BACKLOG unsent entries (the oldest go first), and the page fills any hole in the sequence
  from PAS_COMMS (GET /api/comms?start_seq=).
Batches go out every flush_s; each carries `t`, when the hub received the oldest item in it (ms since
the epoch), so the page can say how far behind the bus it is.

One subscription per kind for the whole adapter, whatever the number of browsers. Runs and comms
are followed only while at least one browser listens: with none, a job costs the adapter no message.
Every body is validated (pas.protocol.wire) before it is forwarded: a bad one is skipped with a WARNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import check as check_entry
from pas.transport.streams import read_raw

log = logging.getLogger("pas.surfaces.http.events")

RUN_KINDS = {"status", "lane", "job", "task"}
COMMS_BACKLOG = 2000  # unsent comms entries kept per client; the page refills older ones by sequence
MISC_BACKLOG = 1000   # alerts and model changes (rare) kept per client
LIVE_TEXT = 300  # characters of a task's texts sent live (the page shows one line; a run's detail has more)
_RANK = {"queued": 0, "running": 1, "waiting_approval": 1.5}


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _rank(status: str) -> float:
    return _RANK.get(status, 2)


@dataclass(frozen=True)
class State:
    """The latest known state of one run, lane, job or task, encoded once for every client."""

    status: str
    message: str
    text: str  # {"kind":..,"run_id":..,"data":..} as JSON

    def replaces(self, old: State) -> bool:
        """Records only move forward (queued -> running -> terminal); an approval moves a run
        from waiting_approval back to running."""
        return _rank(self.status) >= _rank(old.status) or self.message == "plan approved"


def _trim(t: wire.TaskRecord) -> None:
    """Keep what one row of the run view shows: a job of 2,000 tasks sends 6,000 states to every page."""
    t.instruction, t.error = t.instruction[:LIVE_TEXT], t.error[:LIVE_TEXT]
    t.output = t.output[-LIVE_TEXT:]
    if t.command is not None:
        t.command = t.command[:LIVE_TEXT]
    if t.diff_stat is not None:
        t.diff_stat = t.diff_stat[:LIVE_TEXT]


def _merge(into: dict[tuple[str, ...], State], new: dict[tuple[str, ...], State]) -> None:
    for k, s in new.items():
        old = into.get(k)
        if old is None or s.replaces(old):
            into[k] = s


@dataclass(eq=False)
class SseClient:
    runs: dict[tuple[str, ...], State] = field(default_factory=dict)
    comms: deque[str] = field(default_factory=lambda: deque(maxlen=COMMS_BACKLOG))
    misc: deque[str] = field(default_factory=lambda: deque(maxlen=MISC_BACKLOG))
    beats: dict[str, Any] = field(default_factory=dict)
    t0: float | None = None  # hub receive time (ms) of the oldest unsent item
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    max_backlog: int = 0  # most run states ever waiting for this client (the coalescing bound)
    comms_dropped: int = 0  # entries the page had to refill from PAS_COMMS


@dataclass
class HubStats:
    run_events: int = 0  # run events received from the bus
    run_states_sent: int = 0  # coalesced states written to clients
    comms: int = 0
    skipped: int = 0  # bodies that did not validate


class EventHub:
    def __init__(self, nc: Client, flush_s: float = 0.1, ping_s: float = 10.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.flush_s = flush_s
        self.ping_s = ping_s
        self.clients: set[SseClient] = set()
        self.stats = HubStats()
        self._beats: dict[str, Any] = {}
        self._runs: dict[tuple[str, ...], State] = {}
        self._comms: list[str] = []
        self._misc: list[str] = []
        self._t0: float | None = None
        self._subs: list[Any] = []
        self.live: list[Any] = []  # what follows runs and comms, held while a browser listens
        self._comms_stop: asyncio.Event | None = None
        self._comms_next = 0  # the PAS_COMMS sequence the reader goes on from
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
        """Hold the runs subscription and the PAS_COMMS reader while there are browsers, drop them
        when the last one leaves."""
        async with self._follow_lock:
            if self.clients and not self.live and not self.closed:
                runs = await self.nc.subscribe(S.EVENTS_ALL, cb=self._on_run)
                self._comms_stop = asyncio.Event()
                comms = await self._comms_reader(self._comms_stop)
                self.live = [runs, comms]
                await self.nc.flush()  # live at the server before the browser hears "hello"
            elif (not self.clients or self.closed) and self.live:
                (runs, comms), self.live = self.live, []
                if self._comms_stop is not None:
                    self._comms_stop.set()
                with contextlib.suppress(Exception):
                    await runs.unsubscribe()
                comms.cancel()
                await asyncio.gather(comms, return_exceptions=True)

    async def _comms_reader(self, stop: asyncio.Event) -> asyncio.Task[Any]:
        """A task tailing PAS_COMMS from its next sequence on (entries stored from now)."""
        try:
            info = await self.js.stream_info(S.STREAM_COMMS)
            self._comms_next = (info.state.last_seq or 0) + 1
        except Exception as e:
            log.warning("no comms for the HMI: %s %r", S.STREAM_COMMS, e)
            return asyncio.ensure_future(stop.wait())

        async def tail() -> None:
            while not stop.is_set():
                try:
                    async for m in read_raw(self.js, S.STREAM_COMMS, S.COMMS_ALL, follow=True,
                                            start_seq=self._comms_next, stop=stop, inactive_s=10.0):
                        self._on_comms(m.seq, m.subject, m.data)
                    return
                except Exception as e:  # a leader election, a restart: read on from where we were
                    log.warning("reading %s for the HMI: %r; again", S.STREAM_COMMS, e)
                    await asyncio.sleep(1.0)

        return asyncio.ensure_future(tail())

    async def close(self) -> None:
        self.closed = True
        if self._flusher:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.follow()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for c in list(self.clients):
            c.closed = True
            c.wake.set()

    # ---- from the bus ----------------------------------------------------------------------
    def _received(self) -> None:
        if self._t0 is None:
            self._t0 = time.time() * 1000

    def _misc_event(self, event: str, data: Any) -> None:
        if self.clients:
            self._received()
            self._misc.append(sse(event, data))

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
            self._misc_event("alert", d)

    async def _on_model(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict):
            self._misc_event("model", d)

    async def _on_run(self, msg: Msg) -> None:
        ev = S.parse_run(msg.subject)
        if ev is None or ev.kind not in RUN_KINDS:
            return  # done.* and cancel: internal hand-offs, already visible as status changes
        self.stats.run_events += 1
        try:
            body: Any = wire.run_event(msg.subject, msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.stats.skipped += 1
            log.warning("HMI skips a bad %s event on %s: %s", ev.kind, msg.subject, e)
            return
        if body is None:
            return  # a record's deletion
        if isinstance(body, wire.TaskRecord):
            _trim(body)
        data = wire.encode(body).decode()
        text = f'{{"kind":{json.dumps(ev.kind)},"run_id":{json.dumps(ev.run_id)},"data":{data}}}'
        state = State(body.status, getattr(body, "message", ""), text)
        key = (ev.run_id, ev.kind, *ev.rest)
        old = self._runs.get(key)
        if old is None or state.replaces(old):
            self._runs[key] = state
        self._received()

    def _on_comms(self, seq: int, subject: str, data: bytes) -> None:
        self._comms_next = max(self._comms_next, seq + 1)
        try:
            e = wire.decode(data, wire.CommsEntry)
            check_entry(subject, e)  # the sender NATS checked (the subject) is the one it names
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as err:
            self.stats.skipped += 1
            log.warning("HMI skips bad comms entry %s #%d: %s", S.STREAM_COMMS, seq, err)
            return
        self.stats.comms += 1
        e.metadata = {}  # the log shows none of it; pas log and the timeline do
        self._comms.append(wire.encode(e).decode()[:-1] + f',"seq":{seq}}}')
        self._received()

    # ---- to the browsers -------------------------------------------------------------------
    def flush(self) -> None:
        """Hand what arrived since the last flush to every client (coalescing run states)."""
        if not (self._runs or self._comms or self._misc or self._beats):
            return
        runs, comms, misc, beats, t0 = self._runs, self._comms, self._misc, self._beats, self._t0
        self._runs, self._comms, self._misc, self._beats, self._t0 = {}, [], [], {}, None
        for c in self.clients:
            _merge(c.runs, runs)
            c.max_backlog = max(c.max_backlog, len(c.runs))
            room = COMMS_BACKLOG - len(c.comms)
            c.comms_dropped += max(0, len(comms) - room)
            c.comms.extend(comms)
            c.misc.extend(misc)
            c.beats.update(beats)
            if t0 is not None:
                c.t0 = t0 if c.t0 is None else min(c.t0, t0)
            c.wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            self.flush()

    def _drain(self, c: SseClient) -> str:
        """One chunk of text with everything the client has not been sent yet."""
        out: list[str] = list(c.misc)
        c.misc.clear()
        t = json.dumps(c.t0)
        if c.runs:
            items = ",".join(s.text for s in c.runs.values())
            self.stats.run_states_sent += len(c.runs)
            c.runs = {}
            out.append(f'event: runs\ndata: {{"t":{t},"items":[{items}]}}\n\n')
        if c.comms:
            entries = ",".join(c.comms)
            c.comms.clear()
            out.append(f'event: comms\ndata: {{"t":{t},"entries":[{entries}]}}\n\n')
        if c.beats:
            out.append(sse("beats", c.beats))
            c.beats = {}
        c.t0 = None
        return "".join(out)

    async def stream(self, hello: dict[str, Any]) -> AsyncIterator[str]:
        """The text/event-stream of one client; ends when the adapter stops. A client that reads
        slowly makes this generator wait in its yield; meanwhile its backlog coalesces."""
        c = SseClient()
        self.clients.add(c)
        try:
            # Shielded: a browser that leaves at once cancels this generator, and a NATS flush cancelled
            # mid-way makes nats-py drop what it was reading (InvalidStateError on the PONG): other
            # requests' replies on the adapter's connection were lost (504).
            await asyncio.shield(self.follow())
            yield "retry: 1000\n\n"  # EventSource reconnects after 1 s, never faster
            yield sse("hello", {**hello, "now": time.time() * 1000})
            while not (self.closed or c.closed):
                try:
                    await asyncio.wait_for(c.wake.wait(), self.ping_s)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                c.wake.clear()
                if c.closed:
                    return
                text = self._drain(c)
                if text:
                    yield text
        finally:
            self.clients.discard(c)
            if not self.clients:  # (a task: a generator being closed may not wait)
                t = asyncio.ensure_future(self.follow())
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
