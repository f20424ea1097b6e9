"""The export manifest: what a robot-side runtime needs to feed an exported policy exactly what it
saw in simulation, as typed dataclasses written to and read back from ``manifest.json``.

Plain Python only (no numpy, no torch): the deploy runtime loads it on a robot computer that has
onnxruntime and little else. :func:`load_manifest` checks the format version and every required
field, naming the missing or mistyped one by its dotted path; :func:`write_manifest` writes it
atomically, after the policy file it describes (the manifest is what makes an export exist).

Conventions the fields rely on:

- frames: positions and rotations are in the robot base frame (the URDF's root link
  ``panda_link0``; the table top is z = 0);
- rotations are 3x3 row-major lists, camera-to-base: their columns are the camera axes in the base
  frame; ``rotation`` uses the MuJoCo/OpenGL camera axes (x right, y up, looking along -z),
  ``rotation_optical`` the ROS optical frame (x right, y down, z forward);
- intrinsics follow ROS ``CameraInfo``: pixel (u, v) = (column, row), (0, 0) the centre of the
  top-left pixel, ray = ((u - cx) / fx, (v - cy) / fy, 1) in the optical frame;
- depth is metres along the optical axis (z-depth, what ROS depth images hold), row 0 at the top;
- tensor shapes are per sample: every policy input and output has a leading batch dimension.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from robots_ts.runs import sha256_of

FORMAT = "robots_ts.export/1"
MANIFEST_FILE = "manifest.json"


class ManifestError(ValueError):
    """A manifest is missing, of another format version, or lacks / mistypes a field (named)."""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of the exported graph; ``shape`` excludes the batch dimension."""

    name: str
    shape: list[int]
    dtype: str
    description: str = ""


@dataclass(frozen=True)
class RecurrentSpec:
    """Recurrent state: fed back from ``output`` to ``input`` every step, zeros at an episode start."""

    input: str
    output: str
    size: int
    initial: str = "zeros"
    reset: str = "set a world's row to zeros when its episode starts (the policy's reset(done))"


@dataclass(frozen=True)
class ParitySpec:
    """The largest difference between the exported graph and the original policy found at export."""

    atol: float
    max_abs_diff: float
    samples: int
    reference: str


@dataclass(frozen=True)
class PolicySpec:
    file: str
    format: str                         # onnx | torchscript
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    dynamic_batch: bool
    exporter: str
    parity: ParitySpec
    recurrent: Optional[RecurrentSpec] = None
    opset: Optional[int] = None
    action_output: str = "action"
    action_clip: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    normalization: str = "inside the graph: inputs are raw observations in the units below"


@dataclass(frozen=True)
class SourceSpec:
    run_dir: str
    kind: str                           # teacher | student | residual | finetune
    task: str
    backend: str
    checkpoint: str                     # what was asked for: best | latest | a file
    checkpoint_file: str                # the file it resolved to
    created: str                        # the run's creation time (run.json)
    exported: str
    robots_ts_version: str
    encoder: Optional[str] = None       # students: depth | points
    base: Optional[str] = None          # residual and finetune runs: the base student's run directory
    alpha: Optional[list[float]] = None  # residual runs: the residual's scale per action dimension
    tasks: Optional[list[str]] = None   # a multi-task student: its tasks, in the 'task' group's one-hot order


@dataclass(frozen=True)
class JointLimits:
    name: str
    kind: str                           # revolute | prismatic
    lower: float                        # rad or m
    upper: float
    velocity: float                     # rad/s or m/s
    effort: float                       # N m or N


@dataclass(frozen=True)
class RobotSpec:
    name: str
    urdf: str
    base_frame: str
    tcp_link: str
    arm_joints: list[str]
    finger_joints: list[str]
    joints: list[JointLimits]           # arm joints, then finger joints, in the URDF's order
    home: list[float]                   # arm joint angles (rad) the env resets to (plus init_noise)
    home_fingers: list[float]           # finger positions (m) at reset: open
    finger_range: list[float]           # [closed, open] per finger, m
    limits_source: str


@dataclass(frozen=True)
class FieldSpec:
    """A named slice of a flat observation or action vector."""

    field: str
    start: int
    stop: int
    names: list[str]
    units: str


@dataclass(frozen=True)
class GroupSpec:
    """One observation group the policy reads (an input of the graph of the same name)."""

    name: str
    shape: list[int]
    dtype: str
    units: str
    frame: str
    description: str
    fields: list[FieldSpec] = field(default_factory=list)


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: str = "none"


@dataclass(frozen=True)
class CameraSpec:
    name: str
    fovy_deg: float
    intrinsics: Intrinsics              # of the image the policy's sensor group is made from
    near: float                         # m: depth is clipped to [near, far]
    far: float
    depth: str                          # what a depth value is, and what "no return" reads as
    frame: str                          # the frame position and rotations are in (the base frame)
    position: list[float]
    rotation: list[list[float]]         # camera-to-base, MuJoCo/OpenGL axes
    rotation_optical: list[list[float]]  # camera-to-base, ROS optical axes
    quaternion_optical_xyzw: list[float]


@dataclass(frozen=True)
class PointsSpec:
    """How a depth image becomes the ``points`` group (robots_ts.envs.sensors.PointCloudMaker)."""

    num_points: int
    render: Intrinsics                  # the depth image the cloud is back-projected from
    frame: str
    crop_low: list[float]
    crop_high: list[float]
    remove_table: bool
    table_fit: bool
    table_z: float
    table_margin: float                 # m above the table that table removal keeps
    voxel: float                        # m; 0: no voxel grid
    downsample: str                     # voxel | fps
    no_return_at: float                 # m: pixels at or beyond this depth are dropped
    steps: str


@dataclass(frozen=True)
class GripperSpec:
    index: int                          # the action entry
    absolute: bool
    finger_range: list[float]           # [closed, open] per finger, m
    mapping: str


@dataclass(frozen=True)
class ActionSpec:
    control: str                        # ee | joint
    dim: int
    fields: list[FieldSpec]
    clip: list[float]
    ee_step: float                      # m of TCP motion per unit action (ee control)
    joint_step: float                   # rad of joint-target motion per unit action (joint control)
    workspace_low: list[float]          # m, base frame: the TCP goal is clipped to this box (ee)
    workspace_high: list[float]
    ik_damping: float
    ee_rotation_target: list[list[float]]   # TCP orientation held under ee control (base frame)
    gripper: GripperSpec
    semantics: str


@dataclass(frozen=True)
class ControlSpec:
    hz: float
    period_s: float
    episode_steps: int
    prev_action_at_reset: list[float]   # proprio's prev_action at an episode start


@dataclass(frozen=True)
class Manifest:
    format: str
    source: SourceSpec
    robot: RobotSpec
    obs_groups: list[str]
    observations: dict[str, GroupSpec]
    action: ActionSpec
    control: ControlSpec
    policy: PolicySpec
    camera: Optional[CameraSpec] = None
    points: Optional[PointsSpec] = None
    randomization: dict[str, Any] = field(default_factory=dict)   # the run's, for the record
    env: dict[str, Any] = field(default_factory=dict)             # the run's env config, for the record

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------ reading
def _is_optional(tp) -> tuple[bool, Any]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, tp


def _convert(tp, value, path: str):
    """``value`` (parsed JSON) as type ``tp``; a ManifestError names ``path`` when it does not fit."""
    optional, tp = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ManifestError(f"field {path!r} is null, expected {getattr(tp, '__name__', tp)}")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ManifestError(f"field {path!r}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            sub = f"{path}.{f.name}" if path else f.name
            if f.name not in value:
                has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                if has_default:
                    continue
                raise ManifestError(f"missing field {sub!r}")
            kwargs[f.name] = _convert(hints[f.name], value[f.name], sub)
        return tp(**kwargs)
    if origin is list:
        if not isinstance(value, list):
            raise ManifestError(f"field {path!r}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ManifestError(f"field {path!r}: expected an object, got {type(value).__name__}")
        _, item = typing.get_args(tp)
        return {k: _convert(item, v, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ManifestError(f"field {path!r}: expected a number, got {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise ManifestError(f"field {path!r}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"manifest field {path!r} has a type the reader does not know: {tp}")


def manifest_from_dict(data: Any, source: str = "manifest") -> Manifest:
    """A :class:`Manifest` from parsed JSON, after checking its format version and fields."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format")
    if version is None:
        raise ManifestError(f"{source}: missing field 'format' (expected {FORMAT!r})")
    if version != FORMAT:
        raise ManifestError(f"{source}: format {version!r} is not supported; this robots_ts reads {FORMAT!r} "
                            "(export the run again with this version)")
    try:
        man = _convert(Manifest, data, "")
    except ManifestError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    missing = [g for g in man.obs_groups if g not in man.observations]
    if missing:
        raise ManifestError(f"{source}: field 'observations' lacks the group(s) {missing} listed in 'obs_groups'")
    if any(g in man.obs_groups for g in ("depth", "points")) and man.camera is None:
        raise ManifestError(f"{source}: missing field 'camera' (the policy reads {man.obs_groups})")
    if "points" in man.obs_groups and man.points is None:
        raise ManifestError(f"{source}: missing field 'points' (the policy reads a point cloud)")
    return man


def manifest_path(path: str | Path) -> Path:
    """``manifest.json`` inside an export directory, or the path itself when it names a file."""
    path = Path(path)
    return path if path.suffix == ".json" else path / MANIFEST_FILE


def load_manifest(path: str | Path, check_policy: bool = True) -> Manifest:
    """The manifest of an export directory (or a ``manifest.json`` path), validated.

    ``check_policy``: also check that the policy file it names is there and is the one exported
    (SHA-256), so a manifest never pairs with another export's model.
    """
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise FileNotFoundError(f"{path} is not an export: {mpath} is missing (run `robots-ts export RUN_DIR`)")
    try:
        data = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {mpath} cannot be read as JSON ({exc})") from None
    man = manifest_from_dict(data, f"manifest {mpath}")
    if check_policy:
        policy = mpath.parent / man.policy.file
        if not policy.is_file():
            raise FileNotFoundError(f"manifest {mpath}: policy file {policy} is missing")
        if sha256_of(policy) != man.policy.sha256:
            raise ManifestError(f"manifest {mpath}: policy file {policy} does not match the SHA-256 it records "
                                "(replaced or damaged); export the run again")
    return man




def write_manifest(man: Manifest, out_dir: str | Path) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename) after a round-trip check."""
    from robots_ts.runs import atomic_write_json

    data = man.to_dict()
    manifest_from_dict(json.loads(json.dumps(data)), "manifest being written")
    path = Path(out_dir) / MANIFEST_FILE
    atomic_write_json(path, data)
    return path
