"""A run as it happens (`pas replay --follow`) and a past run happening again (`pas replay --speed X`).

Re-publishing: every event and comms entry of the run, in the order the server stored them, on core
NATS (no stream captures pas.replay.>, so nothing is stored twice and no agent acts on it):

    pas.replay.<run_id>.run.<rest>          a PAS_EVENTS message of pas.run.<run_id>.<rest>
    pas.replay.<run_id>.comms.<from>.<type> a PAS_COMMS entry of pas.comms.<run_id>.<from>.<type>
    pas.replay.<run_id>.end                 {"run_id", "messages"}: the replay is over

Each message keeps its body and gets headers Pas-Replay-Subject (the original subject),
Pas-Replay-Seq (its stream sequence) and Pas-Replay-T (seconds after the first message). The gaps
between messages are the original gaps divided by X (X=0: no waiting). A record write kept in PAS_COMMS
(pas.comms.<run>.record.<rest>) goes as the entry it stands for, on that entry's subject (its original
subject then), or not at all if it stands for none: what the timeline shows is what is re-published.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import stored_entry
from pas.surfaces.replay import timeline
from pas.transport.natscompat import connection_of
from pas.transport.streams import Raw, ReadOptions, read_raw


def replay_subject(run_id: str, original: str) -> str:
    run = S.parse_run(original)
    if run is not None:
        return S.replay(run_id, ".".join(("run", run.kind, *run.rest)))
    head = S.comms_run(run_id)[:-1]  # pas.comms.<run>.
    return S.replay(run_id, "comms." + original[len(head):])


def as_published(m: Raw) -> tuple[str, bytes] | None:
    """(subject, body) a stored message is re-published as: a comms record write as the entry it stands
    for (pas.runtime.comms.stored_entry), on its agents' subject; None if it stands for none."""
    if m.stream != S.STREAM_COMMS or S.record_of_comms(m.subject) is None:
        return m.subject, m.data
    try:
        e = stored_entry(m.subject, m.data, m.stored)
    except Exception as err:
        timeline.skipped(m, err)
        return None
    return None if e is None else (S.comms(e.run_id, e.from_agent, e.msg_type), wire.encode(e))


async def republish(js: JetStreamContext, run_id: str, speed: float,
                    sleep: Callable[[float], Any] = asyncio.sleep) -> int:
    nc = connection_of(js)
    msgs = sorted(await timeline.collect(js, run_id), key=lambda m: (m.stored, m.stream, m.seq))
    if not msgs:
        return 0
    t0 = prev = msgs[0].stored
    sent = 0
    for m in msgs:
        gap = (m.stored - prev).total_seconds()
        if speed > 0 and gap > 0:
            await sleep(gap / speed)
        prev = m.stored
        out = as_published(m)
        if out is None:
            continue
        sent += 1
        await nc.publish(replay_subject(run_id, out[0]), out[1], headers={
            "Pas-Replay-Subject": out[0], "Pas-Replay-Seq": str(m.seq),
            "Pas-Replay-T": f"{(m.stored - t0).total_seconds():.6f}"})
    await nc.publish(S.replay(run_id, "end"), json.dumps({"run_id": run_id, "messages": sent}).encode())
    await nc.flush()
    return sent


async def follow(js: JetStreamContext, run_id: str, out: Callable[[str], None]) -> dict[str, Any]:
    """Print each step as it arrives until the run ends; return the final timeline. What both streams hold
    already is read first and printed in time order (a run that has ended reads as `pas replay` shows it,
    not one stream after the other); then each stream is followed from where its history ended."""
    stop = asyncio.Event()
    queue: asyncio.Queue[Raw] = asyncio.Queue()
    sources = ((S.STREAM_EVENTS, S.run_events(S.token(run_id))), (S.STREAM_COMMS, S.comms_run(run_id)))
    starts = {stream: (await js.stream_info(stream)).state.last_seq + 1 for stream, _ in sources}
    msgs: list[Raw] = [m for stream, subject in sources
                       async for m in read_raw(js, stream, subject, ReadOptions(complete=True))
                       if m.seq < starts[stream]]

    async def pump(stream: str, subject: str) -> None:
        async for m in read_raw(js, stream, subject, ReadOptions(follow=True, stop=stop, start_seq=starts[stream])):
            queue.put_nowait(m)

    pumps = [asyncio.create_task(pump(stream, subject)) for stream, subject in sources]
    shown: set[tuple[str, int]] = set()
    tl: dict[str, Any] = {}
    history = bool(msgs)
    try:
        while True:
            if not history:  # the history is shown before anything new is waited for
                msgs.append(await queue.get())
            history = False
            while not queue.empty():
                msgs.append(queue.get_nowait())
            tl = timeline.build_from(run_id, msgs)
            for s in tl["steps"]:
                key = ("c", s["comms_seq"]) if "comms_seq" in s else ("e", s["seq"])
                if key not in shown:
                    shown.add(key)
                    out(timeline.format_step(s))
            if tl["status"] in timeline.TERMINAL and any(s["kind"] == "comms.STATUS" and s["agent"] == "root"
                                                         for s in tl["steps"]):
                return tl
            if tl["status"] in timeline.TERMINAL:
                try:  # the root's closing comms entry may trail the terminal event by a moment
                    msgs.append(await asyncio.wait_for(queue.get(), 1.0))
                    continue
                except TimeoutError:
                    return tl
    finally:
        stop.set()
        for p in pumps:
            p.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
