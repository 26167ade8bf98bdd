"""Several PAS processes on one machine: the README's recipe verbatim, one HTTP adapter, one live
instance per agent id, and programmers added from an overlay file."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.errors import NoRespondersError

from pas.base.errors import ConfigError
from pas.config.model import load_config
from pas.protocol import subjects as S
from tests.cli_support import PasCommand, commands, dead_port, readme_block, run_pas
from tests.conftest import fast_args, make_cfg
from tests.http_support import free_port_offset

UP = r"^pas: (\d+) agents up on (\S+) \((.*)\); Ctrl-C to stop$"


def test_readme_multi_process_recipe_runs_a_job(tmp_path: Path) -> None:
    """The two-terminal recipe, copied from README.md: the first process owns the embedded server
    and the HTTP adapter, the second only its programmers; a job completes and both stay up."""
    first, second = commands(readme_block("terminal 2"))
    assert first[:2] == ["pas", "up"] and "--nats-url" not in first
    port = dead_port()
    off = free_port_offset(make_cfg())
    # Only documented flags are added (a free server port and HTTP port range, not the defaults).
    t1_argv = [*first, "--nats-port", str(port), "-c", f"settings.http.port_offset={off}"]
    t2_argv = [a.replace("127.0.0.1:4222", f"127.0.0.1:{port}") for a in second]
    assert t2_argv != second, "the recipe's second command names nats://127.0.0.1:4222"
    t1 = PasCommand(t1_argv, tmp_path, "terminal1")
    t2 = None
    try:
        m1 = t1.wait_for_line(UP)
        url = m1.group(2)
        assert url == f"nats://127.0.0.1:{port}" and "embedded nats-server" in m1.group(3)
        assert "HTTP adapter and HMI on" in m1.group(3)
        t2 = PasCommand(t2_argv, tmp_path, "terminal2")
        m2 = t2.wait_for_line(UP)
        assert int(m1.group(1)) + int(m2.group(1)) == len(make_cfg().agents)
        assert "no HTTP adapter" in m2.group(3)

        creds = str(tmp_path / ".pas" / "creds")  # NATS users: `pas up` wrote them in its data dir (cwd .pas)
        sub = run_pas("submit", "recipe", "--task", "code:echo one", "--task", "docs:true", "--wait",
                      "--nats-url", url, timeout=180, PAS_CREDS_DIR=creds)
        assert sub.returncode == 0, sub.stdout + sub.stderr
        run_id = sub.stdout.splitlines()[0].strip()
        assert f"run {run_id} COMPLETED" in sub.stdout
        st = json.loads(run_pas("status", run_id, "--json", "--nats-url", url, PAS_CREDS_DIR=creds).stdout)
        assert st["status"] == "completed" and all(t["programmer"].startswith("prog-") for t in st["tasks"])
        # the adapter of process 1 serves the run; both processes are still up
        r = httpx.get(f"http://127.0.0.1:{6120 + off}/runs/{run_id}", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "completed"
        assert t1.alive() and t2.alive()
    finally:
        codes = [t2.stop() if t2 else 0, t1.stop()]
    assert codes == [0, 0], t1.text()[-2000:] + (t2.text()[-2000:] if t2 else "")


def test_overlay_programmers_from_the_readme_take_tasks(nats_server: Any, tmp_path: Path) -> None:
    """Process 1: `pas up` with every agent. Process 2: the README's overlay recipe (extra.yaml,
    written by the README's own heredoc) adds programmers that the shipped agents.yaml lacks."""
    block = readme_block("extra.yaml")
    heredoc, _, last = block.rstrip().rpartition("\n")
    subprocess.run(["bash", "-c", heredoc], cwd=tmp_path, check=True)
    extra = load_config(agent_files=[tmp_path / "extra.yaml"])
    new_ids = sorted({a.id for a in extra.agents} - {a.id for a in make_cfg().agents})
    assert new_ids == ["prog-101", "prog-102"]
    host_port = nats_server.url.removeprefix("nats://")
    overlay = [a.replace("HOST:4222", host_port) for a in commands(last)[0]]
    assert nats_server.url in overlay
    p1 = PasCommand(["pas", "up", "--nats-url", nats_server.url, "--no-http", *fast_args()], tmp_path, "all")
    p2 = None
    try:
        p1.wait_for_line(UP)
        p2 = PasCommand([*overlay, *fast_args()], tmp_path, "overlay")
        assert p2.wait_for_line(UP).group(1) == "2"
        # 24 one-second tasks on 12 programmers: the overlay's two pull work like the others
        r = run_pas("submit", "overlay", "--nats-url", nats_server.url, "--run-id", "ov1",
                    *["--task", "code:sleep 1"] * 24, "--wait", timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(run_pas("status", "ov1", "--json", "--nats-url", nats_server.url).stdout)
        used = {t["programmer"] for t in st["tasks"]}
        assert used & set(new_ids), f"no task ran on an overlay programmer: {sorted(used)}"
        rows = {r["agent"]: r for r in json.loads(run_pas("agents", "--json", "--agents", str(tmp_path / "extra.yaml"),
                                                          "--nats-url", nats_server.url).stdout)}
        assert all(rows[i]["tier"] == "programmer" and rows[i]["state"] == "alive" for i in new_ids), rows
        assert p1.alive() and p2.alive()
    finally:
        # pas up bounds its own stop (its tiers' drains, then every connection closed at once, then the exit
        # guard) and prints its stacks past the bounds; 45 s leaves a loaded machine room above them
        codes = [p2.stop(45) if p2 else 0, p1.stop(45)]
    assert codes == [0, 0]


def test_overlay_merges_and_is_validated(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text("agents:\n  - {id: prog-001, model: gpt-4o}\n  - {id: prog-201, role: prog, capacity: 2}\n")
    cfg = load_config(agent_files=[ok])
    p1 = cfg.agent("prog-001")
    assert (p1.model, p1.backup_model, p1.port, p1.role) == ("gpt-4o", "qwen-coder-14b", 6151, "prog")
    assert cfg.agents[-1].id == "prog-201" and cfg.agent("prog-201").capacity == 2
    assert len(cfg.agents) == len(make_cfg().agents) + 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents:\n  - {id: prog-301, role: prog, parent: nobody}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*agent 'prog-301': .*unknown parent 'nobody'"):
        load_config(agent_files=[bad])
    clash = tmp_path / "clash.yaml"
    clash.write_text("agents:\n  - {id: prog-302, role: prog, port: 6151}\n")
    p = run_pas("up", "--nats-url", f"nats://127.0.0.1:{dead_port()}", "--agents", str(clash))
    assert p.returncode == 2 and "agent 'prog-302': port 6151 already used by 'prog-001'" in p.stderr
    p = run_pas("up", "--agents", str(tmp_path / "missing.yaml"))
    assert p.returncode == 2 and "missing.yaml does not exist" in p.stderr
    shape = tmp_path / "shape.yaml"
    shape.write_text("programmers: []\n")
    with pytest.raises(ConfigError, match="single top-level key 'agents'"):
        load_config(agent_files=[shape])


async def test_an_agent_id_alive_on_the_bus_is_refused(nats_server: Any, nc: Any, tmp_path: Path) -> None:
    url = nats_server.url
    holder = PasCommand(["pas", "up", "--nats-url", url, "--only", "prog-001", *fast_args()], tmp_path, "holder")
    try:
        holder.wait_for_line(UP)
        again = run_pas("up", "--nats-url", url, "--only", "prog-00[12]", *fast_args())
        assert again.returncode == 1, again.stderr
        assert f"agent(s) already running on the bus: prog-001 in pid {holder.proc.pid} on {socket.gethostname()}" \
            in again.stderr
        assert "agents up" not in again.stdout
        with pytest.raises(NoRespondersError):  # refused before anything started: not even prog-002
            await nc.request("$SRV.PING.prog-002", b"", timeout=2)
        kv = await nc.jetstream().key_value(S.KV_CLAIMS)
        claim = json.loads((await kv.get("prog-001")).value)
        assert claim["pid"] == holder.proc.pid and holder.alive()
        # The holder dies without releasing its claim: a new process takes the id over at once.
        holder.kill()
        heir = PasCommand(["pas", "up", "--nats-url", url, "--only", "prog-001", *fast_args()], tmp_path, "heir")
        try:
            heir.wait_for_line(UP)
            assert json.loads((await kv.get("prog-001")).value)["pid"] == heir.proc.pid
        finally:
            assert heir.stop() == 0
        with pytest.raises(Exception):  # a clean stop releases the claim
            await kv.get("prog-001")
    finally:
        holder.kill()


def test_two_processes_starting_one_id_together_leave_one(nats_server: Any, tmp_path: Path) -> None:
    argv = ["pas", "up", "--nats-url", nats_server.url, "--only", "prog-003", *fast_args()]
    procs = [PasCommand(argv, tmp_path, f"twin{i}") for i in range(2)]
    refused = r"already running on the bus: prog-003"
    try:
        for p in procs:  # each either comes up or is refused: wait until both have decided
            p.wait_for_line(f"{UP}|{refused}", timeout_s=90)
        losers = [p for p in procs if re.search(refused, p.text())]
        assert len(losers) == 1, [p.text() for p in procs]
        assert losers[0].wait_exit(30) == 1
        winner = next(p for p in procs if p is not losers[0])
        assert winner.alive() and re.search(UP, winner.text(), re.M).group(1) == "1"  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.stop()


async def test_busy_http_port_names_its_owner_and_starts_no_agent(nats_server: Any, nc: Any) -> None:
    cfg = make_cfg()
    off = free_port_offset(cfg)
    busy = socket.create_server(("127.0.0.1", 6120 + off))
    try:
        p = run_pas("up", "--nats-url", nats_server.url, "--only", "gateway", "--http",
                    "-c", f"settings.http.port_offset={off}")
    finally:
        busy.close()
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"cannot bind 127.0.0.1:{6120 + off} for gateway: Address already in use (held by pid {os.getpid()} (" \
        in p.stderr
    assert "pytest" in p.stderr or "python" in p.stderr  # the owner's command line
    assert "agents up" not in p.stdout
    with pytest.raises(NoRespondersError):
        await nc.request("$SRV.PING.gateway", b"", timeout=2)


async def test_an_agent_taken_over_while_disconnected_stops_here(nats_server: Any, nc: Any) -> None:
    """What a reconnect finds if a newcomer claimed the id while this process was cut off."""
    from pas.protocol import wire
    from pas.runtime import claims
    from pas.surfaces.stack import Stack

    async with Stack(make_cfg(), url=nats_server.url, only=["prog-005", "prog-006"]) as st:
        assert await st.check_claims() == []  # still ours: nothing changes
        kv = await nc.jetstream().key_value(S.KV_CLAIMS)
        await kv.put("prog-005", wire.encode(claims.Claim(agent="prog-005", instance="elsewhere", host="h2", pid=1,
                                                          since=wire.now().isoformat(), cmd="pas up")))
        assert await st.check_claims() == ["prog-005"]
        with pytest.raises(NoRespondersError):
            await nc.request("$SRV.PING.prog-005", b"", timeout=2)
        assert [a.id for a in st.agents] == ["prog-006"]
        assert json.loads((await kv.get("prog-005")).value)["instance"] == "elsewhere"  # its claim is left alone


def test_port_owner_reads_proc(tmp_path: Path) -> None:
    """The owner lookup on a /proc-shaped tree: a listener's inode, then the fd that holds it."""
    from pas.base.portowner import port_owner

    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (proc / "net" / "tcp").write_text(
        head + "   0: 0100007F:17C0 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 4242 1\n"
        "   1: 0100007F:1A0A 0100007F:17C0 01 00000000:00000000 00:00000000 00000000  0 0 999 1\n")
    (proc / "net" / "tcp6").write_text(head)
    (proc / "77" / "fd").mkdir(parents=True)
    (proc / "77" / "cmdline").write_bytes(b"python\0-m\0pas\0up\0")
    (proc / "77" / "fd" / "5").symlink_to("socket:[4242]")
    assert port_owner(0x17C0, proc) == "pid 77 (python -m pas up)"
    assert port_owner(0x1A0A, proc).startswith("owner unknown")  # a connection, not a listener
    (proc / "77" / "fd" / "5").unlink()
    assert port_owner(0x17C0, proc).startswith("owner not visible")
