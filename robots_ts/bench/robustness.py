"""``robots-ts bench robustness``: students distilled under domain randomization against students
distilled without it, both evaluated under a stronger randomization none of them trained on.

For each seed, two students are distilled from the same teacher with the same config and seed:
one with ``env.randomization`` set to the training preset (``--train``, by default
``configs/randomization/default.yaml``) into ``OUT/rand_s{seed}``, one in the nominal env (no
randomization) into ``OUT/nominal_s{seed}``. The bench sets ``env.randomization`` itself, so the
config's own value, if any, is replaced. Every student is then evaluated acting alone, with the
same evaluation seed and number of episodes, twice: in the nominal env and under the evaluation
preset (``--eval``, by default ``configs/randomization/strong.yaml``: wider physics ranges, about
twice the sensor noise, extra latency). All students see the same episodes in each of the two
evaluation envs. Between the two envs, the first episode of every world has the same task
parameters and start pose; later ones differ, because the per-episode randomization draws come
from the same per-world generator as the task's. The teacher is evaluated the same way, as a
reference.

Per seed: success in the nominal env and under the evaluation preset, each with its 95% Wilson
interval, and ``retained`` = strong / nominal (undefined when nominal success is 0). Per training
condition: mean, std and per-seed lists of the three. Two checks, each a boolean with its numbers:

(a) the randomized students keep at least 80% of their own nominal success under the evaluation
    preset: mean retained >= 0.8, and retained >= 0.8 for every seed;
(b) the nominal students lose more: their mean retained is below the randomized students' (with a
    one-sided permutation p-value, paired by seed).

Writes ``OUT/robustness.json`` (also printed with ``--json``) and ``OUT/robustness.png``. Finished
runs are reused and unfinished ones resumed; evaluations are cached in ``OUT/evals/`` and reused
while the student's checkpoint and the evaluation settings are unchanged.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from robots_ts.config import ConfigError, RandomizationConfig, load_config, to_dict
from robots_ts.evaluate import (EVAL_TORCH_THREADS, NOMINAL, load_randomization, randomization_name,
                                randomization_record, rollout_policy, wilson_interval)
from robots_ts.policies.distill.config import StudentConfig
from robots_ts.runs import atomic_write_json, read_json

CONDITIONS = ("randomized", "nominal")     # how the students were trained
RUN_PREFIX = {"randomized": "rand", "nominal": "nominal"}
WORKING = 0.5   # nominal success below which a student's retained share is not counted as robustness
EVALS = ("nominal", "strong")              # where they are evaluated: the nominal env, the evaluation preset
THRESHOLD = 0.8
PROG = "robots-ts bench robustness"


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# -- the figures ---------------------------------------------------------------------------------
def retained(nominal: float, strong: float) -> float | None:
    """Share of nominal success kept under the evaluation preset; None when nominal success is 0."""
    return None if nominal <= 0 else strong / nominal


def _stats(values) -> dict:
    """Mean and (population) std over the defined values, and the per-seed list (None kept)."""
    have = np.array([v for v in values if v is not None], dtype=float)
    mean = round(float(have.mean()), 4) if len(have) else None
    std = round(float(have.std()), 4) if len(have) else None
    return {"mean": mean, "std": std, "per_seed": [None if v is None else round(float(v), 4) for v in values]}


def assemble(evals: dict, seeds: list[int], threshold: float = THRESHOLD) -> dict:
    """Per-seed figures, per-condition summaries and the two checks from evaluation results.

    ``evals[condition][seed][where]``: a dict with ``success_rate`` and ``episodes`` (anything else,
    e.g. ``wall_s``, is carried along) for condition in :data:`CONDITIONS` and where in
    :data:`EVALS`. The Wilson intervals are recomputed from the rate and the episode count.
    """
    from robots_ts.bench.distill import permutation_test

    per_seed: dict[str, dict] = {}
    conditions: dict[str, dict] = {}
    kept: dict[str, list] = {}
    for cond in CONDITIONS:
        rows = {}
        for seed in seeds:
            row = {}
            for where in EVALS:
                e = evals[cond][seed][where]
                n = int(e["episodes"])
                rate = float(e["success_rate"])
                row[f"success_{where}"] = rate
                row[f"success_{where}_ci95"] = [round(x, 4) for x in wilson_interval(round(rate * n), n)]
                row[f"episodes_{where}"] = n
                if "wall_s" in e:
                    row[f"eval_{where}_wall_s"] = e["wall_s"]
            kept_share = retained(row["success_nominal"], row["success_strong"])
            row["retained"] = None if kept_share is None else round(kept_share, 4)
            rows[str(seed)] = row
        per_seed[cond] = rows
        kept[cond] = [rows[str(s)]["retained"] for s in seeds]
        nominal = [rows[str(s)]["success_nominal"] for s in seeds]
        strong = [rows[str(s)]["success_strong"] for s in seeds]
        conditions[cond] = {"success_nominal": _stats(nominal), "success_strong": _stats(strong),
                            "retained": _stats(kept[cond]),
                            "retained_of_means": retained(float(np.mean(nominal)), float(np.mean(strong)))}
    rand_mean = conditions["randomized"]["retained"]["mean"]
    nom_mean = conditions["nominal"]["retained"]["mean"]
    # A share of nominal success only means something for a student that works in the nominal env:
    # 0.09 under the preset over 0.01 nominal is "9x", and no robustness.
    working = [per_seed["randomized"][str(s)]["success_nominal"] >= WORKING for s in seeds]
    seed_ok = [w and r is not None and r >= threshold for r, w in zip(kept["randomized"], working)]
    mean_ok = rand_mean is not None and rand_mean >= threshold and all(working)
    check_a = {"threshold": threshold, "mean_retained": rand_mean, "mean_passed": bool(mean_ok),
               "per_seed_retained": conditions["randomized"]["retained"]["per_seed"],
               "nominal_success_floor": WORKING, "per_seed_working": working,
               "per_seed_passed": seed_ok, "passed": bool(mean_ok and all(seed_ok))}
    both = [(r, n) for r, n in zip(kept["randomized"], kept["nominal"]) if r is not None and n is not None]
    test = permutation_test([r for r, _ in both], [n for _, n in both]) if both else None
    check_b = {"randomized_mean_retained": rand_mean, "nominal_mean_retained": nom_mean,
               "difference": None if rand_mean is None or nom_mean is None else round(rand_mean - nom_mean, 4),
               "passed": bool(all(working) and rand_mean is not None and nom_mean is not None and nom_mean < rand_mean),
               "p_value": None if test is None else test["p_value"],
               "p_value_method": None if test is None else f"{test['method']} over {len(both)} seeds, one-sided"}
    return {"per_seed": per_seed, "conditions": conditions,
            "checks": {"randomized_keep_80pct": check_a, "nominal_loses_more": check_b}}


# -- runs and evaluations ------------------------------------------------------------------------
def condition_config(cfg: StudentConfig, seed: int, randomization: RandomizationConfig) -> StudentConfig:
    return replace(cfg, seed=seed, env=replace(cfg.env, randomization=randomization))


def student(cfg: StudentConfig, run_dir: Path, progress: bool = False) -> dict:
    """Distil (or resume, or reuse) the student of ``run_dir``; its training wall time from its metrics."""
    from robots_ts.bench.distill import _run

    records = _run(cfg, run_dir, progress=progress)
    return {"run": str(run_dir), "iterations": len(records), "labels": records[-1]["labels"],
            "train_wall_s": round(sum(r.get("iteration_seconds", 0.0) for r in records), 1),
            "training_success": records[-1]["student_success"], "teacher_success": records[-1]["teacher_success"]}


def evaluate_cached(cache: Path, key: dict, policy_fn, env_cfg_fn, randomization: str, episodes: int, seed: int,
                    num_envs: int) -> dict:
    """:func:`rollout_policy` under ``randomization``, stored in ``cache`` with ``key`` and reused
    while the key is the same. The key records the torch thread count the policy runs on
    (``EVAL_TORCH_THREADS``): a figure is reproducible only with it (:mod:`robots_ts.evaluate`)."""
    key = {**key, "torch_threads": EVAL_TORCH_THREADS}
    if cache.exists():
        stored = read_json(cache, "cached evaluation")
        if isinstance(stored, dict) and stored.get("key") == key:
            return stored["result"]
    t0 = time.perf_counter()
    policy = policy_fn()
    res = rollout_policy(policy, env_cfg_fn(policy), episodes=episodes, seed=seed, num_envs=num_envs,
                         randomization=randomization, threads=EVAL_TORCH_THREADS)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(cache, {"key": key, "result": res})
    return res


def _latest(run_dir: Path) -> dict:
    return read_json(run_dir / "checkpoints" / "latest.json", "checkpoint pointer")


def bench_robustness(cfg: StudentConfig, seeds: list[int], out: Path, train: str = "configs/randomization/default.yaml",
                     eval_preset: str = "configs/randomization/strong.yaml", episodes: int = 200,
                     eval_seed: int = 2026, num_envs: int = 16, config: str | None = None,
                     overrides: list[str] | None = None, threshold: float = THRESHOLD,
                     progress: bool = False) -> dict:
    from robots_ts.policies.load import load_policy

    t_start = time.perf_counter()
    out = Path(out)
    train_r, eval_r = load_randomization(train), load_randomization(eval_preset)
    if train_r == RandomizationConfig():
        raise ConfigError(f"--train {train!r} is the nominal env: the two conditions would be the same")
    train_for = {"randomized": train_r, "nominal": RandomizationConfig()}
    where_spec = {"nominal": NOMINAL, "strong": eval_preset}
    runs: dict[str, dict[int, dict]] = {c: {} for c in CONDITIONS}
    for seed in seeds:
        for cond in CONDITIONS:
            run_dir = out / f"{RUN_PREFIX[cond]}_s{seed}"
            _say(f"student {run_dir.name}: distilling with randomization "
                 f"{randomization_name(train) if cond == 'randomized' else NOMINAL} (reused if finished)")
            runs[cond][seed] = student(condition_config(cfg, seed, train_for[cond]), run_dir, progress)
            _say(f"student {run_dir.name}: {runs[cond][seed]['iterations']} iterations, "
                 f"{runs[cond][seed]['train_wall_s']} s of training")
    evals: dict[str, dict[int, dict]] = {c: {} for c in CONDITIONS}
    values = {"nominal": to_dict(RandomizationConfig()), "strong": to_dict(eval_r)}
    for seed in seeds:
        for cond in CONDITIONS:
            run_dir = Path(runs[cond][seed]["run"])
            loaded: dict = {}

            def policy_fn(run_dir=run_dir, loaded=loaded):
                if "policy" not in loaded:
                    loaded["policy"] = load_policy(run_dir)
                return loaded["policy"]

            evals[cond][seed] = {}
            for where in EVALS:
                key = {"run": str(run_dir), "checkpoint": _latest(run_dir), "randomization": values[where],
                       "episodes": episodes, "eval_seed": eval_seed, "num_envs": num_envs}
                res = evaluate_cached(out / "evals" / f"{run_dir.name}_{where}.json", key, policy_fn,
                                      lambda p: p.env_cfg, where_spec[where], episodes, eval_seed, num_envs)
                evals[cond][seed][where] = res
                lo, hi = res["success_ci95"]
                _say(f"student {run_dir.name} evaluated under {res['randomization']['name']}: "
                     f"{res['success_rate']:.3f} [{lo:.3f}, {hi:.3f}] over {res['episodes']} episodes")
    teacher = _teacher_reference(cfg, out, where_spec, values, episodes, eval_seed, num_envs)
    res = assemble(evals, seeds, threshold)
    for cond in CONDITIONS:
        for seed in seeds:
            res["per_seed"][cond][str(seed)].update(runs[cond][seed])
    result = {
        "task": cfg.env.task, "encoder": cfg.student.encoder, "teacher": cfg.teacher,
        "settings": {"config": config, "overrides": list(overrides or []), "teacher": cfg.teacher,
                     "teacher_checkpoint": cfg.teacher_checkpoint, "seeds": list(seeds), "episodes": episodes,
                     "eval_seed": eval_seed, "num_envs": num_envs, "student_checkpoint": "latest",
                     "dagger_iterations": cfg.dagger.iterations, "threshold": threshold,
                     "train_preset": randomization_record(train_r, randomization_name(train), train),
                     "eval_preset": randomization_record(eval_r, randomization_name(eval_preset), eval_preset),
                     "runs": {cond: {str(s): runs[cond][s]["run"] for s in seeds} for cond in CONDITIONS}},
        "teacher_reference": teacher,
        **res,
    }
    out.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(plot(result, out / "robustness.png"))
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(out / "robustness.json", result)
    return result


def _teacher_reference(cfg: StudentConfig, out: Path, where_spec: dict, values: dict, episodes: int,
                       eval_seed: int, num_envs: int) -> dict:
    """The teacher's own success in both evaluation envs (it reads exact privileged state, but its
    actions still pass through the randomized latency and noise)."""
    if cfg.teacher == "scripted":
        from robots_ts.policies.scripted import ScriptedTeacher

        policy_fn, env_fn, checkpoint = ScriptedTeacher, (lambda p: cfg.env), None
    else:
        from robots_ts.policies.teacher.load import load_teacher

        loaded: dict = {}

        def policy_fn():
            if "policy" not in loaded:
                loaded["policy"] = load_teacher(cfg.teacher, cfg.teacher_checkpoint)
            return loaded["policy"]

        env_fn, checkpoint = (lambda p: p.env_cfg), cfg.teacher_checkpoint
    ref = {}
    for where in EVALS:
        key = {"teacher": cfg.teacher, "checkpoint": checkpoint, "randomization": values[where],
               "episodes": episodes, "eval_seed": eval_seed, "num_envs": num_envs}
        r = evaluate_cached(out / "evals" / f"teacher_{where}.json", key, policy_fn, env_fn, where_spec[where],
                            episodes, eval_seed, num_envs)
        ref[f"success_{where}"], ref[f"success_{where}_ci95"] = r["success_rate"], r["success_ci95"]
    ref["retained"] = retained(ref["success_nominal"], ref["success_strong"])
    _say(f"teacher: {ref['success_nominal']:.3f} nominal, {ref['success_strong']:.3f} under the evaluation preset")
    return ref


# -- output --------------------------------------------------------------------------------------
def plot(res: dict, path: Path) -> Path:
    """Mean success per training condition, nominal env beside the evaluation preset, std bars and
    one dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["settings"]
    labels = {"randomized": f"trained with {s['train_preset']['name']}", "nominal": "trained nominal"}
    evals = {"nominal": "evaluated nominal", "strong": f"evaluated {s['eval_preset']['name']}"}
    colours = {"nominal": "tab:blue", "strong": "tab:red"}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    width = 0.38
    rng = np.random.default_rng(0)
    for k, where in enumerate(EVALS):
        xs = np.arange(len(CONDITIONS)) + (k - 0.5) * width
        stats = [res["conditions"][c][f"success_{where}"] for c in CONDITIONS]
        ax.bar(xs, [st["mean"] for st in stats], width, yerr=[st["std"] for st in stats], capsize=3,
               color=colours[where], alpha=0.55, label=evals[where])
        for x, st in zip(xs, stats):
            pts = np.array(st["per_seed"], dtype=float)
            ax.scatter(x + rng.uniform(-0.06, 0.06, len(pts)), pts, s=14, color="k", zorder=3)
    for i, c in enumerate(CONDITIONS):
        kept = res["conditions"][c]["retained"]["mean"]
        if kept is not None:
            ax.annotate(f"retained {kept:.2f}", (i, 1.06), ha="center", fontsize=9)
    ax.set_xticks(np.arange(len(CONDITIONS)), [labels[c] for c in CONDITIONS])
    ax.set_ylabel("student success rate (acting alone)")
    ax.set_ylim(0, 1.14)
    ax.set_title(f"{res['task']} {res['encoder']} students, {len(s['seeds'])} seeds, "
                 f"{s['episodes']} episodes each (mean ± std)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(res: dict) -> list[str]:
    s = res["settings"]
    lines = [f"{res['task']} {res['encoder']} students: trained with {s['train_preset']['name']} vs nominal, "
             f"evaluated nominal vs {s['eval_preset']['name']} ({s['episodes']} episodes, eval seed {s['eval_seed']})"]
    for cond in CONDITIONS:
        c = res["conditions"][cond]
        lines.append(f"  {cond:10s} nominal {c['success_nominal']['mean']:.3f}  strong {c['success_strong']['mean']:.3f}"
                     f"  retained {c['retained']['mean'] if c['retained']['mean'] is not None else float('nan'):.3f}"
                     f"  per seed {c['retained']['per_seed']}")
    a, b = res["checks"]["randomized_keep_80pct"], res["checks"]["nominal_loses_more"]
    lines.append(f"  (a) randomized students keep >= {a['threshold']:.0%}: {'PASS' if a['passed'] else 'FAIL'} "
                 f"(mean {a['mean_retained']}, per seed {a['per_seed_passed']})")
    lines.append(f"  (b) nominal students lose more: {'PASS' if b['passed'] else 'FAIL'} "
                 f"(retained {b['nominal_mean_retained']} vs {b['randomized_mean_retained']}, p = {b['p_value']})")
    lines.append(f"  {res['plot']}")
    return lines


def main(argv=None) -> int:
    from robots_ts.bench.distill import parse_with_overrides

    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="student config, e.g. configs/student/reach_depth.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value overrides; teacher=RUN_DIR is required")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--train", default="configs/randomization/default.yaml",
                    help="randomization preset the randomized students train with")
    ap.add_argument("--eval", dest="eval_preset", default="configs/randomization/strong.yaml",
                    help="held-out randomization preset every student is evaluated under")
    ap.add_argument("--episodes", type=int, default=200, help="evaluation episodes per student and env")
    ap.add_argument("--eval-seed", type=int, default=2026, help="evaluation seed (the held-out episodes)")
    ap.add_argument("--num-envs", type=int, default=16, help="worlds per evaluation")
    ap.add_argument("--out", default="runs/bench_robustness", help="directory for the runs, JSON and plot")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--no-progress", action="store_true", help="no distillation progress lines")
    args, overrides = parse_with_overrides(ap, argv)
    if any(o.partition("=")[0].startswith("env.randomization") for o in overrides):
        raise ConfigError("env.randomization: the bench sets it per condition; give the presets with --train / --eval")
    if args.episodes < 1:
        raise ConfigError(f"--episodes: expected an integer >= 1, got {args.episodes}")
    if len(args.seeds) < 3:
        _say("warning: fewer than 3 seeds")
    cfg = load_config(StudentConfig, args.config, overrides)
    from robots_ts.policies.distill.config import validate

    validate(cfg)
    res = bench_robustness(cfg, args.seeds, Path(args.out), args.train, args.eval_preset, args.episodes,
                           args.eval_seed, args.num_envs, config=args.config, overrides=overrides,
                           progress=not args.no_progress)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print("\n".join(summary_lines(res)))
    return 0
