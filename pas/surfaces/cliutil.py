"""What the `pas` command modules share (pas.surfaces.commands, pas.surfaces.demo, pas.replay.commands, pas.surfaces.mcp.tools):
the client connection, --since parsing, stop signals, and showing a run in a terminal.

It imports nothing of the CLI (pas.cli parses arguments and imports pas.surfaces.commands; nothing imports
pas.cli back), and only light modules at import time.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pas.protocol.subjects import parse_run

if TYPE_CHECKING:
    from pas.config.doc import ClientConfig
    from pas.config.model import PasConfig
    from pas.transport.bus import Bus
    from pas.transport.client import PasClient

CLIENT_TIMEOUT_SETTING = "settings.nats.client_connect_timeout_s"
"""What bounds the client commands' wait for NATS: named when they give up (pas.transport.connection.connect)."""


def client_url(cfg: PasConfig | ClientConfig) -> str:
    n = cfg.settings.nats
    return n.url or f"nats://{n.host}:{n.port if n.port > 0 else 4222}"


async def open_client(cfg: PasConfig | ClientConfig, user: str = "client") -> PasClient:
    """A client connection as this PAS NATS user (its credentials from the creds dir, if any)."""
    from pas.transport import auth
    from pas.transport.client import PasClient

    n = cfg.settings.nats
    return await PasClient.connect(client_url(cfg), n.request_timeout_s, connect_timeout_s=n.client_connect_timeout_s,
                                   creds=auth.user_creds(cfg, user), timeout_setting=CLIENT_TIMEOUT_SETTING)


async def open_nc(cfg: PasConfig | ClientConfig, user: str = "client") -> Any:
    """A bare NATS connection as this PAS NATS user (pas agents, pas log, pas replay read streams and KV)."""
    from pas.transport import auth
    from pas.transport.connection import connect

    return await connect(client_url(cfg), name="pas-cli", connect_timeout_s=cfg.settings.nats.client_connect_timeout_s,
                         timeout_setting=CLIENT_TIMEOUT_SETTING, **auth.connect_kw(auth.user_creds(cfg, user)))


async def open_bus(cfg: PasConfig, user: str = "client") -> Bus:
    """A pas.transport.bus.Bus as this PAS NATS user that provisions nothing (pas rerun, pas diff)."""
    from pas.transport import auth
    from pas.transport.bus import Bus

    cfg.settings.nats.connect_timeout_s = cfg.settings.nats.client_connect_timeout_s
    return await Bus.open(client_url(cfg), cfg, name="pas-cli", do_provision=False,
                          timeout_setting=CLIENT_TIMEOUT_SETTING, **auth.connect_kw(auth.user_creds(cfg, user)))


MAX_SINCE_DAYS = 36_500
"""A --since duration longer than 100 years is refused (further back than a datetime reaches, soon)."""


def parse_since(text: str | None) -> datetime | None:
    """An ISO time, or a duration back from now (10m, 2h, 1d); ValueError naming what is wrong."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        seconds = float(text[:-1]) * units[text[-1]]
        if seconds > MAX_SINCE_DAYS * 86400:
            raise ValueError(f"{text!r} is longer than {MAX_SINCE_DAYS} days")
        return datetime.now(UTC) - timedelta(seconds=seconds)
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass


def wire_run_id() -> str:
    from pas.roles.gateway import new_run_id

    return new_run_id()


async def follow_run(client: PasClient, run_id: str, timeout_s: float, out: Any = sys.stdout) -> dict[str, Any]:
    """Print live progress per lane and task until the run ends; return the final status."""
    t0 = time.monotonic()

    async def printer() -> None:
        async for subject, body in client.events(run_id):
            ev = parse_run(subject)
            kind = ev.kind if ev else "?"
            if kind == "task":
                print(f"  [{time.monotonic() - t0:6.2f}s] task {body.get('task_id'):<14} {body.get('status'):<10} "
                      f"{body.get('programmer') or '':<9} {body.get('lane')}", file=out, flush=True)
            elif kind in ("lane", "status"):
                what = f"lane {body.get('lane')}" if kind == "lane" else "run"
                print(f"  [{time.monotonic() - t0:6.2f}s] {what:<19} {body.get('status')}", file=out, flush=True)

    task = asyncio.ensure_future(printer())
    try:
        return await client.wait(run_id, timeout_s=timeout_s)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def failure_text(error: str, output: str) -> str:
    """A failed task's error and the tail of its output, without saying the same line twice: the error
    already ends with the output's last line (pas.execution.executors.failure)."""
    out = output.strip().splitlines()
    if out and error.endswith(out[-1].strip()[:200]):
        out.pop()
    tail = "\n".join(out).strip()[-300:]
    return f"{error} {tail}".strip()


def columns(rows: list[list[str]], gap: int = 2) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell (the last one left unpadded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return ["".join(c.ljust(w + gap) for c, w in zip(r, widths, strict=False)) + r[-1] for r in rows]


def run_headline(st: dict[str, Any]) -> list[str]:
    """`run ID STATUS  (title)`, then for a degraded run what degraded it (a fallback model or plan)."""
    lines = [f"run {st['run_id']} {st['status'].upper()}{' (degraded)' if st.get('degraded') else ''}  "
             f"({st['title']})"]
    if st.get("degraded"):
        reason = st.get("message") or ""
        notes = [p.strip().removeprefix("degraded: ") for p in reason.split("; ") if p.strip().startswith("degraded")]
        lines.append(f"degraded: {'; '.join(notes) or reason or 'a fallback was used'}")
    return lines


def result_table(st: dict[str, Any]) -> str:
    lines = [*run_headline(st),
             f"{'TASK':<16}{'LANE':<11}{'STATUS':<11}{'EXIT':>5} {'TRIES':>5}  {'PROGRAMMER':<11}{'SECS':>6}  COMMAND"]
    for t in st["tasks"]:
        secs = "-"
        if t.get("started_at") and t.get("finished_at"):
            d = datetime.fromisoformat(t["finished_at"].replace("Z", "+00:00")) - datetime.fromisoformat(
                t["started_at"].replace("Z", "+00:00"))
            secs = f"{d.total_seconds():.2f}"
        code = "-" if t.get("exit_code") is None else str(t["exit_code"])
        lines.append(f"{t['task_id']:<16}{t['lane']:<11}{t['status']:<11}{code:>5} {t['attempts']:>5}  "
                     f"{t.get('programmer') or '-':<11}{secs:>6}  {t.get('command') or t['instruction'][:40]}")
        if t["status"] != "completed" and (t.get("error") or t.get("output")):
            lines.append(f"{'':16}-> {failure_text(t.get('error') or '', t.get('output') or '')}")
    envs: dict[str, list[str]] = {}
    for t in st["tasks"]:
        if t.get("env"):
            envs.setdefault(t["env"], []).append(t["task_id"])
    for env, ids in envs.items():
        which = "every task" if len(envs) == 1 and len(ids) == len(st["tasks"]) else ", ".join(ids)
        lines.append(f"environment of {which}: {env}")
    if st.get("result_branch"):
        lines.append(f"result: {st['result_branch']} (the completed tasks' branches, merged in task order)")
    for c in st.get("conflicts") or []:
        lines.append(f"conflict: {c}")
    return "\n".join(lines)
