"""``robots-ts bench sim2sim``: policies trained in one simulator, evaluated in both.

For every run given (teacher or student), its policy is evaluated in MuJoCo and in PyBullet on
the same held-out episodes: the task parameters and start poses are drawn above the simulator
seam from the evaluation seed, so both backends see identical episodes. Each record names the
simulator the run trained in (its ``config.yaml``), the one it was evaluated in, the success rate
with its 95% Wilson interval, the mean return and the wall time. ``--out`` also writes the JSON
and a Markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from robots_ts.envs.backends.backend import BACKENDS


def evaluate_both(run_dir: str | Path, episodes: int, seed: int, num_envs: int, backends=BACKENDS) -> list[dict]:
    from robots_ts.evaluate import rollout_policy
    from robots_ts.policies.load import load_policy
    from robots_ts.runs import read_run_meta

    meta = read_run_meta(run_dir)
    policy = load_policy(run_dir)
    trained = policy.env_cfg.backend
    records = []
    for backend in backends:
        cfg = dataclasses.replace(policy.env_cfg, backend=backend)
        t0 = time.perf_counter()
        res = rollout_policy(policy, cfg, episodes=episodes, seed=seed, num_envs=num_envs)
        records.append({"run": str(run_dir), "kind": meta["kind"], "task": cfg.task,
                        "obs_groups": list(policy.obs_groups) if hasattr(policy, "obs_groups") else None,
                        "trained_in": trained, "evaluated_in": backend, "episodes": res["episodes"],
                        "success_rate": res["success_rate"], "success_ci95": res["success_ci95"],
                        "mean_return": res.get("mean_return"), "diverged_episodes": res.get("diverged_episodes"),
                        "seed": seed, "wall_s": round(time.perf_counter() - t0, 1)})
    return records


def table(records: list[dict]) -> str:
    lines = ["| policy | task | trained in | evaluated in | success [95% CI] | episodes |",
             "|---|---|---|---|---|---|"]
    for r in records:
        lo, hi = r["success_ci95"]
        lines.append(f"| {r['kind']} {Path(r['run']).name} | {r['task']} | {r['trained_in']} | {r['evaluated_in']} | "
                     f"{r['success_rate']:.3f} [{lo:.3f}, {hi:.3f}] | {r['episodes']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench sim2sim", description=__doc__)
    ap.add_argument("runs", nargs="+", help="teacher or student run directories")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261128, help="evaluation seed (held-out episodes)")
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--out", help="folder for sim2sim.json and sim2sim.md")
    args = ap.parse_args(argv)
    records = [r for run in args.runs for r in evaluate_both(run, args.episodes, args.seed, args.num_envs)]
    print(json.dumps(records, indent=1))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sim2sim.json").write_text(json.dumps(records, indent=1) + "\n")
        (out / "sim2sim.md").write_text(table(records) + "\n")
    return 0
