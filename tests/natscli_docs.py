"""The `nats` commands the documents show (README.md, subjects.md), for tests/test_natscli.py to run:
fenced lines and inline code that start with `nats `, the user a block gives them
(`eval "$(pas creds USER)"`), and `$ nats ...` terminal transcripts."""

from __future__ import annotations

import re
import shlex

from pas.transport import auth
from tests.conftest import ROOT, make_cfg

DOCS = ("README.md", "subjects.md")


def _fenced_lines(text: str) -> list[str]:
    out, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


EVAL_CREDS = re.compile(r'^eval "\$\(pas creds (\w+)\)"')


def doc_examples() -> list[tuple[str, str | None]]:
    """Every `nats` command in the documents as written (comments stripped), deduplicated, in order, with its
    user: in fenced blocks, the one the last `eval "$(pas creds USER)"` above it gave, as in the reader's shell
    (client before any); inline (reference tables), None: the least user allowed. A verb alone (`nats pub`)
    is a mention, not an example."""
    found: dict[str, str | None] = {}
    for name in DOCS:
        text = (ROOT / name).read_text()
        candidates: list[tuple[str, str | None]] = []
        user = "client"
        for line in _fenced_lines(text):
            m = EVAL_CREDS.match(line.strip())
            user = m.group(1) if m else user
            candidates.append((line.strip(), user))
        candidates += [(c, None) for c in re.findall(r"`(nats [^`]+)`", text)]
        for c, u in candidates:
            if not c.startswith("nats "):
                continue
            words = shlex.split(c, comments=True)
            if len(words) >= 3:
                found.setdefault(shlex.join(words), u)
    return list(found.items())


def subject_matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def least_user(words: list[str]) -> str:
    """The first of client, adapter, admin whose NATS permissions (pas.transport.auth) allow this pub/req/sub."""
    verb = words[1]
    rest = iter(words[2:])
    subject = ""
    for w in rest:
        if w in ("-H", "--header", "-s", "--server", "--creds", "--context"):
            next(rest, None)  # the option's value is not the subject
        elif not w.startswith("-"):
            subject = w
            break
    if verb not in ("pub", "req", "request", "sub"):
        return "client"
    perms = auth.permissions(make_cfg())
    for user in ("client", "adapter", "admin"):
        allowed = perms[user].subscribe if verb == "sub" else perms[user].publish
        if any(subject_matches(p, subject) for p in allowed):
            return user
    raise AssertionError(f"no user may run {shlex.join(words)!r}")


def doc_transcripts() -> list[tuple[str, str]]:
    """(command, output) of every fenced block that is a terminal transcript: first line `$ nats ...`."""
    out = []
    for name in DOCS:
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", (ROOT / name).read_text(), re.M | re.S):
            first, _, rest = block.partition("\n")
            if first.startswith("$ nats "):
                out.append((first[2:], rest))
    return out


def normalise_transcript(text: str) -> str:
    """Times and round-trip times change from run to run, natscli prints a reply's headers in Go's map
    order (random), and trailing spaces and blank lines do not show: none of these is compared."""
    text = re.sub(r"^\d\d:\d\d:\d\d ?", "HH:MM:SS ", text, flags=re.M)
    text = re.sub(r"rtt [0-9.]+(?:[µu]s|ms|s)", "rtt X", text)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    header = re.compile(r"^HH:MM:SS [A-Za-z0-9-]+: ")
    out: list[str] = []
    for line in lines:  # sort each run of consecutive header lines
        if header.match(line) and out and header.match(out[-1]):
            run_start = len(out)
            while run_start > 0 and header.match(out[run_start - 1]):
                run_start -= 1
            out[run_start:] = sorted([*out[run_start:], line])
        else:
            out.append(line)
    return "\n".join(out)
