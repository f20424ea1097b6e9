"""Evaluation of any run's policy: success rate with a 95% interval, returns, lengths, videos.

Episodes are assigned to worlds up front (world i runs a fixed quota), so short successful
episodes are not over-counted the way "the first K episodes to finish" would over-count them.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from robots_ts.config import EnvConfig


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # The interval always contains the estimate (guards float rounding at p = 0 or 1).
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def rollout_policy(policy, env_cfg: EnvConfig, episodes: int = 100, seed: int = 0, num_envs: int = 16,
                   sampler=None, video: str | Path | None = None, obs_groups=None,
                   max_video_episodes: int = 3) -> dict:
    """Roll ``policy`` out for ``episodes`` episodes (parameters drawn by ``sampler`` or uniformly
    over the task's bounds) and summarise."""
    from robots_ts.envs.vec_env import BatchedEnv
    from robots_ts.envs.video import render_rgb, write_video

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    n = max(1, min(num_envs, episodes))
    cfg = replace(env_cfg, num_envs=n, obs_groups=list(obs_groups or policy.obs_groups))
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    env = BatchedEnv(cfg, seed=seed, sampler=sampler)
    if hasattr(policy, "bind"):
        policy.bind(env.world)  # oracles read simulator state directly
    records: list[dict] = []
    frames: list[np.ndarray] = []
    try:
        obs = env.reset()
        policy.reset(np.ones(n, dtype=bool))
        done_count = np.zeros(n, dtype=np.int64)
        while np.any(done_count < quota):
            if video is not None and done_count[0] < max_video_episodes:
                frames.append(render_rgb(env.world, 0))
            obs, _, dones, infos = env.step(policy.act(obs))
            for i in np.flatnonzero(dones):
                if done_count[i] < quota[i]:
                    records.append(_episode_record(infos[i]))
                done_count[i] += 1
            policy.reset(dones)
    finally:
        env.close()
    out = summarise(records, env_cfg.task, seed)
    if video is not None and frames:
        out["video"] = str(write_video(frames, video))
    return out


def rollout_on_params(policy, env_cfg: EnvConfig, params: np.ndarray, seed: int = 0, num_envs: int = 16,
                      obs_groups=None) -> list[dict]:
    """One episode per row of ``params`` (grid evaluation); records in the order of ``params``."""
    from robots_ts.envs.vec_env import BatchedEnv

    params = np.asarray(params, dtype=np.float64)
    n = max(1, min(num_envs, len(params)))
    cfg = replace(env_cfg, num_envs=n, obs_groups=list(obs_groups or policy.obs_groups))
    sampler = _ListSampler()
    env = BatchedEnv(cfg, seed=seed, sampler=sampler)
    if hasattr(policy, "bind"):
        policy.bind(env.world)
    records: list[dict] = []
    try:
        for start in range(0, len(params), n):
            batch = params[start:start + n]
            # Worlds reset in index order, so world i draws batch[i]; later resets get a filler.
            sampler.items = list(batch) + [batch[0]] * (n - len(batch))
            obs = env.reset()
            policy.reset(np.ones(n, dtype=bool))
            first: list[dict | None] = [None] * n
            while any(first[i] is None for i in range(len(batch))):
                obs, _, dones, infos = env.step(policy.act(obs))
                for i in np.flatnonzero(dones):
                    if first[i] is None:
                        first[i] = _episode_record(infos[i])
                policy.reset(dones)
            records.extend(first[: len(batch)])
    finally:
        env.close()
    return records


class _ListSampler:
    def __init__(self):
        self.items: list[np.ndarray] = []
        self._fill = None

    def sample(self) -> np.ndarray:
        if self.items:
            self._fill = self.items.pop(0)
        return self._fill


def _episode_record(info: dict) -> dict:
    return {"success": bool(info["is_success"]), "return": float(info["episode"]["r"]),
            "length": int(info["episode"]["l"]), "params": np.asarray(info["params"]).tolist()}


def summarise(records: list[dict], task: str, seed: int) -> dict:
    k = sum(r["success"] for r in records)
    lo, hi = wilson_interval(k, len(records))
    return {"task": task, "success_rate": k / len(records), "success_ci95": [lo, hi],
            "mean_return": float(np.mean([r["return"] for r in records])),
            "mean_episode_length": float(np.mean([r["length"] for r in records])),
            "episodes": len(records), "seed": seed}
