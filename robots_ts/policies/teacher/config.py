"""Typed config of a PPO teacher run (``configs/teacher/*.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from robots_ts.config import EnvConfig


def _teacher_env() -> EnvConfig:
    return EnvConfig(num_envs=32, obs_groups=["proprio", "privileged"])


@dataclass
class PPOConfig:
    n_steps: int = 64                 # rollout length per world; batch = n_steps * num_envs
    batch_size: int = 512
    n_epochs: int = 10
    learning_rate: float = 3e-4
    lr_schedule: str = "linear"       # linear (to 0 at total_steps) | constant
    gamma: float = 0.98
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 1.0
    target_kl: float = 0.0            # 0: no early stop on KL
    net_arch: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "tanh"          # tanh | elu | relu
    log_std_init: float = -0.5
    norm_obs: bool = True
    norm_reward: bool = True
    clip_obs: float = 10.0


@dataclass
class KickstartConfig:
    """Kickstarting (Schmitt et al. 2018): PPO's loss adds ``weight_t * H(teacher, student)`` on the
    states the student visits, with ``weight_t`` decaying so that the student can overtake its
    teachers (:mod:`robots_ts.policies.teacher.kickstart`). Empty ``teachers``: plain PPO.

    ``teachers`` holds one teacher run per task of this run; a run trains one task today, so that is
    exactly one run of ``env.task``. A teacher reads its own observation groups (with its own
    normalization) from the same env step, so the student may read other groups than it does.
    Schedules, with t the env steps collected before an update:
      constant     weight (0 from ``decay_steps`` on, when that is set)
      linear       weight * max(0, 1 - t / decay_steps)        (0 exactly from decay_steps on)
      exponential  weight * 0.5 ** (t / half_life)              (0 from ``decay_steps`` on, when set)
    """
    teachers: list[str] = field(default_factory=list)   # teacher run directories
    checkpoint: str = "best"          # which of each teacher run's checkpoints: best | latest | a .zip
    weight: float = 1.0               # lambda_0
    schedule: str = "constant"        # constant | linear | exponential
    decay_steps: int = 0              # env steps at which the weight becomes 0 (0: never; linear needs one)
    half_life: int = 0                # exponential: env steps over which the weight halves
    loss: str = "cross_entropy"       # cross_entropy: -log pi_student(teacher's mean) | kl: KL(teacher || student)


@dataclass
class TeacherConfig:
    env: EnvConfig = field(default_factory=_teacher_env)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    total_steps: int = 1_000_000
    seed: int = 0
    checkpoint_every: int = 50_000    # env steps between checkpoints (the most a kill can lose)
    eval_every: int = 100_000         # env steps between evaluations (best.zip by success)
    eval_episodes: int = 64
    eval_envs: int = 16
    keep_checkpoints: int = 3
    device: str = "cpu"
    torch_threads: int = 1            # small MLPs update faster on one thread; 0: torch's default
    # Fine-tuning: start from another teacher run's weights and observation statistics (same
    # observation spec and network; robots_ts.policies.teacher.warm_start). "" starts from scratch.
    init: str = ""
    init_checkpoint: str = "best"     # which of the init run's checkpoints: best | latest | a .zip
    # Kickstarted PPO: an auxiliary loss toward trained teachers, decaying over training.
    kickstart: KickstartConfig = field(default_factory=KickstartConfig)
