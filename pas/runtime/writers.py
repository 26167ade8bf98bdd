"""Which agents' per-agent side records of a run count (usage, rerun notes: <run>.<kind>.<agent>).

Each agent writes only its own key (pas.transport.auth grants name its id), so the key says who wrote
an entry. Architect, directors and managers run no task code: their entries count. A programmer's
credentials are what a task's code can reach, so its entry counts only if a task record of the run
(written by the managers: pas.runtime.taskowner) names it as holder: a stolen one cannot steer a run it
works on no task of.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.bus import Bus

log = logging.getLogger("pas.runtime.writers")

TRUSTED_ROLES = ("architect", "dir", "mgr")
"""Model callers whose entries count as written: they run no task code."""


def agent_of(key: str) -> str:
    """The agent id a per-agent key ends with."""
    return key.rsplit(".", 1)[-1]


async def counted(bus: Bus, run_id: str, agents: Iterable[str], kind: str) -> set[str]:
    """The agents among `agents` whose `kind` entries of the run count; a WARNING names each one that does not."""
    trusted = {a.id for a in bus.cfg.agents if a.role in TRUSTED_ROLES}
    out = {a for a in agents if a in trusted}
    rest = set(agents) - out
    if rest:
        holders = {t.programmer for t in await bus.kv_values(S.KV_TREE, S.tasks_of(run_id), wire.TaskRecord)}
        for a in sorted(rest):
            if a in holders:
                out.add(a)
            else:
                log.warning("%s of run %s: ignored %s's entry (it holds no task of the run)", kind, run_id, a)
    return out
