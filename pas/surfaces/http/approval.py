"""Plan, approve and reject over HTTP, on the gateway's port (/runs/...) and the HMI (/api/runs/...):
each is one NATS request (pas.gateway.plan / approve / reject)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Path, Request

from pas.protocol import subjects as S
from pas.protocol.ids import ID_PATTERN
from pas.surfaces.http.common import ERRORS, WRITE_ERRORS, Ctx, ErrorOut
from pas.surfaces.http.models import DecisionIn

RUN_ID = Path(pattern=ID_PATTERN, description="run id (pas.protocol.ids)")
DECIDE_ERRORS: dict[int | str, dict[str, Any]] = {
    **WRITE_ERRORS, 404: {"model": ErrorOut, "description": "no such run"},
    409: {"model": ErrorOut, "description": "the run is not waiting for approval"}}


def _decision(run_id: str, body: DecisionIn | None, request: Request) -> dict[str, Any]:
    """The gateway's Decision for a POST: who decides defaults to the caller's address."""
    d = body or DecisionIn()
    by = d.by or f"http:{request.client.host if request.client else 'unknown'}"
    return {"run_id": run_id, "by": by, "drop": d.drop, "reason": d.reason}


def approval_routes(ctx: Ctx, app: FastAPI, prefix: str, write: Any) -> None:
    """GET {prefix}/runs/{id}/plan, POST {prefix}/runs/{id}/approve, POST {prefix}/runs/{id}/reject."""

    @app.get(prefix + "/runs/{run_id}/plan", summary=f"The whole plan of a run ({S.GATEWAY_PLAN})",
             responses={**ERRORS, 404: {"model": ErrorOut}})
    async def plan(run_id: str = RUN_ID) -> Any:
        return await ctx.backend.request(S.GATEWAY_PLAN, {"run_id": run_id})

    @app.post(prefix + "/runs/{run_id}/approve", summary="Approve a waiting plan, optionally dropping tasks "
              f"({S.GATEWAY_APPROVE})", dependencies=[write], responses=DECIDE_ERRORS)
    async def approve(request: Request, body: DecisionIn | None = None, run_id: str = RUN_ID) -> Any:
        return await ctx.backend.request(S.GATEWAY_APPROVE, _decision(run_id, body, request))

    @app.post(prefix + "/runs/{run_id}/reject", summary="Reject a waiting plan: the run ends rejected "
              f"({S.GATEWAY_REJECT})", dependencies=[write], responses=DECIDE_ERRORS)
    async def reject(request: Request, body: DecisionIn | None = None, run_id: str = RUN_ID) -> Any:
        return await ctx.backend.request(S.GATEWAY_REJECT, _decision(run_id, body, request))
