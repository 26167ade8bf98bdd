"""docker-compose.yml (no Docker engine here): its nats nodes run the very server config file the
native cluster tests run, with every per-node value that file needs, on a pinned image >= 2.12.3;
nats-server accepts that file with each node's environment; every `pas` command line parses."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pas.protocol import subjects as S
from pas.surfaces.cli import build_parser
from pas.transport.server import find_binary
from tests.cluster import CLUSTER_CONF
from tests.conftest import ROOT

NODES = ("nats-1", "nats-2", "nats-3")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_nats_nodes_run_the_cluster_tests_config() -> None:
    services = compose()["services"]
    needed = set(re.findall(r"\$(PAS_[A-Z_]+)", CLUSTER_CONF.read_text()))
    assert needed >= {"PAS_NODE_NAME", "PAS_ROUTES", "PAS_STORE_DIR"}
    names = set()
    for n in NODES:
        svc = services[n]
        image, _, tag = svc["image"].partition(":")
        assert image == "nats" and tuple(int(x) for x in tag.split("-")[0].split(".")) >= (2, 12, 3), svc["image"]
        assert svc["command"] == ["-c", "/etc/nats/cluster-auth.conf"]
        assert svc["depends_on"]["pas-auth"]["condition"] == "service_completed_successfully"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        # /etc/nats is configs/nats: cluster-auth.conf includes cluster.conf, the cluster tests' file.
        assert (ROOT / mounts["/etc/nats"]).resolve() == CLUSTER_CONF.parent.resolve()
        assert "include ./cluster.conf" in (CLUSTER_CONF.parent / "cluster-auth.conf").read_text()
        assert mounts["/etc/nats/auth"] == "pas-auth"  # written by the pas-auth service
        env = svc["environment"]
        assert needed <= set(env), needed - set(env)
        assert mounts[env["PAS_STORE_DIR"]] == n  # each node its own named volume
        routes = env["PAS_ROUTES"]
        assert all(f"nats://{o}:{env['PAS_CLUSTER_PORT']}" in routes for o in NODES), routes
        names.add(env["PAS_NODE_NAME"])
    assert names == set(NODES)


def test_nats_server_accepts_the_config_with_each_nodes_environment(tmp_path: Path) -> None:
    """`nats-server -t` parses the mounted files with each node's environment (ports moved to free
    ones and the store to a temp dir: only the values differ, not the files), with the users that the
    compose service pas-auth writes by running its own command line."""
    services = compose()["services"]
    conf_dir = tmp_path / "etc-nats"
    shutil.copytree(CLUSTER_CONF.parent, conf_dir)
    entry = services["pas-auth"]["entrypoint"]
    assert entry[:2] == ["sh", "-c"]
    script = entry[2].replace("/creds", str(tmp_path / "creds")).replace("/auth/", str(conf_dir / "auth") + "/")
    gen = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PATH": f"{Path(sys.executable).parent}:"
                              + os.environ.get("PATH", "")})
    assert gen.returncode == 0, gen.stderr
    assert "authorization" in (conf_dir / "auth" / "pas-auth.conf").read_text()
    assert {p.stem for p in (tmp_path / "creds").glob("*.json")} >= {"client", "prog-001", "gateway", "admin"}
    for n in NODES:
        env = {k: str(v) for k, v in services[n]["environment"].items()}
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env.update(PAS_STORE_DIR=str(tmp_path / n), PAS_CLIENT_PORT=str(port))
        p = subprocess.run([find_binary(), "-c", str(conf_dir / "cluster-auth.conf"), "-t"], env=env,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr


def test_pas_services_command_lines_parse_and_use_r3() -> None:
    services = compose()["services"]
    for name in ("pas-core", "pas-programmers", "pas-http"):
        svc = services[name]
        args = build_parser().parse_args(svc["command"])  # the same argv `pas` gets in the container
        assert args.cmd in ("up", "http")
        assert "settings.nats.replicas=3" in args.overrides
        if args.cmd == "up":  # agents: an ack wait longer than a Raft election (README, cluster section)
            assert "settings.pool.ack_wait_s=30" in args.overrides
        assert svc["environment"]["PAS_NATS_URL"] == ",".join(f"nats://{n}:4222" for n in NODES)
        assert svc["environment"]["PAS_CREDS_DIR"] == "/creds" and "pas-creds:/creds:ro" in svc["volumes"]
    assert (ROOT / "Dockerfile").exists()
    assert shutil.which("docker-compose"), "scripts/setup.sh --dev installs Debian's docker-compose"
    p = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


async def test_multi_server_url_fails_over_to_a_live_server(nats_server: Any, tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    """The compose services get every node in PAS_NATS_URL. With the first node down, the agents
    (as pas-core starts them, from that variable) and a client both connect to the next one: every
    agent answers there, and a job with a task in each of two lanes completes."""
    from pas.surfaces.stack import Stack
    from pas.transport.client import PasClient
    from tests.conftest import make_cfg

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    urls = f"nats://127.0.0.1:{dead},{nats_server.url}"
    monkeypatch.setenv("PAS_NATS_URL", urls)
    monkeypatch.setenv("PAS_CREDS_DIR", str(tmp_path / "creds"))  # none: the test server has no users
    cfg = make_cfg()
    assert cfg.settings.nats.url == urls
    async with Stack(cfg) as st:
        assert st.server is None and st.buses  # no embedded server: the agents use the listed ones
        for b in st.buses.values():
            assert b.nc.connected_url is not None and b.nc.connected_url.port != dead
        async with await PasClient.connect(cfg.settings.nats.url, timeout_s=10) as c:
            assert c.nc.connected_url is not None and c.nc.connected_url.port != dead
            for a in cfg.agents:
                r = await c.nc.request(S.agent_endpoint(a.role, a.id, "health"), b"", timeout=5)
                assert json.loads(r.data)["agent"] == a.id
            await c.submit({"title": "over the node list", "run_id": "compose-1",
                            "tasks": [{"lane": "code", "instruction": "a", "executor": "echo"},
                                      {"lane": "docs", "instruction": "b", "executor": "echo"}]})
            st_run = await c.wait("compose-1", timeout_s=30)
            assert st_run["status"] == "completed", st_run
