"""Proprioceptive noise: Gaussian joint position and velocity noise per step, a joint position
bias per episode (a calibration offset), Gaussian action noise."""
from __future__ import annotations

import numpy as np


class ProprioNoise:
    def __init__(self, num_envs: int, pos_noise: float, pos_bias: float, vel_noise: float, action_noise: float):
        self.pos_noise, self.pos_bias = float(pos_noise), float(pos_bias)
        self.vel_noise, self.action_noise = float(vel_noise), float(action_noise)
        self.bias = np.zeros((num_envs, 7))

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.pos_noise, self.pos_bias, self.vel_noise))

    def reset(self, ids, rngs) -> None:
        for i in ids:
            self.bias[i] = rngs[i].normal(0.0, self.pos_bias, 7) if self.pos_bias > 0 else 0.0

    def observe(self, q: np.ndarray, qd: np.ndarray, rng: np.random.Generator, ids=None):
        """Noisy copies of joint positions (N, 7) and velocities (N, 7) of worlds ``ids``."""
        bias = self.bias if ids is None else self.bias[ids]
        q = q + bias
        if self.pos_noise > 0:
            q = q + rng.normal(0.0, self.pos_noise, q.shape)
        if self.vel_noise > 0:
            qd = qd + rng.normal(0.0, self.vel_noise, qd.shape)
        return q, qd

    def actions(self, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.action_noise <= 0:
            return a
        return np.clip(a + rng.normal(0.0, self.action_noise, a.shape), -1.0, 1.0)
