"""Recordings of model exchanges (PAS_RECORDINGS), `pas rerun` driven by them, forks and `pas diff`."""

from __future__ import annotations

import json
from typing import Any

from pas import recording
from pas import subjects as S
from pas.stack import Stack
from tests.fakellm import Fail, Reply
from tests.test_llm_pipeline import llm_entries, swarm_cfg


async def test_every_exchange_is_recorded(nats_server: Any, client: Any, fake_llm: Any) -> None:
    big = "x " * 20000  # a large prompt: ~40 kB of goal text in every planning prompt
    fake_llm.script("pa", Fail(500))
    fake_llm.script("pb", Reply('{"lanes": [{"lane": "docs", "brief": "document the API"}]}',
                                prompt_tokens=100, completion_tokens=20))
    fake_llm.script("pd", Reply('{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"}]}]}',
                                prompt_tokens=50, completion_tokens=30))
    cfg = swarm_cfg(fake_llm, architect="pa/pb", dir_docs="pd")
    async with Stack(cfg, url=nats_server.url) as st:
        await client.submit({"title": "rec", "goal": "Document the calc API " + big, "run_id": "rec1"})
        res = await client.wait("rec1", timeout_s=60)
        entries = await llm_entries(st, "rec1")
        js = st.bus.js
        recs = [await recording.load(js, e.metadata["recording_seq"]) for e in entries]
        info = await js.stream_info(S.STREAM_RECORDINGS)
    assert res["status"] == "completed"
    sent = fake_llm.requests
    assert len(entries) == len(recs) == len(sent) == 3
    for e, r, req in zip(entries, recs, sent):
        # the comms entry points to its recording; the address is the sha256 of the canonical request
        assert e.metadata["recording"] == r.request_sha == recording.sha256(r.request)
        assert r.request["messages"] == req.messages and r.request["model"] == f"openai/{req.model}"
        assert r.agent == e.from_agent and r.run_id == "rec1" and r.profile == e.metadata["profile"]
        assert r.latency_s == e.metadata["latency_s"] and r.tokens_in + r.tokens_out == e.tokens
    assert [(r.profile, r.ok, r.reply) for r in recs] == [
        ("pa", False, None), ("pb", True, '{"lanes": [{"lane": "docs", "brief": "document the API"}]}'),
        ("pd", True, '{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"}]}]}')]
    assert "scripted failure" in (recs[0].error or "") and recs[1].model_used and recs[1].tokens_in == 100
    assert recs[0].request_sha != recs[1].request_sha  # another model: another request
    # storage cost: the JSON per call, the stream's accounting, and the S2-compressed blocks on disk
    raw = [e.metadata["recording_bytes"] for e in entries]
    assert info.state.messages == 3 and min(raw) > 16384
    blocks = list((nats_server.data_dir / "jetstream").rglob("PAS_RECORDINGS/msgs/*.blk"))
    on_disk = sum(b.stat().st_size for b in blocks)
    print(f"\nrecording storage, 3 calls (each with a 16 kB goal in its prompt): JSON {raw} B, stream accounts "
          f"{info.state.bytes} B, {on_disk} B on disk")
    # per call: the recording's JSON plus ~250 B of subject, headers and index (the open block is
    # not compressed yet: S2 applies to sealed blocks)
    assert blocks and 0 < info.state.bytes - sum(raw) < 3 * 400 and on_disk >= sum(raw)
