"""Leaving a process without the interpreter's finalisation."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """How `pas up` ends, once it has stopped everything it started (or failed to start): without the
    interpreter's finalisation. That finalisation once hung for good (CI: a fresh wheel's `pas up`, stopped
    1.8 s after its start, printed faulthandler's stacks): litellm's import, started in a daemon thread
    (pas.llm.client.preload), still held the import lock when the interpreter froze that thread, and a
    litellm object's __del__, run by the final garbage collection, imported a module and waited for that
    lock. Nothing is left to finalise: logs and output are flushed here."""
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
