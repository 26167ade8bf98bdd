"""Traces across tiers (OpenTelemetry): the W3C trace context travels in NATS headers (`traceparent`).

Off by default: nothing of OpenTelemetry is imported and every hook is one test of a module global.
On with settings.tracing.enabled, or with the standard variables: OTEL_TRACES_EXPORTER (otlp,
console) or an OTLP endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT);
OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true keeps it off.

    tracing.setup(cfg)                                  # once per process (the stack, the HTTP adapter)
    headers = tracing.inject(headers)                   # a publish carries the current span
    with tracing.hop(msg.headers, handler, subject, body):   # a hop: child of the publisher's span
        ...
    with tracing.span("command pytest", {...}) as sp:   # a step of a hop: child of the current span
        tracing.annotate(sp, {"process.exit.code": 0})

A hop's span is named after its handler (GatewayRole.submit, ManagerRole.split, ...) and carries
pas.run_id (and pas.lane/job_id/task_id) when its body has them. OpenTelemetry's context is a
contextvar: publishes made inside a handler, and asyncio tasks it creates, carry its span.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import TYPE_CHECKING, Any

from pas.base.errors import BudgetExceeded, Retry

if TYPE_CHECKING:
    from pas.config.model import PasConfig

log = logging.getLogger("pas.transport.tracing")

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None
_propagator: Any = None
_NULL: ContextManager[Any] = contextlib.nullcontext()
EXPORTERS = ("otlp", "console")
BODY_ATTRS = ("run_id", "lane", "job_id", "task_id")
_OTLP_ENV = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}


def enabled() -> bool:
    return _tracer is not None


def wanted(cfg: PasConfig | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters tracing should use in this process ([] = off): OTEL_* variables first, then
    settings.tracing."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    listed = [k.strip().lower() for k in env.get("OTEL_TRACES_EXPORTER", "").split(",") if k.strip()]
    if listed:
        return [k for k in listed if k != "none"]
    if any(env.get(k) for k in _OTLP_ENV):
        return ["otlp"]
    t = cfg.settings.tracing if cfg is not None else None
    return [t.exporter] if t is not None and t.enabled else []


def setup(cfg: PasConfig | None, *, exporter: Any = None, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on in this process if cfg or the environment asks for it (or `exporter`, an
    OpenTelemetry SpanExporter, is given: spans go to it as they end). Idempotent; True when on."""
    global _tracer, _provider, _propagator
    if _tracer is not None:
        return True
    env = os.environ if environ is None else environ
    kinds = [] if exporter is not None else wanted(cfg, env)
    unknown = [k for k in kinds if k not in EXPORTERS]
    if unknown:
        log.warning("tracing: exporter %s unknown, ignored (known: %s)", ", ".join(unknown), ", ".join(EXPORTERS))
        kinds = [k for k in kinds if k in EXPORTERS]
    if exporter is None and not kinds:
        return False
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from pas import __version__

    t = cfg.settings.tracing if cfg is not None else None
    service = env.get("OTEL_SERVICE_NAME") or (t.service_name if t is not None else "pas")
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": __version__}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        # The standard variables win over settings.tracing.endpoint (OTLPSpanExporter reads them itself).
        endpoint = None if _OTLP_ENV & set(env) else (t.endpoint if t is not None else None)
        for kind in kinds:
            provider.add_span_processor(BatchSpanProcessor(_exporter(kind, endpoint)))
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)  # libraries that trace join the same traces
        log.info("tracing on: %s spans of service %r", "+".join(kinds), service)
    _provider, _propagator = provider, propagate.get_global_textmap()
    _tracer = provider.get_tracer("pas", __version__)
    return True


def _exporter(kind: str, endpoint: str | None) -> Any:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if endpoint and "/" not in endpoint.split("://", 1)[-1].rstrip("/"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"  # a collector's base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT
        return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter()


def shutdown() -> None:
    """Flush the spans not yet exported and turn tracing off in this process."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def inject(headers: dict[str, str] | None) -> dict[str, str] | None:
    """headers plus the current span's `traceparent` (a new dict; headers is not changed). Off, or
    outside any span: headers itself."""
    if _tracer is None:
        return headers
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    if not carrier:
        return headers
    return {**headers, **carrier} if headers else carrier


def hop(headers: Mapping[str, str] | None, handler: Any, subject: str, body: Any = None,
        kind: str = "consumer", msg: Any = None) -> ContextManager[Any]:
    """The span of one hop: a request handled (kind "server") or a work-queue delivery handled
    ("consumer"; `msg`, the JetStream message, gives its delivery count), child of the span whose
    traceparent the message carries (a new trace if none)."""
    if _tracer is None:
        return _NULL
    return _hop(headers, handler, subject, body, kind, msg)


@contextlib.contextmanager
def _hop(headers: Mapping[str, str] | None, handler: Any, subject: str, body: Any, kind: str,
         msg: Any) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    attrs: dict[str, Any] = {"messaging.system": "nats", "messaging.destination.name": subject}
    if msg is not None:
        with contextlib.suppress(Exception):  # not a JetStream message: no delivery count
            attrs["messaging.message.delivery_count"] = msg.metadata.num_delivered  # a redelivery: 2, 3, ...
    owner = getattr(handler, "__self__", None)  # a Role (its .agent) or the Agent itself
    agent = getattr(getattr(owner, "agent", owner), "id", None)
    if isinstance(agent, str):
        attrs["pas.agent"] = agent
    for k in BODY_ATTRS:
        v = getattr(body, k, None)
        if isinstance(v, str):
            attrs[f"pas.{k}"] = v
    name = getattr(handler, "__qualname__", None) or subject
    ctx = _propagator.extract(dict(headers) if headers else {})  # no or a malformed traceparent: a new trace
    with _tracer.start_as_current_span(name, context=ctx, kind=SpanKind.SERVER if kind == "server"
                                       else SpanKind.CONSUMER, attributes=attrs, record_exception=False,
                                       set_status_on_exception=False) as sp:
        try:
            yield sp
        except Retry as e:  # asked to come back later (nak with a delay): not a failure
            sp.set_attribute("pas.retry_delay_s", e.delay_s)
            raise
        except BudgetExceeded as e:  # the work ends here, as it should (pas.runtime.service.settle)
            sp.set_attribute("pas.outcome", type(e).__name__)
            raise
        except BaseException as e:
            sp.record_exception(e)
            annotate(sp, {}, error=f"{type(e).__name__}: {e}")
            raise


def span(name: str, attrs: Mapping[str, Any] | None = None) -> ContextManager[Any]:
    """A span inside the current one (a task command, a model call); yields None when off."""
    if _tracer is None:
        return _NULL
    cm: ContextManager[Any] = _tracer.start_as_current_span(name, attributes={k: v for k, v in (attrs or {}).items()
                                                                             if v is not None})
    return cm


def annotate(sp: Any, attrs: Mapping[str, Any], error: str | None = None) -> None:
    """Add attributes to a span from span() (None when off: nothing to do); `error` marks it failed."""
    if sp is None:
        return
    for k, v in attrs.items():
        if v is not None:
            sp.set_attribute(k, v)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        sp.set_status(Status(StatusCode.ERROR, error[:500]))


def tag(attrs: Mapping[str, Any]) -> None:
    """Add attributes to the current span (a hop learning its run id); nothing when off."""
    if _tracer is not None:
        from opentelemetry.trace import get_current_span

        annotate(get_current_span(), attrs)


def http_request(scope: Mapping[str, Any]) -> ContextManager[Any]:
    """The span of an HTTP request at the adapter (ASGI scope): every write (POST, PUT, PATCH,
    DELETE) and any request that carries a traceparent header, whose trace it joins."""
    if _tracer is None or scope.get("type") != "http":
        return _NULL
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    method = scope.get("method", "")
    if method not in ("POST", "PUT", "PATCH", "DELETE") and "traceparent" not in headers:
        return _NULL
    from opentelemetry.trace import SpanKind

    server = scope.get("server") or (None, None)
    attrs = {"http.request.method": method, "url.path": scope.get("path", ""), "server.port": server[1]}
    cm: ContextManager[Any] = _tracer.start_as_current_span(f"{method} {scope.get('path', '')}",
                                                            context=_propagator.extract(headers), kind=SpanKind.SERVER,
                                                            attributes={k: v for k, v in attrs.items() if v is not None})
    return cm
