"""``robots-ts bench envs``: env throughput against the raw simulator limits on the same cores.

For every (task, obs mode, num_envs) record: ``env_steps_per_s`` of the batched env under random
actions (auto-resets included); ``physics_limit_steps_per_s``, the rate of bare ``mj_step`` calls on
the same worlds, one thread per worker, measured in the same run, divided by the physics substeps
of one env step; and their ``ratio``. Rendering modes add ``render_limit_steps_per_s``: each worker
steps its worlds' physics and renders each of them bare (scene update, render and read-back of
the depth buffer, at the resolution the mode renders, through the same OpenGL lock) and nothing
else; ``render_ratio`` is the env's rate over it. Medians over ``repeats`` alternating
measurements.
"""
from __future__ import annotations

import argparse
import json
import itertools
import statistics
import time
from pathlib import Path

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.envs.vec_env import BatchedEnv

MODES = {"state": ["proprio", "privileged"], "depth": ["proprio", "depth"], "points": ["proprio", "points"]}


def _env_rate(env: BatchedEnv, seconds: float, rng: np.random.Generator) -> float:
    n = env.num_envs
    actions = rng.uniform(-1, 1, (64, n, env.world.action_dim))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step(actions[steps % 64])
        steps += 1
    return steps * n / (time.perf_counter() - t0)


def bench_envs(tasks=("Reach", "Push", "Lift"), modes=("state", "depth", "points"), num_envs=(16, 64),
               seconds: float = 2.0, repeats: int = 3, seed: int = 0, backends=("mujoco",),
               randomizations=(None,)) -> list[dict]:
    """``randomizations``: None (nominal) and/or randomization YAML paths, each measured as its own row."""
    from robots_ts.config import load_config

    records = []
    rng = np.random.default_rng(seed)
    for task, backend, mode, n, rand in itertools.product(tasks, backends, modes, num_envs, randomizations):
        overrides = [f"task={task}", f"backend={backend}", f"num_envs={n}", f"obs_groups=[{','.join(MODES[mode])}]"]
        if rand is not None:
            overrides.append(f"randomization=@{rand}")
        env = BatchedEnv(load_config(EnvConfig, None, overrides), seed=seed)
        env.reset()
        _env_rate(env, 0.3, rng)  # warm up: contexts, caches
        env_rates, phys_rates, render_rates = [], [], []
        sim = env.world.backend
        image = "depth" if "depth" in sim.images else "points"
        renderer = sim.renderer if env.world.renders else None
        for _ in range(repeats):
            env_rates.append(_env_rate(env, seconds, rng))
            phys_rates.append(sim.physics_rate(seconds / 2))
            if env.world.renders:
                render_rates.append(sim.render_rate(image, seconds / 2))
        env.close()
        e, p = statistics.median(env_rates), statistics.median(phys_rates)
        rec = {"task": task, "backend": backend, "obs_mode": mode, "num_envs": n, "randomization": rand,
               "env_steps_per_s": round(e, 1), "physics_limit_steps_per_s": round(p, 1),
               "ratio": round(e / p, 3), "workers": sim.num_workers, "renderer": renderer,
               "substeps": env.world.substeps, "env_repeats": [round(x, 1) for x in env_rates]}
        if render_rates:
            r = statistics.median(render_rates)
            rec.update(render_limit_steps_per_s=round(r, 1), render_ratio=round(e / r, 3))
        records.append(rec)
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench envs", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON list (default: a table)")
    ap.add_argument("--tasks", nargs="+", default=["Reach", "Push", "Lift"])
    ap.add_argument("--modes", nargs="+", default=["state", "depth", "points"], choices=list(MODES))
    ap.add_argument("--num-envs", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--backends", nargs="+", default=["mujoco"], choices=["mujoco", "pybullet"])
    ap.add_argument("--randomization", nargs="+", default=None, metavar="YAML",
                    help="also measure with these randomization configs (e.g. configs/randomization/default.yaml); "
                         "'none' is the nominal env")
    ap.add_argument("--seconds", type=float, default=1.5, help="length of one measurement")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rands = [None] if args.randomization is None else [None if r == "none" else r for r in args.randomization]
    recs = bench_envs(args.tasks, args.modes, args.num_envs, args.seconds, args.repeats, backends=args.backends,
                      randomizations=rands)
    if args.json:
        print(json.dumps(recs, indent=1))
    else:
        for r in recs:
            line = (f"{r['task']:6s} {r['backend']:8s} {r['obs_mode']:7s} {Path(r['randomization'] or 'nominal').stem:8s} n={r['num_envs']:4d}  {r['env_steps_per_s']:9.0f} steps/s  "
                    f"physics limit {r['physics_limit_steps_per_s']:9.0f}  ratio {r['ratio']:.2f}")
            if "render_limit_steps_per_s" in r:
                line += f"  render limit {r['render_limit_steps_per_s']:7.0f}  ratio {r['render_ratio']:.2f}"
            print(line)
    return 0
