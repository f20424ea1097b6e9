"""Domain randomization: the families of :class:`robots_ts.config.RandomizationConfig`, one module
each, applied by :class:`robots_ts.envs.world.WorldBatch` above the simulator seam, so they act
the same on every backend.

- :mod:`.physics`: per-episode scales of the task objects' masses and frictions, applied to the
  task's own reset edits (draws start from the nominal values, never from the last draw);
- :mod:`.proprio`: joint position and velocity noise, a per-episode joint bias, action noise;
- :mod:`.latency`: per-episode action and observation delays of whole control steps;
- :mod:`.depth`: a structured-light sensor model on rendered depth;
- :mod:`.points`: jitter, dropout and outliers of point clouds.
"""
from robots_ts.sim2real.randomization.depth import DepthSensorModel
from robots_ts.sim2real.randomization.latency import DelayLine
from robots_ts.sim2real.randomization.physics import scale_object_edits
from robots_ts.sim2real.randomization.points import noisy_points
from robots_ts.sim2real.randomization.proprio import ProprioNoise

__all__ = ["DelayLine", "DepthSensorModel", "ProprioNoise", "noisy_points", "scale_object_edits"]
