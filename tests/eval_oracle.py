"""A scripted model for `pas eval` checks: it answers every tier of the swarm and the solo executor
for the eval tasks, from each task's reference solution (evals/tasks/<name>/solution/), through
the fake OpenAI-compatible server (tests/fakellm.py, litellm's real path).

Per task a scenario: "right" (the reference solution), "wrong" (an edit that changes nothing that
matters), "conflict" (the manager plans two parallel tasks that both rewrite the same file, each
differently). It never reads hidden/: it cannot leak what it does not know.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pas.surfaces.eval.tasks import EvalTask
from tests.fakellm import Dispatch, Fail, FakeLLM, Reply

PART = re.compile(r"Part (\d+): write (\S+)")


def _block(path: str, content: str) -> str:
    return f"FILE: {path}\n<<<<<<< CONTENT\n{content.rstrip(chr(10))}\n>>>>>>> END\n"


class Oracle:
    def __init__(self, tasks: list[EvalTask], scenarios: dict[str, str] | None = None) -> None:
        self.tasks = sorted(tasks, key=lambda t: -len(t.goal))  # the longest goal first: no prefix mix-ups
        self.scenarios = scenarios or {}

    def install(self, fake: FakeLLM, model: str) -> None:
        fake.default(model, Dispatch(self))

    def _task(self, text: str) -> EvalTask | None:
        return next((t for t in self.tasks if t.goal in text), None)

    def _parts(self, task: EvalTask) -> list[str]:
        paths = list(task.solution())
        if self.scenarios.get(task.name) == "conflict":
            paths.append(paths[0])  # two tasks for one file: their branches conflict
        return paths

    def _content(self, task: EvalTask, path: str, part: int) -> str:
        scen = self.scenarios.get(task.name, "right")
        if scen == "wrong":
            orig = task.repo_dir / path
            if orig.exists():
                return orig.read_text() + "# reviewed, no change needed\n"
            if path.split("/")[-1].startswith("test_"):
                return "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_nothing(self):\n        pass\n"
            return "# nothing\n"
        content = task.solution()[path]
        if scen == "conflict" and part > 0 and path == self._parts(task)[0]:
            first = content.splitlines()[0]
            content = content.replace(first, first + f"  # variant {part}", 1)
        return content

    def __call__(self, body: dict[str, Any]) -> Any:
        msgs = body.get("messages") or []
        system = str(msgs[0].get("content") or "") if msgs else ""
        text = "\n".join(str(m.get("content") or "") for m in msgs)
        task = self._task(text)
        if task is None:
            return Fail(500, "oracle: no eval task's goal in this request")
        if "You are the Architect" in system:
            return Reply(json.dumps({"lanes": [{"lane": task.lanes[0], "brief": task.goal}]}))
        if "You are the Director" in system:
            return Reply(json.dumps({"jobs": [{"tasks": [{"instruction": task.goal}]}]}))
        if "You are a Manager" in system:
            parts = self._parts(task)
            lane = re.search(r"Manager of the '(\w+)' lane", system)
            plan = [{"instruction": f"{task.goal}\nPart {i}: write {p}", "executor": "llm", "files": [p],
                     **({"lane": lane.group(1)} if lane else {})} for i, p in enumerate(parts)]
            if len(parts) == 1:
                plan[0]["acceptance"] = task.acceptance
            return Reply(json.dumps({"tasks": plan}))
        user = str(msgs[1].get("content") or "") if len(msgs) > 1 else ""
        m = PART.search(user)
        if m:  # a swarm programmer: its one part
            i, path = int(m.group(1)), m.group(2)
            return Reply("Done.\n" + _block(path, self._content(task, path, i)))
        return Reply("".join(_block(p, self._content(task, p, 0)) for p in task.solution()))  # solo: all
