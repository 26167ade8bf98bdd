"""The HMI's event hub holds the runs and comms subscriptions only while a browser listens: with
none, a job costs the adapter process no message; the first browser gets them live before its
"hello", and they go when the last one leaves."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats

from pas import subjects as S
from pas.http.events import EventHub
from tests.conftest import wait_for


async def test_runs_and_comms_are_followed_only_while_a_browser_listens(nats_server: Any) -> None:
    hub_nc = await nats.connect(nats_server.url)
    pub = await nats.connect(nats_server.url)
    hub = EventHub(hub_nc, ping_s=30)
    await hub.start()
    try:
        before = hub_nc.stats["in_msgs"]
        await pub.publish(S.comms("r1", "gateway", "CMD"), b'{"message": "nobody listens"}')
        await pub.publish(S.run_status("r1"), b'{"status": "queued"}')
        await pub.flush()
        await hub_nc.flush()  # the server sends what it had for us before the PONG
        assert hub.live == [] and hub_nc.stats["in_msgs"] == before

        stream = hub.stream({"hi": 1})
        assert await anext(stream) == "retry: 1000\n\n"
        assert (await anext(stream)).startswith("event: hello")
        assert len(hub.live) == 2
        await pub.publish(S.comms("r1", "gateway", "CMD"), json.dumps({"message": "seen"}).encode())
        item = await asyncio.wait_for(anext(stream), 5)
        assert item.startswith("event: comms") and '"seen"' in item
        await stream.aclose()  # the browser leaves
        await wait_for(lambda: hub.live == [], 5)
        before = hub_nc.stats["in_msgs"]
        await pub.publish(S.comms("r1", "gateway", "CMD"), b'{"message": "gone"}')
        await pub.flush()
        await hub_nc.flush()
        assert hub_nc.stats["in_msgs"] == before
    finally:
        await hub.close()
        await hub_nc.close()
        await pub.close()
