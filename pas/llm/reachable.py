"""Which model profiles the agents of a process can call now: a profile's key is set (or it needs none),
and a profile on this machine (Ollama, vLLM on 127.0.0.1) has something listening on its port. `pas up`
(pas.surfaces.commands) asks, to load litellm at start only when a call could be made (pas.llm.client.preload)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from pas.config.model import AgentConfig, ModelProfile

PLANNING_ROLES = ("architect", "dir", "mgr")
CALLING_ROLES = (*PLANNING_ROLES, "prog")
"""The roles that call models: planners, and programmers for `llm`/`aider` tasks."""


def callable_profiles(agents: list[AgentConfig], profiles: Mapping[str, ModelProfile],
                      environ: Mapping[str, str] = os.environ) -> list[str]:
    """The profiles these agents may call: a primary or backup whose key is set, or that needs none.
    A profile whose key is missing never reaches litellm (the call fails at once), so it needs no import."""
    names = dict.fromkeys(n for a in agents if a.role in CALLING_ROLES for n in (a.model, a.backup_model)
                          if n and n in profiles)
    return [n for n in names if not profiles[n].api_key_env or environ.get(profiles[n].api_key_env or "")]


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Hosts of this machine, as urlsplit() gives them (lower case, an IPv6 address without its brackets)."""


async def listening(names: list[str], profiles: Mapping[str, ModelProfile], timeout_s: float = 0.3) -> list[str]:
    """Of these profiles, those that could answer now: any whose api_base is not on this machine, and a local
    one (Ollama, vLLM on 127.0.0.1) only if something accepts a connection on its port. For deciding whether
    `pas up` loads litellm at start (about 190 MB and seconds of CPU): a local model server that is not running
    cannot be called, and one started later costs its first call the import. One probe per address."""

    async def probe(host: str, port: int) -> bool:
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, TimeoutError):
            return False
        w.close()
        return True

    def where(name: str) -> tuple[str, int] | None:
        base = profiles[name].api_base
        if not base:
            return None
        u = urlsplit(base)
        if (u.hostname or "") not in LOCAL_HOSTS:
            return None
        try:
            port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            return None
        return u.hostname or "", port

    at = {n: where(n) for n in names}
    addresses = {a for a in at.values() if a is not None}
    probes = {a: asyncio.ensure_future(probe(*a)) for a in addresses}
    up = dict(zip(probes, await asyncio.gather(*probes.values()), strict=True))
    return [n for n, a in at.items() if a is None or up[a]]
