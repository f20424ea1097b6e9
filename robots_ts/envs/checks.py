"""Checks of an env config before anything is built: every construction parameter the batched env
will read, each failure a :class:`~robots_ts.config.ConfigError` naming the key and what it expects.

Commands call :func:`check_env_config` in their validation pass (before a run directory exists);
``WorldBatch`` calls it too, so ``gymnasium.make`` and direct construction get the same messages.
"""
from __future__ import annotations

import math
from numbers import Real

from robots_ts.config import RAY_SPLITS, ConfigError, EnvConfig

CURRICULUM_REWARDS = ("success", "return")
DOWNSAMPLERS = ("voxel", "fps")


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _positive(key: str, value, integer: bool = False, allow_zero: bool = False) -> None:
    ok = _number(value) and (float(value) >= 0 if allow_zero else float(value) > 0)
    if integer:
        ok = ok and float(value) == int(value)
    if not ok:
        what = ("a non-negative " if allow_zero else "a positive ") + ("integer" if integer else "finite number")
        raise ConfigError(f"{key}: expected {what}, got {value!r}")


def check_env_config(cfg: EnvConfig, prefix: str = "env.") -> None:
    """Raise ConfigError for the first invalid field of ``cfg`` (keys reported as ``prefix + name``)."""
    from robots_ts.envs.tasks import TASKS
    from robots_ts.envs.world import OBS_GROUPS
    from robots_ts.robot.arm import CONTROL_MODES

    k = prefix
    if cfg.task not in TASKS:
        raise ConfigError(f"{k}task: unknown task {cfg.task!r}; available tasks: {sorted(TASKS)}")
    from robots_ts.envs.backends.backend import BACKENDS

    if cfg.backend not in BACKENDS:
        raise ConfigError(f"{k}backend: unknown simulator {cfg.backend!r}; expected one of {list(BACKENDS)}")
    groups = cfg.obs_groups
    if isinstance(groups, (str, bytes)):
        raise ConfigError(f"{k}obs_groups: expected a list of group names, got the string {groups!r} "
                          f"(write [{groups!r}])")
    groups = list(groups)
    bad = [g for g in groups if g not in OBS_GROUPS]
    if bad or not groups:
        raise ConfigError(f"{k}obs_groups: unknown observation group(s) {bad}; choose from {list(OBS_GROUPS)}"
                          if bad else f"{k}obs_groups: expected at least one of {list(OBS_GROUPS)}, got []")
    if not (isinstance(cfg.num_envs, int) and not isinstance(cfg.num_envs, bool) and cfg.num_envs >= 1):
        raise ConfigError(f"{k}num_envs: expected an integer >= 1, got {cfg.num_envs!r} "
                          f"(num_envs must be >= 1)")
    if cfg.control not in CONTROL_MODES:
        raise ConfigError(f"{k}control: unknown control mode {cfg.control!r}; expected one of {list(CONTROL_MODES)}")
    _positive(f"{k}control_hz", cfg.control_hz)
    _positive(f"{k}episode_steps", cfg.episode_steps, integer=True, allow_zero=True)
    _positive(f"{k}num_threads", cfg.num_threads, integer=True, allow_zero=True)
    _positive(f"{k}ray_actors", cfg.ray_actors, integer=True, allow_zero=True)
    if cfg.ray_split not in RAY_SPLITS:
        raise ConfigError(f"{k}ray_split: expected one of {list(RAY_SPLITS)}, got {cfg.ray_split!r}")
    _positive(f"{k}init_noise", cfg.init_noise, allow_zero=True)
    _positive(f"{k}action_history", cfg.action_history, integer=True)
    task = TASKS[cfg.task]
    try:
        task.params.with_bounds(cfg.params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{k}params: {exc}") from None
    unknown = set(cfg.reward_scales) - set(task.reward_scales)
    if unknown:
        raise ConfigError(f"{k}reward_scales: unknown reward term(s) {sorted(unknown)} for {cfg.task}; "
                          f"terms: {sorted(task.reward_scales)}")
    for term, scale in cfg.reward_scales.items():
        if not _number(scale):
            raise ConfigError(f"{k}reward_scales.{term}: expected a finite number, got {scale!r}")
    if "depth" in groups or "points" in groups:
        d = cfg.depth
        _positive(f"{k}depth.width", d.width, integer=True)
        _positive(f"{k}depth.height", d.height, integer=True)
        _positive(f"{k}depth.near", d.near)
        if not (_number(d.far) and d.far > d.near):
            raise ConfigError(f"{k}depth.far: expected a number > depth.near ({d.near}), got {d.far!r}")
    if "points" in groups:
        p = cfg.points
        _positive(f"{k}points.num_points", p.num_points, integer=True)
        _positive(f"{k}points.width", p.width, integer=True)
        _positive(f"{k}points.height", p.height, integer=True)
        _positive(f"{k}points.voxel", p.voxel, allow_zero=True)
        if p.downsample not in DOWNSAMPLERS:
            raise ConfigError(f"{k}points.downsample: expected one of {list(DOWNSAMPLERS)}, got {p.downsample!r}")
        if len(p.crop_low) != 3 or len(p.crop_high) != 3 or not all(lo < hi for lo, hi in zip(p.crop_low, p.crop_high)):
            raise ConfigError(f"{k}points.crop_low/crop_high: expected two [x, y, z] corners with low < high, "
                              f"got {list(p.crop_low)}, {list(p.crop_high)}")
    check_randomization(cfg.randomization, f"{k}randomization.")
    r = cfg.randomization
    if cfg.backend == "pybullet":
        unmodelled = [name for name, on in (("joint_armature_scale", list(r.joint_armature_scale) != [1, 1]),
                                             ("joint_frictionloss", list(r.joint_frictionloss) != [0, 0]),
                                             ("link_com_offset", r.link_com_offset != 0)) if on]
        if unmodelled:
            raise ConfigError(f"{k}randomization.{unmodelled[0]}: the pybullet backend models no joint armature, "
                              f"dry joint friction or movable link centre of mass; leave it at its nominal value")
    c = cfg.curriculum
    if c.reward not in CURRICULUM_REWARDS:
        raise ConfigError(f"{k}curriculum.reward: expected one of {list(CURRICULUM_REWARDS)}, got {c.reward!r}")
    if c.name != "none":
        from robots_ts.curriculum import TEACHERS

        if c.name not in TEACHERS:
            raise ConfigError(f"{k}curriculum.name: unknown curriculum teacher {c.name!r}; expected 'none' or "
                              f"one of {sorted(TEACHERS)}")


def _range(key: str, value, integer: bool = False, positive: bool = False) -> None:
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value)
    ok = ok and value[0] <= value[1] and (value[0] > 0 if positive else value[0] >= 0)
    if integer:
        ok = ok and all(float(v) == int(v) for v in value)
    if not ok:
        what = "integers" if integer else ("positive numbers" if positive else "non-negative numbers")
        raise ConfigError(f"{key}: expected [low, high] {what} with low <= high, got {value!r}")


def _fraction(key: str, value) -> None:
    if not (_number(value) and 0.0 <= float(value) <= 1.0):
        raise ConfigError(f"{key}: expected a fraction in [0, 1], got {value!r}")


def check_randomization(r, k: str = "env.randomization.") -> None:
    check_robot_randomization(r, k)
    _range(f"{k}object_mass_scale", r.object_mass_scale, positive=True)
    _range(f"{k}object_friction_scale", r.object_friction_scale, positive=True)
    _range(f"{k}action_delay", r.action_delay, integer=True)
    _range(f"{k}obs_delay", r.obs_delay, integer=True)
    for name in ("joint_pos_noise", "joint_pos_bias", "joint_vel_noise", "action_noise"):
        _positive(f"{k}{name}", getattr(r, name), allow_zero=True)
    d = r.depth
    for name in ("pixel_shift", "axial_noise", "disparity_step", "edge_threshold"):
        _positive(f"{k}depth.{name}", getattr(d, name), allow_zero=True)
    _positive(f"{k}depth.native_focal", d.native_focal)
    _positive(f"{k}depth.baseline", d.baseline)
    _positive(f"{k}depth.blobs", d.blobs, integer=True, allow_zero=True)
    _range(f"{k}depth.blob_radius", d.blob_radius)
    _range(f"{k}depth.strength", d.strength)
    for name in ("dropout", "edge_dropout"):
        _fraction(f"{k}depth.{name}", getattr(d, name))
    _positive(f"{k}points.jitter", r.points.jitter, allow_zero=True)
    for name in ("dropout", "outliers"):
        _fraction(f"{k}points.{name}", getattr(r.points, name))


def check_robot_randomization(r, k: str) -> None:
    for name in ("link_mass_scale", "joint_damping_scale", "joint_armature_scale", "gain_kp_scale", "gain_kv_scale"):
        _range(f"{k}{name}", getattr(r, name), positive=True)
    _range(f"{k}joint_frictionloss", r.joint_frictionloss)
    _range(f"{k}push_interval", r.push_interval, integer=True)
    for name in ("link_com_offset", "gravity_tilt", "push_velocity", "camera_pos_noise", "camera_rot_noise"):
        _positive(f"{k}{name}", getattr(r, name), allow_zero=True)
    if r.gravity_tilt >= 90:
        raise ConfigError(f"{k}gravity_tilt: expected degrees below 90, got {r.gravity_tilt!r}")
    a = r.adr
    if not a.dims:
        return
    from robots_ts.curriculum import TEACHERS
    from robots_ts.sim2real.randomization.physics import ADR_DIMS

    if a.teacher not in TEACHERS:
        raise ConfigError(f"{k}adr.teacher: unknown curriculum teacher {a.teacher!r}; expected one of {sorted(TEACHERS)}")
    if a.reward not in CURRICULUM_REWARDS:
        raise ConfigError(f"{k}adr.reward: expected one of {list(CURRICULUM_REWARDS)}, got {a.reward!r}")
    for name, bounds in a.dims.items():
        if name not in ADR_DIMS:
            raise ConfigError(f"{k}adr.dims.{name}: not a dimension ADR can drive; expected one of {sorted(ADR_DIMS)}")
        ok = isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(_number(v) for v in bounds)
        if not ok or not 0 <= bounds[0] < bounds[1]:
            raise ConfigError(f"{k}adr.dims.{name}: expected limits [low, high] with 0 <= low < high, got {bounds!r}")
        nominal = a.nominal.get(name, ADR_DIMS[name][1])
        if not _number(nominal) or not bounds[0] <= nominal <= bounds[1]:
            raise ConfigError(f"{k}adr.nominal.{name}: expected a value within the limits {list(bounds)}, got {nominal!r}")
    extra = sorted(set(a.nominal) - set(a.dims))
    if extra:
        raise ConfigError(f"{k}adr.nominal.{extra[0]}: not one of the ADR dims {sorted(a.dims)}")
    if "push_velocity" in a.dims and r.push_interval[1] <= 0:
        raise ConfigError(f"{k}adr.dims.push_velocity: kicks need {k}push_interval > 0")
    d = r.depth
    if "depth_strength" in a.dims and not any(v > 0 for v in (d.pixel_shift, d.axial_noise, d.disparity_step,
                                                               d.dropout, d.edge_dropout, d.blobs)):
        raise ConfigError(f"{k}adr.dims.depth_strength: scales the depth sensor model, which is off; "
                          f"set {k}depth (e.g. the depth section of configs/randomization/default.yaml)")
