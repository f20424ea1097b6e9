"""Reach: bring the end effector to a ball standing on a post somewhere on the table.

Parameters: the ball's horizontal distance from the robot base, its bearing, and its height.
The ball's position is privileged: a student has to find it in depth.
"""
from __future__ import annotations

import numpy as np

from robots_ts.envs.params import ParamSpace
from robots_ts.envs.tasks.base import Body, Shape, StateBatch, Task, toward

SUCCESS_RADIUS = 0.03


class Reach(Task):
    name = "Reach"
    params = ParamSpace(("distance", "bearing", "height"), np.array([0.35, -0.6, 0.05]),
                        np.array([0.62, 0.6, 0.30]))
    episode_steps = 60
    privileged_dim = 6
    reward_scales = {"distance": -1.0, "near": -1.0, "success": 5.0, "action_rate": -0.01}

    # A ball on a post, both markers: they render in depth, nothing collides with them.
    bodies = (Body("target", (Shape("target_ball", "sphere", (0.035,), (0.9, 0.2, 0.2, 1)),
                              Shape("target_post", "cylinder", (0.008, 0.05), (0.3, 0.3, 0.8, 1),
                                    offset=(0.0, 0.0, -0.05)))),)

    def reset_world(self, world, params, rng):
        dist, bearing, height = params
        world.set_pose("target", [dist * np.cos(bearing), dist * np.sin(bearing), height])
        # The post reaches from the table to the ball.
        world.set_size("target_post", (0.008, height / 2), offset=(0.0, 0.0, -height / 2))
        return np.zeros(0)

    def target(self, s: StateBatch) -> np.ndarray:
        d, b, h = s.params[:, 0], s.params[:, 1], s.params[:, 2]
        return np.stack([d * np.cos(b), d * np.sin(b), h], axis=1)

    def privileged(self, s):
        t = self.target(s)
        return np.concatenate([t, t - s.ee_pos], axis=1)

    def reward_terms(self, s):
        dist = np.linalg.norm(self.target(s) - s.ee_pos, axis=1)
        return {"distance": dist, "near": np.tanh(dist / 0.05),
                "success": (dist < SUCCESS_RADIUS).astype(np.float64)}

    def success(self, s):
        return np.linalg.norm(self.target(s) - s.ee_pos, axis=1) < SUCCESS_RADIUS

    def scripted_action(self, s, phase):
        a = np.zeros((len(s.qpos), 4))
        a[:, :3] = toward(self.target(s) - s.ee_pos)
        a[:, 3] = 1.0
        return a, phase
