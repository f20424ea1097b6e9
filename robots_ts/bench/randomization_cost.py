"""``robots-ts bench randomization-cost``: what a randomization preset costs the depth env, measured
interleaved in one process.

Two batched envs of the same task (nominal, and under the preset) are built side by side and
stepped in alternating blocks of random actions (order flipped every block), so both see the same
machine; the ratio of their rates is taken per block pair and its median reported. Sequential rows
(``bench envs --randomization``) drift with a shared machine by as much as the effect measured.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def measure(task: str, preset: str, num_envs: int = 64, blocks: int = 12, steps: int = 15, seed: int = 0) -> dict:
    from robots_ts.config import EnvConfig, load_config
    from robots_ts.envs.vec_env import BatchedEnv

    base = [f"task={task}", f"num_envs={num_envs}", "obs_groups=[proprio,depth]"]
    envs = {"nominal": BatchedEnv(load_config(EnvConfig, None, base), seed=seed),
            "randomized": BatchedEnv(load_config(EnvConfig, None, base + [f"randomization=@{preset}"]), seed=seed)}
    rng = np.random.default_rng(seed)
    try:
        for e in envs.values():   # warm up: contexts, caches, the sensor model's noise banks
            e.reset()
            for _ in range(10):
                e.step(rng.uniform(-1, 1, (num_envs, e.world.action_dim)))
        rates: dict[str, list[float]] = {k: [] for k in envs}
        for block in range(blocks):
            for k in (("nominal", "randomized") if block % 2 == 0 else ("randomized", "nominal")):
                e = envs[k]
                t = time.perf_counter()
                for _ in range(steps):
                    e.step(rng.uniform(-1, 1, (num_envs, e.world.action_dim)))
                rates[k].append(steps * num_envs / (time.perf_counter() - t))
    finally:
        for e in envs.values():
            e.close()
    ratios = [r / n for r, n in zip(rates["randomized"], rates["nominal"])]
    return {"task": task, "preset": preset, "num_envs": num_envs, "blocks": blocks, "steps_per_block": steps,
            "median_steps_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
            "median_ratio": round(statistics.median(ratios), 3), "ratios": [round(r, 3) for r in ratios],
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench randomization-cost", description=__doc__)
    ap.add_argument("--tasks", nargs="+", default=["Reach", "Push"])
    ap.add_argument("--preset", default="configs/randomization/default.yaml")
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=12)
    args = ap.parse_args(argv)
    print(json.dumps([measure(t, args.preset, args.num_envs, args.blocks) for t in args.tasks], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
