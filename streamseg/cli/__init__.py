"""The command line: parse, load settings, build the pipeline, report. No logic of its own.

:mod:`.app` holds the Typer app and what the commands share; :mod:`.segment` and :mod:`.tools`
add the commands to it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from . import segment, tools  # noqa: F401 - importing them adds their commands to the app
from .app import app

__all__ = ["app", "main"]


def _stop(signum: int, frame: object) -> None:
    # Ctrl-C and a service manager's stop (SIGTERM) end a run alike: outputs finalized, summary written.
    raise KeyboardInterrupt


def main() -> None:
    # SIGINT too: Python installs its Ctrl-C handler only where SIGINT is not ignored at start, and a
    # non-interactive shell starts background jobs with SIGINT ignored (`streamseg ... & kill -INT $!`).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        app(prog_name="streamseg")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    # Every output is finished and closed by now. Leave without the interpreter's teardown: it walks
    # torch's whole heap (1.5-2 s measured on the 2-core machine), and a live reader still blocked on a
    # silent stream must not hold up, or crash, the exit that Ctrl-C asked for.
    if not isinstance(code, int | None):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
