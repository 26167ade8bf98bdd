"""What every HTTP app of the adapter shares: the context, error mapping, the write-token check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nats.errors import Error as NatsError
from pydantic import BaseModel

from pas.config import PasConfig
from pas.errors import PasError, http_status
from pas.http.backend import Backend
from pas.http.events import EventHub


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
    **ERRORS, 401: {"model": ErrorOut, "description": "PAS_HTTP_TOKEN is set and the bearer token is missing or wrong"}}


@dataclass
class Ctx:
    cfg: PasConfig
    backend: Backend
    hub: EventHub
    token: str | None = None


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


_bearer = HTTPBearer(auto_error=False, description="needed for writes when PAS_HTTP_TOKEN is set")


def token_check(ctx: Ctx) -> Any:
    """A FastAPI dependency: writes need `Authorization: Bearer <PAS_HTTP_TOKEN>` when it is set."""
    from fastapi import Depends

    async def check(creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if not ctx.token:
            return
        given = (creds.credentials if creds else "").encode()
        if not hmac.compare_digest(given, ctx.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (PAS_HTTP_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    return Depends(check)
