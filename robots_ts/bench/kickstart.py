"""``robots-ts bench kickstart``: kickstarted PPO vs PPO from scratch on Push, several seeds each.

    robots-ts bench kickstart --teacher runs/push_v3 --seeds 0 1 2 --out runs/bench_kickstart --json

Steps:

1. **The teacher's success**: the teacher run (its ``best`` checkpoint, the one kickstarting reads)
   evaluated on ``--teacher-episodes`` episodes of its task (cached in the output directory).
2. **Training**: for every seed, a ``train-teacher`` run of ``--config`` kickstarted from the
   teacher (``kickstart.teachers=[TEACHER]``) and one from scratch (``kickstart.teachers=[]``; all
   else equal), as the trials of one ``robots-ts sweep`` (:mod:`robots_ts.scale.sweep`) sharing
   ``--cores`` CPUs. Each run evaluates itself every ``eval_every`` env steps (``eval_episodes``
   episodes) and at its last step. A rerun with the same ``--out-dir`` resumes unfinished runs.
3. **Per run**, from its evaluations: the first evaluated step whose success reaches
   ``--fraction`` (0.8) of the teacher's, the final success, and whether it ends at or above the
   teacher's success; for kickstarted runs also the success at the first evaluation once the weight
   reached 0 (does the student keep improving on its own?). Per arm their mean, std and per-seed
   values (a run that never reaches the threshold counts as its whole budget in the means, and is
   reported as ``null``), and exact one-sided permutation tests over the seeds.
4. **Held out**: every run's last checkpoint (``latest``) on the teacher's own episodes (the same
   count and evaluation seed, so ``robots-ts evaluate RUN --checkpoint latest --episodes N --seed S``
   gives the same number), the end-against-teacher comparison that does not rest on a 64-episode
   evaluation; cached per run and step.

Writes ``kickstart.json`` and ``kickstart.png`` (every run's evaluation curve against the teacher's
success, the target and the step where the weight reaches 0) in the output directory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from robots_ts.bench.curriculum_push import permutation_p_value, run_cpus

DEFAULT_CONFIG = "configs/teacher/push_kickstart.yaml"
ARMS = ("kickstart", "scratch")


def cached_success(run_dir: Path, checkpoint: str, episodes: int, seed: int, path: Path, identity: dict) -> dict:
    """Success of a run's ``checkpoint`` on ``episodes`` episodes from evaluation seed ``seed``, cached
    in ``path`` for as long as the cache's ``identity`` fields (which run, which step) still hold."""
    from robots_ts.evaluate import rollout_policy
    from robots_ts.policies.teacher.load import load_teacher
    from robots_ts.runs import atomic_write_text

    if path.exists():
        cached = json.loads(path.read_text())
        if all(cached.get(k) == v for k, v in identity.items()):
            return cached
    t = time.time()
    policy = load_teacher(run_dir, checkpoint)
    res = rollout_policy(policy, policy.env_cfg, episodes=episodes, seed=seed, num_envs=16)
    out = {**identity, "checkpoint": str(policy.checkpoint), "episodes": episodes, "seed": seed,
           "success_rate": res["success_rate"], "success_ci95": res.get("success_ci95"),
           "wall_s": round(time.time() - t, 1)}
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    return out


def teacher_success(teacher_run: Path, out_dir: Path, episodes: int, seed: int) -> dict:
    """Success of the teacher's ``best`` checkpoint on its own task (cached per teacher and budget)."""
    return cached_success(teacher_run, "best", episodes, seed, out_dir / f"teacher_success_{episodes}ep_seed{seed}.json",
                          {"teacher": str(teacher_run)})


def held_out_success(run_dir: Path, episodes: int, seed: int) -> dict:
    """A run's last checkpoint on ``episodes`` episodes from evaluation seed ``seed`` (the teacher's
    held-out episodes), cached in the run directory for the checkpoint's step."""
    run_dir = Path(run_dir)
    step = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
    return cached_success(run_dir, "latest", episodes, seed, run_dir / f"heldout_latest_{episodes}ep_seed{seed}.json",
                          {"step": step})


def evaluations(run_dir: Path) -> list[tuple[int, float]]:
    """(step, success) of every evaluation a run recorded, in order."""
    from robots_ts.runs import read_jsonl

    path = Path(run_dir) / "metrics.jsonl"
    recs = read_jsonl(path) if path.exists() else []
    return [(int(r["steps"]), float(r["eval_success_rate"])) for r in recs if "eval_success_rate" in r]


def plot(res: dict, path: Path) -> Path:
    """Every run's evaluation curve, kickstarted and from scratch, against the teacher's success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"kickstart": "tab:orange", "scratch": "tab:blue"}
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, r in sorted(res["per_run"].items()):
        if r["curve"]:
            steps, success = zip(*r["curve"])
            ax.plot(np.asarray(steps) / 1e6, success, color=colours[r["arm"]], lw=1.4,
                    label=f"{r['arm']} (seeds {', '.join(str(x) for x in res['seeds'])})"
                    if r["seed"] == res["seeds"][0] else None)
    ax.axhline(res["teacher"]["success_rate"], color="k", lw=1, label=f"teacher {res['teacher']['success_rate']:.3f}")
    ax.axhline(res["target_success"], color="k", ls=":", lw=1,
               label=f"{res['target_fraction']:.0%} of the teacher")
    if res["kickstart"]["decay_steps"]:
        ax.axvline(res["kickstart"]["decay_steps"] / 1e6, color="tab:orange", ls="--", lw=1, label="weight reaches 0")
    ax.set_xlabel("env steps (millions)")
    ax.set_ylabel(f"evaluation success ({res['eval_episodes_during_training']} episodes)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Kickstarted PPO vs PPO from scratch on {res['task']}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_result(evals: list[tuple[int, float]], target: float, teacher: float, zero_step: int | None) -> dict:
    """What one run's learning curve says against the teacher's success."""
    reached = next((s for s, v in evals if v >= target), None)
    out = {"steps_to_target": reached, "final_steps": evals[-1][0] if evals else None,
           "final_success": evals[-1][1] if evals else None,
           "at_or_above_teacher": bool(evals and evals[-1][1] >= teacher), "curve": evals}
    if zero_step is not None:
        at_zero = next(((s, v) for s, v in evals if s >= zero_step), None)
        out["success_when_weight_reached_0"] = at_zero[1] if at_zero else None
        out["improved_after_weight_0"] = (at_zero is not None and evals[-1][0] > at_zero[0]
                                          and evals[-1][1] > at_zero[1])
    return out


def _summary(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std()), "per_seed": a.tolist()}


def bench(out_dir: Path, teacher: Path, config: str = DEFAULT_CONFIG, seeds: list[int] | int = (0, 1, 2), total_steps: int = 2_000_000,
          fraction: float = 0.8, teacher_episodes: int = 200, eval_seed: int = 12345, cores: int | None = None,
          train_seconds: float | None = None, overrides: list[str] | None = None,
          ray_address: str | None = None) -> dict:
    from robots_ts.config import load_config
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.policies.teacher.train import validate
    from robots_ts.runs import atomic_write_text
    from robots_ts.scale.cluster import cluster_cpus, connect
    from robots_ts.scale.sweep import Trial, run_sweep

    t0 = time.time()
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    out_dir, teacher = Path(out_dir), Path(teacher).resolve()
    overrides = list(overrides or [])
    arm_overrides = {"kickstart": [f"kickstart.teachers=[{teacher}]"], "scratch": ["kickstart.teachers=[]"]}
    cfg = load_config(TeacherConfig, config, [*overrides, *arm_overrides["kickstart"], f"total_steps={total_steps}"])
    validate(cfg)   # a teacher of another task is refused here, before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = teacher_success(teacher, out_dir, teacher_episodes, eval_seed)
    target = fraction * reference["success_rate"]

    connect(ray_address, num_cpus=cores)
    cores = cores or cluster_cpus()
    runs = len(ARMS) * len(seeds)
    threads = max(1, cores // runs)
    trials = [Trial(f"{arm}_s{s}", s, [f"env.num_threads={threads}", "torch_threads=1", *overrides,
                                       *arm_overrides[arm], f"total_steps={total_steps}"], {"arm": arm})
              for arm in ARMS for s in seeds]
    t_train = time.time()
    sweep = run_sweep("train-teacher", config, trials, out_dir, run_cpus(cores, runs), ray_address,
                      time_budget_s=train_seconds, name="kickstart")
    train_wall = time.time() - t_train
    states = {r["name"]: r["status"] if r["error"] is None else f"error: {r['error']}" for r in sweep["trials"]}

    # The step at which the weight becomes 0 (None: it never does within the run).
    zero = cfg.kickstart.decay_steps or None
    per_run = {t.name: {"arm": t.grid["arm"], "seed": t.seed, "end_state": states.get(t.name),
                        **run_result(evaluations(out_dir / t.name), target, reference["success_rate"],
                                     zero if t.grid["arm"] == "kickstart" else None)} for t in trials}
    for t in trials:     # the last checkpoint on the teacher's own held-out episodes
        if (out_dir / t.name / "checkpoints" / "latest.json").exists():
            held = held_out_success(out_dir / t.name, teacher_episodes, eval_seed)
            per_run[t.name]["held_out"] = {**held, "at_or_above_teacher": held["success_rate"] >= reference["success_rate"]}
    per_arm = {}
    for arm in ARMS:
        mine = [r for r in per_run.values() if r["arm"] == arm]
        held = [r["held_out"] for r in mine if "held_out" in r]
        per_arm[arm] = {
            "held_out_final_success": _summary([h["success_rate"] for h in held]) if held else None,
            "held_out_at_or_above_teacher": sum(h["at_or_above_teacher"] for h in held),
            # never reaching the target counts as the whole budget (the mean is then a lower bound)
            "steps_to_target": _summary([r["steps_to_target"] or total_steps for r in mine]),
            "reached_target": sum(r["steps_to_target"] is not None for r in mine),
            "final_success": _summary([r["final_success"] or 0.0 for r in mine]),
            "at_or_above_teacher": sum(r["at_or_above_teacher"] for r in mine),
        }
    k, s = per_arm["kickstart"], per_arm["scratch"]
    res = {
        "benchmark": "kickstart", "task": cfg.env.task, "config": config, "overrides": overrides,
        "teacher": reference, "target_fraction": fraction, "target_success": target, "seeds": seeds,
        "total_steps": total_steps, "eval_episodes_during_training": cfg.eval_episodes,
        "kickstart": {"weight": cfg.kickstart.weight, "schedule": cfg.kickstart.schedule,
                      "decay_steps": cfg.kickstart.decay_steps, "half_life": cfg.kickstart.half_life,
                      "loss": cfg.kickstart.loss},
        "per_arm": per_arm, "per_run": per_run,
        "comparison": {
            "kickstart_reaches_target_in_fewer_steps": bool(k["steps_to_target"]["mean"] < s["steps_to_target"]["mean"]),
            "steps_to_target_ratio": (k["steps_to_target"]["mean"] / s["steps_to_target"]["mean"]
                                      if s["steps_to_target"]["mean"] else None),
            # exact one-sided permutation tests over the seeds (H1: kickstarting is faster / ends higher)
            "p_value_fewer_steps": permutation_p_value(np.negative(k["steps_to_target"]["per_seed"]),
                                                       np.negative(s["steps_to_target"]["per_seed"])),
            "p_value_higher_final": permutation_p_value(k["final_success"]["per_seed"], s["final_success"]["per_seed"]),
            "kickstart_ends_at_or_above_teacher": k["at_or_above_teacher"] == len(seeds),
            "kickstart_ends_at_or_above_teacher_held_out": k["held_out_at_or_above_teacher"] == len(seeds),
            "p_value_higher_final_held_out": (permutation_p_value(k["held_out_final_success"]["per_seed"],
                                                                  s["held_out_final_success"]["per_seed"])
                                              if k["held_out_final_success"] and s["held_out_final_success"] else None),
        },
        "machine": {"cores": cores, "env_threads_per_run": threads, "cpus_per_run": run_cpus(cores, runs),
                    "ray_address": ray_address},
        "sweep": sweep["tune_experiment"],
        "wall_s": {"teacher_eval": reference["wall_s"], "train": round(train_wall, 1), "total": round(time.time() - t0, 1)},
    }
    atomic_write_text(out_dir / "kickstart.json", json.dumps(res, indent=1) + "\n")
    plot(res, out_dir / "kickstart.png")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench kickstart", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="the trained teacher run to kickstart from (e.g. runs/push_v3)")
    ap.add_argument("--out", "--out-dir", dest="out_dir", default="runs/bench_kickstart",
                    help="directory for the runs and kickstart.json")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds, one run per arm each")
    ap.add_argument("--total-steps", type=int, default=2_000_000, help="env steps per run")
    ap.add_argument("--fraction", type=float, default=0.8, help="share of the teacher's success a run must reach")
    ap.add_argument("--teacher-episodes", type=int, default=200, help="episodes of the teacher's evaluation")
    ap.add_argument("--train-seconds", type=float, help="wall-clock limit of the training phase (default: none)")
    ap.add_argument("--cores", type=int, help="CPUs to share between the runs (default: all the machine's)")
    ap.add_argument("--ray-address", help="run on this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("overrides", nargs="*", help="config key=value overrides for every run")
    args = ap.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o or o.startswith("kickstart.teachers=")]
    if bad:
        ap.error(f"overrides must be key=value other than kickstart.teachers (use --teacher), got {bad}")
    if len(set(args.seeds)) != len(args.seeds) or args.total_steps < 1 or not 0 < args.fraction <= 1:
        ap.error("--seeds must be distinct, --total-steps positive and --fraction in (0, 1]")
    try:
        res = bench(Path(args.out_dir), Path(args.teacher), args.config, args.seeds, args.total_steps, args.fraction,
                    args.teacher_episodes, cores=args.cores, train_seconds=args.train_seconds,
                    overrides=args.overrides, ray_address=args.ray_address)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:  # ConfigError is a ValueError
        print(f"robots-ts bench kickstart: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"teacher success {res['teacher']['success_rate']:.3f}; target {res['target_success']:.3f}")
        for arm, a in res["per_arm"].items():
            print(f"{arm}: steps to target {a['steps_to_target']['mean']:.0f} ({a['reached_target']}/{len(args.seeds)} "
                  f"reached), final success {a['final_success']['mean']:.3f}, at or above the teacher "
                  f"{a['at_or_above_teacher']}/{len(args.seeds)}")
            if a["held_out_final_success"]:
                print(f"  held out ({res['teacher']['episodes']} episodes): final success "
                      f"{a['held_out_final_success']['mean']:.3f}, at or above the teacher "
                      f"{a['held_out_at_or_above_teacher']}/{len(args.seeds)}")
    print(f"record: {Path(args.out_dir) / 'kickstart.json'}, plot: {Path(args.out_dir) / 'kickstart.png'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
