"""`pas creds USER`: the `nats` CLI (natscli) as one of PAS's NATS users, in any shell, script or `timeout`.

Each PAS user may subscribe only to its own inbox prefix (`_INBOX.<user>.>`), so natscli needs the user's
inbox prefix as well as its password, or every `nats req` is refused (a permissions violation on
`_INBOX.`) and still exits 0. natscli has no variable for the prefix, and an alias is seen neither by
scripts nor by `timeout`; a natscli *context* is seen by both. So this module writes one per user
(`pas-<user>`: server, user, password, inbox prefix; 0600) where natscli looks for contexts, and the lines
`pas creds` prints select it with NATS_CONTEXT (and set NATS_URL/NATS_USER/NATS_PASSWORD, the same values,
for other NATS clients)."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pas.transport.auth import Creds


def context_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where natscli keeps its contexts: $XDG_CONFIG_HOME/nats/context, else ~/.config/nats/context."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nats" / "context"


def context_name(creds: Creds) -> str:
    return f"pas-{creds.user}"


def save_context(url: str, creds: Creds, environ: Mapping[str, str] = os.environ) -> Path:
    """Write (or overwrite) the user's context file, readable by its owner only; return its path."""
    d = context_dir(environ)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{context_name(creds)}.json"
    body = {"description": f"PAS NATS user {creds.user} (written by `pas creds {creds.user}`)", "url": url,
            "user": creds.user, "password": creds.password, "inbox_prefix": creds.inbox_prefix}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(body, indent=2) + "\n")
    path.chmod(0o600)  # an older file keeps its mode through O_TRUNC
    return path


def shell_lines(url: str, creds: Creds, path: Path) -> str:
    """What `eval "$(pas creds USER)"` runs: exports only (no alias), so scripts and `timeout` see them."""
    q = shlex.quote
    return (f"export NATS_CONTEXT={q(context_name(creds))}  # natscli context {path}: server, user, password, "
            f"inbox prefix {creds.inbox_prefix}\n"
            f"export NATS_URL={q(url)}\n"
            f"export NATS_USER={q(creds.user)}\n"
            f"export NATS_PASSWORD={q(creds.password)}\n")
