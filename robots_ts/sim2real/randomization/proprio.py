"""Proprioceptive noise: Gaussian joint position and velocity noise per step, a joint position
bias per episode (a calibration offset), Gaussian action noise.

The noise levels are kept per world, so a curriculum teacher (ADR) can set a world's joint
position and action noise for one episode (``reset(..., fixed=...)``); otherwise every world has
the configured level. Each world draws its step noise from its own generator (:mod:`.streams`).
"""
from __future__ import annotations

import numpy as np

from robots_ts.sim2real.randomization.streams import row_streams


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

    def observe(self, q: np.ndarray, qd: np.ndarray, rngs, ids=None):
        """Noisy copies of joint positions (N, 7) and velocities (N, 7) of worlds ``ids`` (all when
        None); ``rngs``: the generators of those worlds, one per row."""
        sel = slice(None) if ids is None else ids
        q = q + self.bias[sel]
        pos = self.pos_noise > 0 or "joint_pos_noise" in self.adaptive
        vel = self.vel_noise > 0
        if pos or vel:
            width = 7 * (pos + vel)       # one draw per world: positions, then velocities
            g = np.stack([r.standard_normal(width) for r in row_streams(rngs, len(q))])
            if pos:
                q = q + g[:, :7] * self.pos_sigma[sel][:, None]
            if vel:
                qd = qd + g[:, -7:] * self.vel_noise
        return q, qd

    def actions(self, a: np.ndarray, rngs) -> np.ndarray:
        """Noisy actions (N, A), each world's row from its own generator (``rngs``, one per row)."""
        if not self.acts:
            return a
        g = np.stack([r.standard_normal(a.shape[1]) for r in row_streams(rngs, len(a))])
        return np.clip(a + g * self.act_sigma[:, None], -1.0, 1.0)
