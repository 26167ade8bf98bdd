"""Traces across tiers (pas.transport.tracing): one run is one trace, its context carried in NATS headers from the
submit (or an HTTP request's traceparent) through every tier, the task command and the model call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pas.base.errors import BudgetExceeded, Retry
from pas.protocol import subjects as S
from pas.surfaces.stack import Stack
from pas.transport import tracing
from tests.conftest import fast_args, make_cfg, wait_for
from tests.fakellm import Reply
from tests.http_support import http_cfg
from tests.test_llm_pipeline import swarm_cfg
from tests.test_pipeline import task

HOPS_TO_COMMAND = ["command echo", "ProgrammerRole.run_task", "ManagerRole.decompose", "DirectorRole.split",
                   "ArchitectRole.plan", "GatewayRole.submit"]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, spans kept in memory; off again afterwards."""
    assert not tracing.enabled()
    mem = InMemorySpanExporter()
    assert tracing.setup(None, exporter=mem)
    try:
        yield mem
    finally:
        tracing.shutdown()


def traced_cfg(fake_llm: Any) -> Any:
    """Two lanes: `code` runs a command task, `docs` is planned by its director's model (the fake)."""
    fake_llm.script("pd", Reply('{"jobs": [{"tasks": [{"instruction": "write intro", "executor": "echo"}]}]}',
                                prompt_tokens=20, completion_tokens=10))
    return swarm_cfg(fake_llm, dir_docs="pd")


def job(run_id: str) -> dict[str, Any]:
    return {"title": "traced", "goal": "check and document", "run_id": run_id, "lanes": ["docs"],
            "tasks": [task("code", "echo traced")]}


def chain(span: Any, by_id: dict[int, Any]) -> list[str]:
    """Names from span up to the root of its trace."""
    out = []
    while span is not None:
        out.append(span.name)
        span = by_id.get(span.parent.span_id) if span.parent else None
    return out


def run_of(span: Any) -> Any:
    return (span.attributes or {}).get("pas.run_id")


async def run_spans(mem: InMemorySpanExporter, run_id: str) -> list[Any]:
    """Every span of the trace the run's spans are in, once the run's last hop has ended."""
    def ended() -> bool:
        return any(s.name == "RootRole.end_run" and run_of(s) == run_id
                   for s in mem.get_finished_spans())

    await wait_for(ended, timeout_s=20)
    all_spans = mem.get_finished_spans()
    (submit,) = [s for s in all_spans if s.name == "GatewayRole.submit" and run_of(s) == run_id]
    # every work-queue delivery of the run (status queries are requests of their own, not hops of the run)
    hops = [s for s in all_spans if s.kind == SpanKind.CONSUMER and run_of(s) == run_id]
    assert len(hops) >= 5 and {s.context.trace_id for s in hops} == {submit.context.trace_id}
    return [s for s in all_spans if s.context.trace_id == submit.context.trace_id]


async def test_one_run_is_one_trace(spans: InMemorySpanExporter, nats_server: Any, client: Any,
                                    fake_llm: Any) -> None:
    async with Stack(traced_cfg(fake_llm), url=nats_server.url) as st:
        await client.submit(job("tr1"))
        res = await client.wait("tr1", timeout_s=60)
        assert res["status"] == "completed", res
        got = await run_spans(spans, "tr1")
        js = st.bus.js  # type: ignore[union-attr]
        stored = [*await stored_headers(js, S.STREAM_EVENTS, "pas.run.tr1.>"),
                  *await stored_headers(js, S.STREAM_COMMS, "pas.comms.tr1.>")]
        # a task spawned on the bus inside a span keeps it (OpenTelemetry's context is a contextvar)
        with tracing.span("outer") as outer:
            inner = await st.bus.spawn(asyncio.sleep(0, trace.get_current_span()))  # type: ignore[union-attr]
        assert inner is outer
    by_id = {s.context.span_id: s for s in got}
    names = [s.name for s in got]
    # every event and comms entry of the run was stored with the traceparent of the span that wrote it
    tid = got[0].context.trace_id
    assert len(stored) > 10
    assert all(h.get("traceparent", "").split("-")[1:2] == [f"{tid:032x}"] for h in stored), stored
    roots = [s for s in got if s.parent is None]
    assert [r.name for r in roots] == ["GatewayRole.submit"]  # the submit starts the trace
    assert roots[0].attributes["pas.agent"] == "gateway"
    # the command task: a span under its programmer's hop, under every tier down from the submit
    (cmd,) = [s for s in got if s.name.startswith("command ")]
    assert chain(cmd, by_id) == HOPS_TO_COMMAND
    assert cmd.attributes["process.exit.code"] == 0 and "echo traced" in cmd.attributes["process.command_line"]
    prog = by_id[cmd.parent.span_id]
    assert prog.attributes["pas.task_id"] and prog.attributes["messaging.message.delivery_count"] == 1
    # both lanes, each hop with its agent
    lanes = {s.attributes["pas.lane"]: s.attributes["pas.agent"] for s in got if s.name == "DirectorRole.split"}
    assert lanes == {"code": "dir-code", "docs": "dir-docs"}
    assert names.count("ProgrammerRole.run_task") == 2  # the command task and the model-planned echo task
    # the model call: a child of the docs director's hop; its HTTP request carries the span's traceparent
    (llm,) = [s for s in got if s.name.startswith("chat ")]
    parent = by_id[llm.parent.span_id]
    assert (parent.name, parent.attributes["pas.lane"]) == ("DirectorRole.split", "docs")
    assert llm.attributes["gen_ai.request.model"] == "openai/pd" and llm.attributes["gen_ai.usage.input_tokens"] == 20
    (req,) = [r for r in fake_llm.requests if r.model == "pd"]
    tp = req.headers["traceparent"].split("-")
    assert (int(tp[1], 16), int(tp[2], 16)) == (llm.context.trace_id, llm.context.span_id)
    # the run ends in the same trace: the last task's handler reports its result to the job's owner (the
    # manager, which writes the task record and finishes the job), the manager asks the director (the
    # lane), the director the architect (the plan), and root ends the run as a child of those hops
    end = next(s for s in got if s.name == "RootRole.end_run")
    assert chain(end, by_id)[:5] == ["RootRole.end_run", "Role._child_done", "Role._child_done",
                                     "ManagerRole.task_done", "ProgrammerRole.run_task"]


async def test_a_callers_traceparent_makes_the_run_part_of_its_trace(spans: InMemorySpanExporter, nats_server: Any,
                                                                      client: Any, nc: Any) -> None:
    """Over HTTP (the adapter's POST /submit) and over NATS (a plain request with the header)."""
    cfg = http_cfg()
    http_trace, http_parent = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    nats_trace, nats_parent = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    async with Stack(cfg, url=nats_server.url, http=True) as st:
        gateway = next(a.id for a in cfg.agents if a.role == "gateway")
        assert st.http_server is not None
        async with httpx.AsyncClient(base_url=st.http_server.url(gateway), timeout=10) as http:
            r = await http.post("/submit", json={"title": "h", "run_id": "tr2", "tasks": [task("code", "echo hi")]},
                                headers={"traceparent": f"00-{http_trace:032x}-{http_parent:016x}-01"})
        assert r.status_code in (200, 201, 202), r.text
        body = json.dumps({"title": "n", "run_id": "tr5", "tasks": [task("code", "echo hi")]}).encode()
        await nc.request(S.GATEWAY_SUBMIT, body, timeout=10,
                         headers={"traceparent": f"00-{nats_trace:032x}-{nats_parent:016x}-01"})
        assert (await client.wait("tr2", timeout_s=60))["status"] == "completed"
        assert (await client.wait("tr5", timeout_s=60))["status"] == "completed"
        over_http = await run_spans(spans, "tr2")
        over_nats = await run_spans(spans, "tr5")
    assert {s.context.trace_id for s in over_http} == {http_trace}
    by_id = {s.context.span_id: s for s in over_http}
    (post,) = [s for s in over_http if s.name == "POST /submit"]
    assert post.parent.span_id == http_parent and post.parent.is_remote
    (cmd,) = [s for s in over_http if s.name == "command echo"]
    assert chain(cmd, by_id) == [*HOPS_TO_COMMAND, "POST /submit"]
    assert {s.context.trace_id for s in over_nats} == {nats_trace}
    (submit,) = [s for s in over_nats if s.name == "GatewayRole.submit"]
    assert submit.parent.span_id == nats_parent and submit.parent.is_remote


async def test_approval_mode_run_is_two_traces(spans: InMemorySpanExporter, stack: Stack, client: Any) -> None:
    """The submit's trace holds the planning; the approve request's trace what it released (README)."""
    await client.submit({"title": "a", "run_id": "tr7", "approval_mode": True, "tasks": [task("code", "echo ok")]})
    st = await wait_for(_waiting(client, "tr7"), timeout_s=30)
    assert st["approval"]["status"] == "pending"
    await client.approve("tr7", by="tester")
    assert (await client.wait("tr7", timeout_s=60))["status"] == "completed"
    await wait_for(lambda: any(s.name == "RootRole.end_run" and run_of(s) == "tr7" for s in spans.get_finished_spans()))
    by_name: dict[str, set[int]] = {}
    for s in spans.get_finished_spans():
        if run_of(s) == "tr7":
            by_name.setdefault(s.name, set()).add(s.context.trace_id)
    (planning,) = by_name["GatewayRole.submit"]
    (execution,) = by_name["GatewayRole.approve"]
    assert planning != execution
    assert by_name["ManagerRole.decompose"] == {planning}
    for name in ("ManagerRole.release", "ProgrammerRole.run_task", "RootRole.end_run"):
        assert by_name[name] == {execution}, name


def _waiting(client: Any, run_id: str) -> Any:
    async def check() -> Any:
        st = await client.status(run_id)
        return st if st["status"] == "waiting_approval" else None
    return check


async def test_off_by_default_no_spans_no_headers(nats_server: Any, client: Any, fake_llm: Any) -> None:
    assert not tracing.setup(traced_cfg(fake_llm), environ={})  # default settings, no OTEL_* variables
    cfg = traced_cfg(fake_llm)
    async with Stack(cfg, url=nats_server.url) as st:
        assert not tracing.enabled()
        await client.submit(job("tr3"))
        assert (await client.wait("tr3", timeout_s=60))["status"] == "completed"
        js = st.bus.js  # type: ignore[union-attr]
        stored = [*await stored_headers(js, S.STREAM_EVENTS, "pas.run.tr3.>"),
                  *await stored_headers(js, S.STREAM_COMMS, "pas.comms.tr3.>")]
    assert len(stored) > 10  # the run's events and comms entries
    assert not [h for h in stored if "traceparent" in h], stored
    assert fake_llm.requests and all("traceparent" not in r.headers for r in fake_llm.requests)


async def test_hop_outcomes_and_malformed_headers(spans: InMemorySpanExporter) -> None:
    """A malformed traceparent starts a new trace (bad input breaks nothing); a handler's failure marks
    its span failed; a Retry (come back later) or BudgetExceeded (the run has no budget left) does not."""

    class Role:
        async def work(self, body: Any) -> None:
            if body.run_id == "boom":
                raise ValueError("boom")
            if body.run_id == "later":
                raise Retry("not yet", delay_s=2.5)
            if body.run_id == "gone":
                raise BudgetExceeded("no budget left")

    class Body:
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id

    handler = Role().work
    for run_id, headers in (("ok", {"traceparent": "00-not-a-trace-01"}), ("boom", None), ("later", {}),
                            ("gone", {})):
        with contextlib.suppress(ValueError, Retry, BudgetExceeded), tracing.hop(headers, handler, "pas.work.x",
                                                                            Body(run_id)):
            await handler(Body(run_id))
    got: dict[str, Any] = {run_of(s): s for s in spans.get_finished_spans()}
    assert all(s.parent is None and s.name.endswith("Role.work") for s in got.values())
    assert got["ok"].status.status_code == StatusCode.UNSET
    assert got["boom"].status.status_code == StatusCode.ERROR and "ValueError: boom" in got["boom"].status.description
    assert got["boom"].events[0].name == "exception"
    assert got["later"].status.status_code == StatusCode.UNSET and got["later"].attributes["pas.retry_delay_s"] == 2.5
    assert got["gone"].status.status_code == StatusCode.UNSET and got["gone"].attributes["pas.outcome"] == "BudgetExceeded"


async def stored_headers(js: Any, stream: str, subject: str) -> list[dict[str, str]]:
    """The headers of every message of `stream` on `subject`, read with an ephemeral consumer."""
    psub = await js.pull_subscribe(subject, stream=stream)
    try:
        left = (await psub.consumer_info()).num_pending
        out: list[dict[str, str]] = []
        while len(out) < left:
            out += [dict(m.headers or {}) for m in await psub.fetch(min(left - len(out), 256), timeout=5)]
        return out
    finally:
        await psub.unsubscribe()


def test_off_imports_no_opentelemetry() -> None:
    """Tracing off costs no import: starting an agent process's modules loads no OpenTelemetry."""
    code = ("import sys, pas.surfaces.stack, pas.surfaces.cli, pas.transport.client, pas.llm.client, pas.execution.executors\n"
            "from pas.transport import tracing\nfrom pas.config.model import load_config\n"
            "assert not tracing.setup(load_config(), environ={})\n"
            "print([m for m in sys.modules if m.startswith('opentelemetry')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_setting_and_variables_decide() -> None:
    on = cfg_tracing(enabled=True)
    off = cfg_tracing(enabled=False)
    assert tracing.wanted(off, {}) == [] and tracing.wanted(on, {}) == ["otlp"]
    assert tracing.wanted(off, {"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    assert tracing.wanted(off, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == ["otlp"]
    assert tracing.wanted(on, {"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.wanted(on, {"OTEL_SDK_DISABLED": "true"}) == []
    assert not tracing.setup(off, environ={"OTEL_TRACES_EXPORTER": "zipkin"})  # unknown: stays off (a warning)
    assert not tracing.enabled()


def cfg_tracing(enabled: bool) -> Any:
    return make_cfg(f"settings.tracing.enabled={str(enabled).lower()}")


class Collector:
    """A minimal OTLP/HTTP collector: keeps every span POSTed to /v1/traces (protobuf)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[tuple[str, Any]] = []  # (service.name, span)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                for rs in req.resource_spans:
                    service = next((a.value.string_value for a in rs.resource.attributes
                                    if a.key == "service.name"), "")
                    for ss in rs.scope_spans:
                        outer.spans.extend((service, s) for s in ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_settings_tracing_exports_to_its_endpoint() -> None:
    """settings.tracing alone (no OTEL_* variables): OTLP to settings.tracing.endpoint, a collector's base URL."""
    col = Collector()
    try:
        cfg = make_cfg("settings.tracing.enabled=true", f"settings.tracing.endpoint={col.url}",
                       "settings.tracing.service_name=pas-from-settings")
        assert tracing.setup(cfg, environ={})
        with tracing.span("probe", {"pas.run_id": "tr6"}):
            pass
        tracing.shutdown()  # flushes: the batch goes out now
        assert [(svc, s.name) for svc, s in col.spans] == [("pas-from-settings", "probe")]
    finally:
        tracing.shutdown()
        col.close()


async def test_otel_variables_export_over_otlp_from_pas_up(nats_server: Any, client: Any, pas_procs: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`pas up` in its own process, traced by the standard variables alone, exports to an OTLP collector."""
    col = Collector()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "pas-under-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 0.1 s, not 5 s
        pas_procs("--nats-url", nats_server.url, *fast_args())
        run_id = (await client.submit({"title": "o", "tasks": [task("code", "echo otlp")]}))["run_id"]
        assert (await client.wait(run_id, timeout_s=60))["status"] == "completed"

        def of_run() -> list[Any]:
            mine = [s for _, s in col.spans
                    if any(a.key == "pas.run_id" and a.value.string_value == run_id for a in s.attributes)]
            names = {s.name for s in mine}
            return mine if "RootRole.end_run" in names and "ProgrammerRole.run_task" in names else []

        mine = await wait_for(of_run, timeout_s=20)
        (submit,) = [s for s in mine if s.name == "GatewayRole.submit"]  # tagged with the run id it made
        hops = [s for s in mine if s.kind == s.SPAN_KIND_CONSUMER]
        assert len(hops) >= 5 and {s.trace_id for s in hops} == {submit.trace_id}

        def trace_names() -> set[str]:
            return {s.name for _, s in col.spans if s.trace_id == submit.trace_id}

        await wait_for(lambda: trace_names() >= {*HOPS_TO_COMMAND, "RootRole.end_run"}, timeout_s=20)
        assert {svc for svc, _ in col.spans} == {"pas-under-test"}
    finally:
        col.close()

