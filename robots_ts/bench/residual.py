"""``robots-ts bench residual``: residual RL on a frozen student against fine-tuning the whole
student with PPO for the same budget (ResiP's comparison), and both against the base.

For each seed, one process trains, one after the other, ``refine CONFIG base=STUDENT_RUN`` with
``mode=residual`` into ``OUT/residual_s{seed}`` and with ``mode=finetune`` into
``OUT/finetune_s{seed}``, both to the same ``--total-steps`` with the config's options (warm-up,
asymmetric critic, share schedule); ``--finetune-seeds`` limits the fine-tuning baseline to some of
the seeds, ``--no-finetune`` leaves it out. A finished run is reused, an unfinished one (killed, or
asked for a larger budget) resumed from its last checkpoint. Each run's wall time is its training
time from its own metrics (summed over resumes).

The base, every residual and every fine-tuned student are then evaluated acting alone on the same
held-out episodes: the same evaluation seed, number of episodes and of worlds (200 episodes by
default). Each evaluation records the SHA-256 of its worlds' episode parameters, and the bench
checks that they are all equal (``episodes.identical``). Evaluations run on one torch thread
(:func:`robots_ts.bench.robustness.evaluate_cached`), are cached in ``OUT/evals/`` and are reused
while the checkpoint and the settings are unchanged.

Each refinement is evaluated at its ``latest`` checkpoint by default: the policy its budget trained,
with the learning rate decayed to zero at the end. ``--checkpoint best`` takes the best of the run's
own periodic evaluations instead. Those are small (64 episodes on PegInsert, a 95% interval about
±0.1 wide), so the best of them is partly the luckiest: on PegInsert, over nine residual runs whose
best and latest checkpoints differed, the best placed below the latest on the 200 held-out episodes
eight times (by 0.01 to 0.085) and above it once (by 0.035) (README).

The check, with its numbers: refined success - base success >= ``--threshold`` (0.15 absolute) for
every seed and on the mean over seeds; the fine-tuning baseline's gain is reported beside it, with
the residual's lead over it. Writes ``OUT/residual.json`` (printed with ``--json``) and
``OUT/residual.png``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from robots_ts.config import ConfigError, load_config, load_run_config, to_dict
from robots_ts.evaluate import wilson_interval
from robots_ts.policies.residual.config import ResidualConfig
from robots_ts.runs import atomic_write_json, read_jsonl, sha256_of

ARMS = ("residual", "finetune")           # the two refinements, one run each per seed
THRESHOLD = 0.15
PROG = "robots-ts bench residual"


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# -- runs ----------------------------------------------------------------------------------------
# What must match for a run already in OUT to count as the one asked for (the budget may grow).
SAME = ("seed", "mode", "base", "base_checkpoint", "alpha", "warmup_steps", "asymmetric_critic", "share", "ppo",
        "point_mlp")
RESIDUAL_ONLY = ("point_mlp",)            # what a fine-tune ignores


def check_reusable(cfg: ResidualConfig, run_dir: Path) -> None:
    """A run already in ``run_dir`` must be the one asked for, else reusing or resuming it would
    mix another experiment into the figures."""
    from robots_ts.policies.residual.train import mode_ppo
    from robots_ts.policies.teacher.checkpoint import uses_manifests

    path = run_dir / "config.yaml"
    if not path.exists():
        return
    had = to_dict(load_run_config(ResidualConfig, path, require_checksum=uses_manifests(run_dir)))
    # A run records the PPO settings it trained with (finetune_ppo applied in finetune mode).
    want = to_dict(replace(cfg, base=str(Path(cfg.base).resolve()), ppo=mode_ppo(cfg)))
    differ = [k for k in SAME if had[k] != want[k] and not (cfg.mode == "finetune" and k in RESIDUAL_ONLY)]
    if had["env"]["num_envs"] != want["env"]["num_envs"]:
        differ.append("env.num_envs")
    if differ:
        raise ConfigError(f"{run_dir} holds a run with another {', '.join(differ)} than this bench asks for; "
                          "use another --out or remove it")


def trained_steps(run_dir: Path) -> int:
    from robots_ts.policies.teacher.checkpoint import read_pointer

    pointer = read_pointer(run_dir / "checkpoints")
    return int(pointer["step"]) if pointer else 0


def refine_run(cfg: ResidualConfig, run_dir: Path) -> dict:
    """Train, resume or reuse the run of ``cfg`` in ``run_dir`` up to ``cfg.total_steps``; its record."""
    from robots_ts.policies.residual.train import train_residual

    check_reusable(cfg, run_dir)
    started = (run_dir / "run.json").exists()
    done = trained_steps(run_dir) if started else 0
    # PPO trains whole rollouts, so a run asked for total_steps ends at the next multiple of one.
    rollout = cfg.ppo.n_steps * cfg.env.num_envs
    if done > -(-cfg.total_steps // rollout) * rollout:
        raise ConfigError(f"{run_dir} has trained {done} steps, more than --total-steps {cfg.total_steps} "
                          f"(in rollouts of {rollout}); use another --out or the run's budget")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):     # training's lines; stdout carries the bench's JSON
        if not started:
            train_residual(cfg, run_dir)
        elif done < cfg.total_steps:
            _say(f"{run_dir.name}: resuming at step {done} of {cfg.total_steps}")
            train_residual(run_dir=run_dir, resume=True, total_steps=cfg.total_steps)
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "steps_per_s" in r]
    return {"run": str(run_dir), "mode": cfg.mode, "steps": trained_steps(run_dir),
            "train_wall_s": round(max(r["wall_time"] for r in records), 1),
            "this_call_s": round(time.perf_counter() - t0, 1),
            "training_success": records[-1]["success_rate"]}


# -- evaluations ---------------------------------------------------------------------------------
def checkpoint_digest(run_dir: Path, kind: str, checkpoint: str) -> str:
    """SHA-256 of the checkpoint file a run's policy loads (what an evaluation's cache key needs)."""
    if kind == "student":
        from robots_ts.policies.students.checkpoint import resolve_checkpoint as student_checkpoint

        path = student_checkpoint(run_dir, checkpoint)
        return sha256_of(path.with_name(path.name[: -len(".json")] + ".safetensors"))
    from robots_ts.policies.teacher.load import resolve_checkpoint

    return sha256_of(resolve_checkpoint(run_dir, checkpoint))


def evaluate_policy(out: Path, name: str, run_dir: Path, kind: str, checkpoint: str, episodes: int,
                    eval_seed: int, num_envs: int) -> dict:
    from robots_ts.bench.robustness import evaluate_cached
    from robots_ts.policies.load import load_policy

    key = {"run": str(run_dir), "checkpoint": checkpoint, "sha256": checkpoint_digest(run_dir, kind, checkpoint),
           "episodes": episodes, "eval_seed": eval_seed, "num_envs": num_envs}
    res = evaluate_cached(out / "evals" / f"{name}.json", key, lambda: load_policy(run_dir, checkpoint),
                          lambda p: p.env_cfg, None, episodes, eval_seed, num_envs)
    lo, hi = res["success_ci95"]
    _say(f"{name}: success {res['success_rate']:.3f} [{lo:.3f}, {hi:.3f}] over {res['episodes']} episodes")
    return res


# -- the figures ---------------------------------------------------------------------------------
def _rate(res: dict) -> dict:
    n = int(res["episodes"])
    rate = float(res["success_rate"])
    return {"success": rate, "success_ci95": [round(x, 4) for x in wilson_interval(round(rate * n), n)],
            "episodes": n, "episodes_sha256": res.get("episodes_sha256")}


def _stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4),
            "per_seed": [round(float(x), 4) for x in v]}


def assemble(base: dict, evals: dict, seeds: list[int], threshold: float = THRESHOLD) -> dict:
    """Per-seed figures, summaries and the check from evaluation results: ``base`` and
    ``evals[arm][seed]`` are dicts with ``success_rate`` and ``episodes`` (and ``episodes_sha256``).
    ``evals["finetune"]`` may hold a subset of ``seeds`` (``--finetune-seeds``); the fine-tune's
    figures are over its own seeds, and the residual's lead over it over the seeds both ran."""
    b = _rate(base)
    ft_seeds = [s for s in seeds if s in evals["finetune"]]
    per_seed, rates = {}, {arm: [] for arm in ARMS}
    for seed in seeds:
        row = {arm: _rate(evals[arm][seed]) for arm in ARMS if seed in evals[arm]}
        for arm in list(row):
            rates[arm].append(row[arm]["success"])
            row[f"gain_{arm}"] = round(row[arm]["success"] - b["success"], 4)
        if "finetune" in row:
            row["residual_minus_finetune"] = round(row["residual"]["success"] - row["finetune"]["success"], 4)
        per_seed[str(seed)] = row
    gains = {arm: [per_seed[str(s)][f"gain_{arm}"] for s in seeds if arm in per_seed[str(s)]] for arm in ARMS}
    digests = {"base": b["episodes_sha256"],
               **{f"{arm}_s{s}": per_seed[str(s)][arm]["episodes_sha256"] for arm in ARMS for s in seeds
                  if arm in per_seed[str(s)]}}
    identical = None not in digests.values() and len(set(digests.values())) == 1
    mean_gain = round(float(np.mean(rates["residual"])) - b["success"], 4)
    seed_ok = [g >= threshold for g in gains["residual"]]
    check = {"threshold": threshold, "base_success": b["success"], "per_seed_gain": gains["residual"],
             "per_seed_passed": seed_ok, "mean_gain": mean_gain, "mean_passed": bool(mean_gain >= threshold),
             "identical_episodes": identical,
             "passed": bool(identical and all(seed_ok) and mean_gain >= threshold)}
    finetune = None
    if ft_seeds:
        paired = [per_seed[str(s)]["residual_minus_finetune"] for s in ft_seeds]
        finetune = {"seeds": ft_seeds, "per_seed_gain": gains["finetune"],
                    "mean_gain": round(float(np.mean(rates["finetune"])) - b["success"], 4),
                    "residual_minus_finetune": _stats(paired)}
    return {"base": b, "per_seed": per_seed, "summary": {arm: _stats(rates[arm]) for arm in ARMS if rates[arm]},
            "episodes": {"identical": identical, "sha256": digests},
            "checks": {"residual_gain": check}, "finetune_beside": finetune}


# -- the bench -----------------------------------------------------------------------------------
def bench_residual(cfg: ResidualConfig, seeds: list[int], out: Path, episodes: int = 200, eval_seed: int = 2027,
                   num_envs: int = 16, checkpoint: str = "latest", threshold: float = THRESHOLD,
                   config: str | None = None, overrides: list[str] | None = None,
                   finetune_seeds: list[int] | None = None) -> dict:
    from robots_ts.runs import read_run_meta

    finetune_seeds = list(seeds if finetune_seeds is None else finetune_seeds)
    if not set(finetune_seeds) <= set(seeds):
        raise ConfigError(f"--finetune-seeds {finetune_seeds}: expected some of --seeds {list(seeds)}")
    t_start = time.perf_counter()
    out = Path(out)
    base_kind = read_run_meta(cfg.base).get("kind")
    runs: dict[str, dict[int, dict]] = {arm: {} for arm in ARMS}
    for seed in seeds:
        for arm in ARMS if seed in finetune_seeds else ("residual",):
            run_dir = out / f"{arm}_s{seed}"
            _say(f"{run_dir.name}: refine mode={arm}, {cfg.total_steps} steps (reused if finished)")
            runs[arm][seed] = refine_run(replace(cfg, seed=seed, mode=arm), run_dir)
            _say(f"{run_dir.name}: {runs[arm][seed]['train_wall_s']} s of training")
    base = evaluate_policy(out, "base", Path(cfg.base), base_kind, cfg.base_checkpoint, episodes, eval_seed, num_envs)
    evals = {arm: {seed: evaluate_policy(out, f"{arm}_s{seed}_{checkpoint}", Path(run["run"]), arm, checkpoint,
                                         episodes, eval_seed, num_envs) for seed, run in runs[arm].items()}
             for arm in ARMS}
    res = assemble(base, evals, seeds, threshold)
    for arm in ARMS:
        for seed, run in runs[arm].items():
            res["per_seed"][str(seed)][arm].update(run)
    result = {"task": base["task"], "base_run": str(Path(cfg.base).resolve()),
              "settings": {"config": config, "overrides": list(overrides or []), "seeds": list(seeds),
                           "finetune_seeds": finetune_seeds,
                           "total_steps": cfg.total_steps, "episodes": episodes, "eval_seed": eval_seed,
                           "num_envs": num_envs, "checkpoint": checkpoint, "base_checkpoint": cfg.base_checkpoint,
                           "threshold": threshold, "alpha": list(cfg.alpha), "warmup_steps": cfg.warmup_steps,
                           "point_mlp": list(cfg.point_mlp), "finetune_ppo": dict(cfg.finetune_ppo),
                           "asymmetric_critic": cfg.asymmetric_critic, "share": list(cfg.share)},
              **res}
    out.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(plot(result, out / "residual.png"))
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(out / "residual.json", result)
    return result


def plot(res: dict, path: Path) -> Path:
    """Success per seed and on the mean: base, residual, fine-tuned, with the bar the residual must clear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["settings"]
    seeds = [str(x) for x in s["seeds"]]
    base = res["base"]["success"]
    groups = [*seeds, "mean"]
    values = {arm: [res["per_seed"][k][arm]["success"] if arm in res["per_seed"][k] else np.nan for k in seeds]
              + [res["summary"][arm]["mean"] if arm in res["summary"] else np.nan] for arm in ARMS}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = np.arange(len(groups))
    width = 0.27
    ax.bar(xs - width, [base] * len(groups), width, color="tab:gray", label="base student")
    for k, (arm, colour) in enumerate((("residual", "tab:green"), ("finetune", "tab:orange"))):
        ax.bar(xs + k * width, values[arm], width, color=colour, label=f"{arm} ({s['total_steps']} steps)")
    ax.axhline(base + s["threshold"], color="k", ls="--", lw=1, label=f"base + {s['threshold']:.2f}")
    ax.set_xticks(xs, [f"seed {g}" if g != "mean" else "mean" for g in groups])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (held-out episodes)")
    ax.set_title(f"{res['task']}: refinement of one student, {s['episodes']} episodes each", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(res: dict) -> list[str]:
    c, f = res["checks"]["residual_gain"], res["finetune_beside"]
    lines = [f"{res['task']}: base {res['base']['success']:.3f}; residual {res['summary']['residual']['per_seed']}"
             + (f", finetune {res['summary']['finetune']['per_seed']} (seeds {f['seeds']})" if f else "")
             + f" ({res['settings']['episodes']} episodes, identical: {res['episodes']['identical']})",
             f"  residual gain >= {c['threshold']:.2f}: {'PASS' if c['passed'] else 'FAIL'} (mean {c['mean_gain']}, "
             f"per seed {c['per_seed_gain']})"]
    if f:
        lines.append(f"  finetune gain beside it: mean {f['mean_gain']}, per seed {f['per_seed_gain']}")
    return lines + [f"  {res['plot']}"]


def main(argv=None) -> int:
    from robots_ts.bench.distill import parse_with_overrides

    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="refinement config, e.g. configs/residual/push_precise_depth.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value overrides; base=STUDENT_RUN is required")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    arms = ap.add_mutually_exclusive_group()
    arms.add_argument("--finetune-seeds", nargs="+", type=int,
                      help="the seeds that also train the fine-tuning baseline (default: every seed). Fine-tuning "
                           "a point-cloud student trains its encoder, several times slower")
    arms.add_argument("--no-finetune", action="store_true", help="residuals only: no fine-tuning baseline")
    ap.add_argument("--total-steps", type=int, help="env steps per run, both arms (default: the config's)")
    ap.add_argument("--episodes", type=int, default=200, help="held-out evaluation episodes per policy")
    ap.add_argument("--eval-seed", type=int, default=2027, help="evaluation seed (the held-out episodes)")
    ap.add_argument("--num-envs", type=int, default=16, help="worlds per evaluation")
    ap.add_argument("--checkpoint", default="latest", choices=["latest", "best"],
                    help="which checkpoint of each refinement run is evaluated (default: latest, the policy the "
                         "budget trained; best: the best of the run's own evaluations)")
    ap.add_argument("--threshold", type=float, default=THRESHOLD, help="success gain the residual must reach")
    ap.add_argument("--out", default="runs/bench_residual", help="directory for the runs, JSON and plot")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args, overrides = parse_with_overrides(ap, argv)
    for key in ("mode", "seed"):
        if any(o.partition("=")[0] == key for o in overrides):
            raise ConfigError(f"{key}: the bench sets it per run; give the seeds with --seeds")
    if args.episodes < 1:
        raise ConfigError(f"--episodes: expected an integer >= 1, got {args.episodes}")
    if args.total_steps is not None:
        overrides.append(f"total_steps={args.total_steps}")
    if len(args.seeds) < 3:
        _say("warning: fewer than 3 seeds")
    cfg = load_config(ResidualConfig, args.config, overrides)
    from robots_ts.policies.residual.train import validate

    validate(cfg)
    if not cfg.base:
        raise ConfigError("base: expected the base student's run directory, e.g. base=runs/push_precise_depth_s0")
    res = bench_residual(cfg, args.seeds, Path(args.out), args.episodes, args.eval_seed, args.num_envs,
                         args.checkpoint, args.threshold, config=args.config, overrides=overrides,
                         finetune_seeds=[] if args.no_finetune else args.finetune_seeds)
    print(json.dumps(res, indent=1) if args.json else "\n".join(summary_lines(res)))
    return 0
