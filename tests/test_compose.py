"""docker-compose.yml: valid, and every `pas` command in it is one the CLI accepts (no Docker engine
here; the same commands run natively in the other tests)."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from pas.cli import build_parser
from tests.conftest import ROOT


def test_compose_services_and_commands() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"nats-1", "nats-2", "nats-3", "pas-core", "pas-programmers", "pas-http"} <= set(services)
    for name in ("pas-core", "pas-programmers", "pas-http"):
        svc = services[name]
        args = build_parser().parse_args(svc["command"])  # the same argv `pas` gets in the container
        assert args.cmd in ("up", "http")
        assert "nats-1:4222" in svc["environment"]["PAS_NATS_URL"]
    for n in ("nats-1", "nats-2", "nats-3"):
        cmd = services[n]["command"]
        assert "-js" in cmd and "--cluster_name" in cmd and "--routes" in cmd
    assert (ROOT / "Dockerfile").exists()
    assert shutil.which("docker-compose"), "scripts/setup.sh --dev installs Debian's docker-compose"
    p = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


async def test_multi_server_url_is_accepted(nats_server) -> None:  # type: ignore[no-untyped-def]
    from pas.client import PasClient

    c = await PasClient.connect(f"{nats_server.url},{nats_server.url}")
    assert c.nc.is_connected
    await c.close()
