"""The adapter's NATS side: one connection, request/reply with errors as PasError (so the HTTP layer
maps them to status codes), and the KV reads the HTTP views need (agent state, model overrides,
lane records), plus a bounded tail of the comms log."""

from __future__ import annotations

import collections
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.errors import Error as NatsError

from pas.base.errors import BadRequest, NotFound, PasError, Unavailable
from pas.config.doc import check_model_override
from pas.config.model import AgentConfig, PasConfig
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import comms as comms_mod
from pas.runtime import runs as R
from pas.runtime.store import RunStore
from pas.transport.bus import Bus
from pas.transport.client import PasClient
from pas.transport.streams import ReadOptions

log = logging.getLogger("pas.surfaces.http")

HEALTH_TIMEOUT_S = 2.0  # an agent's health reply is in-memory: 2 s of silence means it is not there
COMMS_SCAN_MAX = 20000  # entries examined at most by one comms tail


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def age_s(ts: datetime | None) -> float | None:
    if ts is None:
        return None
    return round((datetime.now(UTC) - ts).total_seconds(), 3)


def _parse_ts(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Backend:
    def __init__(self, cfg: PasConfig, bus: Bus) -> None:
        self.cfg = cfg
        self.bus = bus
        self.store = RunStore(bus)  # the run records, read only here
        self.client = PasClient(bus.nc, cfg.settings.nats.request_timeout_s)

    @classmethod
    async def open(cls, cfg: PasConfig, url: str, creds: Any = None) -> Backend:
        """As the `adapter` user when creds are given (it provisions nothing then: `pas up` did, as admin)."""
        from pas.transport.auth import connect_kw

        try:
            bus = await Bus.open(url, cfg, name="pas-http", do_provision=creds is None, **connect_kw(creds))
        except PasError:
            raise
        except Exception as e:
            raise Unavailable(f"HTTP adapter cannot reach NATS at {url}: {e!r}") from None
        return cls(cfg, bus)

    async def close(self) -> None:
        await self.bus.close()

    @property
    def connected(self) -> bool:
        return self.bus.nc.is_connected

    # ---- request / reply -------------------------------------------------------------------
    async def request(self, subject: str, body: Any = None, headers: dict[str, str] | None = None,
                      timeout_s: float | None = None) -> Any:
        try:
            data = wire.encode(body if body is not None else {})
        except (msgspec.EncodeError, UnicodeEncodeError, TypeError) as e:
            raise BadRequest(f"body cannot be encoded: {e}") from None
        try:
            return await self.client.request(subject, data, headers=headers, timeout_s=timeout_s)
        except PasError:
            raise
        except NatsError as e:  # connection closed, reconnecting, ...
            raise Unavailable(f"NATS unavailable: {e!r}") from None

    async def set_model(self, agent_id: str, profiles: Any, primary: str | None, backup: str | None) -> Any:
        """As the `adapter` user, which may write KV pas_models (pas.transport.client.PasClient.set_model)."""
        try:
            return await self.client.set_model(agent_id, profiles, primary, backup)
        except PasError:
            raise
        except NatsError as e:
            raise Unavailable(f"NATS unavailable: {e!r}") from None

    async def submit(self, job: dict[str, Any], idempotency_key: str | None = None) -> Any:
        headers = None
        if idempotency_key is not None:
            key = idempotency_key.strip()
            if not key or len(key) > 256:
                raise BadRequest("Idempotency-Key must be 1 to 256 characters")
            headers = {"Nats-Msg-Id": key}
        return await self.request(S.GATEWAY_SUBMIT, job, headers=headers)

    async def runs(self, limit: int, status: str | None = None, offset: int = 0) -> Any:
        """pas.gateway.runs: the newest `limit` runs from `offset`, optionally only those with one status."""
        q: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            q["status"] = status
        return await self.request(S.GATEWAY_RUNS, q)

    async def run_status(self, run_id: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The run with one page of its tasks (from offset; by default as many as one reply holds)."""
        q: dict[str, Any] = {"run_id": run_id, "offset": offset}
        if limit is not None:
            q["limit"] = limit
        st = await self.request(S.GATEWAY_STATUS, q)
        # Legacy names: completed_at and duration_s.
        st["completed_at"] = st.get("finished_at")
        start, end = _parse_ts(st.get("started_at") or st.get("created_at")), _parse_ts(st.get("finished_at"))
        st["duration_s"] = round((end - start).total_seconds(), 3) if start and end else None
        return st

    async def run_detail(self, run_id: str) -> dict[str, Any]:
        """The run status plus each lane's record (director, job cards, state) from KV pas_tree."""
        st = await self.run_status(run_id)
        lanes = []
        for lane in st.get("lanes") or []:
            got = await self.store.get(R.lane_key(run_id, lane), wire.LaneRecord)
            rec = got.record if got else None
            lanes.append({"lane": lane, "status": rec.status if rec else "queued",
                          "director": rec.director if rec else None, "jobs": rec.jobs if rec else []})
        st["lane_states"] = lanes
        st["task_counts"] = (await self.task_counts([run_id])).get(run_id)
        return st

    # ---- KV views --------------------------------------------------------------------------
    async def timeline(self, run_id: str) -> dict[str, Any]:
        """pas replay's timeline of a run (JetStream only); 404 when neither stream has it."""
        from pas.surfaces.replay import timeline

        tl = await timeline.build(self.bus.js, run_id)
        if tl["submitted_at"] is None:
            raise NotFound(f"run {run_id!r}: nothing in {S.STREAM_EVENTS} or {S.STREAM_COMMS}")
        return tl

    async def agent_states(self) -> dict[str, wire.AgentState]:
        return {st.agent: st for st in await self.bus.kv_values(S.KV_AGENTS, ">", wire.AgentState)}

    async def agent_state(self, agent_id: str) -> wire.AgentState | None:
        got = await self.bus.kv_get(S.KV_AGENTS, agent_id, wire.AgentState)
        return got[0] if got else None

    async def model_overrides(self) -> dict[str, dict[str, Any]]:
        rows = await self.bus.kv_values(S.KV_MODELS, ">", dict)
        return {r["agent"]: r for r in rows if isinstance(r, dict) and "agent" in r and self._model_ok(r, r["agent"])}

    async def model_override(self, agent_id: str) -> dict[str, Any] | None:
        got = await self.bus.kv_get(S.KV_MODELS, agent_id, dict)
        return got[0] if got and self._model_ok(got[0], agent_id) else None

    def _model_ok(self, value: Any, agent_id: str) -> bool:
        """A stored model override the HMI may show (pas.config.doc.check_model_override), else a WARNING."""
        try:
            check_model_override(value, self.cfg.models, agent_id)
            return True
        except ValueError as e:
            log.warning("KV %s: skipped the model override of %s: %s", S.KV_MODELS, agent_id, e)
            return False

    def llm_model(self, profile: str | None) -> str | None:
        p = self.cfg.models.get(profile or "")
        return p.model if p else None

    def agent_row(self, a: AgentConfig, st: wire.AgentState | None, ov: dict[str, Any] | None) -> dict[str, Any]:
        """Config plus KV state of one agent (GET /api/agents)."""
        off = self.cfg.settings.http.port_offset
        model = (ov or {}).get("model", a.model)
        return {
            "id": a.id, "role": a.role, "tier": a.tier, "lane": a.lane, "parent": a.parent,
            "port": a.port, "http_port": a.port + off if a.port else None,
            "model": model, "backup_model": (ov or {}).get("backup_model", a.backup_model),
            "llm_model": self.llm_model(model), "model_editable": a.role in ("mgr", "prog"),
            "state": st.state if st else "unknown", "status": st.status if st else None,
            "last_beat": iso(st.last_beat) if st else None, "beat_age_s": age_s(st.last_beat) if st else None,
            "since": iso(st.since) if st else None, "run_id": st.run_id if st else None,
            "message": st.message if st else "",
        }

    async def health(self, a: AgentConfig) -> tuple[int, dict[str, Any]]:
        """GET /health of one agent: its own health reply plus KV state; 503 when it does not answer."""
        timeout = min(HEALTH_TIMEOUT_S, self.cfg.settings.nats.request_timeout_s)
        reply: dict[str, Any] | None = None
        error: str | None = None
        try:
            reply = await self.request(S.agent_endpoint(a.role, a.id, "health"), {}, timeout_s=timeout)
        except PasError as e:
            error = e.message
        try:
            st = await self.agent_state(a.id)
            ov = None if reply else await self.model_override(a.id)
        except Exception:
            st, ov = None, None
        body = {"agent": a.id, **self.agent_row(a, st, ov)}
        del body["model_editable"]
        if reply is not None:
            body.update(state="alive", status=reply.get("status"), model=reply.get("model"),
                        backup_model=reply.get("backup_model"), llm_model=self.llm_model(reply.get("model")),
                        started_at=reply.get("started_at"), in_flight=reply.get("in_flight", 0),
                        handled=reply.get("handled", 0), reachable=True)
            return 200, body
        if body["state"] != "dead":
            body["state"] = "unknown"
        body.update(reachable=False, error=error)
        return 503, body

    # ---- comms log -------------------------------------------------------------------------
    async def comms_tail(self, *, run_id: str | None = None, agent: str | None = None,
                         msg_type: str | None = None, limit: int = 200,
                         start_seq: int | None = None) -> list[dict[str, Any]]:
        """The last `limit` entries matching the filters, each with its stream sequence (`seq`); with
        start_seq, the first `limit` entries from that sequence on instead (the HMI fills a gap in
        its live log so).

        With a run: every entry of that run is examined (pas.comms.<run>.> is a narrow filter).
        Without: only the newest entries of the stream (at most COMMS_SCAN_MAX) are examined.
        """
        out: collections.deque[tuple[int, wire.CommsEntry]] = collections.deque(
            maxlen=None if start_seq is not None else limit)
        js = self.bus.js
        start = start_seq
        if not run_id and start is None:
            info = await js.stream_info(S.STREAM_COMMS)
            last, first = info.state.last_seq or 0, info.state.first_seq or 0
            if last == 0 or info.state.messages == 0:
                return []
            scan = limit if not (agent or msg_type) else min(limit * 20, COMMS_SCAN_MAX)
            start = max(first, last - scan + 1)
        async with contextlib.aclosing(comms_mod.read_numbered(js, run_id=run_id, agent=agent, msg_type=msg_type,
                                                               how=ReadOptions(start_seq=start))) as entries:
            async for got in entries:
                out.append(got)
                if start_seq is not None and len(out) >= limit:
                    break
        return [{**wire.to_builtins(e), "seq": seq} for seq, e in out]

    async def task_counts(self, run_ids: list[str]) -> dict[str, dict[str, int]]:
        """run -> {done, total}: the tasks its managers planned and how many have ended, from the job
        records (KV pas_tree <run>.job.*), one read for all the runs."""
        want = set(run_ids)
        out: dict[str, dict[str, int]] = {}
        pattern = S.job_key(run_ids[0] if len(run_ids) == 1 else "*", "*")
        for rec in await self.bus.kv_values(S.KV_TREE, pattern, dict):
            run = rec.get("run_id") if isinstance(rec, dict) else None
            tasks, done = (rec.get("tasks"), rec.get("done")) if run in want else (None, None)
            if not isinstance(run, str) or not isinstance(tasks, list) or not isinstance(done, dict):
                continue
            c = out.setdefault(run, {"done": 0, "total": 0})
            c["total"] += len(tasks)
            c["done"] += len(done)
        return out
