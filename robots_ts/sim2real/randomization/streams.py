"""Per-world random streams of the per-step randomizers (sensor and action noise).

Each world draws its step noise from a generator of its own (``WorldBatch.noise_rngs``, spawned
by world index), so the noise a world sees depends neither on the other worlds' draws nor on how
a batch is split over processes (``robots_ts.scale``): the same seed gives the same trajectories
however the worlds are split. The randomizers take the generators of the worlds they act on, one
per row; a standalone call may pass one generator instead, which is split into one child per row.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def row_streams(rngs: np.random.Generator | Sequence[np.random.Generator], n: int) -> list[np.random.Generator]:
    """One generator per row of a batch of ``n``: ``rngs`` as given (``n`` of them), or a single
    generator's ``n`` spawned children (it advances its spawn counter, so the next call differs)."""
    if isinstance(rngs, np.random.Generator):
        return rngs.spawn(n)
    rngs = list(rngs)
    if len(rngs) != n:
        raise ValueError(f"expected one generator per world ({n}), got {len(rngs)}")
    return rngs
