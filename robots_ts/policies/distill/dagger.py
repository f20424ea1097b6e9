"""DAgger (Ross, Gordon and Bagnell, 2011) and behaviour cloning of a student from a teacher.

Each DAgger iteration i: (1) roll out on the batched env with the teacher acting per step with
probability beta_i and the student otherwise; (2) label every visited state with the teacher's
action from its own observation groups of the same step; (3) append the states to the on-disk
aggregate; (4) train the student for K epochs on the aggregate (or its last M iterations; at most
``train_samples`` samples). Behaviour cloning is one teacher-only collection of the same total
number of teacher-labelled samples, trained once: the baseline DAgger must beat at an equal label
budget. ``labels`` in the metrics counts the states stored for training; the teacher's actions
queried during evaluation (to measure agreement) never enter the dataset and are not counted.

A run directory holds ``run.json`` (kind "student"), ``config.yaml``, ``metrics.jsonl`` (one record
per iteration), ``dataset/``, ``checkpoints/`` (``iter_NNNN`` safetensors + JSON, ``latest.json``,
``best.json``), ``curves.png`` and ``tb/``. Write order per iteration: checkpoint, metrics line,
``latest.json``; a resumed run trusts ``latest.json`` and drops data and metrics of later iterations.

With ``teachers`` (one per task) the same loop runs on a multi-task env, each world labelled by its
task's teacher (:mod:`robots_ts.policies.distill.multi`); the metrics then add ``task_success``,
``task_agreement`` and ``task_action_mse`` per task, and ``teacher_task_success``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from robots_ts.config import ConfigError, load_config, load_run_config, save_config
from robots_ts.errors import BAD_INPUT, report
from robots_ts.faults import fault_point
from robots_ts.envs import make_batched_env
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.evaluate import keeps_torch_threads
from robots_ts.policies.distill.config import StudentConfig, beta_at, validate
from robots_ts.policies.distill.dataset import ChunkDataset
from robots_ts.policies.distill.report import TensorBoardLog, plot_curves
from robots_ts.policies.distill.rollout import EVAL_STUDENT, EVAL_TEACHER, collect, evaluate, seed_for
from robots_ts.policies.distill.train import train_epochs
from robots_ts.policies.students.checkpoint import StudentPolicy, load_checkpoint, save_student, student_proprio_fields
from robots_ts.policies.students.networks import Student
from robots_ts.progress import Progress
from robots_ts.runs import (RUN_FORMAT, CorruptFileError, MetricsLog, RunError, atomic_write_json, read_json,
                            from_jsonable, read_jsonl, read_run_meta, to_jsonable, write_run_meta)

TRAIN = 3
CHECKED_ENV_FIELDS = ("control_hz", "episode_steps", "terminate_on_success", "init_noise", "params")


def plan(cfg: StudentConfig) -> list[tuple[int, float, int, int, bool]]:
    """(iteration, beta, env steps, epochs, capped) of every iteration of the run; ``capped``: the
    iteration's training stops after ``dagger.train_samples`` samples."""
    d = cfg.dagger
    if d.algorithm == "bc":
        return [(0, 1.0, d.iterations * d.steps_per_iteration, d.bc_epochs or d.epochs, True)]
    steps = [(i, beta_at(d, i), d.steps_per_iteration, d.epochs, True) for i in range(d.iterations)]
    if d.final_epochs and steps:
        # The capped per-iteration training keeps DAgger's cost flat, but leaves the last student
        # fitted to the aggregate by a few hundred warm-started steps; the policy the run hands over
        # is trained to convergence on everything collected.
        i, beta, n_steps, _, _ = steps[-1]
        steps[-1] = (i, beta, n_steps, d.final_epochs, False)
    return steps


def check_teacher(teacher, env: BatchedEnv, source: str) -> None:
    """Fail before any rollout if the teacher cannot read this env's observations or act in it."""
    t_cfg, e_cfg = teacher.env_cfg, env.cfg
    trained = f"task {t_cfg.task}, control {t_cfg.control}"
    here = f"task {e_cfg.task}, control {e_cfg.control}"
    space = getattr(teacher, "obs_space", None)
    for group in teacher.obs_groups:
        if group not in env.observation_space.spaces:
            raise ValueError(f"teacher {source} reads observation group {group!r}, which the env does not produce")
        if space is not None:
            want, got = tuple(space.spaces[group].shape), tuple(env.observation_space.spaces[group].shape)
            if want != got:
                raise ValueError(f"teacher {source} expects observation group {group!r} of shape {want} "
                                 f"(trained on {trained}), but the student's env gives {got} ({here}); "
                                 "distill from a teacher trained on the same task and control mode")
    if (t_cfg.task, t_cfg.control) != (e_cfg.task, e_cfg.control):
        raise ValueError(f"teacher {source} was trained on {trained}, the student's env is {here}")
    differ = [k for k in CHECKED_ENV_FIELDS if getattr(t_cfg, k) != getattr(e_cfg, k)]
    if differ:
        warnings.warn(f"teacher {source} was trained with different env settings {differ}: its labels may be "
                      "off-distribution for the student's env", RuntimeWarning, stacklevel=2)


def build(cfg: StudentConfig, teacher=None):
    """Teacher, rollout env (union of both sides' groups) and a fresh student network.

    ``teacher``: an already built Policy to distill from (a custom teacher); by default it is
    loaded from the run directory ``cfg.teacher``, or is the task's oracle for "scripted".
    """
    torch.manual_seed(cfg.seed)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    if cfg.teachers:
        from robots_ts.policies.distill.multi import build_multi

        teacher, env, obs_spec = build_multi(cfg, teacher)
        return teacher, env, _student_net(cfg, teacher, env, obs_spec, "teachers")
    if teacher is not None:
        teacher_groups = list(teacher.obs_groups)
    elif cfg.teacher != "scripted":
        from robots_ts.policies.teacher.load import load_teacher

        teacher = load_teacher(cfg.teacher, cfg.teacher_checkpoint, device=cfg.device)
        teacher_groups = list(teacher.obs_groups)
    else:
        teacher_groups = ["proprio", "privileged"]
    groups = list(dict.fromkeys([*cfg.env.obs_groups, *teacher_groups]))
    env = make_batched_env(cfg.env, seed=cfg.seed, obs_groups=groups)
    try:
        if teacher is None and cfg.teacher == "scripted":
            from robots_ts.policies.scripted import ScriptedTeacher

            teacher = ScriptedTeacher(env.world)
        else:
            check_teacher(teacher, env, cfg.teacher)
        spaces = env.observation_space.spaces
        obs_spec = {g: list(spaces[g].shape) for g in cfg.env.obs_groups}
    except Exception:
        env.close()
        raise
    return teacher, env, _student_net(cfg, teacher, env, obs_spec, "teacher")


def _student_net(cfg: StudentConfig, teacher, env, obs_spec: dict, key: str) -> Student:
    """A fresh student network for ``obs_spec``, once the teacher can give what the loss needs (the
    env is closed if not)."""
    try:
        if cfg.dagger.loss == "sigma_l2" and not hasattr(teacher, "act_with_std"):
            raise ValueError(f"dagger.loss 'sigma_l2' needs the teacher's action std; {key} "
                             f"{getattr(cfg, key)!r} {'has' if key == 'teacher' else 'have'} none (use 'mse' or 'nll')")
        fields = student_proprio_fields(cfg.env, obs_spec) if cfg.student.proprio_exclude else None
        model = Student(cfg.student, obs_spec, env.world.action_dim, (cfg.env.depth.near, cfg.env.depth.far), fields)
    except Exception:
        env.close()
        raise
    return model.to(cfg.device)


def _pointer(run_dir: Path, which: str) -> dict | None:
    path = run_dir / "checkpoints" / f"{which}.json"
    if not path.exists():
        return None
    pointer = read_json(path, "checkpoint pointer")
    if not (isinstance(pointer, dict) and {"name", "iteration", "labels"} <= set(pointer)):
        raise CorruptFileError(f"checkpoint pointer {path} lacks 'name', 'iteration' and 'labels'")
    return pointer


def uses_checksums(run_dir: Path) -> bool:
    return int(read_run_meta(run_dir).get("format", 1)) >= RUN_FORMAT


def check_resumable(run_dir: Path, latest: dict, dataset: ChunkDataset, device: str = "cpu"):
    """Before a resume writes anything: the checkpoint ``latest.json`` names loads, and the metrics
    and dataset hold every iteration up to it (else resuming would train on less data, or leave a
    gap in the curves, than the run it continues). Returns the loaded checkpoint."""
    it = latest["iteration"]
    loaded = load_checkpoint(run_dir / "checkpoints" / f"{latest['name']}.json", device)
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("iteration", -1) <= it]
    have = [r.get("iteration") for r in records]
    if have != list(range(it + 1)):
        raise RunError(f"{run_dir / 'metrics.jsonl'} holds iterations {have}, but checkpoint {latest['name']} "
                       f"follows iterations 0..{it} (the file was truncated or edited); restore it or start over")
    samples: dict[int, int] = {}
    for r in dataset.manifest.read():
        if r.get("type") == "chunk" and r["iteration"] <= it:
            path = dataset.root / r["file"]
            size = path.stat().st_size if path.exists() else -1
            if size != r["bytes"]:
                raise RunError(f"dataset chunk {path} {'is missing' if size < 0 else f'has {size} bytes'}"
                               f"{'' if size < 0 else ', the manifest says ' + str(r['bytes'])}; the aggregate "
                               f"checkpoint {latest['name']} was trained on is incomplete")
            samples[r["iteration"]] = samples.get(r["iteration"], 0) + r["samples"]
    previous = 0
    for rec in records:
        want = rec["labels"] - previous
        previous = rec["labels"]
        if samples.get(rec["iteration"], 0) != want:
            raise RunError(f"dataset {dataset.root / 'manifest.jsonl'} lists {samples.get(rec['iteration'], 0)} "
                           f"samples of iteration {rec['iteration']}, the run collected {want} (the manifest or "
                           "its chunks were lost); restore them or start over")
    return loaded


@keeps_torch_threads
def distill(cfg: StudentConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
            teacher=None) -> dict:
    """Run (or resume) distillation into ``run_dir``; returns the last iteration's metrics record.

    ``teacher``: a Policy object to distill from instead of loading ``cfg.teacher`` (which then only
    names it in the run's records).
    """
    validate(cfg)
    run_dir = Path(run_dir)
    if not resume and run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        held = "holds a run" if (run_dir / "run.json").exists() else "is not an empty directory"
        raise FileExistsError(f"{run_dir} already {held}; resume it with --resume {run_dir} or pick "
                              "another --run-dir")
    if resume:
        read_run_meta(run_dir, "student")
    latest = _pointer(run_dir, "latest") if resume else None
    loaded = None
    if latest is not None:
        loaded = check_resumable(run_dir, latest, ChunkDataset(run_dir / "dataset", cfg.dagger.depth_storage),
                                 cfg.device)
    if not resume and teacher is None and cfg.teacher not in ("scripted", ""):
        cfg = replace(cfg, teacher=str(Path(cfg.teacher).resolve()))  # the run must find it from anywhere
    if not resume and cfg.teachers:
        cfg = replace(cfg, teachers={t: r if r == "scripted" else str(Path(r).resolve()) for t, r in cfg.teachers.items()})
    teacher, env, model = build(cfg, teacher)
    n = env.num_envs
    world_tasks = getattr(env, "world_tasks", None)     # a multi-task run: each world's task
    task_name = "+".join(sorted(cfg.teachers)) if cfg.teachers else cfg.env.task
    shares = None
    if cfg.teachers:
        from robots_ts.policies.distill.multi import shares_of

        shares = shares_of(cfg)
    student = StudentPolicy(model, cfg.env, cfg.device, task_shares=shares)
    collector = None
    if cfg.env.ray_actors:   # collection on Ray actors; evaluations stay on this process's env
        from robots_ts.scale.collect import RayCollector

        try:
            collector = RayCollector(env.cfg, cfg.seed, cfg.env.ray_actors, teacher, student, sampler=env.sampler,
                                     adr_sampler=env.world.adr_sampler)
        except BaseException:
            env.close()
            raise
    gather = collector.collect if collector is not None else collect
    dataset = ChunkDataset(run_dir / "dataset", cfg.dagger.depth_storage)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    ck_dir = run_dir / "checkpoints"
    start, labels, teacher_success = 0, 0, None
    if latest is not None:
        loaded, _ = loaded
        model.load_state_dict(loaded.state_dict())
        model.set_normalization(loaded.normalization())
        start, labels = latest["iteration"] + 1, latest["labels"]
        teacher_success = latest.get("teacher_success")
        adr_state = ck_dir / f"{latest['name']}.adr.json"
        if env.world.adr_sampler is not None and adr_state.exists():   # ADR continues where it stood
            env.world.adr_sampler.load_state_dict(from_jsonable(json.loads(adr_state.read_text())))
        dataset.truncate_after(latest["iteration"])
        metrics.truncate_after("iteration", latest["iteration"])
    else:
        # Nothing checkpointed yet (or a fresh run): whatever a killed first iteration left is dropped.
        dataset.truncate_after(-1)
        metrics.truncate_after("iteration", -1)
        write_run_meta(run_dir, "student", teacher=cfg.teacher or dict(cfg.teachers), task=task_name, backend=cfg.env.backend, encoder=cfg.student.encoder,
                       algorithm=cfg.dagger.algorithm, obs_groups=list(student.obs_groups))
    save_config(cfg, run_dir / "config.yaml")
    history = metrics.read()
    best = max(history, key=lambda r: (r["student_success"], r["iteration"]), default=None)
    tb = TensorBoardLog(run_dir / "tb", replay=history)
    steps = plan(cfg)
    total = sum(s for _, _, s, _, _ in steps) * n
    bar = Progress(total, initial=labels, unit="label", desc=f"distill {task_name}", disable=not progress)
    record = history[-1] if history else {}
    try:
        if teacher_success is None:
            ev = evaluate(env, teacher, cfg.dagger.eval_episodes, seed_for(cfg.seed, 0, EVAL_TEACHER),
                          world_tasks=world_tasks)
            teacher_success = ev["success_rate"]
            if world_tasks is not None:   # per task, kept with the pointer so a resume need not re-measure it
                teacher_success = {"all": teacher_success, **{t: v["success_rate"] for t, v in ev["per_task"].items()}}
        for it, beta, n_steps, epochs, capped in steps[start:]:
            t0 = time.perf_counter()
            bar.set_postfix_str(f"iter {it} collecting (beta {beta:.2f})")
            col = gather(env, teacher, student, dataset, it, beta, n_steps, cfg.seed, cfg.dagger.chunk_steps, bar)
            labels += n_steps * n
            keep = cfg.dagger.keep_last
            records = dataset.records(max(0, it - keep + 1) if keep else 0)
            bar.set_postfix_str(f"iter {it} training on {dataset.num_samples(records)} samples")
            tr = train_epochs(model, dataset, records, cfg, epochs, seed_for(cfg.seed, it, TRAIN), fit_depth=it == 0,
                              capped=capped)
            ev = evaluate(env, student, cfg.dagger.eval_episodes, seed_for(cfg.seed, it, EVAL_STUDENT), teacher,
                          world_tasks=world_tasks)
            record = {"iteration": it, "labels": labels, "beta": beta, "dataset_samples": dataset.num_samples(records),
                      "student_success": ev["success_rate"], "student_success_ci95": ev["success_ci95"],
                      "student_episode_length": ev["mean_episode_length"], "agreement": ev.get("agreement"),
                      "action_mse": ev.get("action_mse"), "teacher_success": teacher_success,
                      "iteration_seconds": round(time.perf_counter() - t0, 3), **col, **tr}
            if world_tasks is not None:
                record.update(teacher_success=teacher_success["all"],
                              teacher_task_success={t: v for t, v in teacher_success.items() if t != "all"},
                              **{f"task_{k}": {t: v.get(key) for t, v in ev["per_task"].items()}
                                 for k, key in (("success", "success_rate"), ("agreement", "agreement"),
                                                ("action_mse", "action_mse"))})
            name = f"iter_{it:04d}"
            if env.world.adr_sampler is not None:
                from robots_ts.sim2real.randomization.adr import adr_summary

                record["adr"] = adr_summary(env.world)
                atomic_write_json(ck_dir / f"{name}.adr.json", to_jsonable(env.world.adr_sampler.state_dict()))
            save_student(model, ck_dir / name, student.env_cfg, iteration=it, labels=labels,
                         student_success=ev["success_rate"], teacher=cfg.teacher or dict(cfg.teachers),
                         **({"task_shares": shares} if shares else {}))
            fault_point("student.checkpoint")
            metrics.append(record)
            fault_point("student.pointer")
            atomic_write_json(ck_dir / "latest.json", {"name": name, "iteration": it, "labels": labels,
                                                       "teacher_success": teacher_success})
            if best is None or record["student_success"] >= best["student_success"]:
                best = record
            atomic_write_json(ck_dir / "best.json", {"name": f"iter_{best['iteration']:04d}",
                                                     "iteration": best["iteration"],
                                                     "student_success": best["student_success"]})
            tb.log(record)
            plot_curves(metrics.read(), run_dir / "curves.png", f"{cfg.dagger.algorithm} {cfg.student.encoder} "
                        f"student, {task_name}")
            bar.set_postfix(success=f"{ev['success_rate']:.2f}", teacher=f"{record['teacher_success']:.2f}",
                            agree=f"{ev.get('agreement', float('nan')):.3f}", loss=f"{tr.get('train_loss', 0):.4f}")
    finally:
        bar.close()
        tb.close()
        env.close()
        if collector is not None:
            collector.close()
    from robots_ts.sim2real.randomization.adr import record_randomization

    record_randomization(env.world, run_dir)
    return record


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="robots-ts distill", description="Distill a teacher into a depth or "
                                 "point-cloud student by DAgger (or behaviour cloning).")
    ap.add_argument("config", nargs="?", help="student config YAML, e.g. configs/student/reach_depth.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value overrides; teacher=RUN_DIR is required (or one per "
                    "task: teachers.Reach=RUN teachers.Push=RUN ...)")
    ap.add_argument("--run-dir", help="run directory (default runs/students/<config>-s<seed>-<time>)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--iterations", type=int, help="DAgger iterations (with --resume: extend the run to N)")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted or finished run")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, extra = ap.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = list(args.overrides) + extra      # key=value after options too, as train-teacher
    if args.config and "=" in args.config:
        args.overrides.insert(0, args.config)
        args.config = None
    return args


def distill_main(argv: list[str]) -> int:
    """``robots-ts distill CONFIG teacher=RUN_DIR [key=value ...] [--run-dir DIR] [--seed S]
    [--iterations N] [--resume RUN_DIR]``."""
    args = _parse(argv)
    try:
        if args.resume:
            if args.config or args.overrides or args.run_dir or args.seed is not None:
                raise ConfigError("--resume takes the run's own config.yaml; only --iterations may change")
            run_dir = Path(args.resume)
            read_run_meta(run_dir, "student")
            cfg = load_run_config(StudentConfig, run_dir / "config.yaml", require_checksum=uses_checksums(run_dir))
        else:
            if not args.config:
                raise ConfigError("give a student config, e.g. robots-ts distill configs/student/reach_depth.yaml "
                                  "teacher=runs/teacher/reach")
            cfg = load_config(StudentConfig, args.config, args.overrides)
            if args.seed is not None:
                cfg = replace(cfg, seed=args.seed)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            run_dir = Path(args.run_dir or f"runs/students/{Path(args.config).stem}-s{cfg.seed}-{stamp}")
        if args.iterations is not None:
            if args.iterations < 1:
                raise ConfigError(f"--iterations: expected an integer >= 1, got {args.iterations}")
            cfg = replace(cfg, dagger=replace(cfg.dagger, iterations=args.iterations))
        validate(cfg)      # before the first line of output: a bad config is one error line
        print(f"robots-ts distill: run directory {run_dir}", file=sys.stderr)
        record = distill(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    except BAD_INPUT as exc:
        return report("robots-ts distill", exc)
    print(json.dumps({"run_dir": str(run_dir), **record}, sort_keys=True))
    return 0
