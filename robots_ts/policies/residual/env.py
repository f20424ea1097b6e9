"""The refinement env: the batched env with a frozen base policy acting inside it.

Each step the base acts (under no-grad) on its observation groups, depth read as the students read
it (:func:`depth_reading`); the refined policy sees those groups plus the base's action (key
``base_action``). In ``residual`` mode its output ``r`` is
executed as ``clip(a_base + alpha * clip(r, -1, 1), -1, 1)`` with per-dimension ``alpha``; in
``finetune`` mode its output is the whole action, ``clip(r, -1, 1)``. The base's recurrent memory is
cleared for worlds whose episode ended. A terminal observation (for the value bootstrap of
time-outs) carries the base action the base would have taken there, computed from the memory the
ending episode had, which is then restored.

Which worlds the refined policy acts in: none while ``residual_enabled`` is off (the critic
warm-up), otherwise the worlds whose current episode drew "on" from the share schedule
(:class:`ShareSchedule`); the rest execute the base's action exactly. ``infos[i]["residual"]``
says, for every step, whether world ``i``'s action was the refined one.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnvWrapper

BASE_ACTION = "base_action"
RESIDUAL_INFO = "residual"


def combine(a_base: np.ndarray, r: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The executed action: base plus the scaled, clipped residual, within the action bounds."""
    return np.clip(a_base + alpha * np.clip(r, -1.0, 1.0), -1.0, 1.0).astype(np.float32)


def depth_reading(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Depth as the students read it (robots_ts.policies.students.networks.Student.encode): no
    return (NaN, inf, 0 or less, as a real or randomized sensor reports it) is far, and every value
    is within [near, far]. The refined policy reads depth this way in training, evaluation and
    export alike, so a NaN from a 32FC1 driver never reaches its network."""
    far32 = np.float32(far)
    d = np.nan_to_num(np.asarray(depth, np.float32), nan=far32, posinf=far32, neginf=far32)
    return np.clip(np.where(d <= 0, far32, d), np.float32(near), far32)


def alpha_vector(alpha, action_dim: int) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float32).reshape(-1)
    if a.size == 1:
        a = np.full(action_dim, a[0], dtype=np.float32)
    if a.shape != (action_dim,) or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alpha: expected one number >= 0 or {action_dim} (one per action dimension), "
                         f"got {np.asarray(alpha).tolist()}")
    return a


class ShareSchedule:
    """The share of episodes the refined policy acts in: ``start`` at the end of the warm-up, growing
    linearly to ``end`` over ``steps`` env steps (``steps`` 0: ``end`` from the start)."""

    def __init__(self, share=(1.0, 1.0, 0), warmup_steps: int = 0):
        s = [float(v) for v in np.asarray(share, dtype=np.float64).reshape(-1)]
        if len(s) != 3 or not all(np.isfinite(s)) or not (0 <= s[0] <= 1 and 0 <= s[1] <= 1) \
                or s[2] < 0 or s[2] != int(s[2]):
            raise ValueError(f"share: expected [start, end, steps] with start and end in [0, 1] and steps an "
                             f"integer >= 0, got {list(np.asarray(share).reshape(-1))}")
        self.start, self.end, self.steps = s[0], s[1], int(s[2])
        self.warmup_steps = int(warmup_steps)

    def __call__(self, num_timesteps: int) -> float:
        t = max(0, int(num_timesteps) - self.warmup_steps)
        if self.steps == 0 or t >= self.steps:
            return self.end
        return self.start + (self.end - self.start) * t / self.steps


class ResidualVecEnv(VecEnvWrapper):
    """``venv`` (a BatchedEnv producing the base's groups, and ``privileged`` for an asymmetric
    critic) with ``base`` acting inside; actions are residuals (or, in ``finetune`` mode, whole
    actions) in [-1, 1]. ``depth_range``: the env's depth (near, far), for :func:`depth_reading`."""

    def __init__(self, venv, base, alpha, depth_range: tuple[float, float], mode: str = "residual",
                 share: ShareSchedule | None = None, seed: int = 0):
        if mode not in ("residual", "finetune"):
            raise ValueError(f"mode: expected 'residual' or 'finetune', got {mode!r}")
        self.base, self.mode, self.depth_range = base, mode, depth_range
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
        self.residual_enabled = True    # False: the base acts alone everywhere (critic warm-up)
        self.share = share or ShareSchedule()
        self.num_timesteps = 0          # env steps of the run so far (the share schedule's clock)
        self.share_rng = np.random.default_rng([int(seed), 0x5A3E])
        self.episode_on = np.ones(self.num_envs, dtype=bool)   # this episode drew "refined acts"
        self.acted = np.zeros(self.num_envs, dtype=bool)       # the last step's refined worlds
        self.just_reset = False
        self.a_base: np.ndarray | None = None
        self.last_action: np.ndarray | None = None

    def _read(self, obs: dict) -> dict:
        if "depth" in obs:
            obs["depth"] = depth_reading(obs["depth"], *self.depth_range)
        return obs

    def _base_act(self, obs: dict) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(self.base.act({g: obs[g] for g in self.base.obs_groups}), dtype=np.float32)

    def _draw(self, ids: np.ndarray) -> None:
        """Each new episode acts refined with the schedule's current probability."""
        self.episode_on[ids] = self.share_rng.random(len(ids)) < self.share(self.num_timesteps)

    def set_clock(self, num_timesteps: int) -> None:
        """Set the schedule's clock (a resumed run's step count); episodes that have not taken a step
        yet draw again at the share of that time."""
        self.num_timesteps = int(num_timesteps)
        if self.just_reset:
            self._draw(np.arange(self.num_envs))

    def acting(self) -> np.ndarray:
        """(N,) bool: the worlds whose next action is the refined policy's."""
        return self.episode_on & self.residual_enabled

    def reset(self):
        obs = self._read(self.venv.reset())
        self.base.reset(np.ones(self.num_envs, dtype=bool))
        self._draw(np.arange(self.num_envs))
        self.just_reset = True
        self.a_base = self._base_act(obs)
        return {**obs, BASE_ACTION: self.a_base}

    def step_async(self, actions: np.ndarray) -> None:
        r = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        refined = combine(self.a_base, r, self.alpha) if self.mode == "residual" else np.clip(r, -1.0, 1.0)
        self.acted = self.acting()
        self.last_action = np.where(self.acted[:, None], refined, self.a_base).astype(np.float32)
        self.venv.step_async(self.last_action)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        obs = self._read(obs)
        self.num_timesteps += self.num_envs
        self.just_reset = False
        for i, info in enumerate(infos):
            info[RESIDUAL_INFO] = bool(self.acted[i])
        done_ids = np.flatnonzero(dones)
        if len(done_ids):
            # The base's action at each terminal observation, from the ending episode's memory.
            term = {g: obs[g].copy() for g in self.base.obs_groups}
            for i in done_ids:
                self._read(infos[i]["terminal_observation"])
                for g in self.base.obs_groups:
                    term[g][i] = infos[i]["terminal_observation"][g]
            memory = copy.deepcopy(getattr(self.base, "hidden", None))
            a_term = self._base_act(term)
            if hasattr(self.base, "hidden"):
                self.base.hidden = memory
            for i in done_ids:
                infos[i]["terminal_observation"][BASE_ACTION] = a_term[i]
            self._draw(done_ids)
        self.base.reset(dones)
        self.a_base = self._base_act(obs)
        return {**obs, BASE_ACTION: self.a_base}, rewards, dones, infos
