"""Tasks, the batched env and Gymnasium registration (ids ``robots_ts/<Task>-v0``).

Importing this package stays light (no MuJoCo, no torch): :func:`make_batched_env` imports the
simulator when called, and ``TASKS`` (the task registry, :mod:`robots_ts.envs.tasks`) and
``OBS_GROUPS`` (:mod:`robots_ts.envs.world`) load on first access.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from robots_ts.envs.registration import register_envs

if TYPE_CHECKING:
    from robots_ts.config import EnvConfig
    from robots_ts.envs.vec_env import BatchedEnv


def make_batched_env(cfg: "EnvConfig", seed: int = 0, sampler=None, *, num_envs: int | None = None,
                     obs_groups: Sequence[str] | None = None) -> "BatchedEnv":
    """The batched env (an SB3 ``VecEnv`` of ``cfg.num_envs`` worlds) for an env config.

    ``sampler`` draws each episode's task parameters (a curriculum; uniform over the task's bounds
    when None). ``num_envs`` and ``obs_groups`` replace the config's, e.g. an evaluation's world
    count or the union of a teacher's and a student's groups.
    """
    from robots_ts.envs.vec_env import BatchedEnv

    changes = {}
    if num_envs is not None:
        changes["num_envs"] = int(num_envs)
    if obs_groups is not None:
        changes["obs_groups"] = list(obs_groups)
    return BatchedEnv(replace(cfg, **changes), seed=seed, sampler=sampler)


def make_training_env(cfg: "EnvConfig", seed: int = 0, sampler=None):
    """The env training rollouts run on: :func:`make_batched_env`, or with ``cfg.ray_actors = K``
    a :class:`robots_ts.scale.vec_env.RayVecEnv` of the same worlds split over K Ray actors."""
    if cfg.ray_actors:
        from robots_ts.scale.vec_env import RayVecEnv

        return RayVecEnv(cfg, seed=seed, sampler=sampler)
    return make_batched_env(cfg, seed=seed, sampler=sampler)


def __getattr__(name: str):
    if name == "TASKS":
        from robots_ts.envs.tasks import TASKS

        return TASKS
    if name == "OBS_GROUPS":
        from robots_ts.envs.world import OBS_GROUPS

        return OBS_GROUPS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TASKS", "OBS_GROUPS", "make_batched_env", "make_training_env", "register_envs"]
