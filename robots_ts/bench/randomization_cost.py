"""``robots-ts bench randomization-cost``: what a randomization preset costs the depth env, measured
interleaved in one process.

Two batched envs of the same task (nominal, and under the preset) are built side by side and
stepped in alternating blocks of random actions (order flipped every block), so both see the same
machine; the ratio of their rates is taken per block pair and its median reported. Sequential rows
(``bench envs --randomization``) drift with a shared machine by as much as the effect measured.

``--families``: also the preset with one family of randomizers off at a time (:data:`FAMILIES`),
stepped in the same rotation, so each family's share of the cost shows (``without``: each such
env's rate over the nominal one's, per block, median).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace

import numpy as np

# The families of robots_ts.sim2real.randomization, by the RandomizationConfig fields each reads
# (ADR is left as the preset has it).
FAMILIES = {
    "physics": ("object_mass_scale", "object_friction_scale", "link_mass_scale", "link_com_offset",
                "joint_damping_scale", "joint_armature_scale", "joint_frictionloss", "gain_kp_scale",
                "gain_kv_scale", "gravity_tilt", "push_interval", "push_velocity", "camera_pos_noise",
                "camera_rot_noise"),
    "proprio": ("joint_pos_noise", "joint_pos_bias", "joint_vel_noise", "action_noise"),
    "latency": ("action_delay", "obs_delay"),
    "depth": ("depth",),
    "points": ("points",),
}


def family_off(cfg, family: str):
    """``cfg`` (an EnvConfig) with the randomizers of ``family`` back at their nominal (off) values."""
    from robots_ts.config import RandomizationConfig

    nominal = RandomizationConfig()
    return replace(cfg, randomization=replace(cfg.randomization,
                                              **{f: getattr(nominal, f) for f in FAMILIES[family]}))


def measure(task: str, preset: str, num_envs: int = 64, blocks: int = 12, steps: int = 15, seed: int = 0,
            families: bool = False) -> dict:
    from robots_ts.config import EnvConfig, load_config
    from robots_ts.envs.vec_env import BatchedEnv

    base = [f"task={task}", f"num_envs={num_envs}", "obs_groups=[proprio,depth]"]
    randomized = load_config(EnvConfig, None, base + [f"randomization=@{preset}"])
    cfgs = {"nominal": load_config(EnvConfig, None, base), "randomized": randomized}
    if families:
        for name in FAMILIES:
            off = family_off(randomized, name)
            # Not measured: a family the preset does not use, and point noise (this env renders depth).
            if off != randomized and name != "points":
                cfgs[f"without_{name}"] = off
    envs = {k: BatchedEnv(c, seed=seed) for k, c in cfgs.items()}
    rng = np.random.default_rng(seed)
    try:
        for e in envs.values():   # warm up: contexts, caches, the sensor model's noise banks
            e.reset()
            for _ in range(10):
                e.step(rng.uniform(-1, 1, (num_envs, e.world.action_dim)))
        rates: dict[str, list[float]] = {k: [] for k in envs}
        names = list(envs)
        for block in range(blocks):
            for k in (names if block % 2 == 0 else names[::-1]):
                e = envs[k]
                t = time.perf_counter()
                for _ in range(steps):
                    e.step(rng.uniform(-1, 1, (num_envs, e.world.action_dim)))
                rates[k].append(steps * num_envs / (time.perf_counter() - t))
    finally:
        for e in envs.values():
            e.close()

    def ratios(k: str) -> list[float]:
        return [r / n for r, n in zip(rates[k], rates["nominal"])]

    out = {"task": task, "preset": preset, "num_envs": num_envs, "blocks": blocks, "steps_per_block": steps,
           "median_steps_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
           "median_ratio": round(statistics.median(ratios("randomized")), 3),
           "ratios": [round(r, 3) for r in ratios("randomized")]}
    if families:
        out["without"] = {k[len("without_"):]: round(statistics.median(ratios(k)), 3)
                          for k in rates if k.startswith("without_")}
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench randomization-cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["Reach", "Push"])
    ap.add_argument("--preset", default="configs/randomization/default.yaml")
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--block-steps", type=int, default=15, help="env steps per block (default 15)")
    ap.add_argument("--families", action="store_true",
                    help="also measure the preset with each family of randomizers off in turn")
    args = ap.parse_args(argv)
    print(json.dumps([measure(t, args.preset, args.num_envs, args.blocks, args.block_steps, families=args.families)
                      for t in args.tasks], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
