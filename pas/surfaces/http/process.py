"""The HTTP adapter in a process of its own: what `pas up` runs.

In the agents' process, even on a loop and thread of its own (AdapterThread), the event hub's work
(reading every record write and comms entry, encoding each flush, writing it to every browser)
competes with the agents for the interpreter's lock: with five SSE readers PAS's own throughput fell
to 0.66x (BENCHMARKS.md "hmi, fifth pass"); in a process of its own, 0.89x.

The parent binds every port first (a port in use fails `pas up` at once, naming its owner) and hands
the listening sockets to the child (`pass_fds`), with the configuration and the `adapter` user's
credentials on the child's stdin, never its command line. The child answers one line, what it serves
(or why it could not), then takes commands on stdin: `stop`, or its end (the parent died: the child
stops too). A child that dies is started again on the same sockets (at most RESTARTS times in a row
within a minute), so connections queued meanwhile are served, not refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pas.base.errors import PasError
from pas.config.model import PasConfig
from pas.transport.auth import Creds

log = logging.getLogger("pas.http")

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
RESTARTS = 3


@dataclass(frozen=True)
class GateInfo:
    """What `pas up` says about the child's gate (pas.surfaces.commands.login_message)."""

    required: bool
    token_hint: str
    trust_same_user: bool


class AdapterProcess:
    """The running child, as AdapterThread's callers read it: host, ports, gate, url(), login_url(), stop()."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {}
        self.socks: dict[str, socket.socket] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self.host = ""
        self.ports: dict[str, int] = {}
        self.gate = GateInfo(False, "", False)
        self._login = ""
        self._stopped = False
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, socks: dict[str, socket.socket]) -> AdapterProcess:
        """Start the child now, handing it `socks` (from pas.surfaces.http.adapter.bind_ports): it imports the
        adapter (about a second) while the caller starts the rest, then start() configures it."""
        self = cls()
        self.socks = socks
        self.proc = await self._new_child()
        return self

    async def start(self, cfg: PasConfig, url: str, *, creds: Creds | None = None,
                    token_dir: Path | None = None) -> AdapterProcess:
        """Serve: returns once the child serves (or raises why it could not, the child ended)."""
        self.spec = {"config": cfg.model_dump(mode="json"), "url": url,
                     "fds": {n: s.fileno() for n, s in self.socks.items()},
                     "creds": [creds.user, creds.password] if creds else None,
                     "token_dir": str(token_dir) if token_dir else None,
                     "log_level": logging.getLogger().getEffectiveLevel()}
        try:
            if self.proc is None or self.proc.returncode is not None:
                self.proc = await self._new_child()
            await self._configure()
        except BaseException:
            await self._end_child()
            raise
        self._watch = asyncio.ensure_future(self._restart_on_exit())
        return self

    async def _new_child(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pas.surfaces.http.process", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, pass_fds=tuple(s.fileno() for s in self.socks.values()))

    async def _configure(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(self.spec).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT_S)
        if not line:
            raise PasError(f"the HTTP adapter process ended during start-up (exit {await self.proc.wait()}); "
                           "its log is above")
        got = json.loads(line)
        if "error" in got:
            raise PasError(got["error"])
        self.host, self.ports, self._login = got["host"], got["ports"], got["login_url"]
        self.gate = GateInfo(**got["gate"])

    async def _restart_on_exit(self) -> None:
        starts: list[float] = []
        while True:
            assert self.proc is not None
            code = await self.proc.wait()
            if self._stopped:
                return
            now = time.monotonic()
            starts = [t for t in starts if now - t < 60] + [now]
            if len(starts) > RESTARTS:
                log.error("the HTTP adapter process ended (exit %s), %d times within a minute: not started again; "
                          "the agents go on without HTTP", code, len(starts))
                return
            log.error("the HTTP adapter process ended (exit %s); starting it again on the same ports", code)
            try:
                self.proc = await self._new_child()
                await self._configure()
            except Exception as e:
                log.error("the HTTP adapter could not start again: %s", e)
                return

    def url(self, name: str = "hmi") -> str:
        from pas.surfaces.http.trust import base_url

        return base_url(self.host, self.ports[name])

    def login_url(self) -> str:
        """The one-time login link the child minted at its start (what `pas up` prints once)."""
        return self._login

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self._end_child()
        for s in self.socks.values():
            s.close()

    async def _end_child(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.write(b"stop\n")
                await proc.stdin.drain()
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("the HTTP adapter process did not stop within %.0fs; killed", STOP_TIMEOUT_S)
            proc.kill()
            await proc.wait()


# ---- the child ------------------------------------------------------------------------------------------
def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve(spec: dict[str, Any]) -> int:
    from pas.surfaces.http.adapter import start_adapter

    cfg = PasConfig.model_validate(spec["config"])
    socks = {n: socket.socket(fileno=fd) for n, fd in spec["fds"].items()}
    for s in socks.values():
        s.setblocking(False)
    try:
        handle = await start_adapter(cfg, spec["url"], socks=socks, creds=Creds(*spec["creds"]) if spec["creds"] else None,
                                     token_dir=Path(spec["token_dir"]) if spec["token_dir"] else None)
    except Exception as e:
        _say({"error": str(e) if isinstance(e, PasError) else f"HTTP adapter: {e!r}"})
        return 1
    g = handle.gate
    _say({"host": handle.host, "ports": handle.ports, "login_url": handle.login_url(),
          "gate": {"required": g.required, "token_hint": g.token_hint, "trust_same_user": g.trust_same_user}})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands() -> None:
        while (line := await reader.readline()) and line.strip() != b"stop":
            pass
        stop.set()  # told to, or the parent is gone (its end of the pipe closed)

    task = asyncio.ensure_future(commands())
    try:
        await stop.wait()
    finally:
        task.cancel()
        await handle.stop()
    return 0


def main() -> None:
    # A terminal's Ctrl-C reaches the whole process group: the parent stops this process in its own order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import pas.surfaces.http.adapter  # noqa: F401  # the imports take a second: done while the parent starts

    line = sys.stdin.readline()
    if not line:
        return  # the parent stopped before it needed the adapter
    spec = json.loads(line)
    logging.basicConfig(level=spec.get("log_level", logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = asyncio.run(_serve(spec))
    from pas.base.exiting import exit_now

    exit_now(code)  # as `pas up` ends: nothing left to finalise


if __name__ == "__main__":
    main()
