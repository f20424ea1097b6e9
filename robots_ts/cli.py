"""The ``robots-ts`` command: parse, load config, call a function."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

from robots_ts.errors import BAD_INPUT, report, set_debug


def _split_overrides(ap: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options anywhere, ``key=value`` overrides anywhere (before or after options), one config path."""
    args, extra = ap.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)}")
    overrides = list(args.overrides) + extra
    if args.config and "=" in args.config:
        overrides.insert(0, args.config)
        args.config = None
    return args, overrides


def _ppo_run_args(argv: list[str], prog: str, description: str, example: str, overrides_help: str, kind: str):
    """The shared command line of PPO runs (train-teacher, refine): config, overrides, run
    directory, seed, step budget, resume. Returns (args, overrides with --seed and --total-steps)."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("config", nargs="?", help=f"YAML config, e.g. {example}")
    ap.add_argument("overrides", nargs="*", help=overrides_help)
    ap.add_argument("--run-dir", help=f"output directory (default runs/{kind}_<task>_s<seed>)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--total-steps", type=int)
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    args, overrides = _split_overrides(ap, argv)
    from robots_ts.config import ConfigError

    if args.resume and (args.config or overrides or args.run_dir or args.seed is not None):
        raise ConfigError("--resume continues the run with its own config.yaml; only --total-steps may change")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.total_steps is not None:
        overrides.append(f"total_steps={args.total_steps}")
    return args, overrides


def cmd_train_teacher(argv: list[str]) -> int:
    args, overrides = _ppo_run_args(argv, "robots-ts train-teacher", "Train a privileged-state PPO teacher.",
                                    "configs/teacher/reach.yaml",
                                    "dotted key=value overrides, e.g. ppo.learning_rate=1e-4", "teacher")
    from robots_ts.config import load_config
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.policies.teacher.train import check_fresh_run_dir, prepare_resume, train_teacher, validate

    if args.resume:
        prepare_resume(Path(args.resume), args.total_steps)   # every check before any write
        run = train_teacher(run_dir=args.resume, resume=True, total_steps=args.total_steps)
        print(f"run directory: {run}")
        return 0
    cfg = load_config(TeacherConfig, args.config, overrides)
    validate(cfg)
    run_dir = Path(args.run_dir or f"runs/teacher_{cfg.env.task.lower()}_s{cfg.seed}")
    check_fresh_run_dir(run_dir)
    run = train_teacher(cfg, run_dir)
    print(f"run directory: {run}")
    return 0


def cmd_refine(argv: list[str]) -> int:
    args, overrides = _ppo_run_args(argv, "robots-ts refine",
                                    "Refine a frozen student with a residual trained by PPO (ResiP).",
                                    "configs/residual/reach_depth.yaml",
                                    "base=STUDENT_RUN and dotted key=value overrides, e.g. alpha=[0.05]", "residual")
    from robots_ts.config import load_config
    from robots_ts.policies.residual.config import ResidualConfig
    from robots_ts.policies.residual.train import train_residual

    if args.resume:
        run = train_residual(run_dir=args.resume, resume=True, total_steps=args.total_steps)
        print(f"run directory: {run}")
        return 0
    cfg = load_config(ResidualConfig, args.config, overrides)
    run_dir = Path(args.run_dir or f"runs/{cfg.mode}_{cfg.env.task.lower()}_s{cfg.seed}")
    run = train_residual(cfg, run_dir)
    print(f"run directory: {run}")
    return 0


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def cmd_evaluate(argv: list[str]) -> int:
    from robots_ts.evaluate import EVAL_TORCH_THREADS

    ap = argparse.ArgumentParser(prog="robots-ts evaluate", description="Evaluate any run's policy.")
    ap.add_argument("run_dir")
    ap.add_argument("--episodes", type=_at_least(1), default=100)
    ap.add_argument("--seed", type=_at_least(0), default=12345)
    ap.add_argument("--num-envs", type=_at_least(1), default=16)
    ap.add_argument("--checkpoint", help="best | latest | a checkpoint file (default: best for a teacher, "
                    "latest for a student, whose last iteration is its final fit)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--video", help="write rollouts of world 0 to this .mp4 or .gif")
    ap.add_argument("--param-grid", type=_at_least(1), metavar="N",
                    help="evaluate on an N-per-dimension grid over the task's parameter space")
    ap.add_argument("--grid-episodes", type=_at_least(1), default=4, help="episodes per grid cell")
    ap.add_argument("--threshold", type=_fraction, default=0.75,
                    help="success rate at which a grid cell is mastered")
    ap.add_argument("--backend", choices=["mujoco", "pybullet"],
                    help="simulator to evaluate in (default: the one the run trained in)")
    ap.add_argument("--randomization", metavar="none|YAML",
                    help="domain randomization to evaluate under: 'none' (the nominal env) or a preset, e.g. "
                    "configs/randomization/strong.yaml (default: the run's own)")
    ap.add_argument("--torch-threads", type=_at_least(1), default=EVAL_TORCH_THREADS, metavar="N",
                    help="torch threads the policy runs on (default 1, as every bench: a success rate can move "
                         "with the count, through float rounding amplified by contacts)")
    args = ap.parse_args(argv)
    if args.video is not None and Path(args.video).suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"--video: expected a .mp4 or .gif path, got {args.video!r}")
    from robots_ts.evaluate import load_randomization, rollout_policy, with_randomization
    from robots_ts.policies.load import load_policy

    if args.randomization is not None:
        load_randomization(args.randomization)     # a bad preset fails before the policy loads
    run_dir = Path(args.run_dir)
    policy = load_policy(run_dir, args.checkpoint)
    if args.backend is not None:
        policy.env_cfg = dataclasses.replace(policy.env_cfg, backend=args.backend)
    if args.param_grid is not None:
        from robots_ts.grid_eval import evaluate_grid

        env_cfg, randomization = with_randomization(policy.env_cfg, args.randomization)
        res = evaluate_grid(policy, env_cfg, args.param_grid, args.grid_episodes, args.seed,
                            args.num_envs, args.threshold, out_dir=run_dir, threads=args.torch_threads)
        res["randomization"] = randomization
    else:
        res = rollout_policy(policy, policy.env_cfg, episodes=args.episodes, seed=args.seed,
                             num_envs=args.num_envs, video=args.video, randomization=args.randomization,
                             threads=args.torch_threads)
    res["run_dir"] = str(run_dir)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


def cmd_bench(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: robots-ts bench {envs,physics,curriculum,curriculum-push,teacher,distill,robustness,randomization-cost,faults,"
              "sim2sim,export-latency,ros-loop,scale,residual,multi-teacher,kickstart} "
              "[options]\n"
              "Measurements that print JSON (see each one's --help).")
        return 0 if argv else 2
    which, rest = argv[0], argv[1:]

    modules = {"envs": "robots_ts.bench.envs", "curriculum": "robots_ts.bench.curriculum",
               "curriculum-push": "robots_ts.bench.curriculum_push",
               "teacher": "robots_ts.bench.teacher", "distill": "robots_ts.bench.distill",
               "physics": "robots_ts.bench.physics", "faults": "robots_ts.bench.faults",
               "sim2sim": "robots_ts.bench.sim2sim", "robustness": "robots_ts.bench.robustness",
               "randomization-cost": "robots_ts.bench.randomization_cost",
               "export-latency": "robots_ts.bench.export", "ros-loop": "robots_ts.bench.ros_loop",
               "scale": "robots_ts.bench.scale", "residual": "robots_ts.bench.residual",
               "multi-teacher": "robots_ts.bench.multi_teacher",
               "kickstart": "robots_ts.bench.kickstart"}
    if which not in modules:
        print(f"robots-ts bench: unknown benchmark {which!r}; choose from {sorted(modules)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(modules[which]).main(rest) or 0)


# Commands whose module parses its own arguments: imported only when asked for.
DELEGATED = {"distill": "robots_ts.policies.distill.dagger:distill_main", "demo": "robots_ts.demo:main",
             "export": "robots_ts.sim2real.export.exporter:main", "deploy": "robots_ts.sim2real.deploy.node:main",
             "sim-robot": "robots_ts.sim2real.deploy.sim_robot:main", "replay": "robots_ts.sim2real.deploy.replay:main",
             "randomization": "robots_ts.sim2real.randomization.show:main", "sweep": "robots_ts.scale.sweep:main"}


def _delegate(target: str):
    module, func = target.split(":")

    def run(argv: list[str]) -> int:
        return int(getattr(importlib.import_module(module), func)(argv) or 0)
    return run


COMMANDS = {"train-teacher": cmd_train_teacher, "evaluate": cmd_evaluate, "refine": cmd_refine, "bench": cmd_bench,
            **{name: _delegate(target) for name, target in DELEGATED.items()}}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: robots-ts {" + ",".join(COMMANDS) + "} ...\n\n"
              "  train-teacher  train a privileged-state PPO teacher\n"
              "  distill        DAgger-distill a depth / point-cloud student from a teacher\n"
              "  refine         residual PPO on a frozen student (ResiP), or PPO on all of it (mode=finetune)\n"
              "  evaluate       success rate (95% CI), returns, videos, parameter grids of any run\n"
              "  demo           teacher -> depth and point-cloud students on Reach, with a report\n"
              "  bench          measurements that print JSON\n"
              "  sweep          train-teacher / distill runs over seeds and config grids as Ray Tune trials\n"
              "  randomization  show what a domain randomization config does to depth and points\n"
              "  export         a run's policy as ONNX or TorchScript with a manifest for the robot\n"
              "  deploy         run an exported student on a ROS 1 / ROS 2 robot behind a safety layer\n"
              "  sim-robot      the MuJoCo Panda of a task as a ROS robot (rehearse a deployment)\n"
              "  replay         a recorded ROS 1 / ROS 2 bag through an exported policy: actions CSV and plot\n\n"
              "Bad input exits with code 2 and a one-line message; --debug (or ROBOTS_TS_DEBUG=1) adds the traceback.")
        return 0 if argv else 2
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        print(f"robots-ts: unknown command {argv[0]!r}; choose from {list(COMMANDS)}", file=sys.stderr)
        return 2
    set_debug("--debug" in argv)     # anywhere on the line: tracebacks for bug reports
    argv = [a for a in argv if a != "--debug"]
    try:
        return cmd(argv[1:])
    except BAD_INPUT as exc:
        return report(f"robots-ts {argv[0]}", exc)
    except KeyboardInterrupt:
        print(f"robots-ts {argv[0]}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
