"""Who listens on a TCP port: /proc/net/tcp{,6} gives the socket inode of a listener, and
/proc/<pid>/fd links name the process that holds it (Linux; other users' processes may be hidden)."""

from __future__ import annotations

import os
from pathlib import Path

LISTEN = "0A"


def listener_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == LISTEN and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def port_owner(port: int, proc: Path = Path("/proc")) -> str:
    """'pid 123 (python -m pas up ...)', or why the owner cannot be named."""
    inodes = listener_inodes(port, proc)
    if not inodes:
        return "owner unknown (no listener visible in /proc/net/tcp)"
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = os.listdir(pid_dir / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(pid_dir / "fd" / fd) in wanted:
                    return f"pid {pid_dir.name} ({_cmdline(pid_dir)})"
            except OSError:
                continue
    return "owner not visible (a process of another user, or in another namespace)"


def _cmdline(pid_dir: Path) -> str:
    try:
        text = " ".join((pid_dir / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split())
    except OSError:
        return "?"
    return text[:200] or "?"
