"""``robots-ts bench teacher``: PPO training throughput, batched env vs the ordinary SB3 set-up.

Both arms run Stable-Baselines3 PPO with the same hyperparameters, network and number of worlds
on the same task, back to back in one process: (a) our batched ``BatchedEnv`` (N worlds in one
VecEnv, worker threads), (b) N ``gymnasium.make("robots_ts/<Task>-v0")`` envs in a ``DummyVecEnv``
(SB3's default way). Throughput = env steps per second of wall time *including* PPO updates.
Alternating repeats; medians and their ratio are reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from robots_ts.config import EnvConfig
from robots_ts.envs.vec_env import BatchedEnv


def _ppo(venv, seed: int) -> PPO:
    return PPO("MultiInputPolicy", venv, n_steps=32, batch_size=512, n_epochs=5, learning_rate=3e-4,
               gamma=0.98, seed=seed, device="cpu", verbose=0,
               policy_kwargs=dict(net_arch=dict(pi=[256, 128, 64], vf=[256, 128, 64]), activation_fn=torch.nn.ELU))


def _rate(venv, steps: int, seed: int) -> float:
    venv = VecNormalize(venv, norm_obs_keys=["proprio", "privileged"], gamma=0.98)
    model = _ppo(venv, seed)
    model.learn(venv.num_envs * 32)  # warm-up rollout + update
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    rate = steps / (time.perf_counter() - t0)
    venv.close()
    return rate


def bench_teacher(task: str = "Reach", num_envs: int = 64, steps: int = 16384, repeats: int = 3,
                  seed: int = 0) -> dict:
    torch.set_num_threads(1)
    groups = ["proprio", "privileged"]
    batched, ordinary = [], []
    for r in range(repeats):
        batched.append(_rate(BatchedEnv(EnvConfig(task=task, num_envs=num_envs, obs_groups=groups), seed=seed + r),
                             steps, seed))
        ordinary.append(_rate(make_vec_env(lambda: gym.make(f"robots_ts/{task}-v0", obs_groups=groups),
                                           n_envs=num_envs, seed=seed + r, vec_env_cls=DummyVecEnv), steps, seed))
    b, o = statistics.median(batched), statistics.median(ordinary)
    return {"task": task, "num_envs": num_envs, "steps_per_measurement": steps, "repeats": repeats,
            "batched_steps_per_s": round(b, 1), "dummy_vec_env_steps_per_s": round(o, 1), "speedup": round(b / o, 2),
            "batched_all": [round(x, 1) for x in batched], "dummy_all": [round(x, 1) for x in ordinary]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench teacher", description=__doc__)
    ap.add_argument("--task", default="Reach")
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = bench_teacher(args.task, args.num_envs, args.steps, args.repeats)
    print(json.dumps(res, indent=1) if args.json else res)
    return 0
