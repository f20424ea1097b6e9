"""The residual's env: the batched env with a frozen base policy acting inside it.

Each step the base acts (under no-grad) on its observation groups; the residual sees those groups
plus the base's action (key ``base_action``) and its output ``r`` is executed as
``clip(a_base + alpha * clip(r, -1, 1), -1, 1)`` with per-dimension ``alpha``. The base's recurrent
memory is cleared for worlds whose episode ended. A terminal observation (for the value bootstrap
of time-outs) carries the base action the base would have taken there, computed from the memory the
ending episode had, which is then restored.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnvWrapper

BASE_ACTION = "base_action"


def combine(a_base: np.ndarray, r: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The executed action: base plus the scaled, clipped residual, within the action bounds."""
    return np.clip(a_base + alpha * np.clip(r, -1.0, 1.0), -1.0, 1.0).astype(np.float32)


def alpha_vector(alpha, action_dim: int) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float32).reshape(-1)
    if a.size == 1:
        a = np.full(action_dim, a[0], dtype=np.float32)
    if a.shape != (action_dim,) or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alpha: expected one number >= 0 or {action_dim} (one per action dimension), "
                         f"got {np.asarray(alpha).tolist()}")
    return a


class ResidualVecEnv(VecEnvWrapper):
    """``venv`` (a BatchedEnv producing the base's groups, and ``privileged`` for an asymmetric
    critic) with ``base`` acting inside; actions are residuals in [-1, 1]."""

    def __init__(self, venv, base, alpha):
        self.base = base
        self.groups = tuple(venv.observation_space.spaces)
        missing = [g for g in base.obs_groups if g not in self.groups]
        if missing:
            raise ValueError(f"residual env: the base reads groups {missing} the env does not produce "
                             f"(it produces {list(self.groups)})")
        adim = venv.action_space.shape[0]
        self.alpha = alpha_vector(alpha, adim)
        obs_space = spaces.Dict({**venv.observation_space.spaces,
                                 BASE_ACTION: spaces.Box(-1.0, 1.0, (adim,), np.float32)})
        super().__init__(venv, observation_space=obs_space,
                         action_space=spaces.Box(-1.0, 1.0, (adim,), np.float32))
        self.residual_enabled = True    # False: the base acts alone (critic warm-up)
        self.a_base: np.ndarray | None = None
        self.last_action: np.ndarray | None = None

    def _base_act(self, obs: dict) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(self.base.act({g: obs[g] for g in self.base.obs_groups}), dtype=np.float32)

    def reset(self):
        obs = self.venv.reset()
        self.base.reset(np.ones(self.num_envs, dtype=bool))
        self.a_base = self._base_act(obs)
        return {**obs, BASE_ACTION: self.a_base}

    def step_async(self, actions: np.ndarray) -> None:
        r = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        self.last_action = combine(self.a_base, r, self.alpha) if self.residual_enabled else self.a_base.copy()
        self.venv.step_async(self.last_action)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        done_ids = np.flatnonzero(dones)
        if len(done_ids):
            # The base's action at each terminal observation, from the ending episode's memory.
            term = {g: obs[g].copy() for g in self.base.obs_groups}
            for i in done_ids:
                for g in self.base.obs_groups:
                    term[g][i] = infos[i]["terminal_observation"][g]
            memory = copy.deepcopy(getattr(self.base, "hidden", None))
            a_term = self._base_act(term)
            if hasattr(self.base, "hidden"):
                self.base.hidden = memory
            for i in done_ids:
                infos[i]["terminal_observation"][BASE_ACTION] = a_term[i]
        self.base.reset(dones)
        self.a_base = self._base_act(obs)
        return {**obs, BASE_ACTION: self.a_base}, rewards, dones, infos
