"""Named fault points for fault-injection tests: a writer calls ``fault_point("name")`` where a kill
would leave the run directory in an interesting state (between the files of one checkpoint, in the
middle of a metrics line, ...).

Unarmed (the default, and always in production) a fault point is a dictionary lookup and nothing
else. Armed, the ``n``-th time the named point is reached the process dies there:

- ``ROBOTS_TS_FAULT=NAME:N`` in the environment (a subprocess under test) sends SIGKILL to itself,
  which is what a real kill does: no ``finally``, no flush;
- :func:`arm` (in-process, the fault benchmark) raises :class:`InjectedKill`, a ``BaseException``
  that no ``except Exception`` of ours swallows.

``partial`` runs first, e.g. to write half a line before dying.
"""
from __future__ import annotations

import os
import signal
from typing import Callable

ENV_VAR = "ROBOTS_TS_FAULT"
POINTS = (
    "metrics.append",           # half of a metrics.jsonl line written
    "teacher.checkpoint.member",  # between the files of one teacher checkpoint
    "teacher.checkpoint.manifest",  # all members written, manifest not yet
    "teacher.checkpoint.pointer",   # manifest written, latest.json not yet moved
    "teacher.best.member",      # between the files of best.*
    "student.checkpoint",       # student checkpoint written, metrics line not yet
    "student.pointer",          # metrics line written, latest.json not yet moved
    "dataset.chunk",            # chunk file renamed into place, manifest line not yet
    "scale.shard.step",         # a Ray actor of a RayVecEnv, inside a step of its worlds
    "scale.collect.step",       # a Ray actor collecting DAgger data, inside a step of its worlds
)


class InjectedKill(BaseException):
    """Raised at an armed fault point in-process (stands for SIGKILL)."""


_armed: dict[str, int] = {}
_hits: dict[str, int] = {}


def arm(name: str, nth: int = 1) -> None:
    """In-process: raise :class:`InjectedKill` the ``nth`` time ``name`` is reached."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}; choose from {list(POINTS)}")
    _armed.clear()
    _hits.clear()
    _armed[name] = int(nth)


def disarm() -> None:
    _armed.clear()
    _hits.clear()


def hits(name: str) -> int:
    """How often ``name`` was reached since the last :func:`arm`/:func:`disarm` (armed or counting)."""
    return _hits.get(name, 0)


def count(names=POINTS) -> None:
    """Count hits of every point without killing (to draw a random kill point afterwards)."""
    _armed.clear()
    _hits.clear()
    for n in names:
        _armed[n] = 0


def fault_point(name: str, partial: Callable[[], object] | None = None) -> None:
    if not _armed and ENV_VAR not in os.environ:
        return
    nth = _armed.get(name)
    mode = "raise"
    if nth is None and ENV_VAR in os.environ:
        spec_name, _, spec_n = os.environ[ENV_VAR].partition(":")
        if spec_name == name:
            nth, mode = int(spec_n or 1), "kill"
    if nth is None:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if nth and _hits[name] == nth:
        if partial is not None:
            partial()
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedKill(f"injected kill at {name} (hit {nth})")
