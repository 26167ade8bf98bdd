"""`pas demo`: the embedded stack runs a sample job over three lanes on a copy of the sample project.

The sample project (shipped in the package: pas/defaults/sample_project) brings its own
requirements.txt: like any target repository, its tasks run in its own environment
(pas.execution.repoenv), never in PAS's. The demo builds that virtualenv once from the package registry
(pip, with pip's own cache) into ~/.cache/pas/demo-envs/<key> ($XDG_CACHE_HOME respected) and links
it as the sample repository's .venv, so a second demo starts at once.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pas.base.errors import PasError
from pas.config.model import PasConfig
from pas.execution import gitsafe
from pas.execution.policy import repo_roots
from pas.protocol import subjects as S
from pas.runtime import comms as comms_mod
from pas.surfaces.cliutil import follow_run, install_stop_signals, result_table, wire_run_id
from pas.surfaces.stack import Stack
from pas.transport import auth
from pas.transport.client import PasClient

SAMPLE = Path(__file__).resolve().parent.parent / "defaults" / "sample_project"
"""The sample project that `pas demo` copies, shipped inside the package."""
READY = ".pas-ready"
PIP_WHAT = "pip install -r requirements.txt of the sample project (it needs the package registry once)"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pas"


def base_python() -> str:
    """The interpreter the sample's venv is made from: the one PAS's own venv was made from."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(argv: list[str], what: str) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise PasError(f"demo: {what} failed (exit {p.returncode}): {(p.stdout + p.stderr).strip()[-1500:]}")


def sample_env(requirements: Path, say: Any = print) -> Path:
    """The sample project's virtualenv with its requirements installed: built once per
    (requirements, interpreter) under a file lock, reused afterwards."""
    py = base_python()
    key = hashlib.sha256(f"{requirements.read_text()}\0{py}\0{sys.version}".encode()).hexdigest()[:16]
    d = cache_root() / "demo-envs" / key
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two demos at once: one builds, the other waits and reuses
        if (d / READY).exists():
            say(f"pas demo: the sample project's environment is cached in {d}")
            return d
        say(f"pas demo: building the sample project's environment in {d} "
            f"(pip install -r requirements.txt from the package registry; once) ...")
        t0 = time.monotonic()
        shutil.rmtree(d, ignore_errors=True)
        req = ["install", "-q", "--disable-pip-version-check", "-r", str(requirements)]
        if importlib.util.find_spec("pip") is not None:  # no ensurepip: PAS's pip installs into it
            _run([py, "-m", "venv", "--without-pip", str(d)], "python -m venv")
            _run([sys.executable, "-m", "pip", "--python", str(d / "bin" / "python"), *req], PIP_WHAT)
        else:
            _run([py, "-m", "venv", str(d)], "python -m venv")
            _run([str(d / "bin" / "python"), "-m", "pip", *req], PIP_WHAT)
        (d / READY).write_text("ok\n")
        say(f"pas demo: environment ready in {time.monotonic() - t0:.1f}s")
        return d


def prepare_sample_repo(dest: Path, with_env: bool = True) -> Path:
    """Copy the sample project into dest/sample_project, commit it, and link its .venv."""
    repo = dest / "sample_project"
    shutil.copytree(SAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".venv"))
    gitsafe.run(repo, "init", "-q", "-b", "main")
    gitsafe.run(repo, "add", "-A")
    gitsafe.run(repo, "-c", "user.name=PAS demo", "-c", "user.email=demo@localhost", "commit", "-q", "-m",
                "sample project")
    if with_env:
        (repo / ".venv").symlink_to(sample_env(repo / "requirements.txt"), target_is_directory=True)
    return repo


def demo_job(repo: Path) -> dict[str, Any]:
    def task(lane: str, command: str) -> dict[str, Any]:
        return {"lane": lane, "instruction": command, "command": command, "executor": "command"}

    return {
        "title": "demo: test, lint and check the docs of the sample project",
        "goal": "Verify the sample project: tests, lint, docs",
        "repo": str(repo),
        "tasks": [
            task("code", "python -m pytest -q -p no:cacheprovider tests"),
            task("code", "python -m unittest discover -s tests -q"),
            task("devsecops", "python -m compileall -q src tests"),
            task("devsecops", "git ls-files"),
            task("docs", "python tools/check_docs.py"),
            task("docs", "python -m doctest -v README.md"),
        ],
    }


async def run_demo(args: argparse.Namespace, cfg: PasConfig) -> int:
    cfg.settings.nats.port = args.nats_port
    tmp = Path(tempfile.mkdtemp(prefix="pas-demo-"))
    data_dir = Path(args.data_dir) if args.data_dir else tmp / "nats"
    repo = await asyncio.to_thread(prepare_sample_repo, tmp)
    # The demo is the operator here: the sample repository it made is one a job may name.
    cfg.settings.policy.repo_roots = [*(str(r) for r in repo_roots(cfg.settings.policy.repo_roots)), str(tmp)]
    cfg.settings.nats.data_dir = str(data_dir)
    stack = Stack(cfg, http=False)
    print(f"pas demo: starting nats-server and {len(cfg.agents)} agents ...", flush=True)
    t0 = time.monotonic()
    await stack.start()
    try:
        print(f"pas demo: {len(stack.agents)} agents up on {stack.url} in {time.monotonic() - t0:.2f}s", flush=True)
        job = demo_job(repo)
        job["run_id"] = wire_run_id()
        # The demo is a client like any other: it submits and reads the comms log as the `client` user.
        client = await PasClient.connect(stack.url or "", cfg.settings.nats.request_timeout_s,
                                         creds=stack.creds.get("client"))
        try:
            reply = await client.submit(job)
            run_id = reply["run_id"]
            print(f"pas demo: submitted run {run_id}: {len(job['tasks'])} tasks over lanes code, devsecops, docs",
                  flush=True)
            st = await follow_run(client, run_id, timeout_s=300)
            print()
            print(result_table(st))
            branches = [t["branch"] for t in st["tasks"] if t.get("branch")]
            print(f"\nEach task ran in its own git worktree of {repo} (branches: {', '.join(branches[:3])} ...).")
            print(f"Comms log of this run (stream {S.STREAM_COMMS}, stored in {data_dir}):")
            async for e in comms_mod.read(client.nc.jetstream(), run_id=run_id):
                print("  " + comms_mod.format_entry(e)[:160])
        finally:
            await client.close()
        creds = f" --creds-dir {auth.creds_dir(cfg, data_dir)}" if stack.creds else ""
        print(f"\nRead it again later: pas up --data-dir {data_dir} --nats-port -1 --ready-file url.txt, then "
              f"pas log --run {run_id} --nats-url $(cat url.txt){creds}")
        if args.keep:
            print(f"pas demo: stack still running on {stack.url}; Ctrl-C to stop", flush=True)
            stop = asyncio.Event()
            install_stop_signals(stop)
            await stop.wait()
        return 0 if st["status"] == "completed" else 1
    finally:
        await stack.stop()
