"""The safety layer between a policy's joint targets and a robot's position controller.

:class:`SafetyFilter` turns each period's target into the command, in this order:

1. **NaN guard**: a non-finite action or target repeats the last safe command ("nan");
2. **joint position limits**: the URDF's (soft, safety-controller) limits, shrunk by a margin
   ("joint_limit");
3. **soft start**: for ``soft_start_s`` after a start (arming, or resuming after a hold), the
   command is blended from the pose measured at the start to the target, linearly in time
   ("soft_start");
4. **joint velocity limit**: the change from the last command is clipped to the URDF velocity
   limit x period x scale, per joint ("velocity_limit"). It comes after the soft start so that it
   bounds every command that leaves the filter: a blend toward a far target can move faster than
   either of its ends. Moving toward a target inside the limits from a command inside them, it
   never leaves them.

Holds (watchdog, e-stop) bypass the filter: :meth:`SafetyFilter.hold` commands the pose the robot
was measured at, clipped to the limits, and makes it the reference for the next change.

:class:`InterventionLog` counts interventions per tick by kind and writes one log line whenever
the set of active interventions changes (not one per tick).
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

INTERVENTIONS = ("nan", "joint_limit", "velocity_limit", "soft_start", "stale_joint_state", "stale_depth", "estop",
                 "not_armed", "dry_run")
_TOL = 1e-12


class SafetyFilter:
    """NaN guard, joint limits, soft start and velocity limit on (7,) joint position targets."""

    def __init__(self, lower, upper, max_step, soft_start_s: float):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.max_step = np.asarray(max_step, dtype=np.float64)
        if np.any(self.lower > self.upper) or np.any(self.max_step <= 0):
            raise ValueError(f"bad safety limits: lower {self.lower}, upper {self.upper}, step {self.max_step}")
        self.soft_start_s = float(soft_start_s)
        self.last: np.ndarray | None = None       # the last command: the reference of the velocity limit
        self.origin: np.ndarray | None = None     # the soft start's measured pose
        self.t0 = 0.0

    def clip(self, q: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)

    def start(self, q_measured: np.ndarray, now: float, soft: bool = True) -> None:
        """A start from the measured pose: the velocity reference and (``soft``) the soft start's
        origin and time."""
        q = self.clip(q_measured)
        self.origin = q if soft else None
        self.last = q.copy()
        self.t0 = float(now)

    def hold(self, q_measured: np.ndarray) -> np.ndarray:
        """The hold command for a measured pose (clipped to the limits); the next reference."""
        self.last = self.clip(q_measured)
        return self.last.copy()

    def __call__(self, target: np.ndarray, finite: bool, now: float) -> tuple[np.ndarray, list[str]]:
        """The command for a policy target; ``finite``: whether the action and target were."""
        if self.last is None:
            raise RuntimeError("SafetyFilter: start() or hold() first (no reference pose)")
        target = np.asarray(target, dtype=np.float64)
        if not finite or not np.all(np.isfinite(target)):
            return self.last.copy(), ["nan"]
        kinds = []
        q = self.clip(target)
        if np.any(np.abs(q - target) > _TOL):
            kinds.append("joint_limit")
        if self.origin is not None and self.soft_start_s > 0:
            alpha = (float(now) - self.t0) / self.soft_start_s
            if alpha < 1.0:
                q = self.origin + max(alpha, 0.0) * (q - self.origin)
                kinds.append("soft_start")
        step = q - self.last
        limited = np.clip(step, -self.max_step, self.max_step)
        if np.any(np.abs(limited - step) > _TOL):
            kinds.append("velocity_limit")
            q = self.last + limited
        self.last = q
        return q.copy(), kinds


class InterventionLog:
    """Counts of interventions by kind (ticks affected) and a line per change of the active set."""

    def __init__(self, log: Callable[[str], None] | None = None):
        self.counters: dict[str, int] = {k: 0 for k in INTERVENTIONS}
        self.active: tuple[str, ...] = ()
        self.ticks = 0
        self.log = log or logging.getLogger("robots_ts.deploy").info

    def tick(self, kinds: list[str], now: float) -> None:
        self.ticks += 1
        for k in kinds:
            self.counters[k] = self.counters.get(k, 0) + 1
        now_active = tuple(dict.fromkeys(kinds))
        if set(now_active) != set(self.active):
            started = [k for k in now_active if k not in self.active]
            ended = [k for k in self.active if k not in now_active]
            parts = [f"+{k}" for k in started] + [f"-{k}" for k in ended]
            self.log(f"safety t={now:.3f}s tick {self.ticks}: {' '.join(parts)} "
                     f"(active: {', '.join(now_active) or 'none'}; counts: "
                     f"{', '.join(f'{k}={self.counters[k]}' for k in now_active) or '-'})")
            self.active = now_active

    def event(self, message: str) -> None:
        self.log(message)
