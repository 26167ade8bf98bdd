"""pas.transport.streams.read_raw, the one stream reader (pas log, pas replay, the HTTP comms tail, Bus.kv_values),
against a real JetStream: every message in order with its sequence, from a sequence or a time on, the
last per subject, and a tail that sees new messages until stopped. Its consumers are gone afterwards."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from nats.js.api import StreamConfig

from pas.transport.streams import IncompleteRead, ReadOptions, read_raw
from tests.conftest import wait_for


async def _stream(nc: Any) -> tuple[Any, str, str]:
    js = nc.jetstream()
    name = f"T_{uuid.uuid4().hex[:8]}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    return js, name, name.lower()


async def test_reads_all_from_a_sequence_and_the_last_per_subject(nc: Any) -> None:
    js, stream, subj = await _stream(nc)
    for i in range(7):
        await js.publish(f"{subj}.{'ab'[i % 2]}", str(i).encode())
    got = [m async for m in read_raw(js, stream, f"{subj}.>", ReadOptions(batch=3))]
    assert [(m.seq, m.data) for m in got] == [(i + 1, str(i).encode()) for i in range(7)]
    assert [m.data for m in got if m.subject.endswith(".a")] == [b"0", b"2", b"4", b"6"]
    from_5 = [m.seq async for m in read_raw(js, stream, f"{subj}.>", ReadOptions(start_seq=5))]
    assert from_5 == [5, 6, 7]
    since = [m.seq async for m in read_raw(js, stream, f"{subj}.>", ReadOptions(since=got[3].stored))]
    assert since == [4, 5, 6, 7]
    last = {m.subject: m.data async for m in read_raw(js, stream, f"{subj}.>", ReadOptions(last_per_subject=True))}
    assert last == {f"{subj}.a": b"6", f"{subj}.b": b"5"}
    assert [m async for m in read_raw(js, stream, f"{subj}.none")] == []
    assert (await js.stream_info(stream)).state.consumer_count == 0


async def test_follow_tails_until_stopped(nc: Any) -> None:
    js, stream, subj = await _stream(nc)
    await js.publish(f"{subj}.x", b"old")
    stop, seen = asyncio.Event(), []

    async def tail() -> None:
        async for m in read_raw(js, stream, f"{subj}.>", ReadOptions(follow=True, stop=stop)):
            seen.append(m.data)

    task = asyncio.ensure_future(tail())
    await wait_for(lambda: seen == [b"old"], 10)
    await js.publish(f"{subj}.x", b"new")
    await wait_for(lambda: seen == [b"old", b"new"], 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert (await js.stream_info(stream)).state.consumer_count == 0


async def test_a_complete_read_that_ends_short_raises_instead_of_returning_part(nc: Any) -> None:
    """What a cluster does to a read while a node restarts (a pull answered with a status, nothing
    delivered), done here by purging the stream mid-read: a plain read returns the part it got; a
    complete one (Bus.kv_values: status replies, run lists) raises IncompleteRead, a timeout, which
    pas.transport.retry.retry_js tries again."""
    js, stream, subj = await _stream(nc)
    for i in range(3):
        await js.publish(f"{subj}.k{i}", str(i).encode())
    for complete in (False, True):
        reader = read_raw(js, stream, f"{subj}.>", ReadOptions(batch=1, complete=complete))
        first = await anext(reader)
        assert first.data == b"0"
        await js.purge_stream(stream)
        if complete:
            with pytest.raises(IncompleteRead, match="2 message"):
                await anext(reader)
            assert isinstance(IncompleteRead("x"), TimeoutError)  # pas.transport.retry.transient: retried
        else:
            assert [m async for m in reader] == []  # the silent part a status reply must never be
        await reader.aclose()
        for i in range(3):
            await js.publish(f"{subj}.k{i}", str(i).encode())
