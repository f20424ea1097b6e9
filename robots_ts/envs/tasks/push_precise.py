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
# The controller's phase is read off the state (see PushPrecise.state_phase): the hand lowers once
# it is within LOWER_XY of the spot behind the cube, and pushes while it is low and on the line
# behind the cube, within PUSH_LATERAL of it and at most PUSH_BEHIND behind the cube's rear face.
LOWER_XY, PUSH_LATERAL, PUSH_BEHIND = 0.015, 0.025, 0.08
# Away from the spot behind the cube the hand's target is APPROACH_HOVER above the cube's centre
# height, and it comes down linearly within APPROACH_DESCENT of that spot.
APPROACH_HOVER, APPROACH_DESCENT = 0.1, 0.05
# The approach moves the hand by APPROACH_GAIN of its remaining error per step (at most the 3 cm a
# full action moves it): a command proportional to the error within 6 cm of the target, not one
# saturated down to 3 cm, whose direction a centimetre of the student's error about the cube flips.
# (0.3 leaves too little of the episode for the push: 0.61 placed, against 0.80 at 0.5.)
APPROACH_GAIN = 0.5


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

    def state_phase(self, s) -> np.ndarray:
        """(N,) where the controller is, read off the state: 2 (push) when the hand is low and
        lined up behind the cube, 1 (lowering) when it is above the spot behind the cube, else 0
        (approach)."""
        return self._phase(self._geometry(s))

    @staticmethod
    def _phase(g: dict) -> np.ndarray:
        return np.where(g["push"], 2, np.where(g["xy_err"] < LOWER_XY, 1, 0)).astype(np.int64)

    def _geometry(self, s) -> dict:
        cube = self.cube_pos(s)
        half = s.params[:, 0]
        d = (s.command - cube)[:, :2]
        dist = np.linalg.norm(d, axis=1)
        u = d / np.maximum(dist, 1e-6)[:, None]
        rel = cube[:, :2] - s.ee_pos[:, :2]
        along = np.einsum("ij,ij->i", rel, u)
        lateral = np.abs(rel[:, 0] * u[:, 1] - rel[:, 1] * u[:, 0])
        behind = cube[:, :2] - u * (half[:, None] + 0.035)
        lined_up = (lateral < PUSH_LATERAL) & (along > 0) & (along < half + PUSH_BEHIND)
        low = s.ee_pos[:, 2] < half + 0.02
        return {"half": half, "err": d, "dist": dist, "behind": behind, "push": lined_up & low,
                "xy_err": np.linalg.norm(behind - s.ee_pos[:, :2], axis=1)}

    def scripted_action(self, s, phase):
        """Go to the spot behind the cube, descending as the hand lines up with it, then push along
        the cube's remaining error to the goal, by a share of it, so the cube slows down near the
        goal and stops where the hand does.

        The action is a function of the state alone (the ``phase`` passed in is ignored), and away
        from the start of the push a continuous one: the target's height above the cube rises with
        the hand's distance from the spot behind it, so the hand comes down over that spot and
        passes over the cube from any side. Push's controller instead carries a phase from step to
        step, so the same state can get different actions, and its target jumps between hovering
        and lowering 1 cm from that spot. A student sees the state, not a controller's memory, at
        a pixel per 1.2 cm: depth students distilled from this controller agree with it more than
        those distilled from Push's approach did (agreement on their own states 0.85 against 0.79
        after 12 DAgger iterations, action MSE 0.19 against 0.33).
        """
        g = self._geometry(s)
        half, push = g["half"], g["push"]
        tgt = np.empty((len(half), 3))
        tgt[:, :2] = g["behind"]
        tgt[:, 2] = 0.8 * half + APPROACH_HOVER * np.clip(g["xy_err"] / APPROACH_DESCENT, 0.0, 1.0)
        a = np.zeros((len(half), 4))
        a[:, :3] = toward(APPROACH_GAIN * (tgt - s.ee_pos))
        a[:, 3] = -1.0
        # The push: the hand moves as the cube should, along its error to the goal, at cube height.
        err, dist = g["err"][push], g["dist"][push]
        step = np.clip(FINE_GAIN * dist, FINE_MIN_STEP, FINE_MAX_STEP)
        step[dist < FINE_STOP] = 0.0
        a[push, :2] = toward(err * (step / np.maximum(dist, 1e-9))[:, None])
        a[push, 2] = toward(0.8 * half[push] - s.ee_pos[push, 2])
        return a, self._phase(g)
