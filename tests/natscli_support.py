"""Helpers for driving the official `nats` CLI (natscli) against a running PAS.

- natscli():      the pinned binary (scripts/setup.sh --dev builds it when Go is present); a skip
                  with the reason when there is no Go, a failure when Go is there but natscli is not.
- PasUnderCli:    a real nats-server (free port, monitoring port for subscription checks) and PAS
                  in `pas up` processes on it; .nats() runs one CLI command as one of PAS's NATS users.
- CliSub:         a `nats sub` process read line by line, so a test waits for the message it expects.
- until_all_listed(): repeats a `nats micro ls` until every service has answered one of them.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pas.transport import auth
from pas.transport.server import EmbeddedServer
from tests.conftest import PasProcess, fast_args, make_cfg

NATSCLI_VERSION = "v0.5.0"
TERMINAL = {"completed", "failed", "cancelled", "rejected", "budget_exceeded"}


MICRO_LS_TRIES = 5


def until_all_listed(listing: Callable[[], str], names_in: Callable[[str], set[str]], names: list[str],
                     seen: set[str] | None = None) -> set[str]:
    """Run `listing` (a `nats micro ls`) until every name has been in one of its outputs; return the names seen.

    natscli stops collecting replies 300 ms after the last one (jsm.go `serverdata.DoReqAsync`'s "adaptive
    timeout", fixed in the CLI): on a loaded machine a service that answers later is missing from that one
    listing. Each service must still answer within MICRO_LS_TRIES listings; the caller asserts on what was seen.
    `seen`: names an earlier listing (the caller's own) already showed."""
    seen = set(seen or ())
    for _ in range(MICRO_LS_TRIES):
        if seen >= set(names):
            break
        seen |= names_in(listing())
    return seen


def _go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    return "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None


def natscli() -> str:
    """Path of natscli NATSCLI_VERSION: $PAS_TOOLS_BIN (default ~/.local/share/pas/bin), then PATH."""
    tools = Path(os.environ.get("PAS_TOOLS_BIN") or Path.home() / ".local/share/pas/bin")
    seen = []
    for cand in (tools / "nats", shutil.which("nats")):
        if cand and os.access(cand, os.X_OK):
            version = subprocess.run([str(cand), "--version"], capture_output=True, text=True, timeout=30)
            got = (version.stdout or version.stderr).strip()
            if got == NATSCLI_VERSION:
                return str(cand)
            seen.append(f"{cand} is {got!r}")
    if _go():
        pytest.fail(f"Go is installed but natscli {NATSCLI_VERSION} is not ({'; '.join(seen) or 'no nats binary'}): "
                    "run bash scripts/setup.sh --dev")
    pytest.skip(f"natscli {NATSCLI_VERSION} is not installed and there is no Go toolchain to build it "
                "(scripts/setup.sh --dev installs it when Go is present)")


def job(title: str, command: str = "true", run_id: str | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {"title": title, "tasks": [{"lane": "code", "instruction": command, "command": command}]}
    if run_id:
        body["run_id"] = run_id
    return json.dumps({**body, **extra})


def new_run_id(tag: str) -> str:
    return f"r-cli-{tag}-{os.urandom(4).hex()}"


@dataclass
class CliSub:
    """`nats sub ...` running; messages parsed from its pretty output ("[#n] Received on "subj"", headers, body)."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    msgs: list[tuple[str, str]] = field(default_factory=list)
    out: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def pump() -> None:
            assert self.proc.stdout is not None
            with self.proc.stdout:  # closed at the end of the output (no unclosed-file warning)
                for line in self.proc.stdout:
                    self.lines.put(line.rstrip("\n"))
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def _take(self, line: str) -> None:
        self.out.append(line)
        m = re.match(r'^\[#\d+\] Received on "([^"]+)"', line)
        if m:
            self.msgs.append((m.group(1), ""))
        elif self.msgs and line.strip() and not self.msgs[-1][1]:
            try:
                json.loads(line)
            except ValueError:
                return  # a header line ("Nats-Msg-Id: ...")
            self.msgs[-1] = (self.msgs[-1][0], line)

    def wait_for(self, pred: Callable[[str, Any], bool], timeout_s: float = 30.0) -> tuple[str, Any]:
        """The first message (subject, parsed JSON body) with pred(subject, body) true; fails after timeout_s."""
        deadline = time.monotonic() + timeout_s
        checked = 0
        while True:
            while checked < len(self.msgs) and self.msgs[checked][1]:
                subj, body = self.msgs[checked]
                checked += 1
                if pred(subj, json.loads(body)):
                    return subj, json.loads(body)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message in {timeout_s}s; output:\n" + "\n".join(self.out[-40:]))
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"nats sub exited {self.proc.wait()}: {err}\n" + "\n".join(self.out[-40:]))
            self._take(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@dataclass
class Shell:
    """What `eval "$(pas creds USER)"` leaves in a shell: NATS_* variables (NATS_CONTEXT names the natscli
    context `pas creds` saved, which carries the user's inbox prefix)."""

    env: dict[str, str]
    printed: str  # the lines `pas creds USER` printed


def eval_creds(printed: str, base: dict[str, str]) -> Shell:
    env = dict(base)
    for line in printed.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            key, _, value = words[1].partition("=")
            env[key] = value
        elif words:
            raise AssertionError(f"pas creds printed a line other than an export: {line!r}")
    return Shell(env, printed)


class PasUnderCli:
    """nats-server + `pas up --except prog-010` + `pas up --only prog-010` (killable for alerts).

    The server requires PAS's NATS users (pas.transport.auth), as `pas up`'s embedded one does, and every CLI
    command runs as some user: in the shell `eval "$(pas creds USER)"` gives (client by default)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = natscli()
        self.server = EmbeddedServer(tmp / "nats", port=-1, extra_args=["-m", "-1"])
        self.procs: dict[str, PasProcess] = {}
        self.creds_dir = tmp / "creds"
        self.shells: dict[str, Shell] = {}

    def start(self) -> PasUnderCli:
        self.server.auth_block = auth.server_block(make_cfg(), auth.ensure_creds(self.creds_dir, auth.users(make_cfg())))
        self.url = self.server.start()
        ports = json.loads(next((self.tmp / "nats" / "ports").glob("*.ports")).read_text())
        self.monitor = ports["monitoring"][0]
        xdg = self.tmp / "xdg"  # natscli contexts live here, never in the user's ~/.config
        xdg.mkdir(exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "PAS_CREDS"))}
        self.base_env = {**base, "XDG_CONFIG_HOME": str(xdg)}
        self.shell("client")  # the CLI's default user: its natscli context exists from the start
        self.spawn("main", "--except", "prog-010")
        self.spawn("prog-010", "--only", "prog-010")
        return self

    def spawn(self, name: str, *args: str) -> PasProcess:
        p = PasProcess(["--nats-url", self.url, "--creds-dir", str(self.creds_dir), *args, *fast_args()], self.tmp,
                       name)
        self.procs[name] = p
        return p.start()

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate(10)
        self.server.stop()

    # ---- running the CLI ------------------------------------------------------------------
    def shell(self, user: str) -> Shell:
        """The environment `eval "$(pas creds USER)"` leaves, made on first use (a process each: 29 users)."""
        if user not in self.shells:
            out = subprocess.run([sys.executable, "-m", "pas", "creds", user, "--creds-dir", str(self.creds_dir),
                                  "--nats-url", self.url], capture_output=True, text=True, timeout=60,
                                 env=self.base_env)  # its natscli context goes to the test's XDG_CONFIG_HOME
            assert out.returncode == 0, out.stderr
            self.shells[user] = eval_creds(out.stdout, self.base_env)
        return self.shells[user]

    def argv(self, cmd: str | list[str], user: str = "client", bare: bool = False) -> list[str]:
        args = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        assert args[0] == "nats", args
        return [self.bin, *args[1:]]

    def nats(self, cmd: str | list[str], *, ok: bool = True, stdin: str | None = None, timeout_s: float = 30.0,
             user: str = "client", bare: bool = False, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        """Run one CLI command as `user` (its env); bare: env (default: no NATS_*, so no context either)."""
        env = env or (self.base_env if bare else self.shell(user).env)
        r = subprocess.run(self.argv(cmd, user, bare), capture_output=True, text=True, input=stdin, env=env,
                           timeout=timeout_s,
                           stdin=None if stdin is not None else subprocess.DEVNULL)
        if ok:
            assert r.returncode == 0, f"{cmd!r} as {user} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
            assert "Nats-Service-Error" not in r.stderr, f"{cmd!r} got an error reply:\n{r.stderr}\n{r.stdout}"
            assert "Violation" not in r.stderr, f"{cmd!r} as {user} was refused:\n{r.stderr}"
        return r

    def req(self, subject: str, body: str, *flags: str, user: str = "client") -> Any:
        """`nats req SUBJECT BODY` -> the parsed JSON reply (must not be an error)."""
        return json.loads(self.nats(["nats", "req", *flags, subject, body], user=user).stdout)

    def sub(self, cmd: str | list[str], user: str = "client") -> CliSub:
        """Start `nats sub ...` and return once the server holds its subscription."""
        argv = self.argv(cmd, user)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.shell(user).env, stdin=subprocess.DEVNULL)
        s = CliSub(proc)
        words = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        subjects = [a for a in words[2:] if not a.startswith("-")]
        try:
            self.wait_subscribed(subjects, proc)
        except BaseException:
            s.close()
            raise
        return s

    def wait_subscribed(self, subjects: list[str], proc: subprocess.Popen[str], timeout_s: float = 20.0) -> None:
        """Poll the server's /connz until a `nats` CLI connection holds every subject."""
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"nats sub {subjects} exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            with urllib.request.urlopen(f"{self.monitor}/connz?subs=1&limit=1024", timeout=5) as r:
                conns = json.loads(r.read())["connections"] or []
            for c in conns:
                if c.get("name", "").startswith("NATS CLI") and set(subjects) <= set(c.get("subscriptions_list") or []):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"nats sub {subjects} not subscribed within {timeout_s}s")
            time.sleep(0.05)

    def pty_run(self, cmd: str | list[str], until: str, timeout_s: float = 30.0, user: str = "client",
                linger_s: float = 0.0) -> str:
        """Run an interactive command (`nats stream view` pages only on a terminal) on a pseudo-terminal;
        read until `until` appears (and linger_s more: errors arrive after a page) or it exits, then end
        it. Returns the output (ANSI codes removed)."""
        master, slave = pty.openpty()
        proc = subprocess.Popen(self.argv(cmd, user), stdin=slave, stdout=slave, stderr=slave,
                                env=self.shell(user).env, start_new_session=True)
        os.close(slave)
        buf = b""
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if until.encode() in buf:
                    deadline = min(deadline, time.monotonic() + linger_s)
                    if not linger_s:
                        break
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # the other side closed: the command exited
                        break
                    if not chunk:
                        break
                    buf += chunk
                    if b"\x1b[6n" in buf[-len(chunk) - 4:]:  # a cursor-position query: answer it
                        os.write(master, b"\x1b[1;1R")
                elif proc.poll() is not None:
                    break
        finally:
            proc.kill()
            proc.wait()
            os.close(master)
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]|\r", "", buf.decode(errors="replace"))

    # ---- runs -------------------------------------------------------------------------------
    def wait_run(self, run_id: str, statuses: set[str] = TERMINAL, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.nats(["nats", "req", "pas.gateway.status", json.dumps({"run_id": run_id})], ok=False)
            if r.returncode == 0 and "Nats-Service-Error" not in r.stderr:
                st = json.loads(r.stdout)
                if st["status"] in statuses:
                    return st
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} not in {statuses} within {timeout_s}s: {r.stdout} {r.stderr}")
            time.sleep(0.1)

    def run_titled(self, title: str, timeout_s: float = 30.0) -> str:
        """The id of the newest run with this title, once the gateway lists it (a publish has no reply)."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.req("pas.gateway.runs", '{"limit":100}')["runs"]
            mine = [r["run_id"] for r in runs if r["title"] == title]
            if mine:
                return mine[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no run titled {title!r} within {timeout_s}s: {runs}")
            time.sleep(0.1)

    def run(self, title: str, command: str = "true") -> str:
        """A run submitted with the CLI and finished: its id."""
        rid = self.req("pas.gateway.submit", job(title, command))["run_id"]
        assert self.wait_run(rid)["status"] == "completed"
        return rid
