"""The one rule for run, job and task ids, checked at every edge where an id comes in.

Ids become NATS subject tokens (``pas.run.<run>.task.<task>``), KV keys (``<run>.task.<task>``),
git branch names (``pas/<run>/<task>``) and directory names (``.pas/worktrees/<run>/<task>``, the
scratch directories). So an id is one token: letters, digits, ``_`` and ``-``, starting with a letter
or digit, at most 64 characters: no ``.``, no ``/``, no ``..``, no wildcard, never an option
(``-x``) or an absolute path. What PAS makes fits: ``r-20260101-120000-a1b2c3``, A2A's UUIDs,
``code-1-01``.

Used by the wire types (``pas.protocol.wire.RunId``/``JobId``/``TaskId``), the HTTP path parameters and
bodies, the NATS endpoints, MCP and the CLI: a bad id is a 400 naming the field.
"""

from __future__ import annotations

import re

from pas.base.errors import BadRequest

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
ID_RE = re.compile(ID_PATTERN)
ID_RULE = "1-64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit"


def is_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None


def check_id(value: object, field: str = "run_id") -> str:
    """`value` if it is a valid id, else BadRequest naming `field`."""
    if not is_id(value):
        raise BadRequest(f"{field}: invalid id {str(value)[:80]!r} ({ID_RULE})", detail={"field": field})
    assert isinstance(value, str)
    return value


__all__ = ["ID_PATTERN", "ID_RE", "ID_RULE", "check_id", "is_id"]
