"""``robots-ts sweep``: many ``train-teacher``, ``distill`` or ``refine`` runs as Ray Tune trials.

    robots-ts sweep configs/teacher/reach.yaml --seeds 0..4 --grid ppo.learning_rate=3e-4,1e-3 \\
        --cpus-per-run 2 [--ray-address ADDRESS] [--out-dir DIR] [key=value ...]

Every combination of the ``--grid`` values (their product) runs once per seed. A trial runs the
single-machine command itself, ``robots-ts train-teacher CONFIG key=value ... --seed S --run-dir
OUT/NAME`` (or ``distill``, or ``refine``: told by the config's keys), in the directory the sweep
was started from, so its run directory is exactly the one that command writes; the summary
records each trial's command. A trial whose run directory already holds a run resumes it
(``--resume``), as does Tune itself for trials an interruption stopped: the same ``robots-ts
sweep`` line run again restores the Tune experiment (``OUT/tune/``) and finishes what is left.
Trials that fail are retried (``--max-failures``), each retry resuming the run.

Each trial reserves ``--cpus-per-run`` CPUs (fractions below 1 pack several trials on a core);
unless the overrides set ``env.num_threads``, a trial's env steps on that many threads (at least
one). The summary table and ``OUT/sweep.json`` give every trial's final metrics. On a cluster of
several machines, ``OUT`` and the config files must be on a file system every node mounts.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS = ("train-teacher", "distill", "refine")
NAME_CHARS = re.compile(r"[^A-Za-z0-9._=,+\-\[\]]")


@dataclass
class Trial:
    """One run of a sweep: its name (the run directory's), seed and config overrides."""
    name: str
    seed: int
    overrides: list[str] = field(default_factory=list)
    grid: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- parsing
def parse_seeds(text: str) -> list[int]:
    """``0..4`` (inclusive, as bash's ``{0..4}``: 0, 1, 2, 3, 4), ``3``, or ``0,2,5``."""
    text = text.strip()
    try:
        if ".." in text:
            lo, _, hi = text.partition("..")
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError
            seeds = list(range(a, b + 1))
        else:
            seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected A..B (inclusive, A <= B), a seed, or a comma list, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds: expected seeds >= 0, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: seed listed twice in {text!r}")
    return seeds


def split_values(text: str) -> list[str]:
    """Comma-separated values; commas inside brackets belong to a value (``[64,64],[128,128]``)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out]


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    grid, seen = [], set()
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip()
        vals = split_values(values) if eq else []
        if not key or not vals or any(v == "" for v in vals):
            raise ValueError(f"--grid: expected key=v1,v2,..., got {item!r}")
        if key in seen:
            raise ValueError(f"--grid: key {key!r} given twice")
        if key == "seed":
            raise ValueError("--grid seed=...: seeds come from --seeds")
        seen.add(key)
        grid.append((key, vals))
    return grid


def trial_name(grid: dict[str, str], seed: int) -> str:
    parts = [NAME_CHARS.sub("-", f"{k}={v}") for k, v in grid.items()]
    return "_".join([*parts, f"s{seed}"])


def plan_trials(seeds: list[int], grid: list[tuple[str, list[str]]], overrides: list[str] = (),
                threads: int | None = None) -> list[Trial]:
    """Every grid combination once per seed; ``threads``: ``env.num_threads`` for every trial
    unless the overrides set it."""
    base = list(overrides)
    if threads is not None and not any(o.startswith("env.num_threads=") for o in base) \
            and not any(k == "env.num_threads" for k, _ in grid):
        base.append(f"env.num_threads={threads}")
    trials = []
    for combo in itertools.product(*[[(k, v) for v in vals] for k, vals in grid]):
        values = dict(combo)
        for seed in seeds:
            trials.append(Trial(trial_name(values, seed), seed, [*base, *(f"{k}={v}" for k, v in combo)], values))
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise ValueError(f"--grid: two trials would share a run directory name ({names}); use distinct values")
    return trials


def detect_command(config: str | Path) -> str:
    """``train-teacher`` for a teacher config (a ``ppo`` section), ``distill`` for a student one,
    ``refine`` for a refinement's (``alpha``, ``base``, ``warmup_steps``: it has a ``ppo`` too)."""
    from robots_ts.config import _load_yaml

    keys = set(_load_yaml(Path(config)).keys())
    if keys & {"base", "base_checkpoint", "alpha", "warmup_steps", "asymmetric_critic", "share", "finetune_ppo"}:
        return "refine"
    if keys & {"dagger", "student", "teacher", "augment"}:
        return "distill"
    if keys & {"ppo", "total_steps", "checkpoint_every", "eval_every"}:
        return "train-teacher"
    raise ValueError(f"{config}: cannot tell a teacher config (ppo: ...) from a student one (dagger: ...); "
                     "say which with --command train-teacher|distill|refine")


def trial_config(command: str, config: str, trial: Trial):
    """The config the trial's command builds, checked as the command checks it (a refinement's as
    its run records it: with its base's env)."""
    from robots_ts.config import load_config

    if command == "refine":
        from robots_ts.policies.residual.config import ResidualConfig
        from robots_ts.policies.residual.train import checked

        return checked(load_config(ResidualConfig, config, [*trial.overrides, f"seed={trial.seed}"]))[0]
    if command == "train-teacher":
        from robots_ts.policies.teacher.config import TeacherConfig
        from robots_ts.policies.teacher.train import validate

        cfg = load_config(TeacherConfig, config, [*trial.overrides, f"seed={trial.seed}"])
    else:
        from robots_ts.policies.distill.config import StudentConfig, validate

        cfg = load_config(StudentConfig, config, [*trial.overrides, f"seed={trial.seed}"])
    validate(cfg)
    return cfg


# What a resume may change: a teacher's or refinement's step budget, a student's iterations.
RESUMABLE_CHANGES = {"train-teacher": {"total_steps"}, "refine": {"total_steps"}, "distill": {"dagger.iterations"}}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(command: str, cfg, run_dir: Path) -> None:
    """A run already in ``run_dir`` is resumed by its trial: it must be the run the trial asks for
    (a sweep of other values into the same directory would otherwise pass it off as its own)."""
    path = Path(run_dir) / "config.yaml"
    if not ((Path(run_dir) / "run.json").exists() and path.exists()):
        return
    from robots_ts.config import load_run_config, to_dict

    if command == "train-teacher":   # the warm start and kickstart teachers as the run records them
        from robots_ts.policies.teacher.train import recorded_paths

        cfg = recorded_paths(cfg)
    want = to_dict(cfg)
    if command == "distill" and want["teacher"] not in ("scripted", ""):   # distill records the teacher's full path
        want["teacher"] = str(Path(want["teacher"]).resolve())
    if command == "distill":     # and each teacher's of a multi-teacher run
        want["teachers"] = {t: r if r == "scripted" else str(Path(r).resolve()) for t, r in want["teachers"].items()}
    had, want = _flat(to_dict(load_run_config(type(cfg), path, require_checksum=False))), _flat(want)
    differ = sorted(k for k in set(had) | set(want)
                    if had.get(k) != want.get(k) and k not in RESUMABLE_CHANGES[command])
    if differ:
        raise ValueError(f"{run_dir} holds a run with other {', '.join(differ[:5])}"
                         f"{' ...' if len(differ) > 5 else ''} than this sweep's trial; use another --out-dir "
                         "or remove that run")


def command_argv(command: str, config: str, trial: Trial, run_dir: Path) -> list[str]:
    """The single-machine command of a trial (after ``robots-ts``)."""
    return [command, config, *trial.overrides, "--seed", str(trial.seed), "--run-dir", str(run_dir)]


def resume_argv(command: str, cfg, run_dir: Path) -> list[str]:
    if command in ("train-teacher", "refine"):
        return [command, "--resume", str(run_dir), "--total-steps", str(cfg.total_steps)]
    return [command, "--resume", str(run_dir), "--iterations", str(cfg.dagger.iterations)]


# ------------------------------------------------------------------------------ results
def final_metrics(command: str, run_dir: Path) -> dict:
    """What a finished run ends on: a teacher's (or refinement's) last rollout and evaluation, a
    student's last iteration."""
    from robots_ts.runs import read_jsonl

    recs = read_jsonl(Path(run_dir) / "metrics.jsonl") if (Path(run_dir) / "metrics.jsonl").exists() else []
    if command in ("train-teacher", "refine"):
        roll = [r for r in recs if "steps_per_s" in r]
        ev = [r for r in recs if "eval_success_rate" in r]
        out = {}
        if roll:
            out.update(steps=roll[-1]["steps"], success_rate=roll[-1]["success_rate"], **{"return": roll[-1]["return"]})
        if ev:
            out.update(eval_success_rate=ev[-1]["eval_success_rate"], eval_return=ev[-1]["eval_return"],
                       eval_steps=ev[-1]["steps"])
        return out
    if not recs:
        return {}
    last = recs[-1]
    return {k: last.get(k) for k in ("iteration", "labels", "student_success", "teacher_success", "agreement")}


def run_trial(config: dict) -> None:
    """A Tune trial: the single-machine command (or its resume) in the sweep's directory."""
    from ray import tune

    from robots_ts.cli import main as cli

    spec = config["trial"]
    os.chdir(spec["cwd"])
    run_dir = Path(spec["run_dir"])
    argv = spec["resume_argv"] if (run_dir / "run.json").exists() else spec["argv"]
    print(f"sweep trial {spec['name']}: robots-ts {' '.join(argv)}", file=sys.stderr, flush=True)
    # What the command prints comes to the driver as the trial's log, on stderr: Ray forwards a
    # worker's stdout to the driver's, which is the sweep's summary (and the benches' JSON).
    with contextlib.redirect_stdout(sys.stderr):
        rc = cli(list(argv))
    if rc != 0:
        raise RuntimeError(f"sweep trial {spec['name']}: robots-ts {argv[0]} exited with {rc} (its messages are "
                           "in the trial's log)")
    tune.report(final_metrics(spec["command"], run_dir))


def _trial_label(trial) -> str:
    return trial.config["trial"]["name"]


def run_sweep(command: str, config: str, trials: list[Trial], out_dir: str | Path, cpus_per_run: float = 1.0,
              address: str | None = None, num_cpus: int | None = None, max_failures: int = 2,
              time_budget_s: float | None = None, verbose: int = 1, name: str = "sweep") -> dict:
    """Run ``trials`` of ``command`` on ``config`` as Ray Tune trials; returns the summary (also
    written to ``OUT/<name>.json``). ``num_cpus``: CPUs of a local Ray instance (default: all).
    ``time_budget_s``: stop every trial still running after this long (their runs keep their
    last checkpoints)."""
    if command not in COMMANDS:
        raise ValueError(f"--command: expected one of {list(COMMANDS)}, got {command!r}")
    if not trials:
        raise ValueError("sweep: no trials (give --seeds)")
    check_cpus_per_run(cpus_per_run)
    out_dir = Path(out_dir).resolve()
    cwd = os.getcwd()
    specs = []
    for t in trials:       # every trial's config is checked before anything starts
        try:
            cfg = trial_config(command, config, t)
        except ValueError as exc:
            raise ValueError(f"sweep trial {t.name}: {exc}") from None
        run_dir = out_dir / t.name
        check_resumable(command, cfg, run_dir)
        specs.append({"name": t.name, "command": command, "cwd": cwd, "run_dir": str(run_dir),
                      "argv": command_argv(command, config, t, run_dir),
                      "resume_argv": resume_argv(command, cfg, run_dir)})
    from ray import tune

    from robots_ts.scale.cluster import check_cpus, connect

    connect(address, num_cpus=num_cpus)
    check_cpus(cpus_per_run, f"--cpus-per-run {cpus_per_run:g}")
    out_dir.mkdir(parents=True, exist_ok=True)
    # One Tune experiment per plan: the same sweep line restores it, another one starts its own
    # (its trials still resume whatever runs their directories hold). The config file's text is part
    # of the plan: a bench that rewrites its config (more iterations) under the same path must not
    # restore the finished experiment of the old one, which would run nothing.
    identity = json.dumps([s["argv"] for s in specs]) + Path(config).read_text()
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    storage, experiment = out_dir / "tune", f"{name}-{digest}"
    trainable = tune.with_resources(run_trial, {"cpu": cpus_per_run})
    t0 = time.time()
    if tune.Tuner.can_restore(storage / experiment):
        print(f"sweep: restoring the interrupted Tune experiment {storage / experiment}", file=sys.stderr)
        tuner = tune.Tuner.restore(str(storage / experiment), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(specs)},
            tune_config=tune.TuneConfig(num_samples=1, time_budget_s=time_budget_s, trial_name_creator=_trial_label,
                                        trial_dirname_creator=_trial_label),
            run_config=tune.RunConfig(name=experiment, storage_path=str(storage), verbose=verbose,
                                      failure_config=tune.FailureConfig(max_failures=max_failures)))
    # Tune's status tables and the trials' forwarded output go to stderr: stdout is the summary's
    # (robots-ts sweep --json, the benches' JSON).
    with contextlib.redirect_stdout(sys.stderr):
        grid = tuner.fit()
    by_name = {}
    for result in grid:
        spec = (result.config or {}).get("trial", {})
        if "name" in spec:
            by_name[spec["name"]] = result
    rows = []
    for t, spec in zip(trials, specs):
        result = by_name.get(t.name)
        error = None if result is None or result.error is None else str(result.error).strip().splitlines()[-1][:300]
        metrics = final_metrics(command, Path(spec["run_dir"]))
        status = "error" if error else ("done" if result is not None and result.metrics else "stopped")
        rows.append({"name": t.name, "seed": t.seed, "grid": t.grid, "status": status, "error": error,
                     "run_dir": spec["run_dir"], "command": "robots-ts " + " ".join(spec["argv"]),
                     "metrics": metrics})
    summary = {"command": command, "config": config, "out_dir": str(out_dir),
               "tune_experiment": str(storage / experiment),
               "cpus_per_run": cpus_per_run, "wall_s": round(time.time() - t0, 1), "trials": rows}
    from robots_ts.runs import atomic_write_json

    atomic_write_json(out_dir / f"{name}.json", summary)
    return summary


def check_cpus_per_run(cpus: float) -> None:
    """Ray places fractions of a CPU below 1 and whole CPUs above."""
    if not (cpus > 0 and (cpus <= 1 or float(cpus).is_integer())):
        raise ValueError(f"--cpus-per-run: expected a fraction in (0, 1] or a whole number of CPUs, got {cpus:g}")


def table(summary: dict) -> str:
    """The summary as a text table: one line per trial, its final metrics."""
    rows = summary["trials"]
    keys = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    head = ["trial", "status", *keys]

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = [[r["name"], r["status"], *(cell(r["metrics"].get(k)) for k in keys)] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*line) for line in lines)])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="teacher, student or refinement config, e.g. configs/teacher/reach.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every trial")
    ap.add_argument("--seeds", required=True, help="0..4 (inclusive), a seed, or a comma list")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="config values to sweep (repeatable: the product of all)")
    ap.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs each trial reserves (default 1)")
    ap.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    ap.add_argument("--out-dir", help="run directories, Tune state and sweep.json (default runs/sweep_<config>)")
    ap.add_argument("--command", choices=COMMANDS, help="default: told by the config's sections")
    ap.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial (each resumes its run)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args, extra = ap.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)}")
    overrides = list(args.overrides) + extra
    if args.max_failures < 0:
        raise ValueError(f"--max-failures: expected an integer >= 0, got {args.max_failures}")
    check_cpus_per_run(args.cpus_per_run)
    command = args.command or detect_command(args.config)
    threads = max(1, int(args.cpus_per_run))
    trials = plan_trials(parse_seeds(args.seeds), parse_grid(args.grid), overrides, threads)
    out_dir = args.out_dir or f"runs/sweep_{Path(args.config).stem}"
    summary = run_sweep(command, args.config, trials, out_dir, args.cpus_per_run, args.ray_address,
                        max_failures=args.max_failures)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(table(summary))
        print(f"summary: {Path(summary['out_dir']) / 'sweep.json'}")
    return 0 if all(r["status"] == "done" for r in summary["trials"]) else 1

