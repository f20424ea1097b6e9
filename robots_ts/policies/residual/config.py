"""Typed config of a refinement run (``configs/residual/*.yaml``): a residual on a frozen base
(``mode: residual``, ResiP) or the whole student fine-tuned with PPO (``mode: finetune``, the
baseline ResiP compares against), with the same env, budget and options."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robots_ts.config import EnvConfig
from robots_ts.policies.teacher.config import PPOConfig, TeacherConfig

MODES = ("residual", "finetune")


def _residual_env() -> EnvConfig:
    # Only num_envs, num_threads, ray_actors and ray_split are read: the rest of the env (task,
    # sensors, randomization) is the base student's own, so the residual trains where the base was
    # distilled; a value set for it that differs from the base's is refused.
    return EnvConfig(num_envs=32, obs_groups=["proprio", "depth"])


def _residual_ppo() -> PPOConfig:
    # log_std_init -3: exploration std ~0.05 in residual units, i.e. alpha * 0.05 in the action.
    return PPOConfig(log_std_init=-3.0, net_arch=[256, 256], learning_rate=1e-4, norm_reward=True)


@dataclass
class ResidualConfig(TeacherConfig):
    """A TeacherConfig (PPO, budget, checkpoints, evaluation) plus the refinement's own fields, so the
    teacher's training callback serves refinement unchanged."""
    env: EnvConfig = field(default_factory=_residual_env)
    ppo: PPOConfig = field(default_factory=_residual_ppo)
    base: str = ""                    # the frozen student's run directory (or a checkpoint .json)
    base_checkpoint: str = "latest"   # which of the base run's checkpoints
    mode: str = "residual"            # residual | finetune (PPO on the whole student: the baseline)
    alpha: list[float] = field(default_factory=lambda: [0.1])   # one value, or one per action dimension
    warmup_steps: int = 0             # env steps during which only the critic trains, on base rollouts
    asymmetric_critic: bool = False   # the critic also reads the privileged group; the actor never does
    # [start, end, steps]: the share of episodes the refined policy acts in grows linearly from start
    # to end over the first `steps` env steps after the warm-up (steps 0: `end` throughout); in the
    # other episodes the base acts alone, exactly (infos["residual"] says which).
    share: list[float] = field(default_factory=lambda: [1.0, 1.0, 0])
    # The actor reads a points group through a PointNet of these widths (one MLP shared by every
    # point, then a max over points); empty: flattened with the other groups, in the cloud's order.
    # mode=finetune ignores it: the fine-tuned student reads the cloud with its own encoder.
    point_mlp: list[int] = field(default_factory=list)
    # PPO settings that replace ppo's in mode=finetune only (keys of ppo, e.g. learning_rate,
    # target_kl): the whole student, nearly deterministic and trained already, moves far more per
    # gradient step than a zero-initialised residual does, so the two rarely want the same settings.
    finetune_ppo: dict[str, Any] = field(default_factory=dict)
