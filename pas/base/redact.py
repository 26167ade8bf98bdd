"""Secrets stay out of the logs: one function, `redact`, applied where comms entries, task results
and LLM errors are built.

A secret is the value of an environment variable whose name looks like one (*_API_KEY, *_KEY,
*_TOKEN, *SECRET*, *PASSWORD*, *PASSWD*, *CREDENTIAL*, NATS_USER/NATS_PASS/NATS_NKEY ...), of a
variable registered with `register_env` (every model profile's api_key_env), or a value registered
with `register_value` (e.g. NATS passwords PAS generates). The password of a URL
(scheme://user:password@host) is redacted wherever it appears. Values shorter than MIN_LEN are
ignored: they would match ordinary text.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re

MIN_LEN = 8
SECRET_NAMES = ("*_API_KEY", "*_KEY", "*_TOKEN", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*",
                "*_CREDS", "NATS_USER*", "NATS_PASS*", "NATS_NKEY*", "*_PAT")
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)")
_names: set[str] = set()
_values: set[str] = set()


_NAME_RE = re.compile("|".join(fnmatch.translate(p) for p in SECRET_NAMES))


@functools.lru_cache(maxsize=4096)
def _looks_secret(up: str) -> bool:
    return _NAME_RE.match(up) is not None


def is_secret_name(name: str) -> bool:
    up = name.upper()
    return up in _names or _looks_secret(up)


def register_env(name: str) -> None:
    """Treat the value of environment variable `name` as a secret, whatever its name."""
    _names.add(name.upper())


def register_value(value: str) -> None:
    if value and len(value) >= MIN_LEN:
        _values.add(value)


_cache: tuple[object, list[tuple[str, str]]] = (None, [])


def secrets_now() -> list[tuple[str, str]]:
    """(value, label) pairs, longest value first (so a key that contains another is cut whole).
    Recomputed only when the environment or the registrations changed (redact is on hot paths)."""
    global _cache
    data = getattr(os.environ, "_data", None)
    stamp = (hash(tuple(data.items())) if isinstance(data, dict) else object(), len(_names), len(_values))
    if _cache[0] == stamp:
        return _cache[1]
    found = {v: f"${k}" for k, v in os.environ.items() if len(v) >= MIN_LEN and is_secret_name(k)}
    for v in _values:
        found.setdefault(v, "secret")
    _cache = (stamp, sorted(found.items(), key=lambda kv: -len(kv[0])))
    return _cache[1]


def redact(text: str) -> str:
    """`text` with every known secret replaced by [redacted <where it came from>]."""
    if not text:
        return text
    for value, label in secrets_now():
        if value in text:
            text = text.replace(value, f"[redacted {label}]")
    if "@" in text and "://" in text:
        text = _URL_PASSWORD.sub(r"\1[redacted]\3", text)
    return text


def redact_obj(obj: object) -> object:
    """redact() applied to every string in a JSON-like structure."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


__all__ = ["is_secret_name", "redact", "redact_obj", "register_env", "register_value"]
