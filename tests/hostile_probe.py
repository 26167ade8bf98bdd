"""The attacker: planted as probe.py in a task's repository and run as `python probe.py ATTACK`.

Parameters come from probe.json beside it. Each attack prints `BLOCKED: why` and exits 3 when it
was stopped, or `ESCAPED: evidence` and exits 0 when it worked.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys
import time

P = json.load(open("probe.json"))


def blocked(why: str) -> None:
    print("BLOCKED:", why, flush=True)
    sys.exit(3)


def escaped(why: str) -> None:
    print("ESCAPED:", why, flush=True)
    sys.exit(0)


def read(path: str) -> None:
    try:
        data = open(path, "rb").read() if os.path.isfile(path) else repr(os.listdir(path)).encode()
    except OSError as e:
        blocked(f"{path}: {e}")
    escaped(f"read {path}: {data[:60]!r}")


def write(path: str) -> None:
    try:
        with open(path, "w") as f:
            f.write("pwned")
    except OSError as e:
        blocked(f"{path}: {e}")
    escaped(f"wrote {path}")


def nats() -> None:
    try:
        s = socket.create_connection(("127.0.0.1", P["nats_port"]), timeout=5)
        data = s.recv(64)
    except OSError as e:
        blocked(f"connect to NATS port {P['nats_port']}: {e}")
    escaped(f"NATS answered {data!r}")


def git_nats() -> None:
    r = subprocess.run(["git", "ls-remote", f"http://127.0.0.1:{P['nats_port']}/x.git"],
                       capture_output=True, text=True, timeout=30)
    err = (r.stderr.strip().splitlines() or [""])[-1]
    if "Failed to connect" in err or "Couldn't connect" in err:
        blocked(f"git: {err}")
    escaped(f"git reached the NATS port: {err}")


def environ() -> None:
    pids = [str(P["pas_pid"])] + [d for d in os.listdir("/proc") if d.isdigit()]
    for pid in pids:
        try:
            data = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if P["secret"].encode() in data:
            escaped(f"the secret is in /proc/{pid}/environ")
    blocked(f"no visible /proc/*/environ holds the secret ({len(pids) - 1} processes visible)")


def leak_key() -> None:
    hits = [k for k, v in os.environ.items() if P["secret"] in v]
    if hits:
        escaped(f"the key is in my environment as {hits}: {P['secret']}")
    blocked(f"no key in my environment ({len(os.environ)} variables: {', '.join(sorted(os.environ))})")


def fork_bomb() -> None:
    n = 0
    for _ in range(P["forks"]):
        try:
            pid = os.fork()
        except OSError as e:
            blocked(f"fork #{n + 1} refused: {e}")
        if pid == 0:
            os.close(1)
            os.close(2)
            time.sleep(10)
            os._exit(0)
        n += 1
    escaped(f"forked {n} processes")


def memory_hog() -> None:
    try:
        b = bytearray(P["hog_mb"] << 20)
    except MemoryError:
        blocked(f"MemoryError allocating {P['hog_mb']} MB")
    escaped(f"allocated {len(b) >> 20} MB")


def flood() -> None:
    chunk = b"x" * (1 << 20)
    for _ in range(1024):  # 1 GB
        sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    escaped("wrote 1 GB of output and was not stopped")


def nested_repo() -> None:
    """A nested repository whose config runs a command: harmless here, but `git status` or `git diff`
    run by PAS in the worktree afterwards, outside the sandbox, would run it there."""
    os.makedirs("nested", exist_ok=True)
    subprocess.run(["git", "init", "-q", "nested"], check=True)
    subprocess.run(["git", "-C", "nested", "commit", "-q", "--allow-empty", "-m", "i"], check=True)
    cmd = f"touch {P['outside']}/pwned-by-fsmonitor; false #"
    subprocess.run(["git", "-C", "nested", "config", "core.fsmonitor", cmd], check=True)
    open("changed.txt", "w").write("x")
    print("planted nested/.git with core.fsmonitor", flush=True)


def nested_ext_diff() -> None:
    """A nested repository whose config names an external diff, a textconv and an fsmonitor that
    leave a mark outside: PAS's git must never run them (its commit, run_diff, integration)."""
    os.makedirs("nested", exist_ok=True)
    subprocess.run(["git", "init", "-q", "nested"], check=True)
    mark = f"touch {P['outside']}/pwned-by-nested-git; false #"
    for key in ("diff.external", "diff.x.textconv", "core.fsmonitor"):
        subprocess.run(["git", "-C", "nested", "config", key, mark], check=True)
    open("nested/.gitattributes", "w").write("* diff=x\n")
    open("nested/file.txt", "w").write("x\n")
    subprocess.run(["git", "-C", "nested", "add", "-A"], check=True)
    subprocess.run(["git", "-C", "nested", "commit", "-q", "-m", "i"], check=True)
    open("nested/file.txt", "a").write("changed\n")
    open("changed.txt", "w").write("x\n")
    print("planted nested/.git with diff.external", flush=True)


def bad_attributes() -> None:
    """An attribute git cannot honour: PAS's commit fails, and the task must fail with the reason."""
    open(".gitattributes", "w").write("* working-tree-encoding=bogus\n")
    open("changed.txt", "w").write("lost work?\n")
    print("wrote .gitattributes with working-tree-encoding=bogus", flush=True)


def deep_dirs() -> None:
    """P['depth'] nested directories (a recursive walk over them dies of RecursionError)."""
    here = os.getcwd()
    for _ in range(P["depth"]):
        os.mkdir("d")
        os.chdir("d")
    open("deep.txt", "w").write("bottom\n")
    os.chdir(here)
    print(f"made {P['depth']} nested directories", flush=True)


def many_names() -> None:
    """P['names'] files with long names: the task's diff stat alone would pass NATS's max_payload."""
    os.makedirs("many", exist_ok=True)
    for i in range(P["names"]):
        open(f"many/{i:06d}-" + "n" * 200, "w").close()
    print(f"made {P['names']} files with long names", flush=True)


def terminal_escapes() -> None:
    """Output that would act on the terminal of whoever reads it: an OSC 52 clipboard write, a window
    title, clear-screen and cursor moves, a C1 CSI."""
    sys.stdout.write("before \x1b]52;c;cHduZWQ=\x07 \x1b]0;pwned-title\x1b\\ \x1b[2J\x1b[H\x9b31m after\n")
    sys.stdout.flush()
    sys.stderr.write("err \x1b]52;c;cHduZWQ=\x07\n")
    sys.exit(1)


def daemon() -> None:
    """Double fork: a grandchild in its own session, holding a lock, outlives the task."""
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            fd = os.open("daemon.lock", os.O_CREAT | os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(w, b"1")
            for f in (0, 1, 2, w):
                os.close(f)
            time.sleep(30)
            os._exit(0)
        os._exit(0)
    os.read(r, 1)
    print("daemon started and holds daemon.lock", flush=True)


ATTACKS = {
    "nats": nats, "git_nats": git_nats, "environ": environ, "leak_key": leak_key, "fork_bomb": fork_bomb,
    "memory_hog": memory_hog, "flood": flood, "daemon": daemon, "nested_repo": nested_repo,
    "nested_ext_diff": nested_ext_diff, "bad_attributes": bad_attributes, "deep_dirs": deep_dirs,
    "many_names": many_names, "terminal_escapes": terminal_escapes,
    "ssh": lambda: read(P["ssh_key"]), "data_dir": lambda: read(P["data_dir"]),
    "other_worktree": lambda: read(P["other_worktree"]), "write_outside": lambda: write(P["outside"] + "/pwned"),
    "write_symlink": lambda: write("escape/pwned-by-symlink"),
    "git_hijack": lambda: write(".git"),
}

if __name__ == "__main__":
    ATTACKS[sys.argv[1]]()
