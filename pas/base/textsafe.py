"""Text that came from a task or from the bus, made safe to store and to show.

- `clean`: what a terminal would act on is removed: escape sequences (CSI such as clear-screen,
  OSC such as a window title or an OSC 52 clipboard write, DCS/APC/PM/SOS strings, two-character
  ESC sequences) and every other C0/C1 control character but newline and tab. The `pas` CLI applies
  it to everything it writes (`terminal`): task output, errors, comms entries, run titles.
- `cap`: a string bounded in UTF-8 bytes, saying how much was cut.
- `bounded_stat`: a `git diff --stat` bounded in files and bytes ("... N more files").
"""

from __future__ import annotations

import re
from typing import Any, TextIO

_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI: ESC [ params intermediates final
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC/DCS/SOS/PM/APC .. BEL/ST
    r"|\x1b[ -/]*[0-~]?"  # any other ESC sequence (ESC c, ESC ( B, ESC 7 ...)
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """text without escape sequences and control characters (newline and tab stay)."""
    if not text.isprintable():  # the common case, plain text, costs one scan
        text = _CONTROLS.sub("", _SEQUENCES.sub("", text))
    return text


class _Terminal:
    """A text stream that cleans everything written to it (see `terminal`)."""

    def __init__(self, raw: TextIO) -> None:
        self._raw = raw

    def write(self, s: str) -> int:
        self._raw.write(clean(s))
        return len(s)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding ...
        return getattr(self._raw, name)


def terminal(stream: TextIO) -> TextIO:
    """`stream` with `clean` applied to every write: the CLI's print boundary (sys.stdout and
    sys.stderr of every `pas` command), so no output path can forget it."""
    if isinstance(stream, _Terminal):
        return stream
    return _Terminal(stream)  # type: ignore[return-value]


def cap(text: str, max_bytes: int, *, tail: bool = False) -> str:
    """text cut to at most max_bytes UTF-8 bytes, with a note of what was cut: the head kept, or
    with tail the end (where a process's output says how it ended)."""
    data = text.encode(errors="replace")
    if len(data) <= max_bytes:
        return text
    note = f"... [{len(data) - max_bytes} more bytes]"
    keep = max(0, max_bytes - len(note.encode()) - 1)
    if tail:
        return note + "\n" + data[len(data) - keep:].decode(errors="ignore")
    return data[:keep].decode(errors="ignore") + "\n" + note


def bounded_stat(stat: str, max_files: int = 50, max_bytes: int = 8192) -> str:
    """A `git diff --stat[-count]` output cut to at most max_files file lines and max_bytes in all,
    always ending with "... N more files" (when some were left out) and git's summary line."""
    lines = [ln for ln in stat.strip("\n").splitlines() if ln.strip() and ln.strip() != "..."]
    if not lines:
        return ""
    m = re.search(r"(\d+) files? changed", lines[-1])
    summary, files = (lines[-1][:1000], lines[:-1]) if m else ("", lines)
    total = int(m.group(1)) if m else len(files)
    kept: list[str] = []
    room = max_bytes - len(summary.encode()) - 40  # the "... N more files" line
    for ln in files[:max_files]:
        ln = ln[:1000]
        room -= len(ln.encode()) + 1
        if room < 0:
            break
        kept.append(ln)
    more = [f" ... {total - len(kept)} more files"] if total > len(kept) else []
    return "\n".join([*kept, *more, *([summary] if summary else [])])


__all__ = ["bounded_stat", "cap", "clean", "terminal"]
