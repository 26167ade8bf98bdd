"""A callback-driven pull with prefetch on one durable consumer (what nats.go's Consume does).

Pull requests stay outstanding at the consumer, answered on an inbox subscription whose callback
hands each delivery on at once: no request per delivery, no no-wait probe, no 404s.

- Never more asked for than there are free slots: `outstanding` (messages requested, not yet
  delivered or released by a status) + the handlers running <= the slots, so a loop never holds
  work it cannot start while another agent of the same consumer idles. (A delivery is always
  handed on, even past the slots: only a request given up as lost that was alive after all can
  cause that.)
- Ask again when more than half of the free slots have nothing asked for them (the outstanding
  count dropped to half): a steady stream costs one pull per ~limit/2 deliveries.
- Each request expires after `expires_s` (a pull lives at the consumer leader and is lost silently
  with it, or with our server): the server then answers 408 with how many were not delivered
  (Nats-Pending-Messages), and the slots are asked for again. An idle loop costs one pull and one
  408 per `expires_s`. No idle heartbeats: they would cost more messages than the expiry does, and
  a request that gets no answer at all by `expires_s` + a grace (half of it, at least 0.5 s) counts
  as lost and is asked again at once.
- Each request's reply subject is `<inbox>.<generation>.<batch>`, so a status names the request it
  ends. 100 (idle heartbeat): the consumer is alive. 408, and a 409 that carries
  Nats-Pending-Messages: that many are no longer outstanding. 503 (no responders: no consumer
  leader, no consumer), 400 and 409 "Exceeded MaxWaiting": the request was never served (its whole
  batch). Any other status (409 Leadership Change, Consumer Deleted, Server Shutdown): every
  request is gone; a new generation starts (late statuses of the old one are ignored).
- Failures (503, 400, a 409 other than a leadership change or one with a count, a lost request, a
  publish that raised) are logged once ("fetch failed ...; retrying") and retried every 0.5 s; the
  first answer after them logs "fetch no longer failing, after N failed attempts in T s".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger("pas.transport.pull")

RETRY_S = 0.5
PENDING = "Nats-Pending-Messages"


def ended(status: str, description: str, pending: str | None, batch: int) -> tuple[int | None, bool]:
    """A status that ends a pull request -> (how many it releases, None: every request of its
    generation is gone; whether the consumer answered as it should)."""
    what = description.lower()
    if pending is not None:  # 408 expired, 409 over max bytes: the rest is released
        return int(pending), True
    if status in ("503", "400") or "maxwaiting" in what:  # never served: no leader / consumer, refused
        return batch, False
    # 409 Leadership Change (ask the new leader at once), Consumer Deleted, Server Shutdown, others
    return None, "leadership change" in what


class PullFeed:
    """Keeps pull requests outstanding on a durable consumer (`subject`: its S.js_next(stream, durable));
    `deliver` gets every message, `free()` says how many more the owner can start now. Run with run()
    (until cancelled); call top_up() when a slot is freed."""

    def __init__(self, nc: Client, subject: str, *, deliver: Callable[[Msg], None], free: Callable[[], int],
                 expires_s: float, name: str) -> None:
        self.nc, self.name = nc, name
        self.subject = subject
        self.deliver, self.free = deliver, free
        self.expires_s = expires_s
        self.grace_s = max(0.5, expires_s / 2)  # a 408 later than this: the request is lost
        self.outstanding = 0
        self.pulls = 0  # requests sent, for tests and stats
        self._gen = 0
        self._inbox = ""
        self._last_pull = 0.0
        self._retry_at = 0.0  # after a failure: no pull before this
        self._failing_since: float | None = None
        self._failures = 0
        self._sub: Any = None
        self._changed = asyncio.Event()

    async def run(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*.*", cb=self._on_msg)
        try:
            await self.top_up()
            while True:
                await self._wait()
                now = time.monotonic()
                if self.outstanding and now >= self._last_pull + self.expires_s + self.grace_s:
                    if self._sub.pending_msgs:  # answers queued, not yet seen: the event loop is behind
                        await asyncio.sleep(0.05)
                        continue
                    self._failed(f"no answer to a pull in {now - self._last_pull:.1f} s (request lost)", backoff=False)
                    self._new_generation()
                await self.top_up()
        finally:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def _wait(self) -> None:
        """Until a status or failure changed something, the retry time comes, or the outstanding
        requests should all have been answered."""
        due = []
        if self.outstanding:
            due.append(self._last_pull + self.expires_s + self.grace_s)
        if self._retry_at:
            due.append(self._retry_at)
        self._changed.clear()
        try:
            async with asyncio.timeout(max(0.0, min(due) - time.monotonic()) if due else None):
                await self._changed.wait()
        except TimeoutError:
            pass

    async def top_up(self) -> None:
        """Ask for the free slots nothing is asked for, when that is more than half of them."""
        if self._sub is None:
            return
        free = self.free()
        want = free - self.outstanding
        if want <= free // 2:
            return
        now = time.monotonic()
        if now < self._retry_at:
            return  # run() asks again at _retry_at
        self._retry_at = 0.0
        self.outstanding += want
        self._last_pull = now
        self.pulls += 1
        body = b'{"batch":%d,"expires":%d}' % (want, int(self.expires_s * 1e9))
        try:
            await self.nc.publish(self.subject, body, reply=f"{self._inbox}.{self._gen}.{want}")
        except Exception as e:
            self.outstanding = max(0, self.outstanding - want)
            self._failed(repr(e))

    async def _on_msg(self, m: Msg) -> None:
        if m.reply:  # a delivery (statuses come without an ack subject)
            self.outstanding = max(0, self.outstanding - 1)
            if self._failing_since is not None:
                self._recovered()
            self.deliver(m)
            return
        hdrs = m.headers or {}
        status = hdrs.get("Status", "")
        _, gen, batch = m.subject.rsplit(".", 2)
        if status == "100" or gen != str(self._gen):
            return  # an idle heartbeat, or the late answer to a request already given up
        released, ok = ended(status, hdrs.get("Description", ""), hdrs.get(PENDING), int(batch))
        if released is None:
            self._new_generation()
        else:
            self.outstanding = max(0, self.outstanding - released)
        if not ok:
            self._failed(f"{status} {hdrs.get('Description', '')}")
        elif self._failing_since is not None:
            self._recovered()
        await self.top_up()

    def _new_generation(self) -> None:
        self._gen += 1
        self.outstanding = 0

    def _failed(self, why: str, backoff: bool = True) -> None:
        """Logged once until an answer comes; the next pull waits RETRY_S (a lost request, which
        already took expires + grace, is asked again at once)."""
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("%s: fetch failed: %s; retrying (every %.1f s while it fails)", self.name, why, RETRY_S)
        if backoff:
            self._retry_at = time.monotonic() + RETRY_S
        self._changed.set()

    def _recovered(self) -> None:
        assert self._failing_since is not None
        log.warning("%s: fetch no longer failing, after %d failed attempts in %.1f s",
                    self.name, self._failures, time.monotonic() - self._failing_since)
        self._failing_since, self._failures = None, 0
