"""Evaluation of any run's policy: success rate with a 95% (Wilson) interval, returns, lengths, videos.

The episodes run through :func:`robots_ts.rollout.run_episodes` with a quota per world fixed up
front, so short successful episodes are not over-counted.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.rollout import policy_env, run_episodes, split_quota


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success rate ``successes / n`` (95% for ``z = 1.96``); (0, 1) for n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n successes:
    0 of 10 gives [0, 0.2775], 5 of 10 gives [0.2366, 0.7634].
    """
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
    over the task's bounds) and summarise; ``video``: also write world 0's first episodes there."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    n = max(1, min(num_envs, episodes))
    env = policy_env(policy, env_cfg, n, seed=seed, sampler=sampler, obs_groups=obs_groups)
    frames: list[np.ndarray] = []
    hooks = {}
    if video is not None:
        from robots_ts.envs.video import render_rgb

        world0_done = [0]

        def before_step(obs, action, active):
            if world0_done[0] < max_video_episodes:
                frames.append(render_rgb(env.world, 0))

        def after_step(t, dones, infos):
            world0_done[0] += int(dones[0])

        hooks = {"before_step": before_step, "after_step": after_step}
    try:
        records = run_episodes(env, policy.act, [policy], quota=split_quota(episodes, n), **hooks)
    finally:
        env.close()
    out = summarise(records, env_cfg.task, seed)
    out["backend"] = env_cfg.backend
    if video is not None and frames:
        from robots_ts.envs.video import write_video

        out["video"] = str(write_video(frames, video))
    return out


def evaluate_run(run_dir: str | Path, episodes: int = 100, seed: int = 0, num_envs: int = 16,
                 checkpoint: str | None = None, video: str | Path | None = None) -> dict:
    """:func:`rollout_policy` of a run directory's policy on the env it was trained for."""
    from robots_ts.policies.load import load_policy

    policy = load_policy(run_dir, checkpoint)
    return rollout_policy(policy, policy.env_cfg, episodes=episodes, seed=seed, num_envs=num_envs, video=video)


def summarise(records: list[dict], task: str, seed: int) -> dict:
    k = sum(r["success"] for r in records)
    lo, hi = wilson_interval(k, len(records))
    return {"task": task, "success_rate": k / len(records), "success_ci95": [lo, hi],
            "mean_return": float(np.mean([r["return"] for r in records])),
            "mean_episode_length": float(np.mean([r["length"] for r in records])),
            "episodes": len(records), "diverged_episodes": sum(r.get("diverged", False) for r in records),
            "seed": seed}
