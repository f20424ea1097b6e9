"""Several teachers, one student: the config checks, the teacher that routes each world to its
task's teacher, and the multi-task rollout env of a DAgger run.

``robots-ts distill CONFIG teachers.Reach=RUN teachers.Push=RUN teachers.Lift=RUN`` runs the usual
DAgger loop (:mod:`robots_ts.policies.distill.dagger`: beta schedule, on-disk aggregate, resume,
evaluation) on a :class:`~robots_ts.envs.multi_task.MultiTaskEnv` whose worlds are split over the
tasks by ``task_shares``. Each task's teacher reads its own groups of its own worlds (the env's
``<Task>/<group>`` keys, in that task's widths) through its own observation normalization, and
labels only those worlds, so every stored state carries the action of the teacher of its task. The
student reads the shared groups plus ``task`` (task id and command), one network for every task.
"""
from __future__ import annotations

import numpy as np

from robots_ts.config import ConfigError
from robots_ts.envs.multi_task import MultiTaskEnv, split_worlds, task_group

SCRIPTED_GROUPS = ("proprio", "privileged")     # what a task's scripted oracle is handed (it reads state)


def shares_of(cfg) -> dict[str, float]:
    """Each teacher's task (in sorted order, as the env holds them) and its share of the worlds (1
    where ``task_shares`` names none)."""
    return {t: float(cfg.task_shares.get(t, 1.0)) for t in sorted(cfg.teachers)}


def validate_teachers(cfg) -> None:
    """Checks of ``teacher`` / ``teachers`` / ``task_shares`` and of the env each task runs, before
    any env or teacher is built."""
    from dataclasses import replace

    from robots_ts.envs.checks import check_env_config
    from robots_ts.envs.tasks import TASKS

    groups = list(cfg.env.obs_groups)
    if not cfg.teachers:
        if cfg.task_shares:
            raise ConfigError(f"task_shares {dict(cfg.task_shares)}: shares split the worlds between several "
                              "teachers' tasks; give them as teachers.<Task>=RUN (this run has one teacher)")
        if "task" in groups:
            raise ConfigError("env.obs_groups: 'task' (task id and command) exists only in a multi-task run; give "
                              "teachers.<Task>=RUN for several tasks, or drop 'task'")
        return
    if cfg.teacher:
        raise ConfigError(f"give either teacher=RUN (one task) or teachers.<Task>=RUN (several), not both; got "
                          f"teacher={cfg.teacher!r} and teachers {dict(cfg.teachers)}")
    for task, run in cfg.teachers.items():
        if task not in TASKS:
            raise ConfigError(f"teachers.{task}: unknown task {task!r}; available tasks: {sorted(TASKS)}")
        if not run:
            raise ConfigError(f"teachers.{task}: give the task's teacher run directory (or 'scripted')")
    for task, share in cfg.task_shares.items():
        if task not in cfg.teachers:
            raise ConfigError(f"task_shares.{task}: a share for task {task!r}, which has no teacher (teachers: "
                              f"{sorted(cfg.teachers)}); add teachers.{task}=RUN or drop the share")
        if not (np.isfinite(share) and share > 0):
            raise ConfigError(f"task_shares.{task}: expected a positive number, got {share!r}")
    if "task" not in groups:
        raise ConfigError(f"env.obs_groups: a student of several tasks {sorted(cfg.teachers)} reads 'task' (task "
                          f"id and command); add it, e.g. [proprio, depth, task], got {groups}")
    if cfg.env.num_envs < len(cfg.teachers):
        raise ConfigError(f"env.num_envs: {cfg.env.num_envs} worlds cannot hold the {len(cfg.teachers)} tasks "
                          f"{sorted(cfg.teachers)}; give at least one world per task")
    if cfg.env.curriculum.name != "none" or cfg.env.randomization.adr.dims or cfg.env.ray_actors:
        raise ConfigError("env.curriculum, env.randomization.adr and env.ray_actors are not supported with several "
                          "teachers: each task's parameters are drawn uniformly, in this process")
    for task in cfg.teachers:      # every task's env, with the keys named as the user wrote them
        check_env_config(replace(cfg.env, task=task, obs_groups=[g for g in groups if g != "task"]))


class TaskRouter:
    """The teachers of a multi-task env as one Policy: world i's label is the action of the teacher
    of world i's task, computed from that task's own groups (``<Task>/<group>``) of its own worlds."""

    def __init__(self, teachers: dict, rows: dict[str, np.ndarray], num_envs: int, action_dim: int, env_cfg):
        self.teachers = dict(teachers)
        self.rows = rows
        self.num_envs, self.action_dim = num_envs, action_dim
        self.env_cfg = env_cfg
        self.obs_groups = tuple(task_group(t, g) for t, p in self.teachers.items() for g in p.obs_groups)
        # The std of every teacher's policy, when each has one (the sigma_l2 loss needs it).
        if all(hasattr(p, "act_with_std") for p in self.teachers.values()):
            self.act_with_std = self._act_with_std

    def _own(self, task: str, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = self.rows[task]
        return {g: obs[task_group(task, g)][rows] for g in self.teachers[task].obs_groups}

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        out = np.zeros((self.num_envs, self.action_dim), np.float32)
        for task, teacher in self.teachers.items():
            out[self.rows[task]] = teacher.act(self._own(task, obs))
        return out

    def _act_with_std(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mean = np.zeros((self.num_envs, self.action_dim), np.float32)
        std = np.ones((self.num_envs, self.action_dim), np.float32)
        for task, teacher in self.teachers.items():
            mean[self.rows[task]], std[self.rows[task]] = teacher.act_with_std(self._own(task, obs))
        return mean, std

    def reset(self, done: np.ndarray) -> None:
        done = np.asarray(done, dtype=bool)
        for task, teacher in self.teachers.items():
            teacher.reset(done[self.rows[task]])


def build_multi(cfg, given: dict | None = None):
    """Router over every task's teacher, the multi-task rollout env, and the student's obs spec.

    ``given``: task -> an already built Policy for that task (a custom teacher), instead of loading
    ``cfg.teachers[task]``. Each loaded teacher is checked against its task's own env: a teacher
    trained on another task or with other observation widths fails here, naming the run and task.
    """
    from robots_ts.policies.distill.dagger import check_teacher
    from robots_ts.policies.scripted import ScriptedTeacher
    from robots_ts.policies.teacher.load import load_teacher

    teachers = {}
    for task, run in cfg.teachers.items():
        if given and task in given:
            teachers[task] = given[task]
        elif run != "scripted":
            teachers[task] = load_teacher(run, cfg.teacher_checkpoint, device=cfg.device)
    # The padded privileged group is stored with every sample, as in a one-teacher run: aux targets.
    groups = [*cfg.env.obs_groups, "privileged", *(task_group(t, g) for t in cfg.teachers
                                     for g in (teachers[t].obs_groups if t in teachers else SCRIPTED_GROUPS))]
    env = MultiTaskEnv(cfg.env, split_worlds(cfg.env.num_envs, shares_of(cfg)), seed=cfg.seed, obs_groups=groups)
    try:
        for task in cfg.teachers:
            if task in teachers:
                check_teacher(teachers[task], env.envs[task], f"{cfg.teachers[task]} (for task {task})")
            else:
                teachers[task] = ScriptedTeacher(env.envs[task].world)
        router = TaskRouter(teachers, env.rows, env.num_envs, env.action_dim, env.cfg)
        spaces = env.observation_space.spaces
        obs_spec = {g: list(spaces[g].shape) for g in cfg.env.obs_groups}
    except Exception:
        env.close()
        raise
    return router, env, obs_spec


def per_task_summary(records: list[dict], world_tasks: np.ndarray) -> dict[str, dict]:
    """Success rate and episode count per task, from episode records with their ``world``."""
    from robots_ts.evaluate import wilson_interval

    out = {}
    for task in dict.fromkeys(world_tasks.tolist()):
        wins = [r["success"] for r in records if world_tasks[r["world"]] == task]
        lo, hi = wilson_interval(sum(wins), len(wins))
        out[task] = {"success_rate": sum(wins) / max(1, len(wins)), "success_ci95": [lo, hi], "episodes": len(wins)}
    return out
