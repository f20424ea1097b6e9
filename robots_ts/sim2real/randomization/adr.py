"""Automatic domain randomization over the env's randomizers: the sampler of one run.

``RandomizationConfig.adr`` names dimensions of :data:`robots_ts.sim2real.randomization.physics.ADR_DIMS`
with their limits. A curriculum teacher (``adr``: boundary sampling with per-boundary success
buffers; ``alp_gmm`` or ``random`` through the same interface) hands out each episode's values;
the batched env applies them in place of the preset's draws and reports the episode's success
back, exactly as a task-parameter curriculum does. The sampler lives in the driver process.
"""
from __future__ import annotations

import numpy as np

from robots_ts.sim2real.randomization.physics import ADR_DIMS


def adr_bounds(adr) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Dimension names, limits low and high, and nominal values of an ``AdrConfig``."""
    names = list(adr.dims)
    low = np.array([float(adr.dims[d][0]) for d in names])
    high = np.array([float(adr.dims[d][1]) for d in names])
    nominal = np.array([float(adr.nominal.get(d, ADR_DIMS[d][1])) for d in names])
    return names, low, high, nominal


def make_adr_sampler(adr, seed):
    from robots_ts.curriculum import make_teacher

    _, low, high, nominal = adr_bounds(adr)
    kw = dict(adr.kwargs)
    if adr.teacher == "adr":
        kw["nominal"] = nominal.tolist()
    return make_teacher(adr.teacher, low, high, seed=seed, **kw)


def adr_summary(world) -> dict:
    """A JSON-native record of where a batched env's ADR sampler stands, by dimension name: the
    current range of an ``adr`` teacher (with its widen/narrow counters), or only the names for
    other teachers."""
    sampler, dims = world.adr_sampler, world.adr_dims
    if not hasattr(sampler, "ranges"):
        return {"dims": list(dims)}
    lo, hi = sampler.ranges()
    s = sampler.summary()
    return {"ranges": {d: [float(a), float(b)] for d, a, b in zip(dims, lo, hi)},
            "episodes": s["episodes"], "widened": s["widened"], "narrowed": s["narrowed"]}


def record_randomization(world, run_dir) -> None:
    """``randomization.json`` (the randomization a run trained under, and where ADR's ranges
    ended) and ``adr_ranges.png`` (each ADR dimension's range over training), when there is any."""
    from pathlib import Path

    from robots_ts.config import RandomizationConfig, to_dict
    from robots_ts.runs import atomic_write_json

    r = world.cfg.randomization
    if r == RandomizationConfig():
        return
    record = {"config": to_dict(r), "adr": adr_summary(world) if world.adr_sampler is not None else None}
    atomic_write_json(Path(run_dir) / "randomization.json", record)
    if world.adr_sampler is not None and hasattr(world.adr_sampler, "range_history"):
        from robots_ts.curriculum.plots import plot_adr_ranges

        plot_adr_ranges(world.adr_sampler, Path(run_dir) / "adr_ranges.png", names=list(world.adr_dims))
