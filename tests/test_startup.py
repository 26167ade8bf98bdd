"""Start-up against a missing NATS server: wait visibly, give up after a configurable time with a
clear message and a non-zero exit; contradictory options are refused."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from pas.transport.server import EmbeddedServer
from tests.cli_support import PasCommand, dead_port, run_pas, run_pas_all
from tests.conftest import fast_args, make_cfg
from tests.http_support import free_port_offset

UP = r"^pas: 1 agents up on (\S+) "


def _gave_up(p: object, url: str, secs: str) -> None:
    err = p.stderr  # type: ignore[attr-defined]
    assert p.returncode == 1, err  # type: ignore[attr-defined]
    assert f"WARNING pas.bus: waiting for NATS at {url} (" in err  # visible without -v
    assert f"pas: cannot reach NATS at {url} after {secs}s (" in err
    assert "Traceback" not in err


def test_up_against_nothing_waits_then_fails() -> None:
    assert make_cfg().settings.nats.connect_timeout_s == 30.0  # the default
    url = f"nats://127.0.0.1:{dead_port()}"
    t0 = time.monotonic()
    p = run_pas("up", "--nats-url", url, "--only", "prog-001", "--connect-timeout", "2")
    took = time.monotonic() - t0
    _gave_up(p, url, "2")
    assert 2 <= took < 25, took
    # the same through the setting
    p = run_pas("up", "--only", "prog-001", "-c", "settings.nats.connect_timeout_s=1.5", PAS_NATS_URL=url)
    _gave_up(p, url, "1.5")


def test_up_waits_for_a_server_that_comes_late(tmp_path: Path) -> None:
    port = dead_port()
    url = f"nats://127.0.0.1:{port}"
    up = PasCommand(["pas", "up", "--nats-url", url, "--only", "prog-001", "--connect-timeout", "120", *fast_args()],
                    tmp_path, "early")
    srv = None
    try:
        up.wait_for_line(rf"waiting for NATS at {url} \(.*\); giving up in \d+s$")
        srv = EmbeddedServer(tmp_path / "nats", port=port)
        srv.start()
        up.wait_for_line(rf"connected to NATS at {url} after [\d.]+s$")
        assert up.wait_for_line(UP).group(1) == url
    finally:
        code = up.stop()
        if srv is not None:
            srv.stop()
    assert code == 0, up.text()[-2000:]


def test_http_against_nothing_fails() -> None:
    url = f"nats://127.0.0.1:{dead_port()}"
    off = free_port_offset(make_cfg())
    p = run_pas("http", "--nats-url", url, "--connect-timeout", "1", "-c", f"settings.http.port_offset={off}")
    _gave_up(p, url, "1")


def test_client_commands_against_nothing_fail_fast() -> None:
    url = f"nats://127.0.0.1:{dead_port()}"
    others = (["agents"], ["log", "--run", "r-1"], ["status", "r-1"], ["submit", "t", "--task", "code:true"],
              ["cancel", "r-1"], ["model", "set", "prog-001", "gpt-4o"])
    t0 = time.monotonic()
    p = run_pas("runs", "--nats-url", url)  # default client_connect_timeout_s: 5 s
    took = time.monotonic() - t0
    _gave_up(p, url, "5")
    assert took < 25, took
    for p in run_pas_all(*([*a, "--nats-url", url, "--connect-timeout", "0.5"] for a in others)):
        _gave_up(p, url, "0.5")


def test_nats_port_with_a_url_is_refused() -> None:
    p, q = run_pas_all(["up", "--nats-port", "4333", "--nats-url", "nats://127.0.0.1:4444"],
                       ["up", "--http", "--no-http"])
    assert p.returncode == 2 and "but --nats-url (nats://127.0.0.1:4444)" in p.stderr
    assert q.returncode == 2 and "not allowed with argument" in q.stderr
    p = run_pas("up", "--nats-port", "4333", PAS_NATS_URL="nats://127.0.0.1:4444")
    assert p.returncode == 2
    assert "pas: config error: --nats-port 4333 sets the port of the embedded nats-server, but PAS_NATS_URL " \
           "(nats://127.0.0.1:4444) means no embedded server is started" in p.stderr


def test_ctrl_c_while_waiting_stops_at_once(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{dead_port()}"
    off = free_port_offset(make_cfg())
    for cmd in (["up", "--only", "prog-001"], ["http", "-c", f"settings.http.port_offset={off}"]):
        p = PasCommand(["pas", *cmd, "--nats-url", url, "--connect-timeout", "300"], tmp_path, cmd[0])
        try:
            p.wait_for_line(rf"waiting for NATS at {url} ")
            p.proc.send_signal(signal.SIGINT)
            assert p.wait_exit(20) == 130, p.text()
            assert "pas: stopped during start-up" in p.text()
        finally:
            p.kill()


def test_refused_credentials_fail_at_once(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path / "nats", port=-1, extra_args=["--user", "someone", "--pass", "secret"])
    srv.start()
    try:
        t0 = time.monotonic()
        p = run_pas("runs", "--nats-url", srv.url, "--connect-timeout", "60")
        took = time.monotonic() - t0
    finally:
        srv.stop()
    assert p.returncode == 1 and f"pas: NATS at {srv.url} refused the credentials" in p.stderr, p.stderr
    assert took < 30, took  # not the 60 s connect timeout: refused credentials end the wait
