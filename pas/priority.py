"""The programmer pool's priority bands: one JetStream work-queue subject and durable consumer per
band (`pas.work.prog.<band>`, consumer `prog-<band>`, bands 20, 10, 5, 1), pulled highest first.

Why subjects per band, not NATS 2.11+ consumer priority groups: priority groups (`overflow`,
`pinned_client`, `prioritized`) choose which *client* gets the next message of one consumer; the
messages themselves still come out in stream order. What PAS needs is the opposite: which *message*
(task) goes next, whatever programmer asks. Separate subjects give that with nothing but plain pull
consumers, each band's backlog is its consumer's pending count, and every band keeps the pool's
at-least-once redelivery (ack wait, in-progress marks).

The rule, per programmer, each time it has a free slot:
1. try the bands from the highest down with a no-wait pull, take the first message there is;
2. aging: after `pool.priority_burst` tasks in a row from one band, first try the bands below it
   (a different one first each time), so waiting low-priority work gets a task through at least
   once every burst+1 tasks and is never starved by a stream of high-priority work.
A band found empty is skipped until a publish to it is seen on `pas.work.prog.*` (a core subscription)
or 0.5 s pass (redeliveries publish nothing), so a task costs one pull, not one per band. When every
band is empty the loop sleeps until such a publish wakes it, or 0.5 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from pas import subjects as S
from pas.service import WorkLoop

log = logging.getLogger("pas.priority")
NO_WAIT = json.dumps({"batch": 1, "no_wait": True}).encode()
RECHECK_S = 0.5


class BandedWorkLoop(WorkLoop):
    """A WorkLoop over several durable consumers of one stream, highest priority first."""

    def __init__(self, nc: Client, durables: list[str], subjects: list[str], wake_subject: str, burst: int,
                 **kw: Any) -> None:
        super().__init__(durable=durables[0], **kw)
        self.nc = nc
        self.durables = durables
        self.band_of = {s: i for i, s in enumerate(subjects)}  # band subject -> index in durables
        self.wake_subject = wake_subject
        self.burst = max(1, burst)
        self.streak_band: int | None = None  # index of the band the current streak is from
        self.streak = 0
        self.turn = 0  # which lower band gets the next aging pick first
        self._wake = asyncio.Event()
        self._inboxes: list[Any] = []
        # A band found empty is not asked again until a publish to it is seen (or RECHECK_S passes,
        # for redeliveries, which publish nothing): one pull per task instead of one per band.
        self._empty_at = [0.0] * len(durables)
        self._woke_at = [0.0] * len(durables)

    def order(self) -> list[int]:
        """Band indexes to try, in order, for the next pick."""
        top = list(range(len(self.durables)))
        b = self.streak_band
        if self.streak >= self.burst and b is not None and b < len(top) - 1:
            lower = top[b + 1:]
            k = self.turn % len(lower)
            self.turn += 1
            first = lower[k:] + lower[:k]
            return first + [i for i in top if i not in first]
        return top

    def _picked(self, i: int) -> None:
        if i == self.streak_band:
            self.streak += 1
        else:
            self.streak_band, self.streak = i, 1

    async def _pull(self, i: int) -> Msg | None:
        """One no-wait pull from band i, answered on that band's own inbox (a JetStream delivery
        keeps its stream subject, so nc.request's reply matching cannot be used)."""
        sub = self._inboxes[i]
        while sub.pending_msgs:  # the late answer of a pull that timed out: a task may be in it
            m = await sub.next_msg(timeout=self.fetch_timeout_s)
            if not _status(m):
                return m
        await self.nc.publish(S.js_next(self.stream, self.durables[i]), NO_WAIT, reply=sub.subject)
        m = await sub.next_msg(timeout=self.fetch_timeout_s)
        return None if _status(m) else m  # 404 no messages, 408, 409: nothing in this band now

    async def _next(self) -> Msg | None:
        for i in self.order():
            now = time.monotonic()
            if self._empty_at[i] > self._woke_at[i] and now - self._empty_at[i] < RECHECK_S:
                continue  # empty a moment ago, and nothing published to it since
            m = await self._pull(i)
            if m is not None:
                self._picked(i)
                return m
            self._empty_at[i] = time.monotonic()
        return None

    async def _run(self) -> None:
        async def woke(msg: Msg) -> None:
            i = self.band_of.get(msg.subject)
            if i is not None:
                self._woke_at[i] = time.monotonic()
            self._wake.set()

        sub = await self.nc.subscribe(self.wake_subject, cb=woke)
        self._inboxes = [await self.nc.subscribe(self.nc.new_inbox()) for _ in self.durables]
        failing_since: float | None = None
        try:
            while True:
                async with self._slot:
                    await self._slot.wait_for(lambda: self.in_flight < self.concurrency)
                self._wake.clear()  # a publish from now on wakes the wait below
                try:
                    m = await self._next()
                except (TimeoutError, NatsTimeoutError, NoRespondersError) as e:
                    m = None
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.warning("%s: pull failed: %r; retrying", self.name, e)
                    await asyncio.sleep(0.5)
                    continue
                except Exception as e:
                    log.warning("%s: pull failed: %r; retrying in 0.5 s", self.name, e)
                    await asyncio.sleep(0.5)
                    continue
                failing_since = None
                if m is None:
                    try:
                        await asyncio.wait_for(self._wake.wait(), 0.5)
                    except TimeoutError:
                        pass
                    continue
                self.in_flight += 1
                t = self.spawn(self._handle(m))
                self._running.add(t)
                t.add_done_callback(self._running.discard)
        finally:
            for s in (sub, *self._inboxes):
                try:
                    await s.unsubscribe()
                except Exception:
                    pass


def _status(m: Msg) -> bool:
    return bool((m.headers or {}).get("Status")) or not m.reply
