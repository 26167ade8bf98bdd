"""The sandbox every process a task starts runs in: bubblewrap (``bwrap``) plus rlimits.

A sandboxed process sees a read-only system (/usr, the /bin and /lib links, a few files of /etc),
the interpreters it needs (read-only), its own workspace (read-write), the repository's .git and
.venv (read-only) and a private, size-limited /tmp. It has no network (a private loopback only)
unless the caller asks for it (aider, which must reach its model), a new pid namespace (it sees
only its own processes; the namespace dies, with everything in it, when the task's process ends or
is killed), a scrubbed environment, and limits on CPU time, address space, processes and file size.

When PAS runs as root, bwrap sets the namespaces up as root and the task then runs under a fresh
unprivileged uid (setpriv): root is exempt from RLIMIT_NPROC, so only a non-root uid makes the
process limit hold. The workspace is handed to that uid for the run (``handed_over``) and stays
its: PAS's git reads it as root (pas.execution.gitsafe), so nothing walks back over what the task wrote.
As an ordinary user, bwrap adds a user namespace and the task keeps the user's
uid, counted in that namespace alone.

API: ``Box.from_policy(settings.policy)``; ``box.problem()`` says why the sandbox cannot run (None
when it can, or when it is off); ``box.launch(argv, workdir, env, ...)`` returns what to execute.
``wrap`` and ``clean_env`` are the two building blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pas.base.programs import is_elf

log = logging.getLogger("pas.execution.sandbox")

SETPRIV = "/usr/bin/setpriv"
PRLIMIT = "/usr/bin/prlimit"
ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "LC_*", "TERM", "TZ", "VIRTUAL_ENV", "CONDA_PREFIX", "NO_COLOR")
"""Variables a task inherits from PAS; everything else (keys, tokens, NATS credentials) is dropped."""
ETC = ("passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives",
       "localtime", "timezone", "hosts", "resolv.conf", "host.conf", "gai.conf", "protocols", "services",
       "ssl", "ca-certificates", "ca-certificates.conf", "mime.types", "os-release", "debian_version", "gitconfig")
"""The parts of /etc a task sees (read-only): no shadow, no ssh keys, no PAS configuration."""
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
UID_BASE, UID_SPAN = 1_500_000_000, 1 << 24
"""As root, each sandboxed run gets a random uid from this range (no account, owns nothing)."""


@dataclass
class Limits:
    cpu_s: int = 1800
    memory_mb: int = 8192
    """Address space per process (RLIMIT_AS)."""
    nproc: int = 512
    file_mb: int = 1024
    """Largest file a task may write (RLIMIT_FSIZE)."""
    tmp_mb: int = 1024
    """Size of the private /tmp."""

    def prlimit(self) -> list[str]:
        mb = 1024 * 1024
        return [PRLIMIT, f"--cpu={self.cpu_s}", f"--as={self.memory_mb * mb}", f"--nproc={self.nproc}",
                f"--fsize={self.file_mb * mb}", "--core=0", "--"]


@dataclass(frozen=True)
class Reach:
    """What one sandboxed process may reach beyond its workdir: the network, more read-only paths
    (besides the policy's), more writable ones (aider's scratch directory)."""

    network: bool = False
    ro: tuple[Path, ...] = ()
    rw: tuple[Path, ...] = ()


NO_REACH = Reach()


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    uid: int | None = None
    """The uid the task runs as when PAS is root (the workspace is handed to it), else None."""
    rw: list[Path] = field(default_factory=list)


def _allowed(name: str, extra: tuple[str, ...] = ()) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in (*ENV_ALLOW, *extra))


def clean_env(extra: Mapping[str, str] | None = None, passthrough: tuple[str, ...] = (),
              source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a task: the allowlisted variables of `source` (os.environ), a private
    HOME and TMPDIR, then `extra` (task-specific values such as an aider key) on top."""
    src = os.environ if source is None else source
    env = {k: v for k, v in src.items() if _allowed(k, passthrough)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME="/tmp", TMPDIR="/tmp", PYTHONDONTWRITEBYTECODE="1", GIT_TERMINAL_PROMPT="0")
    # git refuses a repository owned by another uid (the task's view of it is read-only anyway);
    # an identity, so tools such as aider do not try to write one into the read-only git config.
    git = {"safe.directory": "*", "user.name": "PAS task", "user.email": "pas-task@localhost"}
    env["GIT_CONFIG_COUNT"] = str(len(git))
    for i, (k, v) in enumerate(git.items()):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = k, v
    env.update(extra or {})
    return env


def runtime_paths(exe: str | None) -> list[Path]:
    """What running `exe` needs outside /usr: the file itself, its virtualenv and the interpreter
    the venv points at, or an interpreter's own prefix. Never a whole bin/'s parent such as ~/.local."""
    if not exe:
        return []
    p = Path(exe)
    real = p.resolve()
    out: list[Path] = [p]
    for cand in (p, real):
        for parent in cand.parents:
            cfg = parent / "pyvenv.cfg"
            if cfg.is_file():
                out.append(parent)
                for line in cfg.read_text(errors="replace").splitlines():
                    k, _, v = line.partition("=")
                    home = Path(v.strip()).resolve() if k.strip() == "home" and v.strip() else None
                    if home is not None and any(x.name.startswith("python") for x in home.glob("python*")):
                        out.append(home.parent)  # only ever an interpreter's prefix, whatever the file says
                break
    if p.parent.name == "shims":
        out.append(p.parent.parent)  # a version manager's shim (pyenv, rbenv, asdf) runs its whole root
    if real.name.startswith("python") and real.parent.name == "bin" and is_elf(real):
        out.append(real.parent.parent)  # an interpreter outside /usr (pyenv, /opt/python3.11) needs its stdlib
    return out


def repo_of(workdir: Path) -> Path | None:
    """The repository of a PAS worktree (<repo>/.pas/worktrees/<run>/<task>), from the path PAS
    chose, never from files the task could have written."""
    p = workdir.resolve()
    if len(p.parents) >= 4 and p.parents[1].name == "worktrees" and p.parents[2].name == ".pas":
        return p.parents[3]
    return None


def _covered(path: Path, by: list[Path]) -> bool:
    return any(path == b or b in path.parents for b in by)


def wrap(argv: list[str], workdir: Path, env: Mapping[str, str], *, box: Box, uid: int | None = None,
         reach: Reach = NO_REACH) -> list[str]:
    """bwrap + setpriv (as root) + prlimit around argv (see the module docstring), with the box's
    limits and read-only paths."""
    workdir = workdir.resolve()
    limits, ro, rw = box.limits, [*(Path(p) for p in box.ro), *reach.ro], reach.rw
    args = [shutil.which(box.bwrap) or box.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session"]
    if uid is None:
        args.append("--unshare-user")
    if not reach.network:
        args.append("--unshare-net")
    mounted: list[Path] = []
    for s in SYSTEM:
        p = Path(s)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), s]
        elif p.is_dir():
            args += ["--ro-bind", s, s]
            mounted.append(p)
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.tmp_mb * 1024 * 1024),
             "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/"), Path("/tmp"), Path("/etc"), Path("/proc"), Path("/dev")}

    def bind(kind: str, path: Path) -> None:
        nonlocal args
        for anc in reversed(path.parents):
            if anc not in made and not _covered(anc, mounted):
                args += ["--perms", "0755", "--dir", str(anc)]
                made.add(anc)
        args += [kind, str(path), str(path)]
        mounted.append(path)
        made.add(path)

    exe = str(workdir / argv[0]) if os.sep in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
    # An executable in the workspace is the task's (a planted symlink or pyvenv.cfg must not pick
    # host paths to mount); it is visible through the workspace anyway.
    mine = exe is not None and any(workdir == q or workdir in q.parents for q in (Path(exe), Path(exe).resolve()))
    wanted = [*([] if mine else runtime_paths(exe)), *ro]
    for k in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        if env.get(k):
            wanted += [Path(env[k]), *runtime_paths(str(Path(env[k]) / "bin" / "python"))]
    repo = repo_of(workdir)
    if repo is not None:
        wanted += [repo / ".git", repo / ".venv"]
    # Directories before the files in them (a file already covered is not bound again); an
    # executable symlink (~/.local/bin/aider) is bound at its own path, as its target's content.
    paths = dict.fromkeys(x if x.is_symlink() and x.is_file() else x.resolve() for x in wanted)
    for p in sorted(paths, key=lambda x: len(x.parts)):
        if p.exists() and not _covered(p, mounted) and p != Path("/"):
            bind("--ro-bind", p)
    for p in [workdir, *(x.resolve() for x in rw)]:
        bind("--bind", p)
    git = workdir / ".git"
    if git.exists() and not git.is_symlink():
        # PAS runs git here after the task: the task must not point .git (or its config) elsewhere.
        args += ["--ro-bind", str(git), str(git)]
    args += ["--remount-ro", "/", "--chdir", str(workdir), "--"]
    if uid is not None:
        args += [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                 "--bounding-set=-all", "--inh-caps=-all", "--"]
    return [*args, *limits.prlimit(), *argv]


_probe_cache: dict[tuple[str, bool], str | None] = {}


def _probe(bwrap: str, as_root: bool) -> str | None:
    """Run a sandboxed `true` once per process: None if it works, else why not."""
    key = (bwrap, as_root)
    if key not in _probe_cache:
        found = shutil.which(bwrap)
        if found is None:
            _probe_cache[key] = f"{bwrap!r} not found (install Debian's bubblewrap package: scripts/setup.sh)"
        elif not (os.path.exists(PRLIMIT) and (not as_root or os.path.exists(SETPRIV))):
            _probe_cache[key] = f"{PRLIMIT} or {SETPRIV} missing (Debian's util-linux)"
        else:
            with tempfile.TemporaryDirectory(prefix="pas-sandbox-probe-") as tmp:
                argv = wrap(["true"], Path(tmp), {"PATH": "/usr/bin:/bin"}, box=Box(bwrap=found),
                            uid=UID_BASE if as_root else None)
                try:
                    r = subprocess.run(argv, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
                    err = None if r.returncode == 0 else (r.stderr.decode(errors="replace").strip() or f"exit {r.returncode}")
                except (OSError, subprocess.TimeoutExpired) as e:
                    err = str(e)
            _probe_cache[key] = None if err is None else f"bwrap cannot start a sandbox here: {err[:300]}"
    return _probe_cache[key]


@dataclass
class Box:
    """The sandbox policy of one programmer (settings.policy.sandbox*)."""

    mode: str = "auto"  # auto | bwrap | off
    limits: Limits = field(default_factory=Limits)
    passthrough: tuple[str, ...] = ()
    bwrap: str = "bwrap"
    ro: tuple[str, ...] = ()

    @classmethod
    def from_policy(cls, policy: Any) -> Box:
        lim = Limits(cpu_s=policy.sandbox_cpu_s, memory_mb=policy.sandbox_memory_mb, nproc=policy.sandbox_nproc,
                     file_mb=policy.sandbox_file_mb, tmp_mb=policy.sandbox_tmp_mb)
        return cls(mode=policy.sandbox, limits=lim, passthrough=tuple(policy.sandbox_env), bwrap=policy.sandbox_bwrap,
                   ro=tuple(policy.sandbox_ro))

    @property
    def off(self) -> bool:
        return self.mode == "off"

    def problem(self) -> str | None:
        """Why sandboxed tasks cannot run (None: they can, or the sandbox is off)."""
        return None if self.off else _probe(self.bwrap, os.geteuid() == 0)

    def launch(self, argv: list[str], workdir: Path, *, extra_env: Mapping[str, str] | None = None,
               source_env: Mapping[str, str] | None = None, reach: Reach = NO_REACH) -> Launch:
        """What to execute for argv: `source_env` (default os.environ; e.g. the repository's
        environment from pas.execution.repoenv) is filtered through the allowlist, then `extra_env` is added."""
        env = clean_env(extra_env, self.passthrough, source_env)
        if self.off:
            pdeath = [SETPRIV, "--pdeathsig", "KILL", "--"] if os.path.exists(SETPRIV) else []
            return Launch([*pdeath, *argv], env)
        uid = UID_BASE + secrets.randbelow(UID_SPAN) if os.geteuid() == 0 else None
        return Launch(wrap(argv, workdir, env, box=self, uid=uid, reach=reach), env, uid, [workdir, *reach.rw])


def _chown_tree(root: Path, uid: int) -> None:
    """lchown root and everything under it to uid (symlinks themselves, never their targets; no
    recursion, so depth does not matter), except the workspace's .git (PAS's, read-only in the
    sandbox)."""
    os.lchown(root, uid, uid)
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            if e.name == ".git" and d == str(root):
                continue
            with contextlib.suppress(OSError):
                os.lchown(e.path, uid, uid)
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)


@contextlib.asynccontextmanager
async def handed_over(launch: Launch) -> AsyncIterator[None]:
    """While the block runs, the launch's writable paths belong to its uid (root mode only).

    They are not handed back afterwards: PAS's own steps on them (its git, pas.execution.gitsafe) read them
    as root and never need them to be PAS's, so no walk runs over what the task wrote, with PAS's
    rights, after it. (A later launch in the same workspace hands it on to its own uid.) Leave
    the block only once the task's process is gone (its pid namespace dies with it)."""
    if launch.uid is not None:
        for p in launch.rw:
            root = p.resolve()
            if not _chowned_if_empty(root, launch.uid):
                await asyncio.to_thread(_chown_tree, root, launch.uid)
    yield


def _chowned_if_empty(root: Path, uid: int) -> bool:
    """An empty directory (a fresh scratch workspace) is handed over here: no thread, whose hop cost 15-27 ms
    per task when ten programmers started at once. False: not empty (or unreadable), walk it."""
    try:
        with os.scandir(root) as it:
            if next(it, None) is not None:
                return False
        os.lchown(root, uid, uid)
    except OSError:
        return False
    return True


__all__ = ["Box", "Launch", "Limits", "clean_env", "handed_over", "repo_of", "runtime_paths", "wrap"]
