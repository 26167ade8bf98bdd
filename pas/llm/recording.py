"""Every model exchange, recorded: what was sent, what came back, the model, tokens, cost, latency.

Stored in stream PAS_RECORDINGS (file, S2-compressed, aged out like the comms log) on
``pas.rec.<sha256>``, where the sha256 is of the canonical request (the JSON of {model, messages,
temperature, max_tokens}, keys sorted, no spaces): the address says what was asked. One subject can
hold several exchanges (the same question asked twice, answered differently); the comms `LLM` entry
of each call names its own: metadata ``recording`` (the request sha) and ``recording_seq`` (the
stream sequence). An identical exchange (same request, same reply) published again within the
duplicate window is stored once (message id = sha256 of the whole exchange).

    rec = await load(js, seq)     # the Recording of one call
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import msgspec
from nats.js import JetStreamContext

from pas.protocol import subjects as S

log = logging.getLogger("pas.llm.recording")


class Recording(msgspec.Struct, omit_defaults=False):
    request_sha: str
    ts: float
    agent: str
    run_id: str | None
    profile: str
    model_requested: str
    model_used: str | None
    request: dict[str, Any]
    """{"model", "messages", "temperature", "max_tokens"}: what litellm was sent."""
    reply: str | None
    finish_reason: str | None
    ok: bool
    error: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    latency_s: float


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def prompt_key(messages: list[dict[str, Any]], run_id: str | None) -> str:
    """What a rerun matches a call on: the messages alone (not the model, which a fork may change),
    with the run's own id written as <run> (branch names, worktree paths)."""
    text = canonical(messages).decode()
    if run_id:
        text = text.replace(run_id, "<run>")
    return hashlib.sha256(text.encode()).hexdigest()


async def store(js: JetStreamContext, rec: Recording) -> tuple[int, int]:
    """Publish one recording; returns (stream sequence, bytes stored before compression)."""
    data = msgspec.json.encode(rec)
    whole = hashlib.sha256(canonical({"request": rec.request, "reply": rec.reply, "error": rec.error})).hexdigest()
    ack = await js.publish(S.recording(rec.request_sha), data, stream=S.STREAM_RECORDINGS,
                           headers={"Nats-Msg-Id": whole})
    return ack.seq, len(data)


async def load(js: JetStreamContext, seq: int) -> Recording:
    m = await js.get_msg(S.STREAM_RECORDINGS, seq=seq)
    return msgspec.json.decode(m.data or b"", type=Recording)
