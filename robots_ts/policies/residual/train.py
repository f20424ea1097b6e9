"""``robots-ts refine``: PPO on a residual over a frozen student, and loading a residual run.

The run directory is a teacher's (``run.json`` of kind "residual", ``config.yaml``,
``metrics.jsonl``, ``checkpoints/`` as SB3 + JSON sets, progress, evaluations with ``best``,
resume): the teacher's training loop runs it, given a :class:`ResidualRunner`. The saved config records the base's absolute path and the env the
residual actually trained in (the base's, see :mod:`robots_ts.policies.residual.config`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList

from robots_ts.config import ConfigError, load_run_config
from robots_ts.envs import make_batched_env
from robots_ts.policies.residual.config import ResidualConfig
from robots_ts.policies.residual.env import BASE_ACTION, ResidualVecEnv, alpha_vector
from robots_ts.policies.residual.policy import CriticWarmup, RefinedPolicy, ResidualActorCriticPolicy
from robots_ts.policies.teacher import train as teacher_train
from robots_ts.policies.teacher.checkpoint import uses_manifests, verify_set
from robots_ts.policies.teacher.load import (ObsNormalizer, load_norm_stats, load_sb3, norm_stats_of,
                                           resolve_checkpoint, schedule_objects)
from robots_ts.runs import read_run_meta

PRIVILEGED = "privileged"


def load_base(cfg: ResidualConfig, device: str = "cpu"):
    """The frozen base policy named by ``cfg.base`` (any run kind ``load_policy`` serves)."""
    from robots_ts.policies.load import load_policy

    if not cfg.base:
        raise ConfigError("base: expected the base student's run directory, e.g. base=runs/student_reach_s0")
    if not Path(cfg.base).exists():
        raise FileNotFoundError(f"base: {cfg.base} does not exist")
    base = load_policy(cfg.base, cfg.base_checkpoint, device)
    model = getattr(base, "model", None)
    if isinstance(model, torch.nn.Module):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return base


def resolved(cfg: ResidualConfig, base) -> ResidualConfig:
    """``cfg`` with the base's absolute path and the env the residual trains in: the base's env
    with this config's world and thread counts, and the privileged group for an asymmetric critic."""
    groups = list(base.obs_groups) + ([PRIVILEGED] if cfg.asymmetric_critic else [])
    env = replace(base.env_cfg, num_envs=cfg.env.num_envs, num_threads=cfg.env.num_threads, obs_groups=groups)
    return replace(cfg, env=env, base=str(Path(cfg.base).resolve()))


def validate(cfg: ResidualConfig, action_dim: int | None = None) -> None:
    teacher_train.validate(cfg)
    if cfg.warmup_steps < 0:
        raise ConfigError(f"warmup_steps: expected an integer >= 0, got {cfg.warmup_steps}")
    if action_dim is not None:
        try:
            alpha_vector(cfg.alpha, action_dim)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def policy_kwargs(cfg: ResidualConfig, groups) -> dict:
    actor = [g for g in groups if g != PRIVILEGED] + [BASE_ACTION]
    critic = actor + ([PRIVILEGED] if cfg.asymmetric_critic else [])
    p = cfg.ppo
    return dict(actor_keys=actor, critic_keys=critic, net_arch=dict(pi=list(p.net_arch), vf=list(p.net_arch)),
                activation_fn=teacher_train.ACTIVATIONS[p.activation], log_std_init=p.log_std_init)


def make_model(cfg: ResidualConfig, venv, tensorboard_log: str | None = None) -> PPO:
    p = cfg.ppo
    return PPO(ResidualActorCriticPolicy, venv, learning_rate=teacher_train.learning_rate(p), n_steps=p.n_steps,
               batch_size=p.batch_size, n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda,
               clip_range=p.clip_range, ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
               target_kl=p.target_kl or None, seed=cfg.seed, device=cfg.device, verbose=0,
               tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs(cfg, cfg.env.obs_groups))


def build(cfg: ResidualConfig, base, run_dir: Path | None = None):
    """(batched env, residual env, normalized env, PPO) for a resolved config."""
    env = make_batched_env(cfg.env, seed=cfg.seed)
    renv = ResidualVecEnv(env, base, cfg.alpha)
    venv = teacher_train.normalized(renv, cfg)
    return env, renv, venv, make_model(cfg, venv, str(run_dir / "tb") if run_dir else None)


class ResidualCallback(teacher_train.TeacherCallback):
    """The teacher's callback; evaluations roll out base + residual."""
    kind = "residual"

    def __init__(self, cfg, run_dir, env, venv, state, base):
        super().__init__(cfg, run_dir, env, venv, state)
        self.base = base

    def live_policy(self):
        stats = norm_stats_of(self.venv)
        normalize = ObsNormalizer(stats["obs"], stats["clip_obs"]) if self.venv.norm_obs else None
        return RefinedPolicy(self.base, self.model, self.cfg.alpha, self.cfg.env, normalize)


class ResidualRunner(teacher_train.Runner):
    """The teacher's training loop (run directory, checkpoints, evaluation, resume) over the
    residual env, with the critic warm-up beside the teacher's callback."""
    kind = "residual"
    config_cls = ResidualConfig

    def __init__(self, base=None):
        self.base = base
        self.renv = None

    def validate(self, cfg) -> None:
        validate(cfg)

    def build(self, cfg, run_dir: Path):
        if self.base is None:
            self.base = load_base(cfg)
        env, self.renv, venv, model = build(cfg, self.base, run_dir)
        validate(cfg, self.renv.action_space.shape[0])
        return env, venv, model

    def callbacks(self, cfg, run_dir: Path, env, venv, state: dict):
        cb = ResidualCallback(cfg, run_dir, env, venv, state, self.base)
        return cb, CallbackList([CriticWarmup(self.renv, cfg.warmup_steps), cb])

    def meta(self, cfg) -> dict:
        return {"task": cfg.env.task, "backend": cfg.env.backend, "base": cfg.base,
                "obs_groups": list(cfg.env.obs_groups)}


def train_residual(cfg: ResidualConfig | None = None, run_dir: str | Path | None = None, resume: bool = False,
                   total_steps: int | None = None) -> Path:
    """Refine ``cfg.base`` with a residual (or, with ``resume``, continue the run in ``run_dir``);
    returns the run directory. Every check happens before the run directory is created or touched."""
    run_dir = Path(run_dir)
    runner = ResidualRunner()
    if resume:
        teacher_train.prepare_resume(run_dir, total_steps, runner)
        return teacher_train.train_teacher(run_dir=run_dir, resume=True, total_steps=total_steps, runner=runner)
    runner.base = load_base(cfg)
    cfg = resolved(cfg, runner.base)
    validate(cfg)
    teacher_train.check_fresh_run_dir(run_dir)
    return teacher_train.train_teacher(cfg, run_dir, runner=runner)


def load_residual(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> RefinedPolicy:
    """The refined policy of a residual run: its base (from the path the run recorded) plus the
    residual of ``checkpoint`` (best | latest | a .zip) with its normalization statistics."""
    run_dir = Path(run_dir)
    read_run_meta(run_dir, "residual")
    cfg = load_run_config(ResidualConfig, run_dir / "config.yaml", require_checksum=uses_manifests(run_dir))
    base = load_base(cfg, device)
    path = resolve_checkpoint(run_dir, checkpoint)
    stem = path.name[: -len(".zip")]
    verify_set(path.parent, stem, ("model", "norm"))
    model = load_sb3(path, device, schedule_objects(0.0, cfg.ppo.clip_range))
    normalize = None
    if cfg.ppo.norm_obs:
        stats = load_norm_stats(path.parent / f"{stem}.norm.json")
        normalize = ObsNormalizer(stats["obs"], stats["clip_obs"])
    return RefinedPolicy(base, model, np.asarray(cfg.alpha, np.float32), cfg.env, normalize)
