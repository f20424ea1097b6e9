"""``robots-ts demo``: the whole recipe on Reach, teacher to students, with a report.

1. train a privileged PPO teacher (``configs/teacher/reach.yaml``);
2. DAgger-distil a depth student and a point-cloud student from it;
3. with ``--bc``, behaviour-clone a depth student with the same number of teacher labels (the
   baseline DAgger is compared with; ``robots-ts bench distill`` compares the two over budgets);
4. evaluate every policy on the same held-out episodes and write ``summary.json`` and ``report.md``
   (success table, learning curves, an example depth frame and point cloud).

Every stage is a run directory under ``--run-dir``; running the demo again resumes or reuses
finished stages, so an interrupted demo continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from robots_ts.config import config_path, load_config
from robots_ts.progress import Progress
from robots_ts.runs import atomic_write_json, atomic_write_text


def _teacher(run: Path, seed: int, steps: int | None, extra: list[str]) -> float:
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.policies.teacher.train import train_teacher

    t0 = time.time()
    over = [f"seed={seed}", *extra] + ([f"total_steps={steps}"] if steps else [])
    cfg = load_config(TeacherConfig, config_path("teacher/reach.yaml"), over)
    if (run / "config.yaml").exists():
        train_teacher(run_dir=run, resume=True, total_steps=cfg.total_steps)
    else:
        train_teacher(cfg, run)
    return time.time() - t0


def _student(run: Path, config: str, teacher: Path, seed: int, extra: list[str]) -> float:
    from robots_ts.policies.distill.config import StudentConfig
    from robots_ts.policies.distill.dagger import distill

    t0 = time.time()
    cfg = load_config(StudentConfig, config_path(config), [f"teacher={teacher.resolve()}", f"seed={seed}", *extra])
    distill(cfg, run, resume=(run / "run.json").exists())
    return time.time() - t0


def _evaluate(runs: dict[str, Path], episodes: int, seed: int) -> dict[str, dict]:
    """Every stage's policy on the same held-out episodes (teacher: its best evaluation; students:
    their last, final-fit iteration)."""
    from robots_ts.evaluate import evaluate_run

    results = {}
    with Progress(len(runs), unit="run", desc="demo evaluation") as bar:
        for name, run in runs.items():
            bar.set_postfix_str(name)
            results[name] = evaluate_run(run, episodes=episodes, seed=seed)
            bar.update(1)
    return results


def _example_observation(path_depth: Path, path_points: Path, seed: int) -> None:
    """One observation of each student, rendered with the students' own sensor settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robots_ts.envs import make_batched_env
    from robots_ts.policies.distill.config import StudentConfig

    depth_env = load_config(StudentConfig, config_path("student/reach_depth.yaml"), ["teacher=none"]).env
    points_env = load_config(StudentConfig, config_path("student/reach_points.yaml"), ["teacher=none"]).env
    env = make_batched_env(replace(depth_env, points=points_env.points), seed=seed, num_envs=1,
                           obs_groups=["depth", "points"])
    obs = env.reset()
    env.close()
    fig, ax = plt.subplots(figsize=(4, 4))
    im = ax.imshow(obs["depth"][0, 0], cmap="viridis_r")
    fig.colorbar(im, ax=ax, label="depth (m)")
    ax.set_title(f"student input: depth {obs['depth'].shape[-1]}x{obs['depth'].shape[-2]}")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path_depth, dpi=100)
    plt.close(fig)
    p = obs["points"][0]
    fig = plt.figure(figsize=(5, 4))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=p[:, 2], s=3, cmap="viridis")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.set_title(f"student input: {len(p)} points, base frame")
    fig.tight_layout()
    fig.savefig(path_points, dpi=100)
    plt.close(fig)


def _success_plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["policies"])
    rates = [summary["policies"][n]["success_rate"] for n in names]
    # Clipped at 0: at a rate of exactly 0 or 1 the interval's end can round past the estimate.
    lo = [max(0.0, r - summary["policies"][n]["success_ci95"][0]) for n, r in zip(names, rates)]
    hi = [max(0.0, summary["policies"][n]["success_ci95"][1] - r) for n, r in zip(names, rates)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, rates, yerr=[lo, hi], capsize=4, color=["#555", "#1f77b4", "#2ca02c", "#ff7f0e"][: len(names)])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% CI)")
    ax.set_title(f"Reach, {summary['eval_episodes']} held-out episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _report(summary: dict, out: Path) -> str:
    rows = "\n".join(f"| {name} | {p['success_rate']:.2f} [{p['success_ci95'][0]:.2f}, {p['success_ci95'][1]:.2f}] | "
                     f"{p['success_rate'] / max(summary['policies']['teacher']['success_rate'], 1e-9):.2f} | "
                     f"{p['mean_episode_length']:.1f} | {summary['wall_time_s'].get(name, 0):.0f} |"
                     for name, p in summary["policies"].items())
    bc = "bc_depth" in summary["policies"]
    bc_note = (" `bc_depth` is behaviour cloning with the same number of teacher-labelled samples as the "
               "DAgger depth student.") if bc else ""
    bc_curve = "\nBC depth student: ![bc](bc_depth/curves.png)\n" if bc else ""
    return f"""# robots_ts demo: Reach, teacher to students

Seed {summary['seed']}; every policy evaluated on the same {summary['eval_episodes']} held-out episodes
(evaluation seed {summary['eval_seed']}). Total wall time {summary['total_wall_time_s']:.0f} s.

| policy | success [95% CI] | / teacher | mean episode length | training wall time (s) |
|---|---|---|---|---|
{rows}

The teacher reads privileged state (the ball's position); the students read proprioception and
a depth image or a point cloud only.{bc_note}

![success](success.png)

## Learning curves

Teacher (PPO): ![teacher](teacher/learning_curve.png)

Depth student (DAgger): ![depth](student_depth/curves.png)

Point-cloud student (DAgger): ![points](student_points/curves.png)
{bc_curve}
## What the students see

![depth frame](depth_frame.png) ![point cloud](point_cloud.png)
"""


def _train_all(out: Path, args, teacher_extra: list[str], student_extra: list[str]) -> dict:
    """Train (or resume) the stages; their wall times."""
    walls = {}
    print("[demo 1/3] training the Reach teacher (privileged state, PPO)", flush=True)
    walls["teacher"] = _teacher(out / "teacher", args.seed, args.teacher_steps, teacher_extra)
    print("[demo 2/3] distilling the depth student (DAgger)", flush=True)
    walls["depth_student"] = _student(out / "student_depth", "student/reach_depth.yaml", out / "teacher", args.seed,
                                      student_extra)
    print("[demo 3/3] distilling the point-cloud student (DAgger)", flush=True)
    points_extra = [e for e in student_extra if not e.startswith("env.depth")]
    walls["points_student"] = _student(out / "student_points", "student/reach_points.yaml", out / "teacher",
                                       args.seed, points_extra)
    if not args.bc:
        return walls
    print("[demo +] behaviour cloning baseline (same label budget)", flush=True)
    # BC: one teacher-only collection of as many labels as the DAgger depth student used, trained
    # once on as many samples as DAgger trained on over all its iterations (equal labels, equal compute).
    from robots_ts.bench.distill import bc_epochs_matching
    from robots_ts.runs import read_jsonl

    dagger_records = read_jsonl(out / "student_depth" / "metrics.jsonl")
    epochs = bc_epochs_matching(dagger_records, len(dagger_records) - 1)
    walls["bc_depth"] = _student(out / "bc_depth", "student/reach_depth.yaml", out / "teacher", args.seed,
                                 [*student_extra, "dagger.algorithm=bc", "dagger.train_samples=0",
                                  f"dagger.bc_epochs={epochs}"])
    return walls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=100, help="held-out evaluation episodes per policy")
    ap.add_argument("--teacher-steps", type=int, default=None,
                    help="the teacher's PPO steps (default: configs/teacher/reach.yaml's 300,000; a run stopped at "
                         "250,000, whose learning rate decays over the shorter run, reached only 0.84)")
    ap.add_argument("--iterations", type=int, help="override the students' DAgger iterations")
    ap.add_argument("--bc", action="store_true",
                    help="also train the behaviour-cloning baseline (same labels and training samples as the "
                         "DAgger depth student; about 4 more minutes)")
    ap.add_argument("--quick", action="store_true", help="a tiny budget end to end (for smoke tests)")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: evaluate the stages already in --run-dir and write the report")
    args = ap.parse_args(argv)
    out = Path(args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    teacher_extra, student_extra = [], []
    if args.quick:
        teacher_extra = ["env.num_envs=8", "ppo.n_steps=16", "ppo.batch_size=64", "checkpoint_every=512",
                         "eval_every=512", "eval_episodes=8", "eval_envs=8"]
        student_extra = ["env.num_envs=4", "dagger.iterations=2", "dagger.steps_per_iteration=8",
                         "dagger.eval_episodes=4", "dagger.epochs=1", "env.depth.width=32", "env.depth.height=32"]
        args.teacher_steps = 512
        args.episodes = min(args.episodes, 8)
    if args.iterations:
        student_extra.append(f"dagger.iterations={args.iterations}")
    if args.report_only:
        walls = {}  # nothing trained in this call
    else:
        walls = _train_all(out, args, teacher_extra, student_extra)
    eval_seed = args.seed + 999
    runs = {"teacher": out / "teacher", "depth_student": out / "student_depth",
            "points_student": out / "student_points"}
    if args.bc or (args.report_only and (out / "bc_depth" / "run.json").exists()):
        runs["bc_depth"] = out / "bc_depth"
    policies = _evaluate(runs, args.episodes, eval_seed)
    summary = {"task": "Reach", "seed": args.seed, "eval_seed": eval_seed, "eval_episodes": args.episodes,
               "policies": policies, "wall_time_s": {k: round(v, 1) for k, v in walls.items()},
               "total_wall_time_s": round(time.time() - t_all, 1),
               "students_vs_teacher": {name: round(policies[name]["success_rate"] /
                                                   max(policies["teacher"]["success_rate"], 1e-9), 3)
                                       for name in runs if name != "teacher"}}
    atomic_write_json(out / "summary.json", summary)
    _example_observation(out / "depth_frame.png", out / "point_cloud.png", args.seed)
    _success_plot(summary, out / "success.png")
    atomic_write_text(out / "report.md", _report(summary, out))
    print(json.dumps({k: summary[k] for k in ("students_vs_teacher", "total_wall_time_s")}))
    print("success:", {k: round(v["success_rate"], 3) for k, v in policies.items()})
    print(f"report: {out / 'report.md'}")
    return 0
