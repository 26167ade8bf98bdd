"""pas.transport.natscompat.Client (what pas.transport.connection.connect returns): nats-py's client with a
flusher that waits one turn of the event loop and writes everything pending at once. A publish made in
the turn after another goes out in the same socket write (nats-py's own flusher writes twice); order,
flush() and request/reply are unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

from pas.transport.connection import connect


async def test_a_publish_of_the_next_turn_shares_the_socket_write(nats_server: Any) -> None:
    pub = await connect(nats_server.url, "conn-pub")
    sub = await connect(nats_server.url, "conn-sub")
    try:
        got: list[bytes] = []

        async def on_msg(m: Any) -> None:
            got.append(m.data)

        await sub.subscribe("conn.t", cb=on_msg)
        await sub.flush()
        await pub.flush()
        transport = pub._transport  # count the socket writes (the real writelines still does them)
        assert transport is not None
        real = transport.writelines
        writes: list[int] = []

        def counted(data: Any) -> None:
            writes.append(1)
            real(data)

        transport.writelines = counted  # type: ignore[method-assign]
        per_pair = []
        for i in range(10):
            writes.clear()
            await pub.publish("conn.t", f"{i}a".encode())  # this turn
            await asyncio.ensure_future(pub.publish("conn.t", f"{i}b".encode()))  # a task: the next turn
            for _ in range(5):
                await asyncio.sleep(0)  # the flusher has written by now
            per_pair.append(len(writes))
        assert per_pair == [1] * 10, per_pair  # nats-py's own flusher: [2, 2, ...]
        await pub.flush(timeout=5)
        await sub.flush(timeout=5)
        assert got == [f"{i}{x}".encode() for i in range(10) for x in "ab"]  # order kept

        async def echo(m: Any) -> None:
            await m.respond(m.data[::-1])

        await sub.subscribe("conn.echo", cb=echo)
        await sub.flush()
        replies = await asyncio.gather(*(pub.request("conn.echo", f"x{i}".encode(), timeout=5) for i in range(20)))
        assert [r.data for r in replies] == [f"x{i}"[::-1].encode() for i in range(20)]
        assert pub.writes > 0
    finally:
        await pub.close()
        await sub.close()


async def test_flush_right_after_subscribe_sends_the_sub_before_its_ping(nats_server: Any) -> None:
    """nats-py writes a flush's PING straight to the socket, ahead of a SUB still pending, so the PONG
    could come back before the server had the subscription (a request made next: no responders)."""
    nc = await connect(nats_server.url, "conn-order")
    other = await connect(nats_server.url, "conn-other")
    try:
        transport = nc._transport
        assert transport is not None
        order: list[bytes] = []
        real_write, real_lines = transport.write, transport.writelines

        def write(data: bytes) -> None:
            order.append(bytes(data))
            real_write(data)

        def writelines(data: Any) -> None:
            order.extend(bytes(d) for d in data)
            real_lines(data)

        transport.write, transport.writelines = write, writelines  # type: ignore[method-assign]
        for i in range(20):
            order.clear()

            async def echo(m: Any) -> None:
                await m.respond(b"ok")

            await nc.subscribe(f"conn.order.{i}", cb=echo)
            await nc.flush(timeout=5)
            kinds = [d.split(b" ")[0].strip() for d in order]
            assert kinds.index(b"SUB") < kinds.index(b"PING"), kinds
            reply = await other.request(f"conn.order.{i}", b"", timeout=5)  # no responders without the fix
            assert reply.data == b"ok"
    finally:
        await nc.close()
        await other.close()
