"""The ``aider`` executor: one non-interactive aider run in a task's worktree.

aider is installed outside the project's environment (it pins its own litellm), e.g.
``uv tool install aider-chat``, and found by name or path (settings.llm.aider_binary).

A run succeeds only when aider exits 0, a model actually replied (read from aider's LLM history
file, which PAS points into a temp dir), and the worktree changed (git diff). Anything else — a
missing binary, a timeout, a non-zero exit, a run that never reached a model (connection or
provider errors, which aider retries and then gives up on with exit code 0), or a reply that
changed nothing — is a failed result with the reason in `error`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import tempfile
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pas.base import programs
from pas.base.errors import CommandRefused
from pas.execution.edit_loop import EditTask, git_diff, safe_path, untracked_files
from pas.execution.gitsafe import run_git
from pas.execution.sandbox import Box, Reach, handed_over

OUTPUT_CAP = 64 * 1024
"""Characters of aider's output kept (the tail)."""
NO_KEY = "pas-no-key"
"""Placeholder key for a local OpenAI-compatible server that wants none (not a credential)."""

_ERR_LINE = re.compile(
    r"(litellm\.\w+|APIConnectionError|InternalServerError|AuthenticationError|NotFoundError|"
    r"BadRequestError|Timeout|Connection error|Retrying in|did not conform to the edit format|"
    r"Failed to apply edit|SearchReplaceNoExactMatch|Error:)",
    re.I,
)


@dataclass
class AiderResult:
    status: Literal["completed", "failed", "timeout"]
    exit_code: int | None
    output: str
    """aider's stdout and stderr (the tail, OUTPUT_CAP characters)."""
    diff: str
    error: str = ""
    model_replied: bool = False
    """aider received a non-empty reply from the model."""


def find_binary(binary: str) -> str | None:
    """The aider executable: a path, a name on PATH, or ~/.local/bin/<name> (uv tool's default)."""
    return programs.find_binary(binary, after=(Path.home() / ".local" / "bin",))


def model_metadata(model: str) -> dict[str, dict[str, object]]:
    """litellm-style metadata so aider accepts a model it does not know (costs 0: PAS does not use
    aider's cost figures)."""
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return {
        model: {
            "max_tokens": 8192,
            "max_input_tokens": 128000,
            "max_output_tokens": 8192,
            "input_cost_per_token": 0.0,
            "output_cost_per_token": 0.0,
            "litellm_provider": provider,
            "mode": "chat",
        }
    }


def _replied(history: Path) -> bool:
    """True when aider's LLM history holds an assistant reply with content."""
    try:
        text = history.read_text(errors="replace")
    except OSError:
        return False
    for chunk in text.split("LLM RESPONSE")[1:]:
        body = chunk.split("\n", 1)[1] if "\n" in chunk else ""
        body = body.split("TO LLM", 1)[0]
        content = re.sub(r"^ASSISTANT ?", "", body.strip(), flags=re.M).strip()
        if content:
            return True
    return False


async def _collect(proc: asyncio.subprocess.Process, timeout_s: float,
                   stop: Awaitable[object] | None) -> tuple[str, bool, bool]:
    """aider's output (the tail), whether it timed out, whether `stop` ended it; its sandbox is
    killed in any case."""
    buf = bytearray()

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            buf.extend(chunk)
            if len(buf) > 4 * OUTPUT_CAP:
                del buf[: len(buf) - 2 * OUTPUT_CAP]

    reader = asyncio.create_task(pump())
    timed_out = stopped = False
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop) if stop is not None else None
    try:
        done, _ = await asyncio.wait([w for w in (waiter, stopper) if w is not None], timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        timed_out = waiter not in done
        stopped = stopper is not None and stopper in done
    finally:
        if stopper is not None:
            stopper.cancel()
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await proc.wait()
        await reader
    output = bytes(buf).decode(errors="replace")
    return (output if len(output) <= OUTPUT_CAP else output[-OUTPUT_CAP:]), timed_out, stopped


def _reasons(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if _ERR_LINE.search(ln)]
    uniq = list(dict.fromkeys(lines))[:5]
    return "; ".join(x[:300] for x in uniq)


async def _exclude_aider_files(workdir: Path) -> None:
    """Add `.aider*` to the repository's info/exclude so aider's caches never show as changes."""
    rc, out = await run_git(workdir, "rev-parse", "--git-path", "info/exclude")
    if rc != 0 or not out.strip():
        return
    path = Path(out.strip().splitlines()[0])
    path = path if path.is_absolute() else workdir / path
    try:
        text = path.read_text() if path.exists() else ""
        if ".aider*" not in text.split("\n"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + ".aider*\n")
    except OSError:
        pass


def _env(model: str, api_base: str | None, api_key_env: str | None) -> dict[str, str]:
    """What aider gets on top of the sandbox's scrubbed environment: its endpoint and its own key
    (under the profile's variable name, and as OPENAI_API_KEY for OpenAI-compatible models)."""
    env = {"NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1", "COLUMNS": "500",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and key:
        env[api_key_env] = key
    openai_like = model.startswith("openai/") or "/" not in model
    if api_base:
        env["OPENAI_API_BASE"] = api_base
        env["OPENAI_BASE_URL"] = api_base
        if model.startswith("ollama"):
            env["OLLAMA_API_BASE"] = api_base
        if openai_like:
            env["OPENAI_API_KEY"] = key or os.environ.get("OPENAI_API_KEY") or NO_KEY
    elif key and openai_like:
        env["OPENAI_API_KEY"] = key
    return env


@dataclass(frozen=True)
class AiderSetup:
    """Which aider runs with which model: the binary, a model profile's name, endpoint and key
    variable, and aider's own options (edit_format: default aider's choice for the model;
    map_tokens=0 turns the repo map off)."""

    binary: str
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    edit_format: str | None = None
    map_tokens: int | None = None


async def run_aider(
    setup: AiderSetup,
    task: EditTask,
    timeout_s: float,
    *,
    base_env: Mapping[str, str] | None = None,
    stop: Awaitable[object] | None = None,
    box: Box | None = None,
) -> AiderResult:
    """Run `aider --message <instruction> <files>...` in the task's workdir and judge the outcome
    (its acceptance is not run here). `base_env` is the environment aider runs in (the
    repository's toolchain, pas.execution.repoenv; default PAS's), filtered by the sandbox's allowlist. `stop`,
    when it completes first, ends the run like the timeout does (a caller's deadline that is an
    event, not a clock). aider runs in the sandbox `box` (default: the default policy) with the
    network shared: it must reach its model (see README, threat model)."""
    workdir, files, model = Path(task.workdir), task.files, setup.model
    box = box or Box()
    problem = box.problem()
    if problem:
        return AiderResult("failed", None, "", "", f"refused: no sandbox for aider: {problem}")
    exe = find_binary(setup.binary)
    if exe is None:
        return AiderResult("failed", None, "", "", f"aider binary not found: {setup.binary!r}")
    try:
        for f in files:
            safe_path(workdir, f)
    except CommandRefused as e:
        return AiderResult("failed", None, "", "", e.message)
    await _exclude_aider_files(workdir)
    before = await untracked_files(workdir)
    with tempfile.TemporaryDirectory(prefix="pas-aider-") as tmp:
        t = Path(tmp)
        meta = t / "model-metadata.json"
        meta.write_text(json.dumps(model_metadata(model)))
        history = t / "llm-history.txt"
        args = [
            exe, f"--model={model}", "--yes-always", "--no-check-update", "--no-analytics",
            "--no-show-model-warnings", "--no-fancy-input", "--no-pretty", "--no-stream",
            "--no-auto-commits", "--no-dirty-commits", "--no-gitignore", "--no-show-release-notes",
            "--no-restore-chat-history", "--no-suggest-shell-commands", "--no-detect-urls",
            f"--model-metadata-file={meta}", f"--llm-history-file={history}",
            f"--chat-history-file={t / 'chat.md'}", f"--input-history-file={t / 'input.txt'}",
            f"--timeout={max(1.0, timeout_s):g}", f"--message={task.instruction}",
        ]
        if setup.edit_format:
            args.append(f"--edit-format={setup.edit_format}")
        if setup.map_tokens is not None:
            args.append(f"--map-tokens={setup.map_tokens}")
        args += ["--", *files]
        launch = box.launch(args, workdir, extra_env=_env(model, setup.api_base, setup.api_key_env),
                            source_env=base_env, reach=Reach(network=True, rw=(t,)))
        async with handed_over(launch):
            try:
                proc = await asyncio.create_subprocess_exec(
                    *launch.argv, cwd=str(workdir), env=launch.env,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                )
            except OSError as e:
                return AiderResult("failed", None, "", "", f"aider could not start: {e}")
            output, timed_out, stopped = await _collect(proc, timeout_s, stop)
        replied = _replied(history)

    new_files = {f for f in await untracked_files(workdir) - before if not f.startswith(".aider")}
    diff = await git_diff(workdir, new_files)
    code = proc.returncode
    why = _reasons(output)
    res = AiderResult("failed", code, output, diff, "", replied)
    if timed_out:
        res.status = "timeout"
        res.error = ("aider was stopped" if stopped else f"aider timed out after {timeout_s:g}s") \
            + ("" if replied else ", no reply from the model") + (f": {why}" if why else "")
    elif code != 0:
        res.error = f"aider exited with code {code}" + (f": {why}" if why else "")
    elif not replied:
        res.error = "aider never got a reply from the model" + (f": {why}" if why else "")
    elif not diff.strip():
        res.error = "the model replied but no file changed" + (f": {why}" if why else "")
    else:
        res.status = "completed"
    return res


__all__ = ["AiderResult", "AiderSetup", "find_binary", "model_metadata", "run_aider"]
