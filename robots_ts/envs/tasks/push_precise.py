"""PushPrecise: Push with a 1 cm goal tolerance, the precision task residual refinement targets.

Push's success (the cube's centre within 5 cm of the goal) is coarse enough for imitation; here the
cube must come to rest within 1 cm of the goal, where millimetre-scale errors decide. "At rest"
(planar speed under 3 cm/s) keeps a cube flung across the goal from counting, as it would with
episodes ending on success. Same cube, parameters, privileged state and command as Push, so a Push
teacher reads this task's observations unchanged and can be fine-tuned on it
(``robots-ts train-teacher configs/teacher/push_precise.yaml init=PUSH_RUN``).
"""
from __future__ import annotations

import numpy as np

from robots_ts.envs.tasks.base import toward
from robots_ts.envs.tasks.push import Push, push_bodies

GOAL_TOLERANCE = 0.01   # m, the cube centre's distance to the goal in the plane
REST_SPEED = 0.03       # m/s, the cube's planar speed below which it counts as placed
# The scripted push near the goal: the hand's step is FINE_GAIN of the cube's remaining distance,
# within [FINE_MIN_STEP, FINE_MAX_STEP] m (below the minimum the servo's force does not overcome the
# cube's friction), and it stops at FINE_STOP.
FINE_GAIN, FINE_MIN_STEP, FINE_MAX_STEP, FINE_STOP = 0.3, 0.004, 0.01, 0.005


class PushPrecise(Push):
    name = "PushPrecise"
    episode_steps = 150      # the scripted controller's slow final push takes 75-115 steps
    goal_radius = GOAL_TOLERANCE
    bodies = push_bodies(GOAL_TOLERANCE)
    # Push's terms, plus a cost that is steep within a few centimetres of the goal: Push's own
    # tanh(d / 0.1) barely changes between 1 and 2 cm, where this task is decided.
    reward_scales = {**Push.reward_scales, "precise": -1.0}

    def reward_terms(self, s):
        terms = super().reward_terms(s)
        terms["precise"] = np.tanh(self.goal_distance(s) / GOAL_TOLERANCE)
        return terms

    def success(self, s):
        speed = np.linalg.norm(s.qvel[:, self.qvel_sl][:, :2], axis=1)
        return (self.goal_distance(s) < GOAL_TOLERANCE) & (speed < REST_SPEED)

    def scripted_action(self, s, phase):
        """Push's approach, then a push that closes the loop on the cube: in contact the hand moves
        as the cube should, along the cube's remaining error to the goal, by a share of it, so the
        cube slows down near the goal and stops where the hand does."""
        a, phase = super().scripted_action(s, phase)
        p2 = phase == 2
        err = (s.command - self.cube_pos(s))[p2, :2]
        dist = np.linalg.norm(err, axis=1)
        step = np.clip(FINE_GAIN * dist, FINE_MIN_STEP, FINE_MAX_STEP)
        step[dist < FINE_STOP] = 0.0
        a[p2, :2] = toward(err * (step / np.maximum(dist, 1e-9))[:, None])
        return a, phase
