"""Typed configs: dataclasses with defaults, loaded from YAML, overridden by dotted ``key=value``.

OmegaConf's structured configs do the merging and type checks; this module turns its errors into
messages that name the key and the expected type, and rejects unknown keys before any work starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence, Type, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


@dataclass
class DepthConfig:
    width: int = 64
    height: int = 64
    near: float = 0.1        # metres; depth is clipped to [near, far]
    far: float = 2.5
    camera: str = "scene"


@dataclass
class PointsConfig:
    num_points: int = 512
    width: int = 96           # resolution of the depth render the cloud is back-projected from
    height: int = 96
    crop_low: list[float] = field(default_factory=lambda: [-0.1, -0.6, -0.02])
    crop_high: list[float] = field(default_factory=lambda: [1.0, 0.6, 0.8])
    remove_table: bool = True
    table_fit: bool = False   # fit the table plane per cloud (a camera off its calibration; real robots)
    voxel: float = 0.008      # metres; 0 disables the voxel grid
    downsample: str = "voxel"  # "voxel" (voxel grid, then a seeded random subset) or "fps" (open3d)


@dataclass
class DepthNoiseConfig:
    """A structured-light / stereo depth sensor on top of the rendered depth (all off by default).

    The order is the sensor's: per-pixel sub-pixel shift, axial noise growing with distance,
    disparity quantisation at the sensor's own focal length, then invalid pixels (dropout, edges,
    blobs), which read 0 as in a 16UC1 driver image. Sources of the defaults in the presets
    (``configs/randomization/*.yaml``).
    """

    pixel_shift: float = 0.0        # px, sigma of a per-pixel Gaussian shift (DextrAH-G: 0.5)
    axial_noise: float = 0.0        # x the Kinect model sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 m
    disparity_step: float = 0.0     # px of disparity, quantisation at native_focal (simkinect: 1/8)
    native_focal: float = 580.0     # px, the sensor's own focal length (Kinect v1, RealSense D4xx class)
    baseline: float = 0.075         # m, projector-camera or stereo baseline
    dropout: float = 0.0            # fraction of pixels lost at random
    edge_dropout: float = 0.0       # chance a pixel on a depth edge is lost
    edge_threshold: float = 0.03    # 1/m: inverse depth (linear across any plane) bending this much is an edge
    blobs: int = 0                  # at most this many lost blobs per image
    blob_radius: list[float] = field(default_factory=lambda: [1.0, 4.0])   # px
    # Per-episode strength, drawn per world U(lo, hi): scales the axial noise, the dropout, edge
    # dropout and blob rates, and the share of shifted pixels; 0 is the clean render. A range
    # from 0 keeps a student from leaning on one artefact (a halo of lost pixels round an object
    # is easier to find than the object).
    strength: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class PointNoiseConfig:
    jitter: float = 0.0             # m, Gaussian sigma per point per axis
    dropout: float = 0.0            # fraction of points replaced by copies of kept ones
    outliers: float = 0.0           # fraction of points replaced by uniform points in the crop box


@dataclass
class AdrConfig:
    """Automatic domain randomization: a curriculum teacher (``robots_ts.curriculum``) chooses
    each episode's value of the named randomization dimensions and widens their ranges while the
    policy copes (OpenAI et al. 2019). ``dims``: dimension -> [limit low, limit high]; a dimension
    starts at ``nominal`` (default: 1 for scales, 0 otherwise) and replaces the preset's draw.
    ``teacher``: adr (boundary sampling) | alp_gmm | random, with ``kwargs`` for it."""

    dims: dict[str, list[float]] = field(default_factory=dict)
    nominal: dict[str, float] = field(default_factory=dict)
    teacher: str = "adr"
    reward: str = "success"   # what each episode reports back: success | return
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RandomizationConfig:
    """Domain randomization of an env; everything off by default (the nominal env).

    Per episode (at reset, from each world's own generator): task objects' mass and friction
    scales, the robot's link masses and centres of mass, joint damping, armature and dry friction,
    servo gains, the gravity direction, the camera's pose, a joint position bias, action and
    observation delays. At intervals: velocity kicks of the free objects. Per step: joint position
    and velocity noise, action noise, the depth sensor model, point noise. Draws always start from
    the nominal values, so they never accumulate. Presets: ``configs/randomization/*.yaml``, used
    as ``env.randomization=@configs/randomization/default.yaml``.
    """

    object_mass_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])       # x U(lo, hi)
    object_friction_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])   # x U(lo, hi)
    link_mass_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])     # each robot link x U(lo, hi)
    link_com_offset: float = 0.0    # m, each link's centre of mass moved U(-d, d) per axis
    joint_damping_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])    # each joint x U(lo, hi)
    joint_armature_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])   # each joint x U(lo, hi)
    joint_frictionloss: list[float] = field(default_factory=lambda: [0.0, 0.0])     # N m added, U(lo, hi)
    gain_kp_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])    # each arm servo's stiffness
    gain_kv_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])    # and damping gain x U(lo, hi)
    gravity_tilt: float = 0.0       # degrees: gravity tilted by U(0, max) toward a uniform azimuth
    push_interval: list[int] = field(default_factory=lambda: [0, 0])   # control steps between kicks (0: off)
    push_velocity: float = 0.0      # m/s: each kick adds a horizontal velocity of U(0, max) to free objects
    camera_pos_noise: float = 0.0   # m, Gaussian per axis per episode: extrinsic calibration error
    camera_rot_noise: float = 0.0   # degrees, Gaussian per axis of the rotation vector, per episode
    joint_pos_noise: float = 0.0    # rad, Gaussian per step
    joint_pos_bias: float = 0.0     # rad, Gaussian per episode (a calibration offset)
    joint_vel_noise: float = 0.0    # rad/s, Gaussian per step
    action_noise: float = 0.0       # action units, Gaussian per step, before clipping
    action_delay: list[int] = field(default_factory=lambda: [0, 0])   # control steps, uniform per episode
    obs_delay: list[int] = field(default_factory=lambda: [0, 0])      # control steps, uniform per episode
    depth: DepthNoiseConfig = field(default_factory=DepthNoiseConfig)
    points: PointNoiseConfig = field(default_factory=PointNoiseConfig)
    adr: AdrConfig = field(default_factory=AdrConfig)


@dataclass
class CurriculumConfig:
    name: str = "none"        # none (uniform over the task's bounds) | random | alp_gmm | covar_gmm | ...
    reward: str = "success"   # what each episode reports back: success | return
    kwargs: dict[str, Any] = field(default_factory=dict)


RAY_SPLITS = ("even", "speed")   # env.ray_split: how a run's worlds are dealt to its Ray actors


@dataclass
class EnvConfig:
    task: str = "Reach"
    backend: str = "mujoco"           # mujoco | pybullet: the simulator behind the env
    num_envs: int = 16
    obs_groups: list[str] = field(default_factory=lambda: ["proprio", "privileged"])
    control: str = "ee"               # ee | joint
    control_hz: float = 25.0
    episode_steps: int = 0            # 0: the task's default
    terminate_on_success: bool = True
    num_threads: int = 0              # 0: one per core, at most one per world
    ray_actors: int = 0               # 0: the worlds step in this process; K: split over K Ray actors for
                                      # training rollouts (robots_ts.scale; evaluations stay in-process)
    ray_split: str = "even"           # how the worlds are dealt to the actors: even | speed (in proportion
                                      # to each actor's measured stepping speed, probed once at the start)
    init_noise: float = 0.02          # radians of uniform noise on the home joint pose at reset
    action_history: int = 4           # actions in the `history` group (the last ones sent, newest first),
                                      # for a policy that acts through latency; read only with that group
    depth: DepthConfig = field(default_factory=DepthConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    params: dict[str, list[float]] = field(default_factory=dict)       # bounds overrides by name
    reward_scales: dict[str, float] = field(default_factory=dict)      # term scale overrides
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)


def _type_name(cls: Type, key: str) -> str:
    node: Any = cls
    for part in key.split("."):
        if not is_dataclass(node):
            return "a value"
        match = [f for f in fields(node) if f.name == part]
        if not match:
            return "a value"
        node = match[0].type
        if isinstance(node, str):
            node = eval(node, vars(__import__(cls.__module__, fromlist=["_"])))  # noqa: S307 (our own annotations)
    return getattr(node, "__name__", str(node))


def load_config(cls: Type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a ``cls`` from defaults, then a YAML file, then ``key=value`` overrides.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key.
    """
    base = OmegaConf.structured(cls)
    layers = []
    if path is not None:
        path = Path(path)
        layers.append(("file " + str(path), _includes(_load_yaml(path))))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, _, value = item.partition("=")
        if value.startswith(INCLUDE):
            layers.append((f"override {item!r}", _nested(key, _include(value))))
        else:
            layers.append((f"override {item!r}", OmegaConf.from_dotlist([item])))
    cfg = base
    for where, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except (ConfigKeyError, ConfigAttributeError) as exc:
            raise ConfigError(f"{where}: unknown config key {exc.full_key!r} for {cls.__name__}") from None
        except ValidationError as exc:
            key = exc.full_key
            raise ConfigError(f"{where}: config key {key!r} expects {_type_name(cls, key)}, "
                              f"got {exc.value!r}") from None
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return OmegaConf.to_object(cfg)


INCLUDE = "@"   # a value "@path.yaml" stands for that file's contents (a sub-config)


def _include(value: str):
    """The YAML file a ``@path`` value names: relative to the working directory, else to the
    installed package (``@configs/randomization/default.yaml`` works from anywhere)."""
    rel = Path(value[len(INCLUDE):])
    for candidate in (rel, Path(__file__).parent / rel):
        if candidate.is_file():
            return _includes(_load_yaml(candidate))
    raise ConfigError(f"included config {value!r}: no file {rel} here or in the robots_ts package")


def _includes(node):
    """Replace every ``@path.yaml`` string value in a loaded config by that file's contents."""
    for key in list(node.keys()):
        value = node[key]
        if isinstance(value, str) and value.startswith(INCLUDE) and value.endswith((".yaml", ".yml")):
            node[key] = _include(value)
        elif OmegaConf.is_dict(value):
            _includes(value)
    return node


def _nested(key: str, node):
    for part in reversed(key.split(".")):
        node = OmegaConf.create({part: node})
    return node


def _load_yaml(path: Path):
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text()
        node = OmegaConf.create(text) if text.strip() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc})") from None
    except Exception as exc:  # yaml's scanner/parser errors and OmegaConf's own
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{at}: {why}") from None
    if node is None or not OmegaConf.is_dict(node):
        raise ConfigError(f"config file {path}: expected a mapping of config keys, got "
                          f"{'an empty file' if node is None else type(node).__name__}")
    return node


CHECKSUM_PREFIX = "# robots_ts config sha256 "


def _checksum(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def load_run_config(cls: Type[T], path: str | Path, require_checksum: bool = True) -> T:
    """A run's own ``config.yaml`` (written by :func:`save_config`): its last line is a checksum of
    the rest, so a truncated or hand-damaged file is refused instead of read with defaults filling
    the lost keys. ``require_checksum=False`` accepts files of runs older than the checksum."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run config {path} is missing")
    text = path.read_text()
    body, _, last = text.rstrip("\n").rpartition("\n")
    if last.startswith(CHECKSUM_PREFIX):
        if _checksum(body + "\n") != last[len(CHECKSUM_PREFIX):].strip():
            raise ConfigError(f"run config {path} does not match its checksum line (truncated or edited); "
                              "restore it from a backup or start a new run")
    elif require_checksum:
        raise ConfigError(f"run config {path} has no checksum line (truncated?); restore it or start a new run")
    return load_config(cls, path)


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def save_config(cfg: Any, path: str | Path) -> None:
    from robots_ts.runs import atomic_write_text

    body = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    atomic_write_text(Path(path), body + CHECKSUM_PREFIX + _checksum(body) + "\n")


# The shipped configs live in the package (a wheel carries them); configs/ at the repository root
# links here.
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


def config_path(relative: str) -> Path:
    """``configs/<relative>`` from the working directory if it is there, else the shipped one."""
    local = Path("configs") / relative
    return local if local.exists() else PACKAGED_CONFIGS / relative
