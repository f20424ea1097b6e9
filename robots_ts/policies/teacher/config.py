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
