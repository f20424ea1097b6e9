"""``robots-ts bench physics``: physics health under random actions at the parameter space's corners.

Each task runs ``steps`` env steps (all worlds together) of uniform random actions in [-1, 1],
every episode's task parameters drawn from the corners of the parameter box (each parameter at its
lower or upper bound: the smallest and largest objects, lightest and heaviest, least and most
friction). It counts non-finite values in any observation group or reward, and the episodes that
ended because MuJoCo's state diverged and was reset (``info["diverged"]``).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.envs.params import ParamSpace


class CornerSampler:
    """Task parameters at random corners of the box: every parameter at one of its bounds."""

    def __init__(self, space: ParamSpace, rng: np.random.Generator):
        self.space, self.rng = space, rng

    def sample(self) -> np.ndarray:
        pick = self.rng.integers(0, 2, self.space.dim).astype(bool)
        return np.where(pick, self.space.high, self.space.low)


def run_health(task: str, steps: int, num_envs: int = 64, seed: int = 0, control: str = "ee",
               obs_groups=("proprio", "privileged"), backend: str = "mujoco") -> dict:
    from robots_ts.envs.vec_env import BatchedEnv

    env = BatchedEnv(EnvConfig(task=task, backend=backend, num_envs=num_envs, obs_groups=list(obs_groups),
                               control=control),
                     seed=seed)
    rng = np.random.default_rng(seed)
    env.sampler = CornerSampler(env.param_space, np.random.default_rng(seed + 1))
    obs = env.reset()
    nonfinite_obs = nonfinite_reward = episodes = 0
    done_steps, t0 = 0, time.perf_counter()
    while done_steps < steps:
        obs, reward, dones, infos = env.step(rng.uniform(-1, 1, (num_envs, env.world.action_dim)))
        nonfinite_obs += sum(int((~np.isfinite(v)).any(axis=tuple(range(1, v.ndim))).sum()) for v in obs.values())
        nonfinite_reward += int((~np.isfinite(reward)).sum())
        episodes += int(dones.sum())
        done_steps += num_envs
    env.close()
    return {"task": task, "backend": backend, "control": control, "env_steps": done_steps, "num_envs": num_envs,
            "episodes": episodes, "diverged_episodes": env.diverged_episodes,
            "nonfinite_observations": nonfinite_obs, "nonfinite_rewards": nonfinite_reward,
            "param_bounds": {n: [float(lo), float(hi)] for n, lo, hi in
                             zip(env.param_space.names, env.param_space.low, env.param_space.high)},
            "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench physics", description=__doc__)
    ap.add_argument("--tasks", nargs="+", default=["Reach", "Push", "Lift"])
    ap.add_argument("--steps", type=int, default=100_000, help="env steps per task and control mode")
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--controls", nargs="+", default=["ee", "joint"], choices=["ee", "joint"])
    ap.add_argument("--backends", nargs="+", default=["mujoco"], choices=["mujoco", "pybullet"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON list (default: a table)")
    args = ap.parse_args(argv)
    records = [run_health(t, args.steps, args.num_envs, args.seed, c, backend=b)
               for b in args.backends for t in args.tasks for c in args.controls]
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        for r in records:
            print(f"{r['task']:6s} {r['backend']:8s} {r['control']:5s} {r['env_steps']:8d} steps  {r['episodes']:6d} episodes  "
                  f"diverged {r['diverged_episodes']}  non-finite obs {r['nonfinite_observations']} "
                  f"rewards {r['nonfinite_rewards']}  {r['wall_s']} s")
    return 0
