"""A real 3-node NATS JetStream cluster, natively: three nats-server processes on loopback, each with
its own store dir and ports, all started from the one config file docker-compose.yml mounts
(configs/nats/cluster.conf; per-node values through environment variables).

Nodes share 127.0.0.1 and differ by port (no network namespaces: loopback is what runs here).
"Cutting a node off" is SIGSTOP: its clients and peers see a silent node, as on a dead link.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pas.transport.server import find_binary

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_CONF = ROOT / "configs" / "nats" / "cluster.conf"
HOST = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (the cluster needs them before it starts: routes name each other)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class Node:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.client_port}"

    def get(self, path: str, timeout_s: float = 2.0) -> Any:
        with urllib.request.urlopen(f"http://{HOST}:{self.monitor_port}{path}", timeout=timeout_s) as r:
            return json.loads(r.read())


class Cluster:
    def __init__(self, base: Path, size: int = 3) -> None:
        ports = free_ports(3 * size)
        self.nodes = [
            Node(f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2],
                 base / f"n{i + 1}" / "store", base / f"n{i + 1}" / "nats-server.log")
            for i in range(size)
        ]
        self.routes = "[" + ", ".join(f"nats://{HOST}:{n.cluster_port}" for n in self.nodes) + "]"

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def env(self, n: Node) -> dict[str, str]:
        return {**os.environ, "PAS_NODE_NAME": n.name, "PAS_HOST": HOST, "PAS_CLIENT_PORT": str(n.client_port),
                "PAS_CLUSTER_PORT": str(n.cluster_port), "PAS_MONITOR_PORT": str(n.monitor_port),
                "PAS_ROUTES": self.routes, "PAS_STORE_DIR": str(n.store)}

    def start_node(self, n: Node) -> None:
        n.store.mkdir(parents=True, exist_ok=True)
        n.proc = subprocess.Popen([find_binary(), "-c", str(CLUSTER_CONF), "-l", str(n.log)], env=self.env(n),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)

    def start(self, timeout_s: float = 30.0) -> Cluster:
        for n in self.nodes:
            self.start_node(n)
        self.wait_healthy(self.nodes, timeout_s)
        return self

    def wait_healthy(self, nodes: list[Node], timeout_s: float = 30.0) -> None:
        """Every node answers /healthz ok: JetStream on, the meta leader known, its assets current."""
        deadline = time.monotonic() + timeout_s
        for n in nodes:
            while True:
                if n.proc is not None and n.proc.poll() is not None:
                    raise RuntimeError(f"{n.name} exited {n.proc.returncode}: {n.log.read_text()[-2000:]}")
                try:
                    if n.get("/healthz").get("status") == "ok":
                        break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{n.name} not healthy within {timeout_s}s: {n.log.read_text()[-2000:]}")
                time.sleep(0.1)

    def kill(self, n: Node) -> None:
        assert n.proc is not None
        n.proc.send_signal(signal.SIGKILL)
        n.proc.wait()

    def freeze(self, n: Node) -> None:
        assert n.proc is not None
        n.proc.send_signal(signal.SIGSTOP)

    def thaw(self, n: Node) -> None:
        assert n.proc is not None
        n.proc.send_signal(signal.SIGCONT)

    def streams(self, n: Node) -> dict[str, dict[str, Any]]:
        """This node's own view of every stream (its replica): name -> state (last_seq, messages)."""
        doc = n.get("/jsz?streams=true")
        out: dict[str, dict[str, Any]] = {}
        for acc in doc.get("account_details") or []:
            for s in acc.get("stream_detail") or []:
                out[s["name"]] = s["state"]
        return out

    def leaders(self, n: Node) -> dict[str, str | None]:
        """n's view of the leader of every replicated asset: the meta group, each stream, each
        durable consumer (R1 ephemeral consumers have no election and are left out)."""
        doc = n.get("/jsz?consumers=true")
        out: dict[str, str | None] = {"$meta": (doc.get("meta_cluster") or {}).get("leader")}
        for acc in doc.get("account_details") or []:
            for s in acc.get("stream_detail") or []:
                if (s.get("cluster") or {}).get("replicas"):
                    out[s["name"]] = s["cluster"].get("leader")
                for c in s.get("consumer_detail") or []:
                    if (c.get("cluster") or {}).get("replicas"):
                        out[f'{s["name"]}/{c["name"]}'] = c["cluster"].get("leader")
        return out

    async def place_leaders(self, nc: Any, on: Node | None = None, off: Node | None = None,
                            timeout_s: float = 60.0) -> None:
        """Move the leader of every replicated stream and durable consumer onto node `on`, or off
        node `off` (stepdown requests with a preferred peer; the meta group is left alone)."""
        import asyncio

        def wanted(leader: str | None, name: str) -> bool:
            return name == "$meta" or (leader == on.name if on else leader != (off.name if off else None))

        deadline = time.monotonic() + timeout_s
        other = next(n for n in self.nodes if n is not off) if off else None
        while True:
            view = self.leaders(on or other)  # type: ignore[arg-type]
            todo = [k for k, v in view.items() if not wanted(v, k)]
            if not todo:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"leaders not placed within {timeout_s}s: {todo}")
            target = on or next(n for n in self.nodes if n is not off)
            for k in todo:
                stream, _, consumer = k.partition("/")
                subj = (f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}" if consumer
                        else f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}")
                try:
                    await nc.request(subj, json.dumps({"placement": {"preferred": target.name}}).encode(), timeout=5)
                except Exception:
                    pass
            await asyncio.sleep(0.5)

    def caught_up(self, n: Node, skip: set[str] = set()) -> bool:  # noqa: B006 - read only
        """n holds every stream the others hold, at the same last sequence as each of them
        (streams in skip, e.g. one written every second, are left out)."""
        try:
            mine = self.streams(n)
            others = [self.streams(o) for o in self.nodes if o is not n]
        except (OSError, ValueError):
            return False
        return bool(mine) and all(name in mine and mine[name]["last_seq"] == st["last_seq"]
                                  for o in others for name, st in o.items() if name not in skip)

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(10)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait()
