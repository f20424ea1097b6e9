"""``robots-ts refine``: PPO on a residual over a frozen student (or, ``mode=finetune``, on the whole
student), and loading such runs.

The run directory is a teacher's (``run.json`` of kind "residual" or "finetune", ``config.yaml``,
``metrics.jsonl``, ``checkpoints/`` as SB3 + JSON sets, progress, evaluations with ``best``,
resume): the teacher's training loop runs it, given a :class:`ResidualRunner` (or
:class:`FinetuneRunner`). The saved config records the base's absolute path and the env the run
actually trained in (the base's, see :mod:`robots_ts.policies.residual.config`).
"""
from __future__ import annotations

import copy
from collections import deque
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecNormalize

from robots_ts.config import ConfigError, load_run_config
from robots_ts.envs import make_training_env
from robots_ts.policies.residual.config import MODES, ResidualConfig
from robots_ts.policies.residual.env import (BASE_ACTION, RESIDUAL_INFO, ResidualVecEnv, ShareSchedule,
                                             alpha_vector)
from robots_ts.policies.residual.policy import CriticWarmup, RefinedPolicy, ResidualActorCriticPolicy
from robots_ts.policies.teacher import train as teacher_train
from robots_ts.policies.teacher.checkpoint import uses_manifests, verify_set
from robots_ts.policies.teacher.config import PPOConfig
from robots_ts.policies.teacher.load import (load_norm_stats, load_sb3, norm_stats_of, resolve_checkpoint,
                                             schedule_objects)
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


def mode_ppo(cfg: ResidualConfig) -> PPOConfig:
    """The PPO settings the run's mode trains with: ``ppo``, and in ``finetune`` mode with
    ``finetune_ppo``'s keys replacing its own. An unknown key or a value of the wrong type is
    refused by name (in either mode, so a typo does not wait for the fine-tune to surface)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cfg.ppo), dict(cfg.finetune_ppo))
    except (ConfigKeyError, ConfigAttributeError) as exc:
        raise ConfigError(f"finetune_ppo: unknown key {exc.full_key!r}; expected keys of ppo "
                          f"({', '.join(f.name for f in fields(PPOConfig))})") from None
    except ValidationError as exc:
        raise ConfigError(f"finetune_ppo.{exc.full_key}: got {exc.value!r}, of the wrong type for ppo's "
                          f"{exc.full_key}") from None
    return OmegaConf.to_object(merged) if cfg.mode == "finetune" else cfg.ppo


# What a refinement sets of its env: how many worlds and where they step. The rest is its base's.
OWN_ENV_FIELDS = ("num_envs", "num_threads", "ray_actors", "ray_split")


def resolved(cfg: ResidualConfig, base) -> ResidualConfig:
    """``cfg`` with the base's absolute path, the env the residual trains in (the base's env with
    this config's :data:`OWN_ENV_FIELDS`, and the privileged group for an asymmetric critic) and
    the mode's PPO settings (:func:`mode_ppo`)."""
    if cfg.point_mlp and cfg.mode == "residual" and "points" not in base.obs_groups:
        raise ConfigError(f"point_mlp {list(cfg.point_mlp)}: the base reads {list(base.obs_groups)}, no points "
                          "group for the residual's PointNet; leave point_mlp empty")
    groups = list(base.obs_groups) + ([PRIVILEGED] if cfg.asymmetric_critic else [])
    env = replace(base.env_cfg, obs_groups=groups, **{k: getattr(cfg.env, k) for k in OWN_ENV_FIELDS})
    # Any other env field is the base's: one set otherwise would be ignored, so it is refused.
    default = ResidualConfig().env
    for f in fields(env):
        mine = getattr(cfg.env, f.name)
        if f.name not in OWN_ENV_FIELDS and mine != getattr(default, f.name) and mine != getattr(env, f.name):
            raise ConfigError(f"env.{f.name}: a refinement trains in its base's env, whose {f.name} is "
                              f"{getattr(env, f.name)!r}; got {mine!r}. A refinement sets only "
                              f"{', '.join('env.' + k for k in OWN_ENV_FIELDS)}")
    return replace(cfg, env=env, base=str(Path(cfg.base).resolve()), ppo=mode_ppo(cfg))


def validate(cfg: ResidualConfig, action_dim: int | None = None) -> None:
    if cfg.kickstart.teachers:   # the section comes with TeacherConfig; refinement has no such loss
        raise ConfigError("kickstart: a refinement does not kickstart; kickstart.teachers belongs to "
                          "train-teacher runs")
    teacher_train.validate(cfg)
    if cfg.mode not in MODES:
        raise ConfigError(f"mode: expected one of {list(MODES)}, got {cfg.mode!r}")
    if cfg.init:
        raise ConfigError("init: a refinement starts from its base (base=RUN), not from a teacher run")
    if cfg.warmup_steps < 0:
        raise ConfigError(f"warmup_steps: expected an integer >= 0, got {cfg.warmup_steps}")
    mode_ppo(cfg)
    if any(int(w) < 1 for w in cfg.point_mlp):
        raise ConfigError(f"point_mlp: expected layer widths >= 1, got {list(cfg.point_mlp)}")
    try:
        ShareSchedule(cfg.share)
        if action_dim is not None:
            alpha_vector(cfg.alpha, action_dim)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def policy_kwargs(cfg: ResidualConfig, groups) -> dict:
    actor = [g for g in groups if g != PRIVILEGED] + [BASE_ACTION]
    critic = actor + ([PRIVILEGED] if cfg.asymmetric_critic else [])
    p = cfg.ppo
    return dict(actor_keys=actor, critic_keys=critic, net_arch=dict(pi=list(p.net_arch), vf=list(p.net_arch)),
                activation_fn=teacher_train.ACTIVATIONS[p.activation], log_std_init=p.log_std_init,
                point_mlp=list(cfg.point_mlp))


def make_model(cfg: ResidualConfig, venv, tensorboard_log: str | None = None, policy=ResidualActorCriticPolicy,
               kwargs: dict | None = None) -> PPO:
    p = cfg.ppo
    model = PPO(policy, venv, learning_rate=teacher_train.learning_rate(p), n_steps=p.n_steps,
                batch_size=p.batch_size, n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda,
                clip_range=p.clip_range, ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
                target_kl=p.target_kl or None, seed=cfg.seed, device=cfg.device, verbose=0,
                tensorboard_log=tensorboard_log, policy_kwargs=kwargs or policy_kwargs(cfg, cfg.env.obs_groups))
    return teacher_train.in_memory_logger(model, tensorboard_log)


def make_finetune_model(cfg: ResidualConfig, venv, base, tensorboard_log: str | None = None) -> PPO:
    """PPO whose actor is a copy of the base student, with a log-std that explores as much in the
    executed action as the residual does (``alpha * exp(ppo.log_std_init)`` per dimension)."""
    from robots_ts.policies.residual.finetune import FinetunePolicy, actor_groups, check_base, student_meta

    student = check_base(base)
    meta = student_meta(student)
    groups = actor_groups(meta)
    p = cfg.ppo
    kwargs = dict(student_meta=meta,
                  critic_keys=groups + ([PRIVILEGED] if cfg.asymmetric_critic else []),
                  net_arch=dict(pi=[], vf=list(p.net_arch)), activation_fn=teacher_train.ACTIVATIONS[p.activation],
                  log_std_init=p.log_std_init)
    model = make_model(cfg, venv, tensorboard_log, FinetunePolicy, kwargs)
    alpha = alpha_vector(cfg.alpha, venv.action_space.shape[0])
    model.policy.load_student(student, np.log(np.maximum(alpha, 1e-6)) + p.log_std_init)
    return model


def normalized(renv, cfg: ResidualConfig) -> VecNormalize:
    """VecNormalize over the refinement env. The residual reads every key normalized; the fine-tuned
    student reads raw sensors (it has its own normalization), so only the critic's privileged group
    is normalized for it. ``ppo.norm_obs=false``: no key (the statistics files keep their form)."""
    p = cfg.ppo
    if not p.norm_obs:
        keys = []
    elif cfg.mode == "residual":
        keys = list(renv.observation_space.spaces)
    else:
        keys = [PRIVILEGED] if cfg.asymmetric_critic else []
    return VecNormalize(renv, norm_obs=True, norm_reward=p.norm_reward, clip_obs=p.clip_obs, gamma=p.gamma,
                        norm_obs_keys=keys)


def build(cfg: ResidualConfig, base, run_dir: Path | None = None):
    """(batched env, residual env, normalized env, PPO) for a resolved config."""
    env = make_training_env(cfg.env, seed=cfg.seed)     # env.ray_actors=K: the worlds step in Ray actors
    renv = ResidualVecEnv(env, base, cfg.alpha, (cfg.env.depth.near, cfg.env.depth.far), cfg.mode,
                          ShareSchedule(cfg.share, cfg.warmup_steps), cfg.seed)
    venv = normalized(renv, cfg)
    tb = str(run_dir / "tb") if run_dir else None
    model = make_finetune_model(cfg, venv, base, tb) if cfg.mode == "finetune" else make_model(cfg, venv, tb)
    return env, renv, venv, model


def own_state(base):
    """The base with a recurrent state of its own (the same frozen network): the run's evaluations
    act with it, so they neither change the training worlds' state of a recurrent base nor need
    as many worlds as training has."""
    twin = copy.copy(base)
    if getattr(twin, "hidden", None) is not None:
        twin.hidden = None
    return twin


class ResidualCallback(teacher_train.TeacherCallback):
    """The teacher's callback; evaluations roll out the refined policy, and each rollout's record
    says which share of episodes the refined policy acted in and how those episodes did."""
    kind = "residual"

    def __init__(self, cfg, run_dir, env, venv, state, base, renv):
        super().__init__(cfg, run_dir, env, venv, state)
        self.base, self.renv = base, renv
        self.refined: deque = deque(maxlen=200)     # (refined, success) of recent episodes

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.refined.append((bool(info[RESIDUAL_INFO]), float(info["is_success"])))
        return super()._on_step()

    def extra_metrics(self) -> dict:
        rec = {"residual_share": round(self.renv.share(self.num_timesteps), 4) if self.renv.residual_enabled else 0.0}
        if self.refined:
            flags = np.array([r for r, _ in self.refined])
            wins = np.array([s for _, s in self.refined])
            rec["refined_episodes"] = float(flags.mean())
            rec["success_refined"] = float(wins[flags].mean()) if flags.any() else None
            rec["success_base_only"] = float(wins[~flags].mean()) if (~flags).any() else None
        return rec

    def live_policy(self):
        stats = norm_stats_of(self.venv) if self.venv.norm_obs else None
        return RefinedPolicy(own_state(self.base), self.model, self.cfg.alpha, self.cfg.env, stats)


class FinetuneCallback(ResidualCallback):
    kind = "finetune"

    def live_policy(self):
        from robots_ts.policies.students.checkpoint import StudentPolicy

        return StudentPolicy(self.model.policy.as_student(), self.cfg.env)


class ResidualRunner(teacher_train.Runner):
    """The teacher's training loop (run directory, checkpoints, evaluation, resume) over the
    residual env, with the critic warm-up beside the teacher's callback."""
    kind = "residual"
    config_cls = ResidualConfig
    callback_cls = ResidualCallback

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
        cb = self.callback_cls(cfg, run_dir, env, venv, state, self.base, self.renv)
        return cb, CallbackList([CriticWarmup(self.renv, cfg.warmup_steps), cb])

    def meta(self, cfg) -> dict:
        return {"task": cfg.env.task, "backend": cfg.env.backend, "base": cfg.base,
                "obs_groups": list(cfg.env.obs_groups), "mode": cfg.mode}


class FinetuneRunner(ResidualRunner):
    kind = "finetune"
    callback_cls = FinetuneCallback


RUNNERS = {"residual": ResidualRunner, "finetune": FinetuneRunner}


def train_residual(cfg: ResidualConfig | None = None, run_dir: str | Path | None = None, resume: bool = False,
                   total_steps: int | None = None) -> Path:
    """Refine ``cfg.base`` (a residual, or the whole student with ``mode=finetune``), or with
    ``resume`` continue the run in ``run_dir``; returns the run directory. Every check happens
    before the run directory is created or touched."""
    run_dir = Path(run_dir)
    if resume:
        kind = read_run_meta(run_dir).get("kind")
        if kind not in RUNNERS:
            raise ValueError(f"{run_dir} is a {kind!r} run; refine --resume continues {sorted(RUNNERS)} runs")
        runner = RUNNERS[kind]()
        teacher_train.prepare_resume(run_dir, total_steps, runner)
        return teacher_train.train_teacher(run_dir=run_dir, resume=True, total_steps=total_steps, runner=runner)
    cfg, base = checked(cfg)
    runner = RUNNERS[cfg.mode]()
    runner.base = base
    teacher_train.check_fresh_run_dir(run_dir)
    return teacher_train.train_teacher(cfg, run_dir, runner=runner)


def checked(cfg: ResidualConfig):
    """(the config a new refinement runs with, as its run records it, and its loaded base), after
    every check a new run makes before it touches its run directory."""
    validate(cfg)
    base = load_base(cfg)
    if cfg.mode == "finetune":
        from robots_ts.policies.residual.finetune import check_base

        check_base(base)
    cfg = resolved(cfg, base)
    validate(cfg)
    return cfg, base


def _checkpoint(run_dir: Path, checkpoint: str, device: str):
    """(config, SB3 model, its normalization statistics or None, the .zip) of a refinement run."""
    cfg = load_run_config(ResidualConfig, run_dir / "config.yaml", require_checksum=uses_manifests(run_dir))
    path = resolve_checkpoint(run_dir, checkpoint)
    stem = path.name[: -len(".zip")]
    verify_set(path.parent, stem, ("model", "norm"))
    model = load_sb3(path, device, schedule_objects(0.0, cfg.ppo.clip_range))
    stats = load_norm_stats(path.parent / f"{stem}.norm.json") if cfg.ppo.norm_obs else None
    return cfg, model, stats, path


def load_residual(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> RefinedPolicy:
    """The refined policy of a residual run: its base (from the path the run recorded) plus the
    residual of ``checkpoint`` (best | latest | a .zip) with its normalization statistics."""
    run_dir = Path(run_dir)
    read_run_meta(run_dir, "residual")
    cfg, model, stats, path = _checkpoint(run_dir, checkpoint, device)
    return RefinedPolicy(load_base(cfg, device), model, np.asarray(cfg.alpha, np.float32), cfg.env, stats, path)


def load_finetune(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
    """The fine-tuned student of a finetune run, as a StudentPolicy (evaluated and exported as any
    distilled student); ``checkpoint`` as for a residual run."""
    from robots_ts.policies.students.checkpoint import StudentPolicy

    run_dir = Path(run_dir)
    read_run_meta(run_dir, "finetune")
    cfg, model, _, path = _checkpoint(run_dir, checkpoint, device)
    policy = StudentPolicy(model.policy.as_student(), cfg.env, device)
    policy.checkpoint = path
    return policy
