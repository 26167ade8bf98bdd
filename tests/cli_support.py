"""`pas` commands as real processes, for the multi-process and start-up tests."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PAS_NATS_URL", "PAS_HTTP_TOKEN", "PAS_CONFIG_DIR")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def dead_port() -> int:
    """A port nobody listens on: bound, read, closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pas_argv(argv: list[str]) -> list[str]:
    """`pas ARGS` as this interpreter runs it (the console script is the same module)."""
    assert argv[0] == "pas", argv
    return [sys.executable, "-m", "pas", *argv[1:]]


def run_pas(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pas_argv(["pas", *args]), capture_output=True, text=True, timeout=timeout,
                          env=cli_env(**env), stdin=subprocess.DEVNULL)


def run_pas_all(*argvs: list[str], timeout: float = 60) -> list[subprocess.CompletedProcess[str]]:
    """Independent `pas` commands at the same time (each as run_pas would), results in order."""
    procs = [subprocess.Popen(pas_argv(["pas", *a]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(), stdin=subprocess.DEVNULL) for a in argvs]
    out = []
    for a, proc in zip(argvs, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(a, proc.returncode, stdout, stderr))
    return out


class PasCommand:
    """A long-running `pas ...` (its own session, output in a log file)."""

    def __init__(self, argv: list[str], cwd: Path, name: str, **env: str) -> None:
        self.log = cwd / f"{name}.log"
        self.argv = pas_argv(argv)
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=str(cwd), start_new_session=True, env=cli_env(**env))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_line(self, pattern: str, timeout_s: float = 90.0) -> re.Match[str]:
        """Wait until the output has a line matching pattern; fail at once if the process exits."""
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern, re.M)
        while True:
            exited = not self.alive()  # read the output after this: a line written just before exit counts
            m = rx.search(self.text())
            if m:
                return m
            assert not exited, f"{self.argv} exited {self.proc.returncode}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout_s}s:\n{self.text()[-3000:]}"
            time.sleep(0.05)

    def wait_exit(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def readme_block(containing: str) -> str:
    """The README's fenced bash block that contains `containing` (so a changed README is tested)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"expected one README block with {containing!r}, found {len(found)}"
    return found[0]


def commands(block: str) -> list[list[str]]:
    """The block's command lines as argv lists (comments dropped)."""
    return [argv for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


__all__ = ["PasCommand", "cli_env", "commands", "dead_port", "readme_block", "run_pas", "run_pas_all"]
