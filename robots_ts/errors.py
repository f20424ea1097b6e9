"""How the CLI reports bad input: one line naming the thing and what was expected, exit code 2, no
traceback unless ``--debug`` (or ``ROBOTS_TS_DEBUG=1``) asks for one for a bug report.

"Bad input" is the errors our checks raise: :class:`~robots_ts.config.ConfigError`,
:class:`~robots_ts.runs.RunError` (run-directory state, damaged files, checkpoints), ValueError
(bad values) and the file errors of missing or existing paths. Anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import os
import sys
import traceback

DEBUG_ENV = "ROBOTS_TS_DEBUG"
BAD_INPUT = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
             PermissionError)


_debug_flag = False


def set_debug(on: bool) -> None:
    """``--debug`` on the command line (the environment variable works without it)."""
    global _debug_flag
    _debug_flag = bool(on)


def debug_enabled() -> bool:
    return _debug_flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def report(prog: str, exc: BaseException) -> int:
    """Print ``prog: error: <message>`` on one line (the traceback too in debug mode); returns 2."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    msg = " ".join(str(exc).split()) or type(exc).__name__
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2
