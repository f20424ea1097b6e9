"""Push: push a cube into a goal disc on the table.

Parameters: cube half-size, friction, mass and the goal's distance from the cube. The cube's
pose and velocity, friction and mass are privileged; the goal position is the command that
teacher and student both receive.
"""
from __future__ import annotations

import numpy as np

from robots_ts.envs.params import ParamSpace
from robots_ts.envs.tasks.base import Body, Shape, StateBatch, Task, box, toward

GOAL_RADIUS = 0.05
CUBE_X = (0.42, 0.58)
CUBE_Y = (-0.15, 0.15)
PUSH_HOVER = 0.08  # m above the spot behind the cube, while the hand is not yet lined up


def push_bodies(goal_radius: float) -> tuple[Body, ...]:
    """The cube, and the goal disc drawn at the success radius."""
    return (Body("cube", (box("cube", [0.025] * 3, (0.2, 0.6, 0.9, 1)),), free=True, mass=0.2,
                 friction=(0.6, 0.005, 0.0001), pos=(0.5, 0.0, 0.025)),
            # The goal disc is a command, not an object: hidden from the depth camera.
            Body("goal", (Shape("goal", "cylinder", (goal_radius, 0.001), (0.2, 0.9, 0.3, 0.5), depth=False),),
                 pos=(0.6, 0.0, 0.001)))


class Push(Task):
    name = "Push"
    params = ParamSpace(("half_size", "friction", "mass", "goal_distance"),
                        np.array([0.02, 0.3, 0.05, 0.08]), np.array([0.03, 1.0, 0.5, 0.2]))
    episode_steps = 120
    command_names = ("goal_x", "goal_y", "goal_z")
    privileged_dim = 3 + 4 + 3 + 3 + 3 + 3 + 3
    reward_scales = {"reach": -1.0, "push": -2.0, "progress": 4.0, "success": 10.0, "action_rate": -0.005}
    goal_radius = GOAL_RADIUS   # success: the cube's centre within this distance of the goal (in the plane)
    bodies = push_bodies(GOAL_RADIUS)

    def __init__(self):
        super().__init__()
        self.qpos_sl, self.qvel_sl = self.body_slices("cube")

    def reset_world(self, world, params, rng):
        half, friction, mass, goal_dist = params
        world.set_size("cube", np.full(3, half))
        world.set_mass("cube", mass)
        world.set_friction("cube", friction)
        cube = np.array([rng.uniform(*CUBE_X), rng.uniform(*CUBE_Y)])
        # Goal in a direction the arm can push toward: away from the base or sideways.
        for _ in range(100):
            ang = rng.uniform(-np.pi, np.pi)
            goal = cube + goal_dist * np.array([np.cos(ang), np.sin(ang)])
            if 0.35 <= goal[0] <= 0.72 and abs(goal[1]) <= 0.3:
                break
        world.set_pose("cube", [cube[0], cube[1], half])
        world.set_pose("goal", [goal[0], goal[1], 0.001])
        return np.array([goal[0], goal[1], 0.0])

    def cube_pos(self, s: StateBatch) -> np.ndarray:
        return s.qpos[:, self.qpos_sl][:, :3]

    def privileged(self, s):
        pose = s.qpos[:, self.qpos_sl]
        vel = s.qvel[:, self.qvel_sl]
        p = s.params
        return np.concatenate([pose[:, :3], pose[:, 3:], vel[:, :3], vel[:, 3:], pose[:, :3] - s.ee_pos,
                               s.command - pose[:, :3], p[:, [0, 1, 2]]], axis=1)

    def reward_terms(self, s):
        cube = self.cube_pos(s)
        to_goal = (s.command - cube)[:, :2]
        goal_d = np.linalg.norm(to_goal, axis=1)
        u = to_goal / np.maximum(goal_d, 1e-6)[:, None]
        # The hand should sit behind the cube, on the side away from the goal. Far from that spot
        # (in the plane) the target hovers above it, and it descends as the hand lines up, so the
        # shortest way to the target goes around the cube rather than through it.
        behind = cube.copy()
        behind[:, :2] -= u * (s.params[:, :1] + 0.02)
        xy_err = np.linalg.norm(behind[:, :2] - s.ee_pos[:, :2], axis=1)
        behind[:, 2] += PUSH_HOVER * np.clip(xy_err / 0.05, 0.0, 1.0)
        reach_d = np.linalg.norm(behind - s.ee_pos, axis=1)
        # Progress: the cube's speed toward the goal (m/s), capped so flinging it does not pay.
        speed = np.einsum("ij,ij->i", s.qvel[:, self.qvel_sl][:, :2], u)
        return {"reach": np.tanh(reach_d / 0.2), "push": np.tanh(goal_d / 0.1),
                "progress": np.clip(speed, -0.25, 0.25),
                "success": self.success(s).astype(np.float64)}

    def goal_distance(self, s: StateBatch) -> np.ndarray:
        """(N,) the cube centre's distance to the goal in the plane."""
        return np.linalg.norm((s.command - self.cube_pos(s))[:, :2], axis=1)

    def success(self, s):
        return self.goal_distance(s) < self.goal_radius

    def scripted_action(self, s, phase):
        """Go behind the cube (phase 0), lower (1), push through the goal (2)."""
        cube = self.cube_pos(s)
        half = s.params[:, 0]
        d = (s.command - cube)[:, :2]
        u = d / np.maximum(np.linalg.norm(d, axis=1), 1e-6)[:, None]
        behind = cube[:, :2] - u * (half[:, None] + 0.035)
        a = np.zeros((len(cube), 4))
        a[:, 3] = -1.0
        phase = phase.copy()
        xy_err = np.linalg.norm(behind - s.ee_pos[:, :2], axis=1)
        phase[(phase == 0) & (xy_err < 0.01)] = 1
        phase[(phase == 1) & (s.ee_pos[:, 2] < half + 0.02)] = 2
        # Fell off the line behind the cube: start over from above.
        lateral = np.abs(np.cross(np.c_[u, np.zeros(len(u))], np.c_[cube[:, :2] - s.ee_pos[:, :2], np.zeros(len(u))])[:, 2])
        phase[(phase == 2) & (lateral > 0.025)] = 0
        hover = 0.1
        tgt = np.zeros((len(cube), 3))
        p0, p1, p2 = phase == 0, phase == 1, phase == 2
        tgt[p0, :2], tgt[p0, 2] = behind[p0], np.maximum(hover, s.ee_pos[p0, 2])
        tgt[p0 & (xy_err < 0.03), 2] = hover
        tgt[p1, :2], tgt[p1, 2] = behind[p1], half[p1] * 0.8
        tgt[p2, :2] = s.command[p2, :2] - u[p2] * (half[p2, None] + 0.01)
        tgt[p2, 2] = half[p2] * 0.8
        a[:, :3] = toward(tgt - s.ee_pos)
        return a, phase
