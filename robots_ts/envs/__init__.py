"""Tasks, the batched env and Gymnasium registration (ids ``robots_ts/<Task>-v0``)."""
from __future__ import annotations

import gymnasium as gym

from robots_ts.envs.tasks import TASKS

OBS_GROUPS = ("proprio", "privileged", "depth", "points")


def _register() -> None:
    for name in TASKS:
        env_id = f"robots_ts/{name}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="robots_ts.envs.gym_env:RobotsTsEnv",
                         kwargs={"task": name}, max_episode_steps=None)


_register()


def make_vec_env(cfg, seed: int = 0, sampler=None):
    """The batched SB3 VecEnv for an :class:`robots_ts.config.EnvConfig`."""
    from robots_ts.envs.vec_env import BatchedEnv

    return BatchedEnv(cfg, seed=seed, sampler=sampler)


__all__ = ["TASKS", "OBS_GROUPS", "make_vec_env"]
