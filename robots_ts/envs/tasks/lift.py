"""Lift: grasp a box of random size and mass and lift it off the table.

Parameters: the box's half-extents and mass. Object pose, size and mass are privileged.
"""
from __future__ import annotations

import numpy as np

from robots_ts.envs.params import ParamSpace
from robots_ts.envs.tasks.base import Body, StateBatch, Task, box, toward

LIFT_HEIGHT = 0.08
BOX_X = (0.42, 0.6)
BOX_Y = (-0.15, 0.15)


class Lift(Task):
    name = "Lift"
    params = ParamSpace(("half_x", "half_y", "half_z", "mass"),
                        np.array([0.018, 0.018, 0.02, 0.05]), np.array([0.03, 0.03, 0.035, 0.4]))
    episode_steps = 100
    privileged_dim = 3 + 4 + 3 + 3 + 3 + 4
    reward_scales = {"reach": -1.0, "grasp": 0.5, "lift": -1.0, "success": 10.0, "action_rate": -0.005}

    bodies = (Body("box", (box("box", [0.025] * 3, (0.9, 0.6, 0.2, 1)),), free=True, mass=0.2,
                   friction=(1.0, 0.01, 0.0002), pos=(0.5, 0.0, 0.025), soft_contact=(0.005, 1.0)),)

    def __init__(self):
        super().__init__()
        self.qpos_sl, self.qvel_sl = self.body_slices("box")

    def reset_world(self, world, params, rng):
        hx, hy, hz, mass = params
        world.set_size("box", (hx, hy, hz))
        world.set_mass("box", mass)
        world.set_pose("box", [rng.uniform(*BOX_X), rng.uniform(*BOX_Y), hz])
        return np.zeros(0)

    def box_pos(self, s: StateBatch) -> np.ndarray:
        return s.qpos[:, self.qpos_sl][:, :3]

    def privileged(self, s):
        pose = s.qpos[:, self.qpos_sl]
        vel = s.qvel[:, self.qvel_sl]
        return np.concatenate([pose[:, :3], pose[:, 3:], vel[:, :3], vel[:, 3:], pose[:, :3] - s.ee_pos,
                               s.params], axis=1)

    def _grasped(self, s: StateBatch, box: np.ndarray) -> np.ndarray:
        """Box between the fingers, fingers closed onto it (geometric test; no contact query)."""
        rel = box - s.ee_pos
        width = s.finger.sum(axis=1)                      # finger gap in metres
        between = (np.abs(rel[:, 0]) < s.params[:, 0] + 0.005) & (np.abs(rel[:, 1]) < 0.02) \
            & (np.abs(rel[:, 2]) < s.params[:, 2] + 0.01)
        closed_on = width < 2 * s.params[:, 1] + 0.006
        return between & closed_on

    def reward_terms(self, s):
        box = self.box_pos(s)
        d = np.linalg.norm(box - s.ee_pos, axis=1)
        height = box[:, 2] - s.params[:, 2]
        grasped = self._grasped(s, box)
        # "lift" is the height still missing (a cost); "grasp" a small bonus that stays below it.
        return {"reach": np.tanh(d / 0.2), "grasp": grasped.astype(np.float64),
                "lift": 1.0 - np.clip(height / LIFT_HEIGHT, 0.0, 1.0),
                "success": (height > LIFT_HEIGHT).astype(np.float64)}

    def success(self, s):
        return self.box_pos(s)[:, 2] - s.params[:, 2] > LIFT_HEIGHT

    def scripted_action(self, s, phase):
        """Hover above (0), descend open (1), close (2..), lift (when closed)."""
        box = self.box_pos(s)
        a = np.zeros((len(box), 4))
        phase = phase.copy()
        xy_err = np.linalg.norm(box[:, :2] - s.ee_pos[:, :2], axis=1)
        grasp_z = box[:, 2] + np.maximum(0.0, s.params[:, 2] - 0.02)
        phase[(phase == 0) & (xy_err < 0.008)] = 1
        phase[(phase == 1) & (s.ee_pos[:, 2] < grasp_z + 0.008)] = 2
        closing = phase >= 2
        phase[closing] += 1
        tgt = np.where(phase[:, None] <= 1, np.c_[box[:, :2], np.where(phase == 0, box[:, 2] + 0.1, grasp_z)],
                       np.c_[box[:, :2], grasp_z])
        lifting = phase >= 8
        tgt[lifting, :2] = s.ee_pos[lifting, :2]
        tgt[lifting, 2] = 0.25
        a[:, :3] = toward(tgt - s.ee_pos)
        a[:, 3] = np.where(closing, -1.0, 1.0)
        return a, phase
