"""The one loop that runs policies on the batched env: evaluation, grid evaluation and DAgger use it.

:func:`run_episodes` resets the env (reseeding its worlds first when given a seed), then steps it
with ``act(obs)`` until every world has finished its quota of episodes, or a step budget is spent.
After each step the policies in ``resets`` are told which worlds start a new episode (recurrent
students clear their memory there). What differs between callers enters through options:

- ``act(obs)``: the step's actions: a policy's, or DAgger's per-world mix of teacher and student
  (which also stores the teacher's labels of the step);
- ``before_step(obs, action, active)``: the step's observation and action before the env moves,
  with the mask of worlds still inside their quota (agreement with a teacher, video frames);
- ``after_step(t, dones, infos)``: the worlds that finished at step ``t`` (DAgger's episode ids
  and dataset chunks, progress);
- ``params``: fixed task parameters for the first episode of each world (grid evaluation).

Episodes are counted against a per-world quota fixed up front (world i runs ``quota[i]``), so short
successful episodes are not over-counted the way "the first K episodes to finish" would count
them. The counted episodes come back as records in the order they ended.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from robots_ts.config import EnvConfig

Obs = dict[str, np.ndarray]


def split_quota(episodes: int, num_envs: int) -> np.ndarray:
    """Episodes per world: ``episodes`` spread as evenly as possible, earlier worlds taking the rest."""
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    return quota


def episode_record(world: int, info: dict) -> dict:
    """What one finished episode reports: its world, success, return, length, task parameters, and
    whether it ended because the physics diverged."""
    return {"world": int(world), "success": bool(info["is_success"]), "return": float(info["episode"]["r"]),
            "length": int(info["episode"]["l"]), "params": np.asarray(info["params"]).tolist(),
            "diverged": bool(info.get("diverged", False))}


class FixedParams:
    """A parameter sampler handing out given rows in order, then repeating the last one handed out.

    Worlds reset in index order, so after a full reset world i holds row i; worlds past the last
    row get the first row as a filler, and worlds that finish later start episodes nobody counts.
    """

    def __init__(self, rows: np.ndarray, num_envs: int):
        rows = [np.asarray(r, dtype=np.float64) for r in rows]
        self.rows = rows + [rows[0]] * (num_envs - len(rows))
        self._last = rows[0]

    def sample(self) -> np.ndarray:
        if self.rows:
            self._last = self.rows.pop(0)
        return self._last


def run_episodes(env, act: Callable[[Obs], np.ndarray], resets: Sequence = (), *, quota: np.ndarray | None = None,
                 steps: int | None = None, seed: int | None = None, params: np.ndarray | None = None,
                 before_step: Callable[[Obs, np.ndarray, np.ndarray], None] | None = None,
                 after_step: Callable[[int, np.ndarray, list[dict]], None] | None = None) -> list[dict]:
    """Roll ``env`` out until every world ``i`` finished ``quota[i]`` episodes, or for ``steps`` steps.

    ``seed`` reseeds the worlds before the reset; ``params`` (k, d), k <= num_envs, fixes the task
    parameters of the first episode of worlds 0..k-1. With only ``steps`` every finished episode is
    recorded; with a quota only those inside it. Returns the records (:func:`episode_record`).
    """
    if quota is None and steps is None:
        raise ValueError("run_episodes needs a per-world episode quota, a step budget, or both")
    n = env.num_envs
    if quota is not None:
        quota = np.asarray(quota, dtype=np.int64)
        if quota.shape != (n,):
            raise ValueError(f"quota: expected one count per world ({n}), got shape {quota.shape}")
    sampler = None
    if params is not None:
        if not 1 <= len(params) <= n:
            raise ValueError(f"params: expected 1 to {n} rows (one per world), got {len(params)}")
        sampler, env.sampler = env.sampler, FixedParams(params, n)
    try:
        if seed is not None:
            env.world.seed(seed)
        obs = env.reset()
        everyone = np.ones(n, dtype=bool)
        for policy in resets:
            policy.reset(everyone)
        done_count = np.zeros(n, dtype=np.int64)
        records: list[dict] = []
        t = 0
        while (steps is None or t < steps) and (quota is None or np.any(done_count < quota)):
            action = act(obs)
            if before_step is not None:
                before_step(obs, action, everyone if quota is None else done_count < quota)
            obs, _, dones, infos = env.step(action)
            for i in np.flatnonzero(dones):
                if quota is None or done_count[i] < quota[i]:
                    records.append(episode_record(i, infos[i]))
                done_count[i] += 1
            for policy in resets:
                policy.reset(dones)
            if after_step is not None:
                after_step(t, dones, infos)
            t += 1
    finally:
        if params is not None:
            env.sampler = sampler
    return records


def policy_env(policy, env_cfg: EnvConfig, num_envs: int, seed: int = 0, sampler=None, obs_groups=None):
    """The batched env a policy is evaluated on: ``num_envs`` worlds producing the groups it reads
    (or ``obs_groups``); an oracle policy is bound to the worlds whose state it reads. A student of
    several tasks (``task_shares``) gets a multi-task env, its worlds split over the tasks by share."""
    from robots_ts.envs import make_batched_env

    if getattr(policy, "task_shares", None):
        from robots_ts.envs.multi_task import MultiTaskEnv, split_worlds

        if sampler is not None:
            raise ValueError("a multi-task student is evaluated on each task's uniform parameters; parameter "
                             "grids and curricula take one task's student")
        return MultiTaskEnv(env_cfg, split_worlds(num_envs, policy.task_shares), seed=seed,
                            obs_groups=obs_groups or policy.obs_groups)
    env = make_batched_env(env_cfg, seed=seed, sampler=sampler, num_envs=num_envs,
                           obs_groups=obs_groups or policy.obs_groups)
    if hasattr(policy, "bind"):
        policy.bind(env.world)
    return env
