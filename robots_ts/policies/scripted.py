"""The task's privileged scripted controller as a :class:`~robots_ts.policies.Policy`.

It reads simulator state straight from the batched env's world (it is an oracle, not a learned
policy): tests use it as a known-good teacher, and it shows each task is solvable.
"""
from __future__ import annotations

import numpy as np

from robots_ts.config import EnvConfig


class ScriptedTeacher:
    obs_groups = ("proprio", "privileged")

    def __init__(self, world=None):
        self.world = None
        self.env_cfg: EnvConfig | None = None
        if world is not None:
            self.bind(world)

    def bind(self, world) -> None:
        """Read state from ``world`` (rollout helpers call this on the env they build)."""
        if world.cfg.control != "ee":
            raise ValueError("the scripted controllers drive 'ee' control")
        self.world = world
        self.env_cfg = world.cfg
        self.phase = np.zeros(world.num_envs, dtype=np.int64)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        actions, self.phase = self.world.task.scripted_action(self.world.state, self.phase)
        return actions.astype(np.float32)

    def reset(self, done: np.ndarray) -> None:
        self.phase[np.asarray(done, dtype=bool)] = 0
