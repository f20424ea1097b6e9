"""``robots-ts bench distill``: DAgger against behaviour cloning over a teacher-label budget.

For each seed, one DAgger run logs the student's success after every iteration, i.e. at label
budgets b_i = (i + 1) * steps_per_iteration * num_envs. At a chosen subset of those budgets a BC
run (teacher-only rollouts, one collection of exactly b_i labels) is trained from scratch. Both
are scored by the same student-alone evaluation. By default BC trains on as many samples (epochs
times dataset size) as DAgger did in its iterations up to b_i (DAgger retrains on its growing
aggregate every iteration), so the comparison is at equal labels *and* equal training compute.

Prints one JSON object (per-budget mean, std and per-seed success of both, the teacher's success,
the commands' settings) and writes ``distill_bench.png``. Finished runs in ``--out`` are reused, so
a killed benchmark picks up where it stopped.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from robots_ts.config import load_config
from robots_ts.policies.distill.config import StudentConfig
from robots_ts.policies.distill.dagger import distill
from robots_ts.runs import atomic_write_json, read_jsonl


def _run(cfg: StudentConfig, run_dir: Path) -> list[dict]:
    """Metrics of a finished run in ``run_dir``, running or resuming it first if needed."""
    done = read_jsonl(run_dir / "metrics.jsonl")
    last = len(done) - 1 if done else -1
    wanted = cfg.dagger.iterations - 1 if cfg.dagger.algorithm == "dagger" else 0
    if last < wanted:
        distill(cfg, run_dir, resume=(run_dir / "run.json").exists(), progress=False)
    return read_jsonl(run_dir / "metrics.jsonl")


def bc_epochs_matching(dagger_records: list[dict], iteration: int) -> int:
    """Epochs on b_i samples that train on as many samples as DAgger did up to iteration i."""
    trained = sum(r["train_samples"] for r in dagger_records[: iteration + 1])
    return max(1, round(trained / dagger_records[iteration]["labels"]))


def bench_distill(cfg: StudentConfig, seeds: list[int], out: Path, bc_points: int = 4,
                  bc_epochs: str = "matched") -> dict:
    iterations = cfg.dagger.iterations
    # Budget indices for BC, spread over the run; index 0 is skipped when beta0 = 1, because DAgger's
    # first iteration then *is* BC at that budget (teacher-only rollouts, trained once).
    start = 1 if cfg.dagger.beta0 >= 1.0 else 0
    picks = sorted({int(round(x)) for x in np.linspace(start, iterations - 1, bc_points)})
    dagger_runs, bc_runs = {}, {}
    for seed in seeds:
        scfg = replace(cfg, seed=seed, dagger=replace(cfg.dagger, algorithm="dagger"))
        dagger_runs[seed] = _run(scfg, out / f"dagger_s{seed}")
        for i in picks:
            epochs = bc_epochs_matching(dagger_runs[seed], i) if bc_epochs == "matched" else cfg.dagger.epochs
            # BC's one training phase must not be cut by DAgger's per-iteration cap on trained samples.
            bcfg = replace(scfg, dagger=replace(scfg.dagger, algorithm="bc", iterations=i + 1, bc_epochs=epochs,
                                                train_samples=0))
            bc_runs[(seed, i)] = _run(bcfg, out / f"bc_s{seed}_it{i:03d}")[-1]
    labels = [r["labels"] for r in dagger_runs[seeds[0]]]
    per_seed = {s: [r["student_success"] for r in dagger_runs[s]] for s in seeds}
    dagger = np.array([per_seed[s] for s in seeds])
    bc = np.array([[bc_runs[(s, i)]["student_success"] for i in picks] for s in seeds])
    dagger_at = dagger[:, picks]
    result = {
        "task": cfg.env.task, "encoder": cfg.student.encoder, "teacher": cfg.teacher, "seeds": seeds,
        "num_envs": cfg.env.num_envs, "steps_per_iteration": cfg.dagger.steps_per_iteration,
        "eval_episodes": cfg.dagger.eval_episodes, "bc_epochs": bc_epochs,
        "teacher_success": float(np.mean([dagger_runs[s][0]["teacher_success"] for s in seeds])),
        "labels": labels,
        "dagger_success_mean": dagger.mean(0).round(4).tolist(), "dagger_success_std": dagger.std(0).round(4).tolist(),
        "dagger_success_per_seed": {str(s): per_seed[s] for s in seeds},
        "dagger_agreement_mean": np.mean([[r.get("agreement") or np.nan for r in dagger_runs[s]] for s in seeds],
                                         axis=0).round(4).tolist(),
        "bc_labels": [labels[i] for i in picks],
        "bc_success_mean": bc.mean(0).round(4).tolist(), "bc_success_std": bc.std(0).round(4).tolist(),
        "bc_success_per_seed": {str(s): bc[k].tolist() for k, s in enumerate(seeds)},
        "bc_agreement_mean": np.mean([[bc_runs[(s, i)].get("agreement") or np.nan for i in picks] for s in seeds],
                                     axis=0).round(4).tolist(),
        "dagger_at_bc_labels_mean": dagger_at.mean(0).round(4).tolist(),
        "dagger_minus_bc_mean": (dagger_at - bc).mean(0).round(4).tolist(),
        "dagger_beats_bc_at": int(np.sum(dagger_at.mean(0) > bc.mean(0))), "bc_points": len(picks),
    }
    result["plot"] = str(plot(result, out / "distill_bench.png"))
    atomic_write_json(out / "distill_bench.json", result)
    return result


def plot(res: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    x, m, s = np.array(res["labels"]), np.array(res["dagger_success_mean"]), np.array(res["dagger_success_std"])
    ax.plot(x, m, "o-", label="DAgger")
    ax.fill_between(x, m - s, m + s, alpha=0.2)
    x, m, s = np.array(res["bc_labels"]), np.array(res["bc_success_mean"]), np.array(res["bc_success_std"])
    ax.errorbar(x, m, yerr=s, fmt="s--", capsize=3, label="behaviour cloning")
    ax.axhline(res["teacher_success"], color="k", ls=":", lw=1, label="teacher")
    ax.set_xlabel("teacher-labelled samples")
    ax.set_ylabel("student success rate (acting alone)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{res['task']} {res['encoder']} student, {len(res['seeds'])} seeds (mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench distill", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="student config, e.g. configs/student/reach_depth.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value overrides; teacher=RUN_DIR is required")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--bc-points", type=int, default=4, help="label budgets at which BC is trained")
    ap.add_argument("--bc-epochs", choices=["matched", "same"], default="matched",
                    help="matched: BC gets DAgger's training sample-passes; same: dagger.epochs")
    ap.add_argument("--out", default="runs/bench_distill", help="directory for the runs, JSON and plot")
    args = ap.parse_args(argv)
    if len(args.seeds) < 3:
        print("robots-ts bench distill: warning: fewer than 3 seeds", file=sys.stderr)
    cfg = load_config(StudentConfig, args.config, args.overrides)
    res = bench_distill(cfg, args.seeds, Path(args.out), args.bc_points, args.bc_epochs)
    print(json.dumps(res, indent=1))
    return 0
