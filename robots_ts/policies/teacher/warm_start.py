"""Warm start: a new teacher run starts from another teacher run's PPO weights and observation
statistics (``init=RUN_DIR``), e.g. to fine-tune the Push teacher on PushPrecise.

What carries over: every parameter of the policy (actor, critic, log-std) and the running
observation mean and variance (with their count, so they keep adapting at the rate they had).
What does not: the return statistics (the new task's rewards have another scale), the optimizer's
moments, the step count, the schedules (the new run's learning rate starts from its own config).
Both runs must read the same observation spec (groups and shapes) and have the same network.
"""
from __future__ import annotations

from pathlib import Path

from robots_ts.config import ConfigError


def obs_spec(space) -> dict[str, tuple[int, ...]]:
    """{group: shape} of a Dict observation space (what a policy reads, comparable across runs)."""
    return {k: tuple(int(d) for d in s.shape) for k, s in space.spaces.items()}


def check_init(cfg) -> None:
    """Config-time checks of ``cfg.init`` (no env, no model): a teacher run with the same network."""
    from robots_ts.config import load_run_config
    from robots_ts.policies.teacher.checkpoint import uses_manifests
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.runs import read_run_meta

    if not cfg.init:
        return
    init = Path(cfg.init)
    try:
        read_run_meta(init, "teacher")
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"init: {exc}") from None
    theirs = load_run_config(TeacherConfig, init / "config.yaml", require_checksum=uses_manifests(init)).ppo
    ours = cfg.ppo
    if (list(theirs.net_arch), theirs.activation) != (list(ours.net_arch), ours.activation):
        raise ConfigError(f"init: teacher run {init} has ppo.net_arch={list(theirs.net_arch)}, "
                          f"ppo.activation={theirs.activation}; this config has ppo.net_arch={list(ours.net_arch)}, "
                          f"ppo.activation={ours.activation}: a warm start needs the same network")


def warm_start(model, venv, cfg) -> str:
    """Copy the policy and observation statistics of ``cfg.init`` (checkpoint ``cfg.init_checkpoint``)
    into ``model`` and ``venv``; returns a line saying what was loaded. Refuses, naming both, when the
    init run reads another observation spec or acts in another action space."""
    from robots_ts.policies.teacher.load import load_norm_stats, load_norm_stats_into, load_teacher

    check_init(cfg)
    teacher = load_teacher(cfg.init, cfg.init_checkpoint, cfg.device)
    theirs, ours = obs_spec(teacher.model.observation_space), obs_spec(venv.observation_space)
    if theirs != ours:
        raise ConfigError(f"init: teacher run {cfg.init} ({teacher.env_cfg.task}) reads observations {theirs}; "
                          f"this run's env ({cfg.env.task}) produces {ours}: a warm start needs the same "
                          "observation spec")
    a, b = teacher.model.action_space.shape, venv.action_space.shape
    if a != b:
        raise ConfigError(f"init: teacher run {cfg.init} acts in {teacher.env_cfg.control} control with "
                          f"{a[0]} actions; this run's env ({cfg.env.control} control) takes {b[0]}")
    model.policy.load_state_dict(teacher.model.policy.state_dict())
    if venv.norm_obs:
        if not teacher.cfg.ppo.norm_obs:
            raise ConfigError(f"init: teacher run {cfg.init} has no observation statistics (ppo.norm_obs=false); "
                              "set ppo.norm_obs=false here too, or start from a run that normalized")
        stats = load_norm_stats(teacher.checkpoint.parent / f"{teacher.checkpoint.name[:-4]}.norm.json")
        load_norm_stats_into(venv, {"obs": stats["obs"]})
    return f"warm start from {teacher.checkpoint}"
