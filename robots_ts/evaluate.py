"""Evaluation of any run's policy: success rate with a 95% (Wilson) interval, returns, lengths, videos.

The episodes run through :func:`robots_ts.rollout.run_episodes` with a quota per world fixed up
front, so short successful episodes are not over-counted. A policy can be evaluated under a domain
randomization other than the one it trained with (``randomization``: ``"none"`` for the nominal env,
or a preset YAML such as ``configs/randomization/strong.yaml``); every summary records the
randomization it ran under.

Policies run on ``EVAL_TORCH_THREADS`` torch threads (one) unless told otherwise, and the summary
records the count: a refined PegInsert checkpoint placed 0.695 of the same 200 episodes on two
threads and 0.725 on one (float rounding, amplified by contacts), so a figure is reproducible only
with its thread count, and one thread is the count every machine has.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from robots_ts.config import INCLUDE, ConfigError, EnvConfig, RandomizationConfig, load_config, to_dict
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


NOMINAL = "none"   # the randomization name of the nominal env: RandomizationConfig() (everything off)


def load_randomization(spec: str) -> RandomizationConfig:
    """The randomization ``spec`` names: ``"none"`` is the nominal env; anything else is a YAML file
    of :class:`~robots_ts.config.RandomizationConfig` keys, given as a path or an ``@path`` include
    (relative to the working directory, else to the package: ``configs/randomization/strong.yaml``
    works from anywhere). Unknown keys and bad values raise :class:`~robots_ts.config.ConfigError`
    naming the key."""
    from robots_ts.envs.checks import check_randomization

    if spec == NOMINAL:
        return RandomizationConfig()
    override = f"randomization={spec if spec.startswith(INCLUDE) else INCLUDE + spec}"
    try:
        r = load_config(EnvConfig, None, [override]).randomization
        check_randomization(r, "randomization.")
    except ConfigError as exc:
        why = str(exc).removeprefix(f"override {override!r}: ")
        raise ConfigError(f"randomization preset {spec!r}: {why}") from None
    return r


def randomization_record(r: RandomizationConfig, name: str, source: str | None = None) -> dict:
    """What a summary says about the randomization it ran under: a name (``none``, the preset's file
    name, or ``as configured`` for the env config's own), where it came from, whether it is the
    nominal env, and the effective values."""
    return {"name": name, "source": source, "nominal": r == RandomizationConfig(), "values": to_dict(r)}


def with_randomization(env_cfg: EnvConfig, randomization: str | RandomizationConfig | None) -> tuple[EnvConfig, dict]:
    """``env_cfg`` with its randomization replaced (``None``: unchanged) and the record of the one used."""
    if randomization is None:
        return env_cfg, randomization_record(env_cfg.randomization, "as configured")
    if isinstance(randomization, RandomizationConfig):
        return replace(env_cfg, randomization=randomization), randomization_record(randomization, "given")
    r = load_randomization(randomization)
    return replace(env_cfg, randomization=r), randomization_record(r, randomization_name(randomization),
                                                                    randomization)


def randomization_name(spec: str) -> str:
    """``none``, or the file name of a preset given as a path or an ``@path`` include."""
    return spec if spec == NOMINAL else Path(spec.removeprefix(INCLUDE)).name


EVAL_TORCH_THREADS = 1      # every evaluation's torch thread count, unless a caller asks for another


def keeps_torch_threads(fn):
    """Decorates a command that sets torch's thread count for its own work (``torch_threads`` in
    its config): its caller gets its own count back, however the command ends."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch_threads(torch.get_num_threads()):   # the count as it is now, given back on exit
            return fn(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block on ``n`` torch threads, then give the caller back its own count."""
    import torch

    if n < 1:
        raise ValueError(f"torch threads must be >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rollout_policy(policy, env_cfg: EnvConfig, episodes: int = 100, seed: int = 0, num_envs: int = 16,
                   sampler=None, video: str | Path | None = None, obs_groups=None,
                   max_video_episodes: int = 3, randomization: str | RandomizationConfig | None = None,
                   threads: int = EVAL_TORCH_THREADS) -> dict:
    """Roll ``policy`` out for ``episodes`` episodes (parameters drawn by ``sampler`` or uniformly
    over the task's bounds) and summarise; ``video``: also write world 0's first episodes there.
    ``randomization`` (``"none"``, a preset YAML, or a config) replaces ``env_cfg.randomization``.
    The policy runs on ``threads`` torch threads, recorded as ``torch_threads``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env_cfg, rand_record = with_randomization(env_cfg, randomization)
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
        with torch_threads(threads):
            records = run_episodes(env, policy.act, [policy], quota=split_quota(episodes, n), **hooks)
    finally:
        env.close()
    out = summarise(records, env_cfg.task, seed)
    if getattr(env, "world_tasks", None) is not None:      # a multi-task student: success per task too
        from robots_ts.policies.distill.multi import per_task_summary

        out["task"] = "+".join(env.tasks)
        out["per_task"] = per_task_summary(records, env.world_tasks)
    out["episodes_sha256"] = episodes_digest(records)
    out["backend"] = env_cfg.backend
    out["randomization"] = rand_record
    out["torch_threads"] = threads
    if video is not None and frames:
        from robots_ts.envs.video import write_video

        out["video"] = str(write_video(frames, video))
    return out


def evaluate_run(run_dir: str | Path, episodes: int = 100, seed: int = 0, num_envs: int = 16,
                 checkpoint: str | None = None, video: str | Path | None = None,
                 randomization: str | RandomizationConfig | None = None, threads: int = EVAL_TORCH_THREADS) -> dict:
    """:func:`rollout_policy` of a run directory's policy on the env it was trained for, or under
    another ``randomization`` (``"none"``: nominal; a preset YAML; default: the run's own)."""
    from robots_ts.policies.load import load_policy

    if isinstance(randomization, str):
        load_randomization(randomization)     # a bad preset fails before the policy loads
    policy = load_policy(run_dir, checkpoint)
    return rollout_policy(policy, policy.env_cfg, episodes=episodes, seed=seed, num_envs=num_envs, video=video,
                          randomization=randomization, threads=threads)


def episodes_digest(records: list[dict]) -> str:
    """SHA-256 of each world's counted episodes' task parameters, in order: two evaluations with the
    same digest ran the same held-out episodes. Benches compare digests rather than assume it."""
    import hashlib
    import json

    worlds: dict[int, list] = {}
    for r in records:
        worlds.setdefault(int(r["world"]), []).append([float(v) for v in r["params"]])
    return hashlib.sha256(json.dumps(sorted(worlds.items())).encode()).hexdigest()


def summarise(records: list[dict], task: str, seed: int) -> dict:
    k = sum(r["success"] for r in records)
    lo, hi = wilson_interval(k, len(records))
    return {"task": task, "success_rate": k / len(records), "success_ci95": [lo, hi],
            "mean_return": float(np.mean([r["return"] for r in records])),
            "mean_episode_length": float(np.mean([r["length"] for r in records])),
            "episodes": len(records), "diverged_episodes": sum(r.get("diverged", False) for r in records),
            "seed": seed}
