"""``robots-ts bench curriculum-push``: PPO with ALP-GMM vs Random on Push with an unlearnable region.

    robots-ts bench curriculum-push --out-dir runs/bench_curriculum_push --seeds 7 --json

The parameter space is ``configs/teacher/push_curriculum.yaml``'s: cubes of 0.05 to 36 kg. On
the Panda the scripted push succeeds in at least 75% of episodes on cubes up to about 4.5 kg, now
and then at 11-14 kg, and never from 18 kg on (the config's comment has the measurement). Steps:

1. **Oracle.** The task's scripted controller runs on the test grid: ``--grid`` x ``--grid`` cells
   over mass x goal distance (``--grid-params``), ``--grid-episodes`` episodes per cell. The other
   parameters (cube size, goal distance) are drawn uniformly once and reused by every cell and
   every policy, so cells and runs are paired. Cells where the oracle succeeds in at least
   ``--threshold`` of the episodes are the *learnable* part of the grid.
2. **Training.** Every curriculum x seed is a ``robots-ts train-teacher`` run of one
   ``robots-ts sweep`` (:mod:`robots_ts.scale.sweep`, Ray Tune trials): on a local Ray instance of
   ``--cores`` CPUs all at once, each reserving ``cores / runs`` of them, with one torch thread
   and ``cores // runs`` env worker threads (at least one); on a cluster (``--ray-address``) as
   its CPUs allow.
3. **Same budget.** When all runs reach ``--total-steps``, that is the budget. When
   ``--train-seconds`` runs out first, the sweep stops every run and the budget is the largest
   checkpoint step that *all* runs reached; each run is evaluated at exactly that checkpoint.
   The config's learning rate is constant, so a run stopped at step S is the run one would get
   by training for S steps.
4. **Grid evaluation** of every run at the budget's checkpoint (Ray tasks, in parallel), then the JSON:
   per run the share of learnable cells mastered (success >= threshold) and the mean success
   over learnable cells, per curriculum their mean and std, bounds, budget and wall times;
   an exact one-sided permutation test over the seeds for each comparison; and a comparison
   PNG (oracle and mean success maps, per-seed mastered shares).

Finished work is reused: a rerun with the same ``--out-dir`` resumes unfinished runs from their
checkpoints (the sweep's trials resume the runs their directories hold) and reads cached grid
evaluations.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

DEFAULT_CONFIG = "configs/teacher/push_curriculum.yaml"
CURRICULA = ("random", "alp_gmm")


# -- the test grid ------------------------------------------------------------------------------
def grid_rows(space, grid_params: tuple[str, ...], n: int, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (n**k, k) over ``grid_params`` and the (cells * episodes, d) parameter rows.

    The parameters not on the grid are drawn uniformly once per episode index and shared by
    every cell, so every cell (and every policy) sees the same episodes apart from the grid values.
    """
    from robots_ts.grid_eval import grid_cells

    idx = [space.names.index(p) for p in grid_params]
    cells = grid_cells(space.low[idx], space.high[idx], n)
    rng = np.random.default_rng(seed)
    others = np.stack([space.sample(rng) for _ in range(episodes)])  # (episodes, d)
    rows = np.repeat(others[None], len(cells), axis=0)               # (cells, episodes, d)
    rows[:, :, idx] = cells[:, None, :]
    return cells, rows.reshape(-1, space.dim)


def evaluate_policy_on_grid(policy, env_cfg, rows: np.ndarray, cells: int, episodes: int, seed: int,
                            num_envs: int) -> np.ndarray:
    from robots_ts.grid_eval import cell_success, rollout_on_params

    records = rollout_on_params(policy, env_cfg, rows, seed=seed, num_envs=num_envs)
    return cell_success(records, cells, episodes)


# -- runs and their budgets ---------------------------------------------------------------------
def checkpoint_steps(run_dir: Path) -> set[int]:
    """Steps of the complete step checkpoints (model, normalization and state all written)."""
    ck = Path(run_dir) / "checkpoints"
    steps = set()
    for z in ck.glob("step_*.zip"):
        if z.with_suffix(".norm.json").exists() and z.with_suffix(".state.json").exists():
            steps.add(int(z.stem.split("_")[1]))
    return steps


def common_budget(run_steps: list[set[int]]) -> int | None:
    """The largest checkpoint step every run has, or None."""
    if not run_steps:
        return None
    common = set.intersection(*run_steps)
    return max(common) if common else None


def run_name(curriculum: str, seed: int) -> str:
    return f"{curriculum}_s{seed}"


def training_trials(curricula, seeds: int, total_steps: int, threads: int, overrides: list[str]) -> list:
    """The sweep's trials: each curriculum x seed, ``threads`` env worker threads and one torch
    thread, the bench's overrides, the step budget."""
    from robots_ts.scale.sweep import Trial

    return [Trial(run_name(c, s), s, [f"env.curriculum.name={c}", f"env.num_threads={threads}", "torch_threads=1",
                                      *overrides, f"total_steps={total_steps}"], {"curriculum": c})
            for c in curricula for s in range(seeds)]


def run_cpus(cores: int, runs: int) -> float:
    """CPUs each run reserves so that all ``runs`` run at once on ``cores``: whole CPUs when there
    are enough, else an equal fraction of them (Ray places fractions below one)."""
    # Ray counts CPUs in units of 1/10000: rounded down, all the fractions fit together.
    return float(cores // runs) if cores >= runs else int(cores / runs * 10_000) / 10_000


def cell_index(params: np.ndarray, space, grid_params: tuple[str, ...], n: int) -> np.ndarray:
    """Index of the test-grid cell (``grid_cells`` order) holding each row of ``params``."""
    idx = 0
    for name in grid_params:
        i = space.names.index(name)
        k = np.floor((params[:, i] - space.low[i]) / (space.high[i] - space.low[i]) * n).astype(int)
        idx = idx * n + np.clip(k, 0, n - 1)
    return np.asarray(idx)


def recent_learnable_share(run_dir: Path, step: int, space, grid_params, n: int, learnable: np.ndarray):
    """Share of the curriculum's recent training episodes (its history window at checkpoint
    ``step``) whose parameters fall in learnable cells; None for teachers that keep no history."""
    from robots_ts.curriculum import make_teacher
    from robots_ts.runs import from_jsonable

    path = run_dir / "checkpoints" / f"step_{step:010d}.state.json"
    state = from_jsonable(json.loads(path.read_text())).get("curriculum")
    if not state or "hyperparameters" not in state:
        return None
    teacher = make_teacher(state["name"], state["low"], state["high"], seed=0, **state["hyperparameters"])
    teacher.load_state_dict(state)
    params = np.asarray(teacher.params_history)
    if not len(params):
        return None
    return {"episodes": len(params), "share": float(learnable[cell_index(params, space, grid_params, n)].mean())}


def _eval_worker(run_dir, checkpoint, rows, cells, episodes, seed, num_envs, threads) -> list[float]:
    import torch

    torch.set_num_threads(1)
    from robots_ts.policies.teacher.load import load_teacher

    policy = load_teacher(run_dir, checkpoint)
    env_cfg = replace(policy.env_cfg, num_threads=threads)
    return evaluate_policy_on_grid(policy, env_cfg, rows, cells, episodes, seed, num_envs).tolist()


def permutation_p_value(a, b) -> float:
    """Exact one-sided p-value that mean(a) exceeds mean(b) by chance: the share of all ways to
    split the pooled values into groups of len(a) and len(b) whose mean difference is at least
    the observed one (seeds are exchangeable under the null; ties count against the claim)."""
    from itertools import combinations
    from math import comb

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        raise ValueError("permutation_p_value: both groups need at least one value")
    pooled = np.concatenate([a, b])
    observed = a.mean() - b.mean()
    total = pooled.sum()
    hits = 0
    for idx in combinations(range(len(pooled)), len(a)):
        sa = pooled[list(idx)].sum()
        hits += sa / len(a) - (total - sa) / len(b) >= observed - 1e-12
    return hits / comb(len(pooled), len(a))


def _summary(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()),
            "per_seed": a.tolist()}


# -- the benchmark ------------------------------------------------------------------------------
def bench(out_dir: Path, config: str = DEFAULT_CONFIG, curricula=CURRICULA, seeds: int = 7,
          total_steps: int = 1_500_000, train_seconds: float = 14400.0, grid: int = 8,
          grid_params: tuple[str, ...] = ("mass", "goal_distance"), grid_episodes: int = 12, threshold: float = 0.75,
          eval_seed: int = 12345, cores: int | None = None, overrides: list[str] | None = None,
          ray_address: str | None = None) -> dict:
    from robots_ts.config import load_config
    from robots_ts.envs.world import resolve_task
    from robots_ts.policies.scripted import ScriptedTeacher
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.runs import atomic_write_text

    t0 = time.time()
    overrides = list(overrides or [])
    out_dir = Path(out_dir)
    cfg = load_config(TeacherConfig, config, overrides)
    space = resolve_task(cfg.env.task).params.with_bounds(cfg.env.params)
    for p in grid_params:
        if p not in space.names:
            raise ValueError(f"--grid-params: {p!r} is not a parameter of {cfg.env.task} ({list(space.names)})")
    cells, rows = grid_rows(space, tuple(grid_params), grid, grid_episodes, eval_seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_cells = len(cells)

    specs = {run_name(c, s): (c, s) for c in curricula for s in range(seeds)}
    runs = {name: out_dir / name for name in specs}
    from robots_ts.scale.cluster import cluster_cpus, connect
    from robots_ts.scale.sweep import run_sweep

    ray = connect(ray_address, num_cpus=cores)
    cores = cores or cluster_cpus()
    threads = max(1, cores // len(runs))
    trials = training_trials(curricula, seeds, total_steps, threads, overrides)

    # The oracle grid runs in this process before the trainings start (it is short).
    oracle: dict = {}
    oracle_path = out_dir / f"oracle_grid{grid}x{grid_episodes}_seed{eval_seed}.json"

    bounds = {n: [float(lo), float(hi)] for n, lo, hi in zip(space.names, space.low, space.high)}

    def run_oracle():
        if oracle_path.exists():
            cached = json.loads(oracle_path.read_text())
            if cached.get("param_bounds") == bounds:  # else the config changed: measure again
                oracle.update(cached)
                return
        t = time.time()
        env_cfg = replace(cfg.env, num_threads=1, curriculum=replace(cfg.env.curriculum, name="none"))
        rate = evaluate_policy_on_grid(ScriptedTeacher(), env_cfg, rows, n_cells, grid_episodes, eval_seed, 32)
        oracle.update({"param_bounds": bounds, "cell_success": rate.tolist(), "wall_s": round(time.time() - t, 1)})
        atomic_write_text(oracle_path, json.dumps(oracle))
        print(f"oracle grid: {int(np.sum(rate >= threshold))}/{n_cells} cells learnable "
              f"({oracle['wall_s']} s)", file=sys.stderr, flush=True)

    run_oracle()
    t_train = time.time()
    sweep = run_sweep("train-teacher", config, trials, out_dir, run_cpus(cores, len(runs)), ray_address,
                      time_budget_s=train_seconds)
    end_state = {r["name"]: r["status"] if r["error"] is None else f"error: {r['error']}" for r in sweep["trials"]}
    train_wall = time.time() - t_train
    oracle_rate = np.asarray(oracle["cell_success"])
    learnable = oracle_rate >= threshold

    steps = {name: checkpoint_steps(d) for name, d in runs.items()}
    budget = common_budget(list(steps.values()))
    if budget is None:
        last = {n: sorted(s)[-3:] for n, s in steps.items()}
        raise RuntimeError(f"no checkpoint step common to all runs (last steps: {last}); "
                           f"run states: {end_state}; see {out_dir / 'sweep.json'} and the trials' logs under "
                           f"{sweep['tune_experiment']}")

    # Grid evaluation of every run at the budget's checkpoint, cached per run.
    t_eval = time.time()
    ck_name = f"step_{budget:010d}.zip"
    todo, results = [], {}
    for name, d in runs.items():
        cache = d / f"bench_grid_{budget}_{grid}x{grid_episodes}_seed{eval_seed}.json"
        if cache.exists():
            results[name] = json.loads(cache.read_text())["cell_success"]
        else:
            todo.append(name)
    if todo:
        evaluate = ray.remote(num_cpus=run_cpus(cores, len(todo)))(_eval_worker)
        refs = [evaluate.remote(str(runs[n]), ck_name, rows, n_cells, grid_episodes, eval_seed, 16, threads)
                for n in todo]
        for name, rate in zip(todo, ray.get(refs)):
            results[name] = rate
            atomic_write_text(runs[name] / f"bench_grid_{budget}_{grid}x{grid_episodes}_seed{eval_seed}.json",
                              json.dumps({"checkpoint": ck_name, "cell_success": rate}))
    eval_wall = time.time() - t_eval

    per_run = {}
    for name, (c, s) in specs.items():
        rate = np.asarray(results[name])
        per_run[name] = {
            "curriculum": c, "seed": s, "checkpoint": ck_name, "end_state": end_state.get(name),
            "mastered_learnable_fraction": float(np.mean(rate[learnable] >= threshold)) if learnable.any() else None,
            "success_learnable": float(rate[learnable].mean()) if learnable.any() else None,
            "mastered_all_fraction": float(np.mean(rate >= threshold)),
            "mastered_unlearnable_cells": int(np.sum(rate[~learnable] >= threshold)),
            "recent_training_episodes_in_learnable_cells": recent_learnable_share(
                runs[name], budget, space, tuple(grid_params), grid, learnable),
            "cell_success": rate.tolist(),
        }
    per_curriculum = {}
    for c in curricula:
        mine = [per_run[run_name(c, s)] for s in range(seeds)]
        per_curriculum[c] = {
            "mastered_learnable_fraction": _summary([r["mastered_learnable_fraction"] or 0.0 for r in mine]),
            "success_learnable": _summary([r["success_learnable"] or 0.0 for r in mine]),
            "mastered_all_fraction": _summary([r["mastered_all_fraction"] for r in mine]),
        }
    res = {
        "benchmark": "curriculum-push", "task": cfg.env.task, "config": config, "overrides": overrides,
        "param_bounds": bounds,
        "curricula": list(curricula), "seeds": seeds, "budget_env_steps": budget,
        "requested_total_steps": total_steps, "train_seconds_limit": train_seconds,
        "grid": {"params": list(grid_params), "per_dim": grid, "cells": n_cells, "episodes_per_cell": grid_episodes,
                 "threshold": threshold, "eval_seed": eval_seed, "cell_centres": cells.tolist()},
        "oracle": {"controller": "scripted", "cell_success": oracle_rate.tolist(),
                   "learnable_cells": int(learnable.sum()),
                   # what a uniform (Random) curriculum puts in learnable cells, in expectation
                   "learnable_share_of_space": float(learnable.mean())},
        "per_curriculum": per_curriculum, "per_run": per_run,
        "machine": {"cores": cores, "env_threads_per_run": threads, "torch_threads_per_run": 1,
                    "cpus_per_run": run_cpus(cores, len(runs)), "ray_address": ray_address},
        "sweep": sweep["tune_experiment"],
        "wall_s": {"train": round(train_wall, 1), "grid_eval": round(eval_wall, 1),
                   "oracle": oracle.get("wall_s"), "total": round(time.time() - t0, 1)},
    }
    if len(curricula) >= 2:
        a, b = curricula[-1], curricula[0]
        ma = per_curriculum[a]["mastered_learnable_fraction"]["mean"]
        mb = per_curriculum[b]["mastered_learnable_fraction"]["mean"]
        res["comparison"] = {
            f"{a}_minus_{b}_mastered_learnable": ma - mb, f"{a}_masters_more": bool(ma > mb),
            # exact one-sided permutation tests over the seeds (H1: the last curriculum is better)
            "p_value_mastered_learnable": permutation_p_value(
                per_curriculum[a]["mastered_learnable_fraction"]["per_seed"],
                per_curriculum[b]["mastered_learnable_fraction"]["per_seed"]),
            "p_value_success_learnable": permutation_p_value(
                per_curriculum[a]["success_learnable"]["per_seed"], per_curriculum[b]["success_learnable"]["per_seed"]),
        }
    res["plot"] = str(plot_comparison(res, out_dir / "curriculum_push.png"))
    atomic_write_text(out_dir / "curriculum_push.json", json.dumps(res, indent=1) + "\n")
    return res


def plot_comparison(res: dict, path: Path) -> Path:
    """Oracle map, each curriculum's mean success map, and every run's share of learnable cells mastered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = res["grid"]
    n, thr = g["per_dim"], g["threshold"]
    centres = np.asarray(g["cell_centres"])
    lo, hi = centres.min(axis=0), centres.max(axis=0)
    half = (hi - lo) / max(n - 1, 1) / 2
    extent = [lo[1] - half[1], hi[1] + half[1], lo[0] - half[0], hi[0] + half[0]]
    oracle = np.asarray(res["oracle"]["cell_success"]).reshape(n, n)
    maps = [("scripted oracle", oracle)]
    for c in res["curricula"]:
        runs = [r for r in res["per_run"].values() if r["curriculum"] == c]
        maps.append((f"PPO + {c} (mean of {len(runs)})",
                     np.mean([np.asarray(r["cell_success"]).reshape(n, n) for r in runs], axis=0)))
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(4.2 * (len(maps) + 1), 3.8))
    for ax, (title, img) in zip(axes, maps):
        im = ax.imshow(img, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto", extent=extent)
        # Contour on the cell centres (not the image edges), so the line falls between cells.
        ax.contour(np.unique(centres[:, 1]), np.unique(centres[:, 0]), (oracle >= thr).astype(float), levels=[0.5],
                   colors="w", linewidths=1.5)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(g["params"][1])
        ax.set_ylabel(g["params"][0])
    fig.colorbar(im, ax=axes[len(maps) - 1], label="success rate")
    ax = axes[-1]
    for i, c in enumerate(res["curricula"]):
        vals = res["per_curriculum"][c]["mastered_learnable_fraction"]["per_seed"]
        ax.scatter([i] * len(vals), vals, zorder=3)
        ax.errorbar([i + 0.15], [np.mean(vals)], yerr=[np.std(vals)], fmt="_k", capsize=4)
    ax.set_xticks(range(len(res["curricula"])), res["curricula"])
    ax.set_xlim(-0.5, len(res["curricula"]) - 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"learnable cells mastered (>= {thr:.0%})")
    ax.set_title(f"{res['budget_env_steps']:,} env steps per run", fontsize=10)
    fig.suptitle("white line: learnable region (scripted oracle >= threshold)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench curriculum-push", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="runs/bench_curriculum_push")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--curricula", default=",".join(CURRICULA),
                    help="comma-separated; the last is compared to the first")
    ap.add_argument("--seeds", type=int, default=7)
    ap.add_argument("--total-steps", type=int, default=1_500_000, help="env steps per run, at most")
    ap.add_argument("--train-seconds", type=float, default=14400.0,
                    help="wall-clock limit of the training phase; then runs stop at a common checkpoint")
    ap.add_argument("--grid", type=int, default=8, help="cells per grid dimension")
    ap.add_argument("--grid-params", default="mass,goal_distance", help="the two parameters the test grid spans")
    ap.add_argument("--grid-episodes", type=int, default=12, help="episodes per cell")
    ap.add_argument("--threshold", type=float, default=0.75, help="success rate at which a cell is mastered")
    ap.add_argument("--cores", type=int, help="CPUs to share between the runs (default: all the machine's, or "
                    "the cluster's)")
    ap.add_argument("--ray-address", help="run on this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("overrides", nargs="*", help="config key=value overrides for every run")
    args = ap.parse_args(argv)
    grid_params = tuple(p for p in args.grid_params.split(",") if p)
    if len(grid_params) != 2:
        ap.error(f"--grid-params: expected two names, got {args.grid_params!r}")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        ap.error(f"overrides must be key=value, got {bad}")
    try:
        res = bench(Path(args.out_dir), args.config, tuple(args.curricula.split(",")), args.seeds, args.total_steps,
                    args.train_seconds, args.grid, grid_params, args.grid_episodes, args.threshold,
                    cores=args.cores, overrides=args.overrides, ray_address=args.ray_address)
    except (ValueError, RuntimeError) as exc:  # ConfigError is a ValueError
        print(f"robots-ts bench curriculum-push: {exc}", file=sys.stderr)
        return 2
    if args.json:
        short = {k: v for k, v in res.items() if k != "per_run"}
        short["per_run"] = {n: {k: v for k, v in r.items() if k != "cell_success"} for n, r in res["per_run"].items()}
        print(json.dumps(short, indent=1))
    else:
        for c, s in res["per_curriculum"].items():
            m = s["mastered_learnable_fraction"]
            print(f"{c}: learnable cells mastered {m['mean']:.3f} +- {m['std']:.3f} {m['per_seed']}")
        if "comparison" in res:
            print(f"one-sided permutation p: mastered {res['comparison']['p_value_mastered_learnable']:.3f}, "
                  f"success {res['comparison']['p_value_success_learnable']:.3f}")
    print(f"record: {Path(args.out_dir) / 'curriculum_push.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
