"""Processes the figures measure: `pas up` as a child process, and CPU / memory read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pas.config.model import PasConfig


class ChildPas:
    """`python -m pas up ...` in its own process group (so SIGKILL takes it alone)."""

    def __init__(self, args: list[str], workdir: Path, name: str, env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.ready = workdir / f"{name}.ready"
        self.log = workdir / f"{name}.log"
        self.ready.unlink(missing_ok=True)
        self.args = [sys.executable, "-m", "pas", "up", "--ready-file", str(self.ready), *args]
        self.cwd = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_start = 0.0

    def spawn(self) -> None:
        fh = self.log.open("ab")
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(self.args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(self.cwd), start_new_session=True, env=self.env)
        fh.close()

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pas up exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pas up not ready in {timeout_s}s: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.01)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout_s: float = 20.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


def status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(val.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                for k in kids:
                    out.append(int(k))
                    todo.append(int(k))
        except OSError:
            pass
    return out


def lost_port_race(e: BaseException) -> bool:
    """`pas up` could not bind a port that free_port_offset found free (another process took it since):
    worth another try with another offset."""
    return "cannot bind" in str(e)


def free_port_offset(cfg: PasConfig) -> int:
    """An offset that puts every agent port and the HMI on free ports (so the default `pas up`,
    HTTP adapter included, can run next to anything else on this machine)."""
    ports = [a.port for a in cfg.agents if a.port is not None] + [cfg.settings.http.hmi_port]
    for off in range(30000, 59000 - max(ports), 217):
        socks = []
        try:
            for p in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((cfg.settings.http.host, p + off))
            return off
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for the HTTP adapter")




def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by a process (default: this one, every thread)."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def busy_s() -> float:
    """CPU seconds (all CPUs, non-idle) the whole machine has used since boot."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return float("nan")


class CpuMeter:
    """CPU used by this process and by the nats-server between start() and stop()."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.py0 = self.srv0 = self.t0 = 0.0
        self.result: dict[str, float] = {}

    def start(self) -> None:
        self.t0, self.py0 = time.perf_counter(), cpu_s()
        self.srv0 = cpu_s(self.server_pid) if self.server_pid else float("nan")

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        py = cpu_s() - self.py0
        srv = (cpu_s(self.server_pid) - self.srv0) if self.server_pid else float("nan")
        self.result = {"wall_s": round(wall, 3), "python_cpu_s": round(py, 3), "nats_server_cpu_s": round(srv, 3),
                       "python_cpu_util": round(py / wall, 3) if wall else float("nan"),
                       "nats_server_cpu_util": round(srv / wall, 3) if wall else float("nan")}
        return self.result


