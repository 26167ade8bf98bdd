"""The run store: every run, plan, lane, job and task record of PAS, behind one typed API.

Records live in KV: pas_runs (run id -> RunRecord) and pas_tree (<run>.request, <run>.plan, <run>.lane.<l>,
<run>.job.<j>, <run>.task.<t>; keys built in pas.protocol.subjects). No run state lives only in memory: any
process can die and any other carries on from the keys. What a process keeps is a cache that saves reads:

- the records it last wrote (encoded, with their revision): before a compare-and-set a record must be read,
  and in one process (`pas up`, a Stack) it is nearly always the one this process has just written (the
  gateway's new run, the manager's job, the last sibling's update). Nothing is decided from it alone: the
  compare-and-set checks the revision, a lost race drops the entry and reads the store. Only records still
  queued or running are kept, and plans (root checks a done.plan against the plan as this process's
  architect wrote it, pas.roles.root); task records are kept without a revision (the managers write them
  whole, pas.runtime.taskowner). A reconnect forgets them all (pas.surfaces.stack): a cancel might have
  gone unheard;
- a lock per parent record, so that siblings finishing in this process take turns (other processes lose a
  compare-and-set and read again), and the completions carried by a sibling's write (group commit).

That memory is the process's (`Memory`), shared by its agents; each agent has a RunStore of its own over it,
because each agent writes with its own NATS identity (pas.transport.auth). Every write goes through
Bus.kv_* (pas.transport.retry.retry_js, the one retry policy); the one write not awaited, a task's "running",
is a progress state that the acknowledged result supersedes (put_task_progress).

The modules: runstore (RunStore: create, start, cancel, finish, note a child, views), tree (the walk upward:
parent_of, children, rollup), memory (Memory, Versioned), views (a run with a page of its tasks, a page of runs).
"""

from __future__ import annotations

from pas.runtime.store.memory import Memory as Memory
from pas.runtime.store.memory import Versioned as Versioned
from pas.runtime.store.runstore import RunStore as RunStore
from pas.runtime.store.tree import Noted as Noted
from pas.runtime.store.tree import Parent as Parent
from pas.runtime.store.tree import ParentRef as ParentRef
from pas.runtime.store.tree import children as children
from pas.runtime.store.tree import parent_of as parent_of
from pas.runtime.store.tree import rollup as rollup
