"""What every simulator builds, described without a simulator: the arena, the camera, task objects.

A backend (:mod:`robots_ts.envs.backends.mujoco_backend`, :mod:`robots_ts.envs.backends.pybullet_backend`) builds its
scene from three things: the Panda URDF (:mod:`robots_ts.robot.description`), the arena below
(table, scene camera) and the task's :class:`Body` list. It then reports every world's state in the
one layout of :func:`state_layout`, so tasks read object poses by slice whatever simulates them.

State layout: ``qpos`` = 7 arm joints, 2 finger joints, then per free body its position (3) and
orientation quaternion (w, x, y, z); ``qvel`` = 7 + 2 joint velocities, then per free body its
linear velocity (world frame) and angular velocity (body frame). This is MuJoCo's own layout for
the scene, so the MuJoCo backend copies it as is; the PyBullet backend assembles it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TIMESTEP = 0.002                      # physics step (s); control steps are whole multiples
GRAVITY = (0.0, 0.0, -9.81)
TABLE_HALF = (0.6, 0.6, 0.025)        # the table top is z = 0, the robot base frame's origin on it
TABLE_POS = (0.4, 0.0, -0.025)
TABLE_FRICTION = (0.8, 0.005, 0.0001)  # sliding, torsional, rolling
FINGER_FRICTION = (1.5, 0.02, 0.001)
ARM_DOF = 7
FINGER_DOF = 2


@dataclass(frozen=True)
class Camera:
    """A fixed pinhole camera: position, axes (x right, y up, looking along -z, as OpenGL and
    MuJoCo), vertical field of view in degrees."""

    name: str
    pos: tuple[float, float, float]
    xyaxes: tuple[float, ...]          # camera x axis, then y axis, in world coordinates
    fovy: float

    def rotation(self) -> np.ndarray:
        """(3, 3) camera-to-world rotation, columns = camera x, y, z axes in the world."""
        x = np.asarray(self.xyaxes[:3], dtype=np.float64)
        x /= np.linalg.norm(x)
        y = np.asarray(self.xyaxes[3:], dtype=np.float64)
        y -= x * (x @ y)
        y /= np.linalg.norm(y)
        return np.stack([x, y, np.cross(x, y)], axis=1)

    def moved(self, offset, rotvec) -> "Camera":
        """This camera displaced by ``offset`` (m, world frame) and turned about its own centre by
        the rotation vector ``rotvec`` (rad, world frame): an extrinsic calibration error."""
        R = rotation_matrix(rotvec) @ self.rotation()
        return Camera(self.name, tuple(np.asarray(self.pos, dtype=np.float64) + np.asarray(offset, dtype=np.float64)),
                      tuple(R[:, 0]) + tuple(R[:, 1]), self.fovy)


def rotation_matrix(rotvec) -> np.ndarray:
    """(3, 3) rotation of a rotation vector (axis times angle in radians), Rodrigues' formula."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * K @ K


SCENE_CAMERA = Camera("scene", (0.95, -0.5, 0.75), (0.7348, 0.6783, 0.0, -0.4933, 0.5344, 0.6863), 48.0)
CAMERAS = {SCENE_CAMERA.name: SCENE_CAMERA}


def camera(name: str) -> Camera:
    if name not in CAMERAS:
        raise ValueError(f"camera {name!r} is not in the scene; cameras: {sorted(CAMERAS)}")
    return CAMERAS[name]


@dataclass(frozen=True)
class Shape:
    """One geometric primitive of a body.

    ``size``: box half-extents (3), sphere radius (1), cylinder radius and half-length (2).
    ``offset``: position in the body frame. ``depth``: whether the depth camera sees it.
    """

    name: str
    kind: str                               # box | sphere | cylinder
    size: tuple[float, ...]
    rgba: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    depth: bool = True


@dataclass(frozen=True)
class Body:
    """A task object, one of three kinds:

    - ``free``: a dynamic body on a free joint that collides with the arm, the table and other
      bodies; its pose and velocity are in the state (:func:`state_layout`);
    - ``fixture``: a static body that the arm and free bodies collide with (a hole, a wall), of any
      number of shapes, placed by the task at reset and not moved by contacts;
    - neither: a marker, placed by the task, that nothing touches.

    ``soft_contact``: MuJoCo solref for a free body's contacts (time constant, damping ratio), or None.
    """

    name: str
    shapes: tuple[Shape, ...]
    free: bool = False
    mass: float = 0.1
    friction: tuple[float, float, float] = (1.0, 0.005, 0.0001)
    pos: tuple[float, float, float] = (0.5, 0.0, 0.1)
    soft_contact: tuple[float, float] | None = None
    fixture: bool = False

    def __post_init__(self):
        if self.free and self.fixture:
            raise ValueError(f"body {self.name!r} is both free and a fixture; a body is one kind")

    @property
    def collides(self) -> bool:
        """Whether the arm and free bodies touch it (free bodies and fixtures; not markers)."""
        return self.free or self.fixture

    def shape(self, name: str) -> Shape:
        for s in self.shapes:
            if s.name == name:
                return s
        raise KeyError(f"body {self.name!r} has no shape {name!r}")


def box(name: str, half, rgba, **kw) -> Shape:
    return Shape(name, "box", tuple(float(h) for h in half), tuple(rgba), **kw)


def box_inertia(mass: float, half) -> np.ndarray:
    """Principal moments of a solid box of half-extents ``half``."""
    a2, b2, c2 = np.square(np.asarray(half, dtype=np.float64))
    return mass / 3.0 * np.array([b2 + c2, a2 + c2, a2 + b2])


@dataclass(frozen=True)
class StateLayout:
    """Slices of each free body's pose in ``qpos`` and velocity in ``qvel`` (see module doc)."""

    nq: int
    nv: int
    qpos: dict[str, slice] = field(default_factory=dict)
    qvel: dict[str, slice] = field(default_factory=dict)


def state_layout(bodies: tuple[Body, ...]) -> StateLayout:
    nq = nv = ARM_DOF + FINGER_DOF
    qpos, qvel = {}, {}
    for b in bodies:
        if b.free:
            qpos[b.name], qvel[b.name] = slice(nq, nq + 7), slice(nv, nv + 6)
            nq, nv = nq + 7, nv + 6
    return StateLayout(nq, nv, qpos, qvel)


class WorldEdit:
    """What a task (or a randomizer) changes in one world at reset, recorded by name and applied
    by the backend.

    Tasks call these instead of touching a simulator; the backend replays the list on the world
    (in-process for MuJoCo, in a worker process for PyBullet). Values are plain floats. Every
    backend starts each reset from its nominal world, so edits never build on earlier ones.
    The robot edits (link, joint, actuator, gravity, camera) are the physics randomizers'; a
    backend that cannot model one raises ``ValueError`` naming it (see ``ROBOT_EDITS``).
    """

    def __init__(self):
        self.ops: list[tuple] = []

    def set_pose(self, body: str, pos, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
        """Place a body: position (m) and orientation quaternion (w, x, y, z)."""
        self.ops.append(("pose", body, tuple(map(float, pos)), tuple(map(float, quat))))

    def set_size(self, shape: str, size, offset=None) -> None:
        """Resize a shape (and move it within its body, when ``offset`` is given)."""
        self.ops.append(("size", shape, tuple(map(float, size)), None if offset is None else tuple(map(float, offset))))

    def set_mass(self, body: str, mass: float) -> None:
        """Mass of a free body (kg); inertia follows from its first shape, taken as solid."""
        self.ops.append(("mass", body, float(mass)))

    def set_friction(self, body: str, sliding: float) -> None:
        """Sliding friction coefficient of a free body's shapes."""
        self.ops.append(("friction", body, float(sliding)))

    # ---------------------------------------------------------------- robot and world (randomizers)
    def scale_link_mass(self, link: str, scale: float) -> None:
        """A robot link's mass and inertia times ``scale``. Gravity compensation keeps cancelling
        the nominal weight only, as a real controller's model would."""
        self.ops.append(("link_mass", link, float(scale)))

    def shift_link_com(self, link: str, offset) -> None:
        """A robot link's centre of mass moved by ``offset`` (m, link frame)."""
        self.ops.append(("link_com", link, tuple(map(float, offset))))

    def scale_joint(self, joint: str, damping: float = 1.0, armature: float = 1.0, frictionloss: float = 0.0) -> None:
        """A robot joint's damping and armature times the scales; ``frictionloss`` (N m) added
        dry friction (the nominal model has none)."""
        self.ops.append(("joint", joint, float(damping), float(armature), float(frictionloss)))

    def scale_gains(self, joint: str, kp: float, kv: float) -> None:
        """A joint servo's stiffness and damping gains times ``kp`` and ``kv``."""
        self.ops.append(("gains", joint, float(kp), float(kv)))

    def set_gravity(self, gravity) -> None:
        """The gravity vector (m/s^2, world frame)."""
        self.ops.append(("gravity", "", tuple(map(float, gravity))))

    def move_camera(self, name: str, offset, rotvec) -> None:
        """A camera's rendering pose displaced (see :meth:`Camera.moved`). Only what the camera
        renders moves: back-projection keeps the nominal calibration, as on a real robot."""
        self.ops.append(("camera", name, tuple(map(float, offset)), tuple(map(float, rotvec))))


# The edits of robot and world physics, and the ones each backend does not model.
ROBOT_EDITS = ("link_mass", "link_com", "joint", "gains", "gravity", "camera")
