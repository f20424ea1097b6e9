"""A kickstarted teacher run (``train-teacher ... kickstart.teachers=[RUN]``): its teachers, the env
that labels every visited state with its teacher's action, and the runner of the training loop.

The env steps every observation group the student or a teacher reads; :class:`TeacherLabels` (a
VecEnv wrapper under VecNormalize) queries each world's teacher on the raw observation of the same
step, with the teacher's own groups and normalization, keeps the result for the rollout buffer, and
hands the student only its own groups. Each world's teacher is its task's: ``kickstart.teachers``
holds one teacher run per task of the run. A run trains one task today, so that is exactly one
teacher run of ``env.task``; a teacher of another task, or one whose observation groups or action
space differ from this env's, is refused before any file is written, naming both.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnvWrapper

from robots_ts.config import ConfigError, load_run_config
from robots_ts.policies.teacher import train as teacher_train
from robots_ts.policies.teacher.kickstart import LOSSES, SCHEDULES, KickstartPPO, KickstartSchedule


def validate_kickstart(cfg) -> None:
    """Config-time checks of ``cfg.kickstart`` (its fields, and each teacher run's task); no model is loaded."""
    k = cfg.kickstart
    if not k.teachers:
        return
    if k.schedule not in SCHEDULES:
        raise ConfigError(f"kickstart.schedule: expected one of {list(SCHEDULES)}, got {k.schedule!r}")
    if k.loss not in LOSSES:
        raise ConfigError(f"kickstart.loss: expected one of {list(LOSSES)}, got {k.loss!r}")
    if not np.isfinite(k.weight) or k.weight < 0:
        raise ConfigError(f"kickstart.weight: expected a number >= 0, got {k.weight}")
    if k.decay_steps < 0 or k.half_life < 0:
        raise ConfigError(f"kickstart.decay_steps and kickstart.half_life: expected integers >= 0, got "
                          f"{k.decay_steps} and {k.half_life}")
    if k.schedule == "linear" and k.decay_steps == 0:
        raise ConfigError("kickstart.decay_steps: the linear schedule needs the env step at which the weight "
                          "reaches 0, e.g. kickstart.decay_steps=500000")
    if k.schedule == "exponential" and k.half_life == 0:
        raise ConfigError("kickstart.half_life: the exponential schedule needs the env steps over which the "
                          "weight halves, e.g. kickstart.half_life=100000")
    teacher_tasks(cfg)


def teacher_tasks(cfg) -> dict[str, str]:
    """{task: teacher run} after checking that ``kickstart.teachers`` holds one run per task of the run."""
    from robots_ts.policies.teacher.checkpoint import uses_manifests
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.runs import RunError, read_run_meta

    run_tasks = [cfg.env.task]   # one run trains one task today
    by_task: dict[str, str] = {}
    for run in cfg.kickstart.teachers:
        try:
            read_run_meta(run, "teacher")
            task = load_run_config(TeacherConfig, Path(run) / "config.yaml", require_checksum=uses_manifests(run)).env.task
        except (FileNotFoundError, RunError, ValueError) as exc:
            raise ConfigError(f"kickstart.teachers: {exc}") from None
        if task not in run_tasks:
            raise ConfigError(f"kickstart.teachers: teacher run {run} was trained on task {task}, but this run trains "
                              f"{cfg.env.task}; the list must hold one teacher run per task of the run (a run trains "
                              f"one task today: give exactly one {cfg.env.task} teacher)")
        if task in by_task:
            raise ConfigError(f"kickstart.teachers: teacher runs {by_task[task]} and {run} both teach {task}; give one "
                              "teacher run per task of the run")
        by_task[task] = run
    return by_task


def resolve_teachers(cfg):
    """``cfg`` with its teacher runs as absolute paths (what the run's config.yaml records)."""
    k = cfg.kickstart
    return replace(cfg, kickstart=replace(k, teachers=[str(Path(t).resolve()) for t in k.teachers]))


def check_teacher(teacher, run: str, env, cfg) -> None:
    """Refuse, naming both, a teacher whose observation spec or action space differs from this env's."""
    from robots_ts.policies.teacher.warm_start import obs_spec

    theirs = obs_spec(teacher.model.observation_space)
    ours = {g: shape for g, shape in obs_spec(env.observation_space).items() if g in theirs}
    if theirs != ours:
        raise ConfigError(f"kickstart.teachers: teacher run {run} (task {teacher.env_cfg.task}, control "
                          f"{teacher.env_cfg.control}) reads observations {theirs}; this run's env (task "
                          f"{cfg.env.task}, control {cfg.env.control}) produces {ours} for those groups: a teacher "
                          "must read the observation spec of its task as this run steps it")
    a, b = teacher.model.action_space.shape, env.action_space.shape
    if a != b:
        raise ConfigError(f"kickstart.teachers: teacher run {run} acts in {teacher.env_cfg.control} control with "
                          f"{a[0]} actions; this run's env ({cfg.env.control} control) takes {b[0]}")


class TeacherLabels(VecEnvWrapper):
    """The student's view of a batched env whose every step is labelled by each world's teacher.

    ``acting`` is (mean, std) of the teachers' action distributions, (n_envs, act_dim) each, for the
    observation the student acts on in the step under way: what the rollout buffer stores with it.
    """

    def __init__(self, venv, teachers: dict, world_tasks: list[str], student_groups):
        self.groups = list(student_groups)
        super().__init__(venv, observation_space=spaces.Dict({g: venv.observation_space[g] for g in self.groups}))
        self.teachers = teachers
        tasks = np.asarray(world_tasks)
        self.worlds = {task: np.flatnonzero(tasks == task) for task in teachers}
        self.current = None   # teachers' (mean, std) for the latest observation returned
        self.acting = None    # ... for the observation the step under way acts on

    def label(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mean = np.zeros((self.num_envs, *self.action_space.shape), np.float32)
        std = np.ones_like(mean)
        for task, teacher in self.teachers.items():
            idx = self.worlds[task]
            mean[idx], std[idx] = teacher.act_with_std({k: obs[k][idx] for k in teacher.obs_groups})
        return mean, std

    def student_view(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {g: obs[g] for g in self.groups}

    def reset(self):
        obs = self.venv.reset()
        self.current = self.label(obs)
        return self.student_view(obs)

    def step_async(self, actions: np.ndarray) -> None:
        if self.current is None:
            raise RuntimeError("TeacherLabels: step before reset")
        self.acting = self.current
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.current = self.label(obs)
        for info in infos:   # SB3 bootstraps time-outs from it with the student's policy
            if "terminal_observation" in info:
                info["terminal_observation"] = self.student_view(info["terminal_observation"])
        return self.student_view(obs), rewards, dones, infos


def load_teachers(cfg) -> dict:
    """{task: Teacher} of ``cfg.kickstart.teachers`` (task checks first)."""
    from robots_ts.policies.teacher.load import load_teacher

    out = {}
    for task, run in teacher_tasks(cfg).items():
        try:
            out[task] = load_teacher(run, cfg.kickstart.checkpoint, cfg.device)
        except (FileNotFoundError, ValueError) as exc:   # a missing checkpoint, a corrupt one
            raise ConfigError(f"kickstart.teachers: {exc}") from None
    return out


def build(cfg, run_dir: Path):
    """(batched env, normalized labelled env, KickstartPPO) of a kickstarted run. The teachers are
    loaded before the model, whose construction seeds torch: kickstarting with weight 0 then makes
    the same model, and the same updates, as plain PPO with the same seed."""
    validate_kickstart(cfg)
    teachers = load_teachers(cfg)
    groups = list(cfg.env.obs_groups)
    for t in teachers.values():
        groups += [g for g in t.obs_groups if g not in groups]
    env = teacher_train.make_training_env(replace(cfg.env, obs_groups=groups), seed=cfg.seed)
    try:
        for t in teachers.values():
            check_teacher(t, str(t.run_dir), env, cfg)
        env.sampler = teacher_train.make_curriculum(cfg, env.param_space, cfg.seed)
        labels = TeacherLabels(env, teachers, [cfg.env.task] * env.num_envs, cfg.env.obs_groups)
        venv = teacher_train.normalized(labels, cfg)
        model = teacher_train.make_model(cfg, venv, str(run_dir / "tb"), cls=KickstartPPO)
    except BaseException:
        env.close()
        raise
    model.kickstart(labels, KickstartSchedule(cfg.kickstart), cfg.kickstart.loss)
    return env, venv, model


class KickstartCallback(teacher_train.TeacherCallback):
    """The teacher's callback; each rollout's record (and TensorBoard, under ``kickstart/``) also
    says the weight of the update on that rollout and how far the student acted from its teachers."""

    def extra_metrics(self) -> dict:
        rec = {"kickstart_weight": self.model.kickstart_weight(), "teacher_action_gap": self.model.teacher_action_gap()}
        for k, v in rec.items():
            self.model.logger.record(f"kickstart/{k}", v)
        return rec


class KickstartRunner(teacher_train.Runner):
    """The teacher's training loop (run directory, checkpoints, evaluation, resume) over a
    kickstarted PPO; the run is a teacher run, its checkpoints plain SB3 PPO files."""

    def build(self, cfg, run_dir: Path):
        return build(cfg, run_dir)

    def load_model(self, cfg, path: Path, venv, run_dir: Path, built):
        model = super().load_model(cfg, path, venv, run_dir, built)
        # The loaded step count puts the schedule where the checkpoint left it.
        model.kickstart(built.rollout_buffer.source, built.kickstart_schedule, built.kickstart_loss_kind)
        return model

    def callbacks(self, cfg, run_dir: Path, env, venv, state: dict):
        cb = KickstartCallback(cfg, run_dir, env, venv, state)
        return cb, cb

    def meta(self, cfg) -> dict:
        return {**super().meta(cfg), "kickstart": list(cfg.kickstart.teachers)}
