"""The HTTP floor: one hop of a FastAPI/uvicorn/httpx request chain, and a launcher for N hops.

Each hop is its own process (`python -m benchmarks.httpchain --port P [--next URL]`), so the
chain reflects N services rather than one event loop. POST /hop forwards the body to --next
(httpx, keep-alive) and returns the downstream reply; the last hop echoes the body.

The launcher (HttpChain) binds every listening socket itself on 127.0.0.1:0 and hands each
child its socket (--fd), so ports are race-free and all hops start in parallel. Children also
exit when their stdin closes, so they cannot outlive the launcher.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response  # module level: FastAPI resolves the annotations here

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---- the child: one hop ------------------------------------------------------------------
def build_app(next_url: str | None) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_keepalive_connections=32, max_connections=64)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            app.state.client = client
            yield

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/hop")
    async def hop(request: Request) -> Response:
        body = await request.body()
        if next_url:
            r = await request.app.state.client.post(next_url, content=body)
            if r.status_code != 200:
                return Response(content=r.content, status_code=502)
            body = r.content
        return Response(content=body, media_type="application/octet-stream")

    return app


def _watch_stdin(server: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Exit when the parent goes away (its end of our stdin closes)."""
    try:
        while sys.stdin.buffer.read(1024):
            pass
    except (OSError, ValueError):
        pass
    loop.call_soon_threadsafe(setattr, server, "should_exit", True)


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    app = build_app(args.next)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    if args.watch_stdin:
        threading.Thread(target=_watch_stdin, args=(server, asyncio.get_running_loop()),
                         daemon=True).start()
    sockets = None
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        sock.setblocking(False)
        sockets = [sock]
    await server.serve(sockets=sockets)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.httpchain", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (ignored with --fd)")
    ap.add_argument("--fd", type=int, default=None, help="an inherited listening socket to serve on")
    ap.add_argument("--next", default=None, help="URL of the next hop's POST /hop; omit on the last hop")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF")
    args = ap.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


# ---- the parent: N hops --------------------------------------------------------------------
class HttpChain:
    """Start `hops` hop processes chained A1 -> ... -> An; `url` is A1's POST /hop."""

    def __init__(self, hops: int, host: str = "127.0.0.1") -> None:
        if hops < 1:
            raise ValueError("hops must be >= 1")
        self.hops = hops
        self.host = host
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return self.hop_url(0)

    def hop_url(self, i: int) -> str:
        return f"http://{self.host}:{self.ports[i]}/hop"

    def _spawn(self) -> None:
        socks: list[socket.socket] = []
        try:
            for _ in range(self.hops):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((self.host, 0))
                s.listen(256)
                socks.append(s)
            self.ports = [s.getsockname()[1] for s in socks]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
            self._tmp = tempfile.TemporaryDirectory(prefix="pas-httpchain-")
            for i, s in enumerate(socks):
                cmd = [sys.executable, "-m", "benchmarks.httpchain", "--host", self.host,
                       "--port", str(self.ports[i]), "--fd", str(s.fileno()), "--watch-stdin"]
                if i + 1 < self.hops:
                    cmd += ["--next", self.hop_url(i + 1)]
                log = open(Path(self._tmp.name) / f"hop{i + 1}.log", "wb")
                self._logs.append(log)
                self.procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log,
                                                   pass_fds=(s.fileno(),), env=env, cwd=str(REPO_ROOT)))
        finally:
            for s in socks:  # the children hold their own copies
                s.close()

    def _log_tail(self, i: int) -> str:
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / f"hop{i + 1}.log"
        try:
            return path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def start(self, timeout_s: float = 60.0) -> str:
        self._spawn()
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1.0) as client:
            for i, port in enumerate(self.ports):
                while True:
                    proc = self.procs[i]
                    if proc.poll() is not None:
                        raise RuntimeError(f"http hop {i + 1} exited with {proc.returncode}: {self._log_tail(i)}")
                    try:
                        r = await client.get(f"http://{self.host}:{port}/health")
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"http hop {i + 1} not ready within {timeout_s}s: {self._log_tail(i)}")
                    await asyncio.sleep(0.05)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (uvicorn's graceful shutdown) and stdin EOF; SIGKILL whatever is left."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
            if p.stdin is not None:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> HttpChain:
        try:
            await self.start()
        except BaseException:
            await self.astop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


if __name__ == "__main__":
    raise SystemExit(main())
