"""What every HTTP app of the adapter shares: the context, error mapping, the bearer scheme in OpenAPI."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from nats.errors import Error as NatsError
from pydantic import BaseModel

from pas.base.errors import PasError, http_status
from pas.config.model import PasConfig
from pas.surfaces.http.backend import Backend
from pas.surfaces.http.events import EventHub
from pas.surfaces.http.trust import Gate

log = logging.getLogger("pas.surfaces.http")


class ErrorOut(BaseModel):
    detail: Any
    error: str = ""
    info: Any = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "rejected by the agent (bad input)"},
    503: {"model": ErrorOut, "description": "no agent answers (no responders) or NATS is down"},
    504: {"model": ErrorOut, "description": "the agent did not reply in time"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 401: {"model": ErrorOut, "description": "no token, login cookie or trusted same-user connection"}}


@dataclass
class Ctx:
    cfg: PasConfig
    backend: Backend
    hub: EventHub
    gate: Gate
    """Who may call (pas.surfaces.http.trust); the adapter's PortDispatch applies it before any app runs."""


def error_response(e: PasError) -> JSONResponse:
    return JSONResponse({"detail": e.message, "error": e.error, "info": e.detail}, status_code=http_status(e))


def install_errors(app: FastAPI) -> None:
    async def on_pas(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, PasError)
        return error_response(e)

    async def on_nats(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"NATS unavailable: {e!r}", "error": "unavailable"}, status_code=503)

    app.add_exception_handler(PasError, on_pas)
    app.add_exception_handler(NatsError, on_nats)
    app.add_exception_handler(RequestValidationError, on_invalid)


async def on_invalid(request: Request, e: Exception) -> JSONResponse:
    """422 naming each bad field. The input echoed back may hold a number JSON cannot carry (1e400 is
    parsed as infinity): it is shown as text, never a 500."""
    assert isinstance(e, RequestValidationError)
    errors = _finite(jsonable_encoder(e.errors()))
    log.warning("HTTP %s %s: invalid %s", request.method, request.url.path,
                ", ".join(".".join(str(x) for x in err.get("loc", ())) for err in errors)[:500])
    return JSONResponse({"detail": errors}, status_code=422)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


_bearer = HTTPBearer(auto_error=False, description="the adapter's token (<creds dir>/http-token or PAS_HTTP_TOKEN)")


def token_check(ctx: Ctx) -> Any:
    """A FastAPI dependency that declares the bearer scheme in each write's OpenAPI entry. The check
    itself is the adapter's gate (pas.surfaces.http.trust), run before any app, for reads and writes alike."""
    del ctx  # the gate is the adapter's, not a route's
    return Depends(_bearer)
