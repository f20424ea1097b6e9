"""``robots-ts bench teacher``: PPO training throughput, batched env vs the ordinary SB3 set-up.

Both arms run Stable-Baselines3 PPO with the hyperparameters of ``configs/teacher/<task>.yaml``
(network, n_steps, epochs, normalization) and the same number of worlds, back to back in one
process: (a) our ``BatchedEnv`` (N worlds in one VecEnv, worker threads, numpy-batched
observations), (b) N ``gymnasium.make("robots_ts/<Task>-v0")`` envs in a ``DummyVecEnv`` (SB3's
default). Throughput = env steps per second of wall time *including* PPO updates, after one
warm-up iteration. Repeats alternate the arms; medians and their ratio are reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from robots_ts.config import config_path, load_config
from robots_ts.envs import make_batched_env
from robots_ts.policies.teacher.config import TeacherConfig
from robots_ts.policies.teacher.train import make_model, normalized


def _rate(venv, cfg: TeacherConfig, iterations: int) -> float:
    venv = normalized(venv, cfg)
    model = make_model(cfg, venv)
    per_iter = cfg.ppo.n_steps * venv.num_envs
    model.learn(per_iter)  # warm-up: one rollout and one update
    t0 = time.perf_counter()
    model.learn(per_iter * iterations, reset_num_timesteps=False)
    rate = per_iter * iterations / (time.perf_counter() - t0)
    venv.close()
    return rate


def bench_teacher(task: str = "Reach", num_envs: int = 64, iterations: int = 6, repeats: int = 3,
                  seed: int = 0) -> dict:
    cfg = load_config(TeacherConfig, config_path(f"teacher/{task.lower()}.yaml"), [f"env.num_envs={num_envs}"])
    torch.set_num_threads(cfg.torch_threads or torch.get_num_threads())
    groups = list(cfg.env.obs_groups)
    batched, ordinary = [], []
    for r in range(repeats):
        batched.append(_rate(make_batched_env(cfg.env, seed=seed + r, num_envs=num_envs), cfg, iterations))
        ordinary.append(_rate(make_vec_env(lambda: gym.make(f"robots_ts/{task}-v0", obs_groups=groups),
                                           n_envs=num_envs, seed=seed + r, vec_env_cls=DummyVecEnv), cfg, iterations))
    b, o = statistics.median(batched), statistics.median(ordinary)
    return {"task": task, "num_envs": num_envs, "n_steps": cfg.ppo.n_steps, "n_epochs": cfg.ppo.n_epochs,
            "steps_per_measurement": cfg.ppo.n_steps * num_envs * iterations, "repeats": repeats,
            "batched_steps_per_s": round(b, 1), "dummy_vec_env_steps_per_s": round(o, 1), "speedup": round(b / o, 2),
            "batched_all": [round(x, 1) for x in batched], "dummy_all": [round(x, 1) for x in ordinary]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench teacher", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="Reach")
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=6, help="PPO iterations (rollout + update) per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = bench_teacher(args.task, args.num_envs, args.iterations, args.repeats)
    print(json.dumps(res, indent=1) if args.json else res)
    return 0
