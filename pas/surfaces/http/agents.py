"""One FastAPI app per agent port: the legacy per-agent HTTP endpoints, each a NATS request.

    every agent    GET /health, GET /status/{id}, GET /   (+ the original's fields: pas.surfaces.http.legacy)
    gateway        POST /submit, POST /prime_directives, GET /runs, GET /runs/{run_id},
                   POST /runs/{run_id}/cancel, GET /runs/{run_id}/plan,
                   POST /runs/{run_id}/approve, POST /runs/{run_id}/reject (pas.surfaces.http.approval)
    architect      POST /submit          -> pas.gateway.submit, then replies with the plan
    director       POST /submit          -> pas.gateway.submit with lanes=[its lane]
    manager        POST /submit (JobCard) -> pas.mgr.<lane>.submit (any manager of the lane takes it)
    director, manager  POST /submit {"job_card": ...} (the original's) -> a run of the lane
    programmer     POST /execute         -> pas.prog.<id>.execute (this programmer)

GET /health answers 200 (state "alive") when the agent replies to pas.<role>.<id>.health within 2 s,
with the age of its last beat from KV pas_agents. When it does not reply the answer is 503 with the
same body built from KV and config: state "dead" if the heartbeat monitor declared it dead, else
"unknown"; `reachable: false` and `error` say why. Load balancers and scripts can use the status code.

NATS errors become HTTP codes: 400/404/409/413 as the agent said, 503 no responders, 504 timeout,
an agent's internal error 502; every error body is JSON with `detail`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import Discriminator, Tag

from pas import __version__
from pas.base.errors import BadRequest
from pas.config.model import AgentConfig
from pas.protocol import subjects as S
from pas.protocol.ids import ID_PATTERN
from pas.surfaces.http import legacy
from pas.surfaces.http.approval import RUN_ID, approval_routes
from pas.surfaces.http.common import ERRORS, WRITE_ERRORS, Ctx, ErrorOut, install_errors, token_check
from pas.surfaces.http.docs import offline_docs
from pas.surfaces.http.legacy_models import LegacyArchitectIn, LegacyCardBody, LegacyExecuteIn
from pas.surfaces.http.models import JobCardIn, JobSubmitIn, PrimeDirectivesIn

IDEM = Header(None, alias="Idempotency-Key", max_length=256,
              description="same key within the dedupe window -> same run (passed as Nats-Msg-Id)")
# Ids end up in KV keys: only what a key may hold (the gateway's are run ids; managers' <run>:<job>).
REF_PATTERN = {False: f"^{ID_PATTERN[1:-1]}(:{ID_PATTERN[1:-1]})?$", True: ID_PATTERN}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such run"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "the run already ended"}}
LEGACY_STATUS_ROLES = ("root", "architect", "dir", "mgr")  # /status/{id} with the original's `state`


def _shape(v: Any) -> str:
    return "legacy" if isinstance(v, dict) and "job_card" in v else "pas"


# PAS's body or the original's {"job_card": ...} (told apart by that key, so errors name one shape's fields)
DirectorBody = Annotated[Annotated[JobSubmitIn, Tag("pas")] | Annotated[LegacyCardBody, Tag("legacy")],
                         Discriminator(_shape), Body()]
ManagerBody = Annotated[Annotated[JobCardIn, Tag("pas")] | Annotated[LegacyCardBody, Tag("legacy")],
                        Discriminator(_shape), Body()]


def agent_app(ctx: Ctx, a: AgentConfig) -> FastAPI:
    where = f"{a.tier}{', lane ' + a.lane if a.lane else ''}"
    app = FastAPI(title=f"PAS {a.id}", version=__version__, docs_url=None, redoc_url=None,
                  description=f"HTTP adapter for agent **{a.id}** ({where}). Every endpoint is a NATS request "
                              f"underneath; errors carry a JSON `detail`.")
    offline_docs(app, "/docs", "/docs-assets")
    install_errors(app)
    legacy.install_cors(app, ctx.cfg)
    _common_routes(ctx, app, a)
    if a.role == "gateway":
        _gateway_routes(ctx, app)
    elif a.role == "architect":
        _architect_routes(ctx, app)
    elif a.role == "dir":
        _director_routes(ctx, app, a)
    elif a.role == "mgr":
        _manager_routes(ctx, app, a)
    elif a.role == "prog":
        _programmer_routes(ctx, app, a)
    return app


def _common_routes(ctx: Ctx, app: FastAPI, a: AgentConfig) -> None:
    @app.get("/", summary="What this port serves")
    async def index() -> dict[str, Any]:
        return {"agent": a.id, "role": a.role, "tier": a.tier, "lane": a.lane, "docs": "/docs",
                "endpoints": sorted({f"{m} {r.path}" for r in app.routes  # type: ignore[attr-defined]
                                     for m in getattr(r, "methods", ()) or () if m != "HEAD"})}

    @app.get("/health", summary="Health of this agent: its health reply plus KV state",
             responses={503: {"description": "the agent does not answer; body from KV and config "
                                             "(state dead or unknown)"}})
    async def health() -> JSONResponse:
        code, body = await ctx.backend.health(a)
        return JSONResponse({**legacy.health_fields(ctx.cfg, a), **body}, status_code=code)

    @app.get("/status/{ref}", summary="Status of something this agent keeps (pas.<role>.<id>.status)",
             responses={**ERRORS, 404: {"model": ErrorOut, "description": "the agent keeps nothing by that id"}})
    async def status(ref: str = Path(pattern=REF_PATTERN[a.role == "gateway"],
                                     description="run id, or <run_id>:<job_id> for a manager")) -> Any:
        if a.role in LEGACY_STATUS_ROLES:
            return await legacy.status(ctx, a, ref)
        return await ctx.backend.request(S.agent_endpoint(a.role, a.id, "status"), {"id": ref})


def _gateway_routes(ctx: Ctx, app: FastAPI) -> None:
    write = token_check(ctx)

    @app.post("/submit", summary=f"Submit a job ({S.GATEWAY_SUBMIT})", dependencies=[write], responses=WRITE_ERRORS)
    async def submit(job: JobSubmitIn, idempotency_key: str | None = IDEM) -> Any:
        return await ctx.backend.submit(job.to_wire(), idempotency_key)

    @app.post("/prime_directives", summary="Submit a job in the legacy shape (mapped onto JobSubmit)",
              dependencies=[write], responses=WRITE_ERRORS)
    async def prime_directives(body: PrimeDirectivesIn, idempotency_key: str | None = IDEM) -> Any:
        return await ctx.backend.submit(body.to_wire(), idempotency_key)

    @app.get("/runs", summary=f"Recent runs, newest first ({S.GATEWAY_RUNS})", responses=ERRORS)
    async def runs(limit: int = Query(50, ge=1, le=1000), status: legacy.RunStatusFilter | None = None,
                   offset: int = Query(0, ge=0, description="skip this many of the newest (the reply's next_offset)")
                   ) -> Any:
        return await ctx.backend.runs(limit, legacy.runs_filter(status), offset)

    @app.get("/runs/{run_id}", summary=f"One run with a page of its tasks ({S.GATEWAY_STATUS}): next_offset "
                                       "says where the next page starts", responses={**ERRORS, **NOT_FOUND})
    async def run(run_id: str = RUN_ID, offset: int = Query(0, ge=0), limit: int | None = Query(None, ge=1, le=100000)
                  ) -> Any:
        return await legacy.run_view(ctx.backend, run_id, offset, limit)

    @app.get("/runs/{run_id}/timeline",
             summary=f"The run's timeline from {S.STREAM_EVENTS} and {S.STREAM_COMMS} (pas replay)",
             responses={**ERRORS, **NOT_FOUND})
    async def timeline(run_id: str = RUN_ID) -> Any:
        return await ctx.backend.timeline(run_id)

    @app.post("/runs/{run_id}/cancel", summary=f"Cancel a run at every tier ({S.GATEWAY_CANCEL})",
              dependencies=[write], responses={**WRITE_ERRORS, **NOT_FOUND, **CONFLICT})
    async def cancel(run_id: str = RUN_ID) -> Any:
        return await ctx.backend.request(S.GATEWAY_CANCEL, {"run_id": run_id})

    approval_routes(ctx, app, "", write)  # GET /runs/{id}/plan, POST /runs/{id}/approve, /reject


def _architect_routes(ctx: Ctx, app: FastAPI) -> None:
    @app.post("/submit", summary=f"Submit a job to the architect (through {S.GATEWAY_SUBMIT}); replies with the plan",
              dependencies=[token_check(ctx)], responses=WRITE_ERRORS)
    async def submit(job: LegacyArchitectIn, idempotency_key: str | None = IDEM) -> Any:
        return await legacy.architect_submit(ctx, job, idempotency_key)


def _director_routes(ctx: Ctx, app: FastAPI, a: AgentConfig) -> None:
    lane = a.lane

    @app.post("/submit", summary=f"Submit a job to lane {lane} ({S.GATEWAY_SUBMIT} with lanes=[{lane}])",
              dependencies=[token_check(ctx)], responses=WRITE_ERRORS)
    async def submit(job: DirectorBody, idempotency_key: str | None = IDEM) -> Any:
        if isinstance(job, LegacyCardBody):
            return await legacy.card_submit(ctx, a, job)
        if job.lanes and job.lanes != [lane]:
            raise BadRequest(f"director {a.id} takes lane {lane!r} only, not {job.lanes}")
        other = sorted({t.lane for t in job.tasks or [] if t.lane != lane})
        if other:
            raise BadRequest(f"director {a.id} takes lane {lane!r} tasks only, not {other}")
        return await ctx.backend.submit({**job.to_wire(), "lanes": [lane]}, idempotency_key)


def _manager_routes(ctx: Ctx, app: FastAPI, a: AgentConfig) -> None:
    lane = a.lane or ""

    @app.post("/submit", summary=f"Queue a job card for the {lane} managers ({S.lane_submit('mgr', lane)})",
              dependencies=[token_check(ctx)], responses=WRITE_ERRORS)
    async def submit(card: ManagerBody) -> Any:
        if isinstance(card, LegacyCardBody):
            return await legacy.card_submit(ctx, a, card)
        if card.lane not in (None, lane):
            raise BadRequest(f"manager {a.id} takes lane {lane!r} job cards only, not {card.lane!r}")
        other = sorted({t.lane for t in card.tasks if t.lane != lane})
        if other:
            raise BadRequest(f"manager {a.id} takes lane {lane!r} tasks only, not {other}")
        body = {**card.to_wire(), "lane": lane}
        body.setdefault("submitted_by", "http")
        return await ctx.backend.request(S.lane_submit("mgr", lane), body)


def _programmer_routes(ctx: Ctx, app: FastAPI, a: AgentConfig) -> None:
    @app.post("/execute", summary=f"Run one task now on {a.id} and wait for the result "
              f"({S.agent_endpoint('prog', a.id, 'execute')})",
              dependencies=[token_check(ctx)], responses=WRITE_ERRORS)
    async def execute(req: LegacyExecuteIn) -> Any:
        return await legacy.execute(ctx, a, req)
