"""The PAS exception family, mapped to error replies and to JetStream ack/nak/term in one place
(pas.runtime.service)."""

from __future__ import annotations

from typing import Any


class PasError(Exception):
    """Base error. `code` follows HTTP semantics; it becomes the Nats-Service-Error-Code header."""

    code = 500
    error = "internal"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadRequest(PasError):
    code = 400
    error = "bad_request"


class NotFound(PasError):
    code = 404
    error = "not_found"


class Conflict(PasError):
    code = 409
    error = "conflict"


class PayloadTooLarge(PasError):
    code = 413
    error = "payload_too_large"


class Unavailable(PasError):
    """Not now, try again: a dependency (JetStream, a model, an agent) does not answer. A request
    gets 503; a work item that meets it is nak'ed and redelivered after `delay_s` (never dropped)."""

    code = 503
    error = "unavailable"
    delay_s = 2.0

    def __init__(self, message: str, detail: Any = None, *, delay_s: float | None = None) -> None:
        super().__init__(message, detail)
        if delay_s is not None:
            self.delay_s = delay_s


class ConfigError(PasError):
    """A bad config: start-up fails with a message naming the entry."""

    code = 500
    error = "config"


class Retry(Unavailable):
    """Work that cannot be done yet, by design (an approval pending, a parent still being written):
    nak'ed with its delay like any Unavailable, but not counted or logged as an error."""

    error = "retry"

    def __init__(self, message: str = "retry", delay_s: float = 1.0) -> None:
        super().__init__(message, delay_s=delay_s)


class BudgetExceeded(PasError):
    """A run's token or cost budget is used up: no further model calls for it. A task that meets
    it ends `budget_exceeded` (its work item is acked, not retried)."""

    code = 402
    error = "budget_exceeded"


class BadInput(BadRequest):
    """A work item that can never be handled (undecodable, or naming what does not exist): it is
    terminated and logged as an ERROR comms entry, never redelivered (pas.runtime.service.WorkLoop
    raises it for a body that does not decode)."""

    error = "bad_input"


class CommandRefused(PasError):
    """A command not on the allowlist, or a path outside the task's workspace."""

    code = 403
    error = "refused"


class Forbidden(PasError):
    """The requester may not act on this (a run another identity submitted)."""

    code = 403
    error = "forbidden"


class GatewayTimeout(PasError):
    """No reply within the request timeout."""

    code = 504
    error = "timeout"


# ---- the one error-code table --------------------------------------------------------------
# An error reply carries the code (Nats-Service-Error-Code); each party reads it from here:
#   the client raises the class of the code (pas.transport.client.raise_for),
#   the service logs 400/413 as bad input (pas.runtime.service.endpoint),
#   the HTTP adapter answers with the code when it is one of HTTP_PASS_THROUGH, else 502.
BY_CODE: dict[int, type[PasError]] = {c.code: c for c in (BadRequest, Forbidden, NotFound, Conflict, PayloadTooLarge,
                                                          Unavailable, GatewayTimeout)}
BAD_INPUT_CODES = frozenset({BadRequest.code, PayloadTooLarge.code})
HTTP_PASS_THROUGH = frozenset({400, 401, 402, 403, 404, 409, 413, 422, 503, 504})
HTTP_BAD_GATEWAY = 502


def from_code(code: int, message: str, detail: Any = None) -> PasError:
    """The exception for an error reply's code (PasError with that code when no class has it)."""
    err = BY_CODE.get(code, PasError)(message, detail=detail)
    err.code = code
    return err


def is_bad_input(e: PasError) -> bool:
    return e.code in BAD_INPUT_CODES


def http_status(e: PasError) -> int:
    return e.code if e.code in HTTP_PASS_THROUGH else HTTP_BAD_GATEWAY
