"""Policies: PPO teachers, distilled students, and the common interface every run exposes.

Every policy loaded from a run directory follows one small protocol (:class:`Policy`): it names
the observation groups it reads and the env config it was trained on, maps a dict of batched
observations to (N, A) actions in [-1, 1], and is told which worlds started a new episode
(recurrent students clear their memory there).

Subpackages: ``teacher`` (PPO training, config, loading), ``students`` (networks, checkpoints,
config), ``distill`` (DAgger / BC, the on-disk dataset, training); ``scripted`` is the task's
oracle as a Policy and ``load`` picks the loader for any run directory.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from robots_ts.config import EnvConfig


class Policy(Protocol):
    obs_groups: tuple[str, ...]
    env_cfg: EnvConfig

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Deterministic actions (N, A) for batched observations."""

    def reset(self, done: np.ndarray) -> None:
        """Worlds whose flag is set start a new episode."""
