"""Reach: bring the end effector to a ball standing on a post somewhere on the table.

Parameters: the ball's horizontal distance from the robot base, its bearing, and its height.
The ball's position is privileged: a student has to find it in depth.
"""
from __future__ import annotations

import mujoco
import numpy as np

from robots_ts.envs.params import ParamSpace
from robots_ts.envs.tasks.base import StateBatch, Task, add_marker, toward

SUCCESS_RADIUS = 0.03


class Reach(Task):
    name = "Reach"
    params = ParamSpace(("distance", "bearing", "height"), np.array([0.35, -0.6, 0.05]),
                        np.array([0.62, 0.6, 0.30]))
    episode_steps = 60
    privileged_dim = 6
    reward_scales = {"distance": -1.0, "near": -1.0, "success": 5.0, "action_rate": -0.01}

    @classmethod
    def build(cls, spec):
        # A ball on a post, both visual only: they render in depth, nothing collides with them.
        body = spec.worldbody.add_body(name="target", mocap=True, pos=[0.5, 0.0, 0.1])
        add_marker(body, "target_ball", mujoco.mjtGeom.mjGEOM_SPHERE, [0.035, 0, 0], [0.9, 0.2, 0.2, 1])
        add_marker(body, "target_post", mujoco.mjtGeom.mjGEOM_CYLINDER, [0.008, 0.05, 0], [0.3, 0.3, 0.8, 1],
                   pos=[0, 0, -0.05])

    def setup(self, model: mujoco.MjModel) -> None:
        self.mocap = model.body("target").mocapid[0]
        self.post = model.geom("target_post").id

    def reset_world(self, model, data, params, rng):
        dist, bearing, height = params
        pos = np.array([dist * np.cos(bearing), dist * np.sin(bearing), height])
        data.mocap_pos[self.mocap] = pos
        # The post reaches from the table to the ball.
        model.geom_size[self.post, 1] = height / 2
        model.geom_pos[self.post, 2] = -height / 2
        model.geom_rbound[self.post] = float(np.hypot(model.geom_size[self.post, 0], height / 2))
        model.geom_aabb[self.post, 5] = height / 2
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
