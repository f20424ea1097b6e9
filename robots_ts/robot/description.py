"""The robot description: the Franka Emika Panda URDF that ships with ``pybullet_data``.

Every consumer (the MuJoCo scene, the action mapping, observation layouts, checkpoints, export
manifests) reads joint names, order, limits and link frames from here, and this module reads them
from the URDF file itself. Nothing is downloaded: the URDF and its meshes (Apache-2.0) are
installed with the ``pybullet`` dependency.

Position limits are the soft limits of each joint's ``safety_controller`` (the limits Franka's
controller enforces, slightly inside the hard ``<limit>``); velocity and effort limits are the
``<limit>`` element's.
"""
from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

URDF_PACKAGE = "franka_panda"
URDF_FILE = "panda.urdf"
# Franka's "ready" pose: gripper pointing down above the table, fingers opening along world y.
READY_POSE = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])
TCP_LINK = "panda_grasptarget"   # the URDF's grasp point, between the finger tips
FLANGE_LINK = "panda_link8"


def urdf_dir() -> Path:
    """Folder of the Panda URDF inside the installed ``pybullet_data`` package."""
    try:
        import pybullet_data
    except ImportError as exc:  # pybullet is a hard dependency; say what is missing
        raise RuntimeError("the robot description needs the 'pybullet' package (it ships "
                           "pybullet_data/franka_panda/panda.urdf): pip install pybullet") from exc
    path = Path(pybullet_data.getDataPath()) / URDF_PACKAGE
    if not (path / URDF_FILE).is_file():
        raise RuntimeError(f"{path / URDF_FILE} is missing from the installed pybullet_data")
    return path


def urdf_path() -> Path:
    return urdf_dir() / URDF_FILE


def rpy_matrix(rpy) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


@dataclass(frozen=True)
class JointSpec:
    name: str
    kind: str                 # revolute | prismatic | fixed
    parent: str
    child: str
    origin_xyz: np.ndarray
    origin_rpy: np.ndarray
    axis: np.ndarray
    lower: float              # position limits: the safety controller's soft limits when given
    upper: float
    velocity: float
    effort: float


@dataclass(frozen=True)
class RobotDescription:
    """Joints of the URDF in file order, and the groups the env uses."""

    name: str
    joints: tuple[JointSpec, ...]
    arm_joints: tuple[str, ...]       # the 7 revolute arm joints, in chain order
    finger_joints: tuple[str, ...]    # the two prismatic finger joints
    tcp_link: str = TCP_LINK
    flange_link: str = FLANGE_LINK

    def joint(self, name: str) -> JointSpec:
        for j in self.joints:
            if j.name == name:
                return j
        raise KeyError(f"joint {name!r} is not in the {self.name} description")

    def limits(self, names) -> tuple[np.ndarray, np.ndarray]:
        js = [self.joint(n) for n in names]
        return np.array([j.lower for j in js]), np.array([j.upper for j in js])

    @property
    def arm_lower(self) -> np.ndarray:
        return self.limits(self.arm_joints)[0]

    @property
    def arm_upper(self) -> np.ndarray:
        return self.limits(self.arm_joints)[1]

    @property
    def arm_velocity(self) -> np.ndarray:
        return np.array([self.joint(n).velocity for n in self.arm_joints])

    @property
    def arm_effort(self) -> np.ndarray:
        return np.array([self.joint(n).effort for n in self.arm_joints])

    @property
    def finger_range(self) -> tuple[float, float]:
        j = self.joint(self.finger_joints[0])
        return j.lower, j.upper

    @property
    def ready_pose(self) -> np.ndarray:
        return READY_POSE.copy()

    def chain_to(self, link: str) -> list[JointSpec]:
        """Joints from the root link to ``link``, root first."""
        by_child = {j.child: j for j in self.joints}
        out = []
        while link in by_child:
            j = by_child[link]
            out.append(j)
            link = j.parent
        return out[::-1]

    def forward_kinematics(self, q_arm: np.ndarray, link: str) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) and rotation (3, 3) of ``link`` in the base frame for arm angles ``q_arm``.

        Straight from the URDF's joint origins and axes (fingers at 0); the reference the simulators'
        kinematics are tested against.
        """
        q = dict(zip(self.arm_joints, np.asarray(q_arm, dtype=np.float64)))
        pos, rot = np.zeros(3), np.eye(3)
        for j in self.chain_to(link):
            pos = pos + rot @ j.origin_xyz
            rot = rot @ rpy_matrix(j.origin_rpy)
            if j.kind == "revolute":
                angle = q.get(j.name, 0.0)
                a = j.axis / np.linalg.norm(j.axis)
                k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
                rot = rot @ (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k)
        return pos, rot

    def jacobian(self, q_arm: np.ndarray, link: str) -> np.ndarray:
        """(6, 7) geometric Jacobian of ``link``'s origin over the arm joints, base frame:
        rows translation then rotation, as MuJoCo's ``mj_jacSite`` gives the env's TCP Jacobian.
        Column j: axis_j x (p_link - p_j) and axis_j, for arm joints on the chain to ``link``."""
        q = dict(zip(self.arm_joints, np.asarray(q_arm, dtype=np.float64)))
        pos, rot = np.zeros(3), np.eye(3)
        axes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for j in self.chain_to(link):
            pos = pos + rot @ j.origin_xyz
            rot = rot @ rpy_matrix(j.origin_rpy)
            if j.kind == "revolute":
                a = j.axis / np.linalg.norm(j.axis)
                axes[j.name] = (pos, rot @ a)
                k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
                angle = q.get(j.name, 0.0)
                rot = rot @ (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k)
        jac = np.zeros((6, len(self.arm_joints)))
        cols = [c for c, name in enumerate(self.arm_joints) if name in axes]
        if cols:
            p, w = (np.array(v) for v in zip(*(axes[self.arm_joints[c]] for c in cols)))
            jac[:3, cols] = np.cross(w, pos - p).T
            jac[3:, cols] = w.T
        return jac


def _floats(text: str | None, n: int, default: float = 0.0) -> np.ndarray:
    if text is None:
        return np.full(n, default)
    return np.array([float(v) for v in text.split()])


def parse_urdf(path: str | Path) -> RobotDescription:
    root = ET.parse(path).getroot()
    joints = []
    for el in root.findall("joint"):
        origin = el.find("origin")
        limit = el.find("limit")
        safety = el.find("safety_controller")
        axis = el.find("axis")
        lower = float(limit.get("lower", 0.0)) if limit is not None else 0.0
        upper = float(limit.get("upper", 0.0)) if limit is not None else 0.0
        if safety is not None and safety.get("soft_lower_limit") is not None:
            lower = float(safety.get("soft_lower_limit"))
            upper = float(safety.get("soft_upper_limit"))
        joints.append(JointSpec(
            name=el.get("name"), kind=el.get("type"), parent=el.find("parent").get("link"),
            child=el.find("child").get("link"),
            origin_xyz=_floats(origin.get("xyz") if origin is not None else None, 3),
            origin_rpy=_floats(origin.get("rpy") if origin is not None else None, 3),
            axis=_floats(axis.get("xyz") if axis is not None else None, 3, 0.0),
            lower=lower, upper=upper,
            velocity=float(limit.get("velocity", 0.0)) if limit is not None else 0.0,
            effort=float(limit.get("effort", 0.0)) if limit is not None else 0.0))
    arm = tuple(j.name for j in joints if j.kind == "revolute")
    fingers = tuple(j.name for j in joints if j.kind == "prismatic")
    if len(arm) != 7 or len(fingers) != 2:
        raise ValueError(f"{path}: expected 7 revolute arm joints and 2 prismatic finger joints, "
                         f"found {list(arm)} and {list(fingers)}")
    return RobotDescription(name=root.get("name"), joints=tuple(joints), arm_joints=arm, finger_joints=fingers)


@functools.lru_cache(maxsize=None)
def panda() -> RobotDescription:
    """The Panda's description, parsed once per process."""
    return parse_urdf(urdf_path())
