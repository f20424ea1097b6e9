"""``robots-ts bench distill``: DAgger against behaviour cloning over a teacher-label budget.

For each seed, one DAgger run logs the student's success after every iteration, i.e. at label
budgets b_i = (i + 1) * steps_per_iteration * num_envs. At a chosen subset of those budgets a BC
run (teacher-only rollouts, one collection of exactly b_i labels) is trained from scratch. Both
are scored by the same student-alone evaluation. By default BC trains on as many samples (epochs
times dataset size) as DAgger did in its iterations up to b_i (DAgger retrains on its growing
aggregate every iteration), so the comparison is at equal labels *and* equal training compute.

Whether DAgger beats BC at a budget is a one-sided permutation test on the per-seed success
rates, paired by seed (a seed fixes the student's initial weights and the rollout seeds of both
runs): the p-value is the share of sign flips of the per-seed differences whose mean is at least
the observed one, enumerated exactly for up to 16 seeds, else estimated from 10,000 random flips
with a fixed generator. With 3 seeds the smallest possible p-value is 1/8. The unpaired test
(label permutations of the pooled rates) is reported beside it.

Both arms build their env from the same config, so ``env.randomization=@configs/randomization/default.yaml``
(or any other override) applies to DAgger's and BC's rollouts, labels and evaluations alike.

The runs are ``robots-ts distill`` runs of two ``robots-ts sweep`` s (:mod:`robots_ts.scale.sweep`,
Ray Tune trials on a local Ray instance, or on the cluster ``--ray-address`` names): first every
seed's DAgger run, then the BC runs (their epochs follow from DAgger's metrics). Each trial's
command names the bench's config, written to ``OUT/bench_config.yaml``.

Prints one JSON object (per-budget mean, std and per-seed success of both, the tests, the teacher's
success, the commands' settings) and writes ``distill_bench.png``. Finished runs in ``--out`` are
reused and unfinished ones resumed, so a killed benchmark picks up where it stopped.
"""
from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations, product
from math import comb
from pathlib import Path

import numpy as np

from robots_ts.config import ConfigError, load_config, load_run_config, to_dict
from robots_ts.policies.distill.config import StudentConfig
from robots_ts.policies.distill.dagger import distill
from robots_ts.runs import atomic_write_json, read_jsonl


def check_reusable(cfg: StudentConfig, run_dir: Path) -> None:
    """A run already in ``run_dir`` must be the one asked for (seed, task, algorithm, randomization),
    else reusing or resuming it would mix another experiment into the figures."""
    from robots_ts.policies.distill.dagger import uses_checksums

    path = run_dir / "config.yaml"
    if not path.exists():
        return
    had = load_run_config(StudentConfig, path, require_checksum=uses_checksums(run_dir))
    differ = [k for k, a, b in (("seed", had.seed, cfg.seed), ("env.task", had.env.task, cfg.env.task),
                                ("dagger.algorithm", had.dagger.algorithm, cfg.dagger.algorithm),
                                ("env.randomization", to_dict(had.env.randomization),
                                 to_dict(cfg.env.randomization))) if a != b]
    if differ:
        raise ConfigError(f"{run_dir} holds a run with another {', '.join(differ)} than this bench asks for; "
                          "use another --out or remove it")


def _run(cfg: StudentConfig, run_dir: Path, progress: bool = False) -> list[dict]:
    """Metrics of a finished run in ``run_dir``, running or resuming it first if needed."""
    check_reusable(cfg, run_dir)
    done = read_jsonl(run_dir / "metrics.jsonl")
    last = len(done) - 1 if done else -1
    wanted = cfg.dagger.iterations - 1 if cfg.dagger.algorithm == "dagger" else 0
    if last < wanted:
        distill(cfg, run_dir, resume=(run_dir / "run.json").exists(), progress=progress)
    return read_jsonl(run_dir / "metrics.jsonl")


def _sweep(cfg: StudentConfig, out: Path, runs: list[tuple[str, int, list[str]]], name: str,
           cpus_per_run: float, ray_address: str | None) -> dict[str, list[dict]]:
    """Metrics of the runs ``(name, seed, overrides)`` of ``cfg``: finished ones read, the others
    run (or resumed) as trials of one sweep."""
    from omegaconf import OmegaConf

    from robots_ts.runs import atomic_write_text
    from robots_ts.scale.sweep import Trial, run_sweep, trial_config

    out.mkdir(parents=True, exist_ok=True)
    config = out / "bench_config.yaml"
    atomic_write_text(config, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    todo = []
    for run_name, seed, overrides in runs:
        trial = Trial(run_name, seed, overrides)
        run_cfg = trial_config("distill", str(config), trial)
        check_reusable(run_cfg, out / run_name)
        done = read_jsonl(out / run_name / "metrics.jsonl") if (out / run_name / "metrics.jsonl").exists() else []
        wanted = run_cfg.dagger.iterations - 1 if run_cfg.dagger.algorithm == "dagger" else 0
        if not done or done[-1].get("iteration", -1) < wanted:
            todo.append(trial)
    if todo:
        summary = run_sweep("distill", str(config), todo, out, cpus_per_run, ray_address, name=name)
        failed = [f"{r['name']} ({r['error'] or r['status']})" for r in summary["trials"] if r["status"] != "done"]
        if failed:
            raise RuntimeError(f"bench distill: runs did not finish: {', '.join(failed)}; see {out / (name + '.json')} "
                               f"and the trials' logs under {summary['tune_experiment']}")
    return {run_name: read_jsonl(out / run_name / "metrics.jsonl") for run_name, _, _ in runs}


def bc_epochs_matching(dagger_records: list[dict], iteration: int) -> int:
    """Epochs on b_i samples that train on as many samples as DAgger did up to iteration i."""
    trained = sum(r["train_samples"] for r in dagger_records[: iteration + 1])
    return max(1, round(trained / dagger_records[iteration]["labels"]))


EXACT_LIMIT = 1 << 16     # enumerate every sign flip / split up to this many, else sample
RESAMPLES = 10_000


def permutation_test(a, b, paired: bool = True, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """One-sided permutation test that mean(a) exceeds mean(b) by more than chance.

    ``paired``: a[i] and b[i] belong together (the same seed); under the null each difference is as
    likely negated, so the p-value is the share of the 2**n sign flips of the differences whose mean
    reaches the observed one. Unpaired: the share of the ways to split the pooled values into groups
    of len(a) and len(b). Ties count against the claim, so no difference gives p = 1. Exact when
    there are at most ``EXACT_LIMIT`` flips or splits, else ``resamples`` random ones from
    ``default_rng(seed)`` with p = (1 + hits) / (1 + resamples).

    Returns the p-value, the observed mean difference in percentage points (rates in [0, 1]
    times 100), the method, whether it was exact, and how many flips or splits it counted.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        raise ValueError("permutation_test: both groups need at least one value")
    if paired and a.shape != b.shape:
        raise ValueError(f"permutation_test: paired groups need equal lengths, got {len(a)} and {len(b)}")
    observed = a.mean() - b.mean()
    tol = 1e-12
    rng = np.random.default_rng(seed)
    if paired:
        d = a - b
        n = len(d)
        exact = 2 ** n <= EXACT_LIMIT
        signs = np.array(list(product((1.0, -1.0), repeat=n))) if exact else rng.choice((1.0, -1.0), (resamples, n))
        stats = signs @ d / n
    else:
        pooled, k = np.concatenate([a, b]), len(a)
        exact = comb(len(pooled), k) <= EXACT_LIMIT
        if exact:
            first = np.zeros((comb(len(pooled), k), len(pooled)), dtype=bool)
            for row, idx in enumerate(combinations(range(len(pooled)), k)):
                first[row, list(idx)] = True
        else:
            first = np.argsort(rng.random((resamples, len(pooled))), axis=1) < k
        total = pooled.sum()
        in_a = first.astype(float) @ pooled
        stats = in_a / k - (total - in_a) / len(b)
    hits = int(np.sum(stats >= observed - tol))
    p = hits / len(stats) if exact else (1 + hits) / (1 + len(stats))
    return {"p_value": float(p), "mean_difference_points": round(float(observed) * 100, 2),
            "method": "paired sign-flip" if paired else "label permutation", "exact": bool(exact),
            "permutations": int(len(stats))}


def dagger_vs_bc(labels: list[int], dagger_at: np.ndarray, bc: np.ndarray) -> list[dict]:
    """DAgger > BC at each BC budget: means, the paired test's p-value and mean difference, and the
    unpaired p-value; ``dagger_at`` and ``bc`` are (seeds, budgets) success rates."""
    out = []
    for k, budget in enumerate(labels):
        paired = permutation_test(dagger_at[:, k], bc[:, k], paired=True)
        unpaired = permutation_test(dagger_at[:, k], bc[:, k], paired=False)
        out.append({"labels": int(budget), "dagger_mean": round(float(dagger_at[:, k].mean()), 4),
                    "bc_mean": round(float(bc[:, k].mean()), 4),
                    "mean_difference_points": paired["mean_difference_points"], "p_value": paired["p_value"],
                    "method": paired["method"], "exact": paired["exact"], "permutations": paired["permutations"],
                    "p_value_unpaired": unpaired["p_value"]})
    return out


def bench_distill(cfg: StudentConfig, seeds: list[int], out: Path, bc_points: int = 4,
                  bc_epochs: str = "matched", cpus_per_run: float = 1.0, ray_address: str | None = None) -> dict:
    iterations = cfg.dagger.iterations
    # Budget indices for BC, spread over the run; index 0 is skipped when beta0 = 1, because DAgger's
    # first iteration then *is* BC at that budget (teacher-only rollouts, trained once).
    start = 1 if cfg.dagger.beta0 >= 1.0 else 0
    picks = sorted({int(round(x)) for x in np.linspace(start, iterations - 1, bc_points)})
    out = Path(out)
    found = _sweep(cfg, out, [(f"dagger_s{seed}", seed, ["dagger.algorithm=dagger"]) for seed in seeds],
                   "sweep_dagger", cpus_per_run, ray_address)
    dagger_runs = {seed: found[f"dagger_s{seed}"] for seed in seeds}
    bc_specs = []
    for seed in seeds:
        for i in picks:
            epochs = bc_epochs_matching(dagger_runs[seed], i) if bc_epochs == "matched" else cfg.dagger.epochs
            # BC's one training phase must not be cut by DAgger's per-iteration cap on trained samples.
            bc_specs.append((f"bc_s{seed}_it{i:03d}", seed, ["dagger.algorithm=bc", f"dagger.iterations={i + 1}",
                                                             f"dagger.bc_epochs={epochs}", "dagger.train_samples=0"]))
    found = _sweep(cfg, out, bc_specs, "sweep_bc", cpus_per_run, ray_address)
    bc_runs = {(seed, i): found[f"bc_s{seed}_it{i:03d}"][-1] for seed in seeds for i in picks}
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
        "randomization": to_dict(cfg.env.randomization),
    }
    tests = dagger_vs_bc(result["bc_labels"], dagger_at, bc)
    result["dagger_vs_bc_test"] = tests
    # BC's last budget is DAgger's final one (the picks end at the last iteration).
    result["dagger_vs_bc_final"] = tests[-1]
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


def parse_with_overrides(ap: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, list[str]]:
    """Options anywhere on the line, ``key=value`` overrides before or after them."""
    args, extra = ap.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)}")
    return args, list(args.overrides) + extra


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
    ap.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs each run reserves (default 1)")
    ap.add_argument("--ray-address", help="run on this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    args, overrides = parse_with_overrides(ap, argv)
    if len(args.seeds) < 3:
        print("robots-ts bench distill: warning: fewer than 3 seeds", file=sys.stderr)
    cfg = load_config(StudentConfig, args.config, overrides)
    res = bench_distill(cfg, args.seeds, Path(args.out), args.bc_points, args.bc_epochs, args.cpus_per_run,
                        args.ray_address)
    print(json.dumps(res, indent=1))
    return 0
