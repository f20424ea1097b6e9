"""The batched training env: N worlds in one Stable-Baselines3 ``VecEnv`` with auto-reset.

Finished worlds are reset inside ``step_wait``; their last observation is in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` marks time-outs, as SB3
expects. At each episode end ``infos[i]`` also carries ``is_success``, ``episode`` (return ``r``,
length ``l``), the episode's summed reward terms ``episode_terms`` and its task ``params``; the
per-step reward terms are in ``infos[i]["reward_terms"]``.

A world whose physics diverged ends its episode at once with ``infos[i]["diverged"] = True``: not a
success and not a time-out (no value bootstrap from MuJoCo's reset state), counted in
``diverged_episodes``.
"""
from __future__ import annotations

import time

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from robots_ts.config import EnvConfig
from robots_ts.envs.world import WorldBatch


class BatchedEnv(VecEnv):
    render_mode = None

    def __init__(self, cfg: EnvConfig, seed: int = 0, sampler=None):
        self.world = WorldBatch(cfg, seed=seed, sampler=sampler)
        super().__init__(cfg.num_envs, self.world.observation_space, self.world.action_space)
        self.cfg = cfg
        self.task_name = cfg.task
        self.param_space = self.world.param_space
        self._actions = None
        n = cfg.num_envs
        self._ep_return = np.zeros(n)
        self._ep_success = np.zeros(n, dtype=bool)
        self._ep_terms: dict[str, np.ndarray] = {}
        self._t0 = time.time()
        self._needs_reset = True
        self.diverged_episodes = 0

    @property
    def sampler(self):
        return self.world.sampler

    @sampler.setter
    def sampler(self, value) -> None:
        self.world.sampler = value

    def reset(self):
        if any(s is not None for s in self._seeds):
            self.world.seed(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        self.world.reset_worlds(range(self.num_envs))
        self._ep_return[:] = 0.0
        self._ep_success[:] = False
        self._ep_terms = {}
        self._needs_reset = False
        return self.world.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, dones, infos = self.advance()
        self.start_episodes(np.flatnonzero(dones), obs)
        return obs, reward, dones, infos

    def advance(self):
        """The step without the auto-reset: observations, rewards, dones and infos (episode results
        reported to the samplers) as ``step_wait`` returns them, but the finished worlds still hold
        their last state until :meth:`start_episodes`. Distributed rollouts
        (:mod:`robots_ts.scale`) split the two so the driver can choose the next episodes' parameters."""
        if self._needs_reset:
            raise RuntimeError("BatchedEnv.step called before reset()")
        w = self.world
        reward, terms, success, truncated = w.step(self._actions)
        self._ep_return += reward
        self._ep_success |= success
        for k, v in terms.items():
            self._ep_terms[k] = self._ep_terms.get(k, 0.0) + v
        terminated = success if self.cfg.terminate_on_success else np.zeros_like(success)
        diverged = w.diverged.copy()
        dones = terminated | truncated | diverged
        self.diverged_episodes += int(diverged.sum())
        obs = w.observe()
        infos = [{"reward_terms": {k: float(v[i]) for k, v in terms.items()}} for i in range(self.num_envs)]
        done_ids = np.flatnonzero(dones)
        if len(done_ids):
            terminal = w.observe(done_ids)
            for j, i in enumerate(done_ids):
                info = infos[i]
                info["terminal_observation"] = {k: v[j] for k, v in terminal.items()}
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i] and not diverged[i])
                info["diverged"] = bool(diverged[i])
                info["is_success"] = bool(self._ep_success[i])
                info["episode"] = {"r": float(self._ep_return[i]), "l": int(w.t[i]),
                                   "t": round(time.time() - self._t0, 6)}
                info["episode_terms"] = {k: float(v[i]) for k, v in self._ep_terms.items()}
                info["params"] = w.state.params[i].copy()
                if w.sampler is not None and hasattr(w.sampler, "update"):
                    score = float(self._ep_success[i]) if self.cfg.curriculum.reward == "success" \
                        else float(self._ep_return[i])
                    w.sampler.update(w.state.params[i].copy(), score)
                if w.adr_sampler is not None:
                    info["randomization"] = dict(zip(w.adr_dims, w.adr_params[i].tolist()))
                    score = float(self._ep_success[i]) if self.cfg.randomization.adr.reward == "success" \
                        else float(self._ep_return[i])
                    w.adr_sampler.update(w.adr_params[i].copy(), score)
        return obs, reward.astype(np.float32), dones, infos

    def start_episodes(self, ids, obs: dict[str, np.ndarray]) -> None:
        """Start new episodes in worlds ``ids`` and write their first observations into ``obs``."""
        if not len(ids):
            return
        w = self.world
        w.reset_worlds(ids)
        fresh = w.observe(ids)
        for k in obs:
            obs[k][ids] = fresh[k]
        self._ep_return[ids] = 0.0
        self._ep_success[ids] = False
        for v in self._ep_terms.values():
            v[ids] = 0.0

    def close(self) -> None:
        self.world.close()

    # SB3 VecEnv plumbing: attributes live on the batch, not on N sub-envs.
    def _indices(self, indices):
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name, indices=None):
        target = self.world if hasattr(self.world, attr_name) else self
        return [getattr(target, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self.world, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        fn = getattr(self.world, method_name)
        return [fn(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False for _ in self._indices(indices)]

    def get_images(self):
        from robots_ts.envs.video import render_rgb

        return [render_rgb(self.world, i) for i in range(self.num_envs)]
