"""Typed config of a student distillation run (``configs/student/*.yaml``): DAgger / BC settings,
the student's env and network, checks before any work, and the beta schedule.

``env`` is the student's env: its ``obs_groups`` are what the student reads (proprio plus depth or
points, and ``history``, the last ``env.action_history`` actions it sent, for a student that acts
through latency). Rollouts request the union of these and the teacher's groups, so one env step
gives the student its input and the teacher its label from the same state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from robots_ts.config import ConfigError, EnvConfig
from robots_ts.policies.students.config import AugmentConfig, StudentNetConfig

BETA_SCHEDULES = ("constant", "linear", "exponential")
LOSSES = ("mse", "nll", "sigma_l2")
ALGORITHMS = ("dagger", "bc")
DEPTH_STORAGE = ("float16", "uint16_mm")


def _student_env() -> EnvConfig:
    return EnvConfig(num_envs=16, obs_groups=["proprio", "depth"])


@dataclass
class DaggerConfig:
    algorithm: str = "dagger"               # dagger | bc (teacher-only rollouts, one collection)
    iterations: int = 10
    steps_per_iteration: int = 64           # env steps per iteration; labels = steps * num_envs
    beta_schedule: str = "exponential"      # constant | linear | exponential
    beta0: float = 1.0                      # beta of iteration 0; 0 reproduces "student always acts"
    beta_decay: float = 0.5                 # exponential: beta_i = beta0 * decay**i
    keep_last: int = 0                      # train on the last M iterations' data only; 0 keeps all
    success_only: bool = False              # drop episodes the env did not report successful
    epochs: int = 4                         # passes over the aggregate per iteration
    train_samples: int = 0                  # cap on samples trained on per iteration (0: none); keeps late
                                            # iterations' cost constant instead of growing with the aggregate
    final_epochs: int = 0                   # dagger: the last iteration trains this many epochs on the whole
                                            # aggregate, without the train_samples cap (0: like the others)
    bc_epochs: int = 0                      # bc: epochs on its one collection; 0 uses `epochs`
    batch_size: int = 256                   # env steps per gradient step (recurrent: in windows of seq_len)
    lr: float = 1e-3
    lr_schedule: str = "cosine"             # cosine (lr to 0 over each iteration's training) | constant
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    loss: str = "mse"                       # mse | nll | sigma_l2 (teacher-sigma-weighted L2)
    seq_len: int = 16                       # truncated-BPTT window of a recurrent student
    eval_episodes: int = 32                 # student-alone episodes evaluated after each iteration
    chunk_steps: int = 32                   # env steps per dataset chunk file
    chunks_in_memory: int = 4               # chunks loaded and shuffled together while training
    depth_storage: str = "float16"          # float16 | uint16_mm


@dataclass
class StudentConfig:
    teacher: str = ""                       # teacher run directory (or "scripted": the task's oracle)
    # Several teachers, one student (robots_ts.policies.distill.multi): task -> teacher run directory.
    # The run's worlds are split over these tasks by `task_shares` (task -> weight, default 1 each);
    # env.task is then not read, and env.obs_groups must include `task` (task id and command).
    teachers: dict[str, str] = field(default_factory=dict)
    task_shares: dict[str, float] = field(default_factory=dict)
    teacher_checkpoint: str = "best"
    env: EnvConfig = field(default_factory=_student_env)
    student: StudentNetConfig = field(default_factory=StudentNetConfig)
    dagger: DaggerConfig = field(default_factory=DaggerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = "cpu"
    torch_threads: int = 0                  # 0: torch's default


def validate(cfg: StudentConfig) -> None:
    """Cheap semantic checks, before any env, teacher or network is built."""
    from robots_ts.envs.checks import check_env_config

    from robots_ts.policies.distill.multi import validate_teachers

    validate_teachers(cfg)
    if not cfg.teachers:
        check_env_config(cfg.env)
    d, s = cfg.dagger, cfg.student
    if cfg.seed < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {cfg.seed}")
    if cfg.torch_threads < 0:
        raise ConfigError(f"torch_threads: expected 0 (torch's default) or a positive integer, got {cfg.torch_threads}")
    for key in ("lr", "max_grad_norm"):
        if not math.isfinite(getattr(d, key)) or getattr(d, key) <= 0:
            raise ConfigError(f"dagger.{key}: expected a positive number, got {getattr(d, key)}")
    if not math.isfinite(d.weight_decay) or d.weight_decay < 0:
        raise ConfigError(f"dagger.weight_decay: expected a number >= 0, got {d.weight_decay}")
    if cfg.teacher_checkpoint != "best" and cfg.teacher_checkpoint != "latest" \
            and not cfg.teacher_checkpoint.endswith(".zip"):
        raise ConfigError(f"teacher_checkpoint: expected 'best', 'latest' or a .zip file, got {cfg.teacher_checkpoint!r}")
    if not cfg.teacher and not cfg.teachers:
        raise ValueError("teacher: give the teacher run directory, e.g. teacher=runs/teacher/reach (or one per "
                         "task: teachers.Reach=RUN teachers.Push=RUN ...)")
    choices = {"dagger.algorithm": (d.algorithm, ALGORITHMS), "dagger.beta_schedule": (d.beta_schedule, BETA_SCHEDULES),
               "dagger.loss": (d.loss, LOSSES), "dagger.depth_storage": (d.depth_storage, DEPTH_STORAGE),
               "dagger.lr_schedule": (d.lr_schedule, ("cosine", "constant")),
               "student.encoder": (s.encoder, ("depth", "points")),
               "student.depth_norm": (s.depth_norm, ("pixel", "range")),
               "student.aux_input": (s.aux_input, ("sensor", "core"))}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{key}: expected one of {list(allowed)}, got {value!r}")
    groups = list(cfg.env.obs_groups)
    if "privileged" in groups:
        raise ValueError("env.obs_groups: a student must not read 'privileged' (that is the teacher's); "
                         f"got {groups}")
    if s.encoder not in groups or "proprio" not in groups:
        raise ValueError(f"env.obs_groups: a {s.encoder} student reads ['proprio', '{s.encoder}'], got {groups}")
    for key in ("iterations", "steps_per_iteration", "epochs", "batch_size", "seq_len", "eval_episodes",
                "chunk_steps", "chunks_in_memory"):
        if getattr(d, key) <= 0:
            raise ValueError(f"dagger.{key}: expected a positive integer, got {getattr(d, key)}")
    for key in ("train_samples", "keep_last", "bc_epochs", "final_epochs"):
        if getattr(d, key) < 0:
            raise ValueError(f"dagger.{key}: expected 0 (off) or a positive integer, got {getattr(d, key)}")
    if not 0.0 <= d.beta0 <= 1.0 or not 0.0 <= d.beta_decay <= 1.0:
        raise ValueError(f"dagger.beta0 and dagger.beta_decay must lie in [0, 1], got {d.beta0}, {d.beta_decay}")
    if s.aux_weight > 0 and not s.aux_indices:
        raise ValueError("student.aux_weight > 0 needs student.aux_indices (privileged columns to predict)")
    for key in ("depth_dropout", "point_dropout"):
        if not 0.0 <= getattr(cfg.augment, key) < 1.0:
            raise ValueError(f"augment.{key}: expected a fraction in [0, 1), got {getattr(cfg.augment, key)}")
    if not (isinstance(s.depth_fill, int) and not isinstance(s.depth_fill, bool) and s.depth_fill >= 0):
        raise ValueError(f"student.depth_fill: expected a non-negative integer (fill passes), got {s.depth_fill!r}")
    if len({len(s.cnn_channels), len(s.cnn_kernels), len(s.cnn_strides)}) != 1:
        raise ValueError("student.cnn_channels, cnn_kernels and cnn_strides must have the same length")


def beta_at(d: DaggerConfig, iteration: int) -> float:
    """Probability that the teacher acts at each step of iteration ``iteration`` (0-based)."""
    if d.algorithm == "bc":
        return 1.0
    if d.beta_schedule == "constant":
        return d.beta0
    if d.beta_schedule == "linear":
        # From beta0 at iteration 0 down to 0 at the last iteration.
        return d.beta0 * max(0.0, 1.0 - iteration / max(1, d.iterations - 1))
    return d.beta0 * d.beta_decay ** iteration
