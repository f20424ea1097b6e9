"""``RayVecEnv``: an SB3 ``VecEnv`` whose worlds step in K Ray actors (``env.ray_actors=K``).

It behaves as :class:`~robots_ts.envs.vec_env.BatchedEnv` of the same config and seed: the same
observation spaces, auto-reset and infos, the same observations and episodes whatever K is. The
actors hold contiguous shares of the worlds, each world seeded with the generators the whole batch
would give it (:func:`robots_ts.scale.shard.share_generators`).

With ``env.ray_split=speed`` the shares are not even: each actor first steps its share for a
moment and the worlds are dealt again in proportion to the measured speeds
(:meth:`~robots_ts.scale.pool.ShardPool.balance`), so an actor on a slower core or node holds
fewer worlds and a synchronous step waits less for it. Which actor holds a world changes no
episode.

The samplers live here, in the driver. Without a curriculum or ADR a step is one call per actor,
and the actors start their finished worlds' next episodes themselves. With one, a step has two
phases: the actors step and report their finished episodes; the driver tells its samplers every
result and draws every new episode's values, in BatchedEnv's order; the actors with finished
worlds start those episodes. The curriculum thus sees all worlds, as in one process.

An actor that dies is restarted by Ray. Its worlds' episodes end at that step as time-outs (the
observation before the step is their terminal observation, so PPO bootstraps their value), no
episode result is reported for them, and they start new episodes from generators derived from the
run's seed and the incident's number, so a restart never replays the run's first episodes.
"""
from __future__ import annotations

import pickle
from typing import Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from robots_ts.config import EnvConfig
from robots_ts.scale.pool import DriverSamplers, ShardLost, ShardPool, rows_of
from robots_ts.scale.shard import GENERATORS, generator, rng_state


class DriverWorld:
    """What robots_ts reads of ``env.world`` in the driver of a distributed batch: the config, the
    ADR sampler and its dimensions, reseeding, and the world generators (fetched from the actors;
    states set on them are sent back at the next reset, as a checkpoint restore needs)."""

    def __init__(self, env: "RayVecEnv", cfg: EnvConfig, seed, adr_dims: tuple[str, ...]):
        self._env, self.cfg = env, cfg
        self.num_envs = cfg.num_envs
        self.adr_dims = adr_dims
        self.adr_sampler = None
        if adr_dims:
            from robots_ts.sim2real.randomization.adr import make_adr_sampler

            self.adr_sampler = make_adr_sampler(cfg.randomization.adr, seed)
        self._mirror: dict | None = None      # generators handed out, and the states they were fetched at
        self._fetched: list | None = None

    def __getattr__(self, name: str):
        raise AttributeError(f"env.world.{name}: the worlds of a RayVecEnv live in Ray actors; only cfg, "
                             "adr_sampler, adr_dims, seed() and the generators are in the driver")

    @property
    def adr_params(self) -> np.ndarray:
        return self._env.samplers.adr_params

    def seed(self, seed) -> None:
        """Reseed every world as ``WorldBatch.seed`` would (the ADR sampler keeps learning)."""
        pool = self._env.pool
        entropy = seed if seed is not None else int(np.random.SeedSequence().entropy)
        pool.call_all("seed", entropy)
        self._mirror = self._fetched = None

    # Generators: fetched on first read; a read after a local change returns the changed ones.
    def _generators(self) -> dict:
        if self._mirror is None or not self._changed():
            states = self._env.pool.call_all("rng_states")
            self._fetched = {k: [s for st in states for s in st[k]] for k in GENERATORS}
            self._mirror = {k: [generator(s) for s in v] for k, v in self._fetched.items()}
        return self._mirror

    def _changed(self) -> bool:
        m, old = self._mirror, self._fetched
        if m is None:
            return False
        return any(rng_state(g) != s for k in GENERATORS for g, s in zip(m[k], old[k]))

    @property
    def rngs(self) -> list[np.random.Generator]:
        return self._generators()["rngs"]

    @property
    def rand_rngs(self) -> list[np.random.Generator]:
        return self._generators()["rand_rngs"]

    @property
    def cloud_rngs(self) -> list[np.random.Generator]:
        return self._generators()["cloud_rngs"]

    @property
    def noise_rngs(self) -> list[np.random.Generator]:
        return self._generators()["noise_rngs"]

    def push_generators(self) -> None:
        """Send generator states changed in the driver to the actors."""
        if self._mirror is None or not self._changed():
            return
        pool, m = self._env.pool, self._mirror
        for k, sl in enumerate(pool.slices):
            pool.call_again(k, "set_rng_states", {name: [rng_state(g) for g in m[name][sl]] for name in GENERATORS})
        self._mirror = self._fetched = None

    def close(self) -> None:
        self._env.close()


class RayVecEnv(VecEnv):
    """``cfg.num_envs`` worlds split over ``actors`` (default ``cfg.ray_actors``) Ray actors."""

    render_mode = None

    def __init__(self, cfg: EnvConfig, seed: int | None = 0, sampler=None, *, actors: int | None = None,
                 address: str | None = None, max_restarts: int = 3):
        from robots_ts.envs.world import resolve_task

        k = int(cfg.ray_actors if actors is None else actors)
        self.param_space = resolve_task(cfg.task).params.with_bounds(cfg.params)   # a bad task fails here
        self.pool = ShardPool(cfg, seed, k, task_from_driver=sampler is not None, address=address,
                              max_restarts=max_restarts)
        d = self.pool.described[0]
        self.cfg = cfg
        self.task_name = cfg.task
        self.world = DriverWorld(self, cfg, self.pool.seed, d["adr_dims"])
        self.world.action_dim = d["action_dim"]
        self.samplers = DriverSamplers(cfg, cfg.num_envs, sampler, self.world.adr_sampler, d["adr_dims"])
        self._last_obs: dict[str, np.ndarray] | None = None
        self._refs: list | None = None
        super().__init__(cfg.num_envs, d["observation_space"], d["action_space"])

    # ------------------------------------------------------------------ samplers, counters
    @property
    def sampler(self):
        return self.samplers.sampler

    @sampler.setter
    def sampler(self, value) -> None:
        if (value is None) != (self.samplers.sampler is None):
            self.pool.call_all("use_driver_sampler", value is not None)
        self.samplers.sampler = value

    @property
    def incidents(self) -> list[dict]:
        return self.pool.incidents

    @property
    def actor_restarts(self) -> int:
        return len(self.pool.incidents)

    @property
    def worlds_per_actor(self) -> list[int]:
        return self.pool.worlds_per_actor

    def actor_step_ms(self) -> list[float | None]:
        """Each actor's mean time per step since the last call (:meth:`ShardPool.actor_step_ms`)."""
        return self.pool.actor_step_ms()

    @property
    def balance_record(self) -> dict | None:
        """How the worlds were dealt to the actors by speed (``env.ray_split=speed``); None when even."""
        return self.pool.balance_record

    # ---------------------------------------------------------------------------- VecEnv
    def reset(self):
        if any(s is not None for s in self._seeds):
            self.world.seed(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        self.world.push_generators()
        for k in sorted(self.pool.revived):     # restarted since: built with the sampler mode of the start
            self.pool.call_again(k, "use_driver_sampler", self.samplers.sampler is not None)
        self.pool.revived.clear()
        task, adr = self.samplers.draw(range(self.num_envs)) if self.samplers.active else (None, None)
        parts = []
        for k, sl in enumerate(self.pool.slices):
            parts.append(self.pool.submit(k, "reset", rows_of(task, sl), rows_of(adr, sl)))
        obs = [None] * len(self.pool)
        for k, ref in enumerate(parts):
            try:
                obs[k] = self.pool.get(k, ref)
            except ShardLost as lost:
                self.pool.recover(k, "reset", lost.cause)
                obs[k] = self._revive(k)
        self._last_obs = self._concat(obs)
        return self._last_obs

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions)
        if a.shape[:1] != (self.num_envs,):
            raise ValueError(f"{self.cfg.task}: action has shape {a.shape}, expected ({self.num_envs}, "
                             f"{self.world.action_dim}) ({self.num_envs} worlds)")
        restart = not self.samplers.active
        # An actor restarted since the last step (lost during another call) has no episodes to step.
        self._refs = [None if k in self.pool.revived
                      else self.pool.submit(k, "step_packed", pickle.dumps((a[sl], restart), pickle.HIGHEST_PROTOCOL))
                      for k, sl in enumerate(self.pool.slices)]

    def step_wait(self):
        if self._last_obs is None:
            raise RuntimeError("RayVecEnv.step called before reset()")
        refs, self._refs = self._refs, None
        parts, lost = [None] * len(self.pool), []
        for k, ref in enumerate(refs):
            if ref is None:
                lost.append(k)
                continue
            try:
                parts[k] = pickle.loads(self.pool.get(k, ref))
            except ShardLost as exc:
                self.pool.recover(k, "step", exc.cause)
                lost.append(k)
        for k in lost:      # the share's episodes end here; its worlds start afresh
            parts[k] = self._lost_step(k)
        obs = self._concat([p[0] for p in parts])
        reward = np.concatenate([p[1] for p in parts]).astype(np.float32)
        dones = np.concatenate([p[2] for p in parts])
        infos = [info for p in parts for info in p[3]]
        if self.samplers.active:
            done = np.flatnonzero(dones)
            fresh = np.concatenate([np.arange(*self._span(k)) for k in lost]) if lost else np.zeros(0, np.int64)
            finished = np.setdiff1d(done, fresh)
            self.samplers.report(finished, infos)
            self._start(finished, obs, dones, infos)
        self._last_obs = obs
        return obs, reward, dones, infos

    def _start(self, ids: np.ndarray, obs, dones, infos) -> None:
        """Phase two: new episodes in the finished worlds ``ids`` with the driver's values."""
        if not len(ids):
            return
        task, adr = self.samplers.draw(ids)
        calls = {k: (mine, self.pool.submit(k, "start", mine, t, a))
                 for k, mine, t, a in self.pool.per_shard(ids, task, adr)}
        for k, (mine, ref) in calls.items():
            first = self.pool.shares[k][0]
            try:
                fresh = self.pool.get(k, ref)
                for g in obs:
                    obs[g][mine + first] = fresh[g]
            except ShardLost as lost:
                # The actor died with its worlds' states: every world of the share starts afresh.
                self.pool.recover(k, "start", lost.cause)
                sl = self.pool.slices[k]
                share_obs = {g: v[sl].copy() for g, v in obs.items()}
                revived = self._revive(k)
                for j, i in enumerate(range(sl.start, sl.stop)):
                    if not dones[i]:
                        dones[i] = True
                        infos[i] = self._lost_info({g: v[j] for g, v in share_obs.items()})
                for g in obs:
                    obs[g][sl] = revived[g]

    # ------------------------------------------------------------------ lost actors
    def _span(self, k: int) -> tuple[int, int]:
        first, count = self.pool.shares[k]
        return first, first + count

    def _revive(self, k: int) -> dict[str, np.ndarray]:
        """A restarted actor: reseeded from the run's seed and the incident's number, its
        sampler mode restored, every world of its share started; their first observations."""
        pool = self.pool
        while True:
            try:
                pool.call(k, "use_driver_sampler", self.samplers.sampler is not None)
                pool.call(k, "seed", [int(pool.seed), len(pool.incidents)])
                ids = np.arange(*self._span(k))
                task, adr = self.samplers.draw(ids) if self.samplers.active else (None, None)
                obs = pool.call(k, "reset", task, adr)
                pool.revived.discard(k)
                return obs
            except ShardLost as lost:       # lost again while coming back
                pool.recover(k, "a restart", lost.cause)

    def _lost_info(self, terminal: dict[str, np.ndarray]) -> dict:
        return {"reward_terms": {}, "terminal_observation": terminal, "TimeLimit.truncated": True,
                "diverged": False, "is_success": False, "actor_restarted": True}

    def _lost_step(self, k: int):
        first, stop = self._span(k)
        last = {g: v[first:stop] for g, v in self._last_obs.items()}
        obs = self._revive(k)
        n = stop - first
        infos = [self._lost_info({g: v[j].copy() for g, v in last.items()}) for j in range(n)]
        return obs, np.zeros(n, np.float32), np.ones(n, dtype=bool), infos

    def _concat(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {g: np.concatenate([p[g] for p in parts]) for g in parts[0]}

    # --------------------------------------------------------------- SB3 plumbing
    def close(self) -> None:
        self.pool.close()

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices=None) -> list:
        target = self.world if attr_name in vars(self.world) or hasattr(type(self.world), attr_name) else self
        return [getattr(target, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        raise NotImplementedError(f"RayVecEnv.env_method({method_name!r}): the worlds live in Ray actors")

    def env_is_wrapped(self, wrapper_class, indices: Sequence[int] | None = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self):
        raise NotImplementedError("RayVecEnv renders no frames in the driver; record videos with "
                                  "robots-ts evaluate, which runs in-process")
