"""Point-cloud noise, batched over worlds: Gaussian jitter, dropout (dropped points become copies
of random kept ones, so the cloud keeps its size and a max-pool cannot tell), and outliers drawn
uniformly in the crop box."""
from __future__ import annotations

import numpy as np

from robots_ts.config import PointNoiseConfig


def noisy_points(points: np.ndarray, cfg: PointNoiseConfig, rng: np.random.Generator, low, high) -> np.ndarray:
    """(N, P, 3) -> a noisy (N, P, 3) float32 copy."""
    out = np.array(points, dtype=np.float32)
    n, p, _ = out.shape
    if cfg.jitter > 0:
        out += rng.normal(0.0, cfg.jitter, out.shape).astype(np.float32)
    if cfg.dropout > 0:
        drop = rng.random((n, p)) < cfg.dropout
        src = rng.integers(0, p, (n, p))
        copies = out[np.arange(n)[:, None], src]
        out = np.where(drop[..., None], copies, out)
    if cfg.outliers > 0:
        wild = rng.random((n, p)) < cfg.outliers
        k = int(wild.sum())
        if k:
            out[wild] = rng.uniform(low, high, (k, 3)).astype(np.float32)
    return out
