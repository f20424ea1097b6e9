"""Proprioceptive noise: Gaussian joint position and velocity noise per step, a joint position
bias per episode (a calibration offset), Gaussian action noise.

The noise levels are kept per world, so a curriculum teacher (ADR) can set a world's joint
position and action noise for one episode (``reset(..., fixed=...)``); otherwise every world has
the configured level.
"""
from __future__ import annotations

import numpy as np


class ProprioNoise:
    def __init__(self, num_envs: int, pos_noise: float, pos_bias: float, vel_noise: float, action_noise: float,
                 adaptive: tuple[str, ...] = ()):
        self.pos_noise, self.pos_bias = float(pos_noise), float(pos_bias)
        self.vel_noise, self.action_noise = float(vel_noise), float(action_noise)
        self.bias = np.zeros((num_envs, 7))
        self.pos_sigma = np.full(num_envs, self.pos_noise)
        self.act_sigma = np.full(num_envs, self.action_noise)
        # Dimensions a curriculum teacher sets per episode are on even at a zero configured level.
        self.adaptive = tuple(adaptive)

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.pos_noise, self.pos_bias, self.vel_noise)) or "joint_pos_noise" in self.adaptive

    @property
    def acts(self) -> bool:
        return self.action_noise > 0 or "action_noise" in self.adaptive

    def reset(self, ids, rngs, fixed: list[dict] | None = None) -> None:
        for k, i in enumerate(ids):
            self.bias[i] = rngs[i].normal(0.0, self.pos_bias, 7) if self.pos_bias > 0 else 0.0
            if fixed is not None:
                self.pos_sigma[i] = fixed[k].get("joint_pos_noise", self.pos_noise)
                self.act_sigma[i] = fixed[k].get("action_noise", self.action_noise)

    def observe(self, q: np.ndarray, qd: np.ndarray, rng: np.random.Generator, ids=None):
        """Noisy copies of joint positions (N, 7) and velocities (N, 7) of worlds ``ids``."""
        sel = slice(None) if ids is None else ids
        q = q + self.bias[sel]
        if self.pos_noise > 0 or "joint_pos_noise" in self.adaptive:
            q = q + rng.standard_normal(q.shape) * self.pos_sigma[sel][:, None]
        if self.vel_noise > 0:
            qd = qd + rng.normal(0.0, self.vel_noise, qd.shape)
        return q, qd

    def actions(self, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.acts:
            return a
        return np.clip(a + rng.standard_normal(a.shape) * self.act_sigma[:, None], -1.0, 1.0)
