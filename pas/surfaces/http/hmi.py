"""The HMI dashboard (settings.http.hmi_port, 6101): static page from pas/surfaces/http/static plus a JSON API
under /api and live updates over SSE (/api/events). Every write goes through NATS like the agent
ports do (set_model, cancel, submit)."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from pas import __version__
from pas.base.errors import NotFound
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.protocol.ids import ID_PATTERN
from pas.surfaces.http import legacy
from pas.surfaces.http.approval import RUN_ID, approval_routes
from pas.surfaces.http.common import ERRORS, WRITE_ERRORS, Ctx, ErrorOut, install_errors, token_check
from pas.surfaces.http.docs import offline_docs
from pas.surfaces.http.events import TASK_FIELDS, TASK_STATES
from pas.surfaces.http.models import JobSubmitIn, SetModelIn

STATIC = FsPath(__file__).resolve().parent / "static"
AGENT_ID = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")
NO_CACHE = {"Cache-Control": "no-cache"}


def hmi_app(ctx: Ctx) -> FastAPI:
    app = FastAPI(title="PAS HMI", version=__version__, docs_url=None, openapi_url="/api/openapi.json",
                  redoc_url=None, description="Dashboard API: agents, runs, comms log, models; live events over SSE.")
    offline_docs(app, "/api/docs", "/api/docs-assets")
    install_errors(app)
    legacy.install_cors(app, ctx.cfg)
    write = token_check(ctx)
    b = ctx.backend
    cfg = ctx.cfg
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=NO_CACHE)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/login", summary="Log a browser in: a one-time code (printed by `pas up`) or the token sets an "
             "HttpOnly, SameSite=Strict cookie, then on to the dashboard", include_in_schema=False)
    async def login(code: str | None = Query(None, max_length=200),
                    token: str | None = Query(None, max_length=200)) -> Response:
        if not ctx.gate.redeem(code, token):
            return HTMLResponse("<!doctype html><title>PAS: login refused</title><p>This login link was used "
                                "already or is wrong. Run <code>pas login</code> where PAS runs for a new one.",
                                status_code=401, headers=NO_CACHE)
        headers = {**NO_CACHE, "Set-Cookie": ctx.gate.set_cookie_header()} if ctx.gate.required else NO_CACHE
        return RedirectResponse("/", status_code=303, headers=headers)  # the code leaves the address bar

    @app.post("/login/code", summary="A new one-time login link for a browser (`pas login`)", dependencies=[write],
              responses=WRITE_ERRORS)
    async def login_code(request: Request) -> dict[str, str]:
        return {"url": f"{request.base_url}login?code={ctx.gate.mint_code()}"}

    @app.get("/health", summary="The adapter itself")
    async def health() -> dict[str, Any]:
        return {"adapter": "pas-http", "version": __version__, "nats_connected": b.connected,
                "sse_clients": len(ctx.hub.clients)}

    @app.get("/api/config", summary="What the page needs to know about this deployment")
    async def config() -> dict[str, Any]:
        hb = cfg.settings.heartbeat
        return {"version": __version__, "heartbeat_interval_s": hb.interval_s, "missed_beats": hb.missed_beats,
                "auth_required": ctx.gate.required, "lanes": list(S.LANES), "agents": len(cfg.agents)}

    @app.get("/api/agents", summary="Every configured agent: config, live model and KV state")
    async def agents() -> dict[str, Any]:
        states, overrides = await b.agent_states(), await b.model_overrides()
        return {"agents": [b.agent_row(a, states.get(a.id), overrides.get(a.id)) for a in cfg.agents]}

    @app.get("/api/models", summary="Model profiles of configs/models.yaml and each agent's current choice")
    async def models() -> dict[str, Any]:
        overrides = await b.model_overrides()
        return {
            "profiles": {k: p.model_dump() for k, p in cfg.models.items()},
            "agents": {a.id: {"model": overrides.get(a.id, {}).get("model", a.model),
                              "backup_model": overrides.get(a.id, {}).get("backup_model", a.backup_model)}
                       for a in cfg.agents},
        }

    @app.post("/api/agents/{agent_id}/model",
              summary=f"Switch an agent's model live ({S.ctl('<id>', 'set_model')})",
              dependencies=[write], responses={**WRITE_ERRORS, 404: {"model": ErrorOut}})
    async def set_model(body: SetModelIn, agent_id: str = AGENT_ID) -> Any:
        if not any(a.id == agent_id for a in cfg.agents):
            raise NotFound(f"no agent {agent_id!r} in the topology")
        w = body.to_wire()  # the adapter writes the override (KV pas_models), then the agent takes it live
        return await b.set_model(agent_id, cfg.models, w.get("primary"), w.get("backup"))

    @app.get("/api/runs", summary=f"Recent runs ({S.GATEWAY_RUNS})", responses=ERRORS)
    async def runs(limit: int = Query(50, ge=1, le=1000), status: wire.RunStatusValue | None = None) -> Any:
        """Each run with `tasks`: {done, total} of the tasks planned (absent before planning)."""
        got = await b.runs(limit, status)
        counts = await b.task_counts([r["run_id"] for r in got["runs"]])
        for r in got["runs"]:
            r["tasks"] = counts.get(r["run_id"])
        return got

    @app.get("/api/runs/{run_id}", summary=f"One run: status, lanes (KV {S.KV_TREE}) and tasks",
             responses={**ERRORS, 404: {"model": ErrorOut}})
    async def run(run_id: str = RUN_ID) -> Any:
        return await b.run_detail(run_id)

    @app.get("/api/runs/{run_id}/timeline", summary=f"The run's timeline from {S.STREAM_EVENTS} and {S.STREAM_COMMS} "
             "(what `pas replay --json` prints)", responses={**ERRORS, 404: {"model": ErrorOut}})
    async def timeline(run_id: str = RUN_ID) -> Any:
        return await b.timeline(run_id)

    @app.get("/api/runs/{run_id}/timeline.html", summary="The timeline as a Gantt page (`pas replay --html`)",
             response_class=HTMLResponse, responses={**ERRORS, 404: {"model": ErrorOut}})
    async def timeline_html(run_id: str = RUN_ID) -> HTMLResponse:
        from pas.surfaces.replay.html import render

        return HTMLResponse(render(await b.timeline(run_id)), headers=NO_CACHE)

    @app.post("/api/runs/{run_id}/cancel", summary=f"Cancel a run ({S.GATEWAY_CANCEL})", dependencies=[write],
              responses={**WRITE_ERRORS, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
    async def cancel(run_id: str = RUN_ID) -> Any:
        return await b.request(S.GATEWAY_CANCEL, {"run_id": run_id})

    approval_routes(ctx, app, "/api", write)  # /api/runs/{id}/plan, /approve, /reject

    @app.post("/api/submit", summary=f"Submit a job ({S.GATEWAY_SUBMIT})", dependencies=[write],
              responses=WRITE_ERRORS)
    async def submit(job: JobSubmitIn,
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=256)) -> Any:
        return await b.submit(job.to_wire(), idempotency_key)

    @app.get("/api/comms", summary=f"Recent comms log entries (stream {S.STREAM_COMMS}), oldest first, "
             "each with its stream sequence `seq`")
    async def comms(run: str | None = Query(None, pattern=ID_PATTERN),
                    agent: str | None = Query(None, max_length=64),
                    type: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,32}$"),
                    limit: int = Query(200, ge=1, le=2000),
                    start_seq: int | None = Query(None, ge=1, le=2**63 - 1, description=(
                        "the first `limit` entries from this stream sequence on, instead of the last"))) -> dict[str, Any]:
        return {"entries": await b.comms_tail(run_id=run, agent=agent, msg_type=type, limit=limit,
                                              start_seq=start_seq)}

    @app.get("/api/events", summary="Server-sent events: hello, beats, alert, runs, comms, model (pas.surfaces.http.events)")
    async def events() -> StreamingResponse:
        hello = {"agents": len(cfg.agents), "heartbeat_interval_s": cfg.settings.heartbeat.interval_s,
                 "task_fields": TASK_FIELDS, "task_states": TASK_STATES}  # how to read a task's row
        return StreamingResponse(ctx.hub.stream(hello), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app
