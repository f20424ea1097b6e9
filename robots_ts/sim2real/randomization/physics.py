"""Physics randomization of task objects: mass and friction scales drawn per episode.

The scales multiply what the task's reset sets (e.g. Push's mass parameter) or, where the task
sets nothing, the body's nominal value, so a draw never builds on an earlier one. The task's
privileged observation keeps reporting its parameters: the teacher sees the nominal value, the
world has the drawn one.
"""
from __future__ import annotations

import numpy as np

from robots_ts.envs.backends.scene import Body


def scale_object_edits(ops: list, bodies: tuple[Body, ...], mass_scale: float, friction_scale: float) -> list:
    """The reset edits ``ops`` with every free body's mass and sliding friction scaled."""
    if mass_scale == 1.0 and friction_scale == 1.0:
        return ops
    out, seen = [], set()
    for op in ops:
        if op[0] == "mass":
            op = ("mass", op[1], op[2] * mass_scale)
            seen.add(("mass", op[1]))
        elif op[0] == "friction":
            op = ("friction", op[1], op[2] * friction_scale)
            seen.add(("friction", op[1]))
        out.append(op)
    for b in bodies:
        if not b.free:
            continue
        if ("mass", b.name) not in seen and mass_scale != 1.0:
            out.append(("mass", b.name, b.mass * mass_scale))
        if ("friction", b.name) not in seen and friction_scale != 1.0:
            out.append(("friction", b.name, b.friction[0] * friction_scale))
    return out


def draw_scale(rng: np.random.Generator, bounds) -> float:
    lo, hi = float(bounds[0]), float(bounds[1])
    return lo if lo == hi else float(rng.uniform(lo, hi))
