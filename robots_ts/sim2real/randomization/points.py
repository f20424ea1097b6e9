"""Point-cloud noise, each cloud from its world's own generator: Gaussian jitter, dropout (dropped
points become copies of random kept ones, so the cloud keeps its size and a max-pool cannot
tell), and outliers drawn uniformly in the crop box."""
from __future__ import annotations

import numpy as np

from robots_ts.config import PointNoiseConfig
from robots_ts.sim2real.randomization.streams import row_streams


def noisy_points(points: np.ndarray, cfg: PointNoiseConfig, rngs, low, high) -> np.ndarray:
    """(N, P, 3) -> a noisy (N, P, 3) float32 copy; ``rngs``: one generator per cloud (a
    world's own stream, :mod:`.streams`)."""
    out = np.array(points, dtype=np.float32)
    n, p, _ = out.shape
    for cloud, rng in zip(out, row_streams(rngs, n)):
        if cfg.jitter > 0:
            cloud += rng.normal(0.0, cfg.jitter, cloud.shape).astype(np.float32)
        if cfg.dropout > 0:
            drop = rng.random(p) < cfg.dropout
            src = rng.integers(0, p, p)
            cloud[:] = np.where(drop[:, None], cloud[src], cloud)
        if cfg.outliers > 0:
            wild = rng.random(p) < cfg.outliers
            k = int(wild.sum())
            if k:
                cloud[wild] = rng.uniform(low, high, (k, 3)).astype(np.float32)
    return out
