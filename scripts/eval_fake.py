"""The harness check behind EVALS.md: `pas eval` on the whole task set against the scripted fake
model (tests/eval_oracle.py on tests/fakellm.py). NOT a model result: the "model" replies with each
task's reference solution, except for the tasks scripted to be wrong or to conflict.

    PYTHONPATH=. .venv/bin/python scripts/eval_fake.py [pas eval options, e.g. --json /tmp/e.json --html /tmp/e.html]

The profile gpt-4o-mini is pointed at the fake server, so litellm prices the fake token counts
(word counts) at gpt-4o-mini's list price: the cost column is an estimate of a cheap-model run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pas.surfaces.cli import main
from pas.surfaces.eval.tasks import load_tasks
from tests.eval_oracle import Oracle
from tests.fakellm import API_KEY_ENV, get_server

SCENARIOS = {"fix-clamp": "wrong", "fix-roman": "wrong", "feat-textutil": "wrong", "tests-kv": "wrong",
             "docs-docstrings": "wrong", "trap-default-port": "conflict"}
"""Scripted wrong edits and a conflict; every other task gets its reference solution."""

if __name__ == "__main__":
    fake = get_server()
    os.environ[API_KEY_ENV] = "sk-fake"
    Oracle(load_tasks(), SCENARIOS).install(fake, "gpt-4o-mini")
    sys.exit(main(["eval", "--model", "gpt-4o-mini", "-c", f"models.gpt-4o-mini.api_base={fake.api_base}",
                   "-c", f"models.gpt-4o-mini.api_key_env={API_KEY_ENV}", *sys.argv[1:]]))
