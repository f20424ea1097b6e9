"""``robots-ts bench multi-teacher``: one student distilled from several teachers against one
single-task student per teacher, per task, over seeds.

    robots-ts bench multi-teacher configs/student/multi_depth.yaml teachers.Reach=RUN teachers.Push=RUN \\
        teachers.Lift=RUN --seeds 0 1 2 [--budget sum|each] [--eval-episodes 100] [key=value ...]

For each seed, the multi-task run is the config as given (``OUT/multi/multi_s{seed}``); each task's
single-task run (``OUT/single/{task}_s{seed}``) is the same config (student network, DAgger
schedule, augmentation, env settings) with that task's teacher alone, without the ``task`` group.
Label budgets, with I iterations of S steps:

- ``--budget sum`` (default): the multi student has ``env.num_envs`` worlds (split by
  ``task_shares``) and each single student gets its task's share of them, so the multi student's
  labels equal the single students' labels together, and each task gets as many labels in both;
- ``--budget each``: every single student gets all ``env.num_envs`` worlds, so the multi student's
  labels equal one single student's (each task sees a fraction of what its specialist sees).

Every run goes through ``robots-ts sweep`` (Ray Tune trials, as ``bench distill``); finished runs
in ``--out`` are reused, unfinished ones resumed. Each run's last student (the final fit) is then
evaluated acting alone, ``--eval-episodes`` episodes per task, with one evaluation seed: the multi
student on its own multi-task env, each single student on its task. Prints one JSON object (also
``OUT/multi_teacher.json``): per task, the per-seed and mean success of both, the ratio multi /
single of the means, and whether it reaches ``--threshold`` (0.85).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from robots_ts.config import ConfigError, load_config
from robots_ts.policies.distill.config import StudentConfig, validate
from robots_ts.runs import atomic_write_json

THRESHOLD = 0.85
PROG = "robots-ts bench multi-teacher"


def single_config(cfg: StudentConfig) -> StudentConfig:
    """The single-task counterpart of a multi-task config: everything but the teachers, the task
    shares and the ``task`` group (each trial sets its teacher, task and worlds)."""
    return replace(cfg, teachers={}, task_shares={},
                   env=replace(cfg.env, obs_groups=[g for g in cfg.env.obs_groups if g != "task"]))


def single_worlds(cfg: StudentConfig, budget: str) -> dict[str, int]:
    """Worlds of each task's single-task student."""
    from robots_ts.envs.multi_task import split_worlds
    from robots_ts.policies.distill.multi import shares_of

    if budget == "each":
        return {t: cfg.env.num_envs for t in sorted(cfg.teachers)}
    return split_worlds(cfg.env.num_envs, shares_of(cfg))


def evaluate_student(run_dir: Path, episodes_per_task: int, seed: int, worlds_per_task: int) -> dict[str, dict]:
    """Success per task of a finished run's last student acting alone."""
    from robots_ts.evaluate import rollout_policy
    from robots_ts.policies.students.checkpoint import load_student

    policy = load_student(run_dir, "latest")
    tasks = len(policy.task_shares or {policy.env_cfg.task: 1})
    res = rollout_policy(policy, policy.env_cfg, episodes=episodes_per_task * tasks, seed=seed,
                         num_envs=worlds_per_task * tasks)
    if "per_task" in res:
        return {t: {"success_rate": v["success_rate"], "episodes": v["episodes"]} for t, v in res["per_task"].items()}
    return {policy.env_cfg.task: {"success_rate": res["success_rate"], "episodes": res["episodes"]}}


def bench_multi_teacher(cfg: StudentConfig, seeds: list[int], out: Path, budget: str = "sum",
                        eval_episodes: int = 100, eval_seed: int = 12345, eval_worlds: int = 16,
                        threshold: float = THRESHOLD, cpus_per_run: float = 1.0,
                        ray_address: str | None = None) -> dict:
    from robots_ts.bench.distill import _sweep

    if not cfg.teachers:
        raise ConfigError(f"{PROG}: give the teachers, e.g. teachers.Reach=RUN teachers.Push=RUN teachers.Lift=RUN")
    if budget not in ("sum", "each"):
        raise ConfigError(f"--budget: expected 'sum' or 'each', got {budget!r}")
    validate(cfg)
    tasks = sorted(cfg.teachers)
    worlds = single_worlds(cfg, budget)
    single = single_config(cfg)
    for t in tasks:       # every single-task run's config is checked before anything trains
        validate(replace(single, teacher=cfg.teachers[t], env=replace(single.env, task=t, num_envs=worlds[t])))
    out = Path(out)
    multi_runs = _sweep(cfg, out / "multi", [(f"multi_s{s}", s, []) for s in seeds], "sweep_multi",
                        cpus_per_run, ray_address)
    specs = [(f"{t.lower()}_s{s}", s, [f"teacher={cfg.teachers[t]}", f"env.task={t}", f"env.num_envs={worlds[t]}"])
             for t in tasks for s in seeds]
    single_runs = _sweep(single, out / "single", specs, "sweep_single", cpus_per_run, ray_address)
    multi = {s: evaluate_student(out / "multi" / f"multi_s{s}", eval_episodes, eval_seed, eval_worlds) for s in seeds}
    per_task = {}
    for t in tasks:
        one = [evaluate_student(out / "single" / f"{t.lower()}_s{s}", eval_episodes, eval_seed, eval_worlds)[t]
               for s in seeds]
        m = np.array([multi[s][t]["success_rate"] for s in seeds])
        o = np.array([r["success_rate"] for r in one])
        ratio = float(m.mean() / o.mean()) if o.mean() > 0 else None
        per_task[t] = {
            "multi_success_per_seed": m.tolist(), "single_success_per_seed": o.tolist(),
            "multi_success_mean": round(float(m.mean()), 4), "single_success_mean": round(float(o.mean()), 4),
            "ratio_multi_over_single": None if ratio is None else round(ratio, 4),
            "meets_threshold": ratio is not None and ratio >= threshold,
            "eval_episodes_per_seed": multi[seeds[0]][t]["episodes"],
            "labels_multi_task_share": int(multi_runs[f"multi_s{seeds[0]}"][-1]["labels"] * worlds_share(cfg, t)),
            "labels_single": int(single_runs[f"{t.lower()}_s{seeds[0]}"][-1]["labels"]),
            "teacher_success": single_runs[f"{t.lower()}_s{seeds[0]}"][-1]["teacher_success"],
        }
    result = {"tasks": tasks, "seeds": seeds, "budget": budget, "threshold": threshold,
              "labels_multi": int(multi_runs[f"multi_s{seeds[0]}"][-1]["labels"]),
              "labels_single_total": int(sum(per_task[t]["labels_single"] for t in tasks)),
              "multi_worlds": cfg.env.num_envs, "single_worlds": worlds,
              "iterations": cfg.dagger.iterations, "steps_per_iteration": cfg.dagger.steps_per_iteration,
              "eval_seed": eval_seed, "teachers": dict(cfg.teachers), "per_task": per_task,
              "all_tasks_meet_threshold": all(v["meets_threshold"] for v in per_task.values())}
    atomic_write_json(out / "multi_teacher.json", result)
    return result


def worlds_share(cfg: StudentConfig, task: str) -> float:
    """The fraction of the multi-task run's worlds (and so of its labels) that run ``task``."""
    from robots_ts.envs.multi_task import split_worlds
    from robots_ts.policies.distill.multi import shares_of

    return split_worlds(cfg.env.num_envs, shares_of(cfg))[task] / cfg.env.num_envs


def main(argv=None) -> int:
    from robots_ts.bench.distill import parse_with_overrides

    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="multi-task student config, e.g. configs/student/multi_depth.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value overrides; teachers.<Task>=RUN for every task")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", choices=["sum", "each"], default="sum",
                    help="sum: the multi student's labels = the single students' together; each: = one single's")
    ap.add_argument("--eval-episodes", type=int, default=100, help="held-out episodes per task and seed")
    ap.add_argument("--eval-seed", type=int, default=12345)
    ap.add_argument("--eval-worlds", type=int, default=16, help="worlds per task in the evaluations")
    ap.add_argument("--threshold", type=float, default=THRESHOLD, help="ratio multi / single each task must reach")
    ap.add_argument("--out", default="runs/bench_multi_teacher", help="directory for the runs and the JSON")
    ap.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs each run reserves (default 1)")
    ap.add_argument("--ray-address", help="run on this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    args, overrides = parse_with_overrides(ap, argv)
    if len(args.seeds) < 3:
        print(f"{PROG}: warning: fewer than 3 seeds", file=sys.stderr)
    if args.eval_episodes < 1 or args.eval_worlds < 1:
        raise ConfigError(f"--eval-episodes and --eval-worlds: expected integers >= 1, got {args.eval_episodes}, "
                          f"{args.eval_worlds}")
    cfg = load_config(StudentConfig, args.config, overrides)
    res = bench_multi_teacher(cfg, args.seeds, Path(args.out), args.budget, args.eval_episodes, args.eval_seed,
                              args.eval_worlds, args.threshold, args.cpus_per_run, args.ray_address)
    print(json.dumps(res, indent=1))
    return 0
