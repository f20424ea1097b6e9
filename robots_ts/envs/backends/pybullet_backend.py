"""PyBullet backend: one ``DIRECT`` physics client per world, worlds stepped in worker processes.

pybullet holds the GIL for most of a step, so threads do not overlap; the worlds are split over
worker processes instead (fresh interpreters talking over socket pairs, so a caller's script is
never re-imported), each owning its worlds' clients. With one worker the worlds live in the
calling process.

The scene is the same as MuJoCo's, built from the same descriptions:

- the Panda from ``pybullet_data``'s URDF (``loadURDF``, fixed base, no self-collision), with the
  identified link inertials of :mod:`robots_ts.robot.dynamics` and the decimated visual meshes of
  :mod:`robots_ts.robot.meshes` (MuJoCo renders the same ones) written into a copy of the file
  (pybullet keeps the diagonal of each inertia);
- joint damping as in MuJoCo; MuJoCo's armature has no pybullet counterpart;
- position control of the arm and fingers through ``setJointMotorControlArray`` with the URDF's
  effort limits. pybullet's motor is a velocity constraint, ``v = Kp (q* - q) / dt`` per substep
  (with velocity gain 1), a first-order servo of time constant ``dt / Kp``; MuJoCo's overdamped
  servo ``kp (q* - q) - kv qdot`` settles with time constant ``kv / kp``. ``Kp = dt kp / kv`` gives
  both the same time constant (30 ms for joints 1-4, 25 ms for 5-7). Gravity is held by the motor
  constraint (MuJoCo compensates it explicitly);
- the table, the task's bodies and the control rate (``numSubSteps`` substeps of 2 ms per
  control step, one ``stepSimulation`` call);
- friction: Bullet multiplies the two coefficients of a contact where MuJoCo takes the larger,
  so the table's coefficient is 1 here and each object gets max(its own, the table's): object on
  table matches MuJoCo exactly; fingers get 1.5 / 0.8 so a finger on a 0.8 object matches too;
- depth from ``getCameraImage`` with view and projection matrices from the scene camera's
  description (:class:`robots_ts.envs.backends.scene.Camera`), the nonlinear depth buffer linearised with
  the projection's near and far planes. TinyRenderer, the CPU rasteriser: on a machine without a
  GPU the eglRenderer plugin falls back to Mesa's software path and is an order slower.

Markers hidden from depth (Push's goal disc) are not built here, so colour frames do not show them.
A fixture (PegInsert's hole) is one static body per shape, all placed at the fixture's pose.
A world whose state turns non-finite is rebuilt at its last reset and flagged as diverged.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from robots_ts.envs.backends.backend import Backend, ImageRequest, StateBatch
from robots_ts.envs.backends.scene import (FINGER_FRICTION, GRAVITY, TABLE_FRICTION, TABLE_HALF, TABLE_POS, TIMESTEP, Body,
                                 ROBOT_EDITS, box_inertia, camera, state_layout)
from robots_ts.robot.dynamics import LINK_INERTIALS

PROJECTION_NEAR, PROJECTION_FAR = 0.02, 6.0   # depth-buffer planes; images are clipped to the request's


@contextlib.contextmanager
def _quiet_banner():
    """pybullet writes a build-time banner from C when it loads; keep it out of our logs and
    JSON output. C's buffers are flushed before the descriptors come back."""
    import ctypes

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(os.devnull, "w") as null:
            for fd in saved:
                os.dup2(null.fileno(), fd)
            try:
                yield
            finally:
                ctypes.CDLL(None).fflush(None)
    finally:
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)


def _pybullet():
    if "pybullet" not in sys.modules:
        with _quiet_banner():
            import pybullet  # noqa: F401
    return sys.modules["pybullet"]


def _connect(p) -> int:
    with _quiet_banner():
        return p.connect(p.DIRECT)


def panda_urdf() -> Path:
    """A copy of pybullet_data's Panda URDF with absolute mesh paths and the identified inertials."""
    from robots_ts.robot.description import urdf_dir
    from robots_ts.robot.dynamics import LINK_INERTIALS
    from robots_ts.robot.meshes import decimated_obj

    folder = urdf_dir()
    text = (folder / "panda.urdf").read_text().replace("package://", f"{folder}/")

    def inertial(match: re.Match) -> str:
        link = match.group(1)
        body = match.group(2)
        if link not in LINK_INERTIALS:
            return match.group(0)
        mass, com, (ixx, ixy, ixz, iyy, iyz, izz) = LINK_INERTIALS[link]
        new = (f'<inertial><origin rpy="0 0 0" xyz="{com[0]} {com[1]} {com[2]}"/><mass value="{mass}"/>'
               f'<inertia ixx="{ixx}" ixy="{ixy}" ixz="{ixz}" iyy="{iyy}" iyz="{iyz}" izz="{izz}"/></inertial>')
        body = re.sub(r"<inertial>.*?</inertial>", "", body, flags=re.S)
        return f'<link name="{link}">{new}{body}</link>'

    text = re.sub(r'<link name="([^"]+)">(.*?)</link>', inertial, text, flags=re.S)

    def visual(match: re.Match) -> str:   # the decimated meshes MuJoCo renders too
        return re.sub(r'filename="([^"]*/meshes/visual/[^"]+)"',
                      lambda m: f'filename="{decimated_obj(m.group(1))}"', match.group(0))

    text = re.sub(r"<visual>.*?</visual>", visual, text, flags=re.S)
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"robots_ts_panda_{digest}.urdf"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def view_matrix(cam) -> list[float]:
    """OpenGL view matrix (column-major, as pybullet takes it) of a scene camera."""
    R = cam.rotation()
    V = np.eye(4)
    V[:3, :3] = R.T
    V[:3, 3] = -R.T @ np.asarray(cam.pos)
    return V.T.reshape(-1).tolist()


def projection_matrix(p, cam, width: int, height: int) -> list[float]:
    """OpenGL projection (column-major) of a scene camera for TinyRenderer.

    TinyRenderer samples each pixel at its corner, not its centre: column j shows the ray through
    x = j and row i the ray through y = i + 1 (pixel centres at half-integers, rows from the top),
    half a pixel off the camera model that back-projection uses. Shifting the image by half a pixel
    in normalised device coordinates (entries (0, 2) and (1, 2)) puts pixel centres back on their
    rays; without it the table's depth was off by up to 5 mm at 128x128.
    """
    proj = list(p.computeProjectionMatrixFOV(cam.fovy, width / height, PROJECTION_NEAR, PROJECTION_FAR))
    proj[8] += 1.0 / width
    proj[9] += 1.0 / height
    return proj


def linear_depth(buffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metric depth along the optical axis from an OpenGL depth buffer in [0, 1]."""
    return far * near / (far - (far - near) * buffer)


def _uids(built) -> tuple[int, ...]:
    """The pybullet bodies of one task body: a free body or marker is one (-1 for a marker depth
    does not see), a fixture one per shape."""
    return tuple(built) if isinstance(built, tuple) else ((built,) if built >= 0 else ())


class _Worlds:
    """The pybullet worlds of one process: builds, resets, steps, gathers and renders them."""

    def __init__(self, task_name: str, ids: Sequence[int], control_hz: float, requests: dict[str, ImageRequest]):
        from robots_ts.envs.tasks import TASKS
        from robots_ts.robot.description import panda
        from robots_ts.robot.dynamics import ARM_DAMPING, ARM_KP, ARM_KV, FINGER_DAMPING, FINGER_KP, FINGER_KV

        self.p = p = _pybullet()
        self.ids = [int(i) for i in ids]
        self.bodies: tuple[Body, ...] = tuple(TASKS[task_name].bodies)
        self.layout = state_layout(self.bodies)
        self.requests = requests
        self.substeps = max(1, int(round(1.0 / (control_hz * TIMESTEP))))
        self.control_dt = self.substeps * TIMESTEP
        desc = panda()
        self.urdf = str(panda_urdf())
        self.effort = np.concatenate([desc.arm_effort, [desc.joint(j).effort for j in desc.finger_joints]])
        self.kp = np.concatenate([TIMESTEP * np.array(ARM_KP) / np.array(ARM_KV),
                                  [TIMESTEP * FINGER_KP / FINGER_KV] * 2])
        self.damping = [ARM_DAMPING] * 7 + [FINGER_DAMPING] * 2
        self.desc = desc
        self.joint_index = {name: k for k, name in enumerate(desc.arm_joints + desc.finger_joints)}
        self.clients = {i: _connect(p) for i in self.ids}
        self.robot, self.objects, self.built = {}, {}, {}
        self.last_reset: dict[int, tuple] = {}
        self.gains = {i: self.kp for i in self.ids}     # per world: the randomizers scale them
        self.edited: set[int] = set()                   # worlds whose robot or world differs from nominal
        for i, c in self.clients.items():
            self._build(i, c)
        self._views = {}
        for key, r in requests.items():
            cam = camera(r.camera)
            self._views[key] = (view_matrix(cam), projection_matrix(p, cam, r.width, r.height))
        self.views = {i: self._views for i in self.ids}  # per world: a moved camera renders its own

    # ---------------------------------------------------------------------------------- scene
    def _build(self, i: int, c: int) -> None:
        p = self.p
        p.setGravity(*GRAVITY, physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=self.control_dt, numSubSteps=self.substeps, physicsClientId=c)
        robot = p.loadURDF(self.urdf, useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=c)
        self.robot[i] = robot
        info = [p.getJointInfo(robot, j, physicsClientId=c) for j in range(p.getNumJoints(robot, physicsClientId=c))]
        names = {x[1].decode(): x[0] for x in info}
        self.joints = [names[j] for j in self.desc.arm_joints + self.desc.finger_joints]
        links = {x[12].decode(): x[0] for x in info}
        self.tcp = links[self.desc.tcp_link]
        # Nominal mass and principal inertia of the links the randomizers scale.
        self.links = {name: links[name] for name in LINK_INERTIALS if name in links}
        self.nominal_links = {name: p.getDynamicsInfo(robot, j, physicsClientId=c)[:3:2]
                              for name, j in self.links.items()}
        for j in range(len(info)):
            p.changeDynamics(robot, j, linearDamping=0.0, angularDamping=0.0, physicsClientId=c)
        for k, j in enumerate(self.joints):
            p.changeDynamics(robot, j, jointDamping=self.damping[k], physicsClientId=c)
        for j in self.joints[7:]:
            p.changeDynamics(robot, j, lateralFriction=FINGER_FRICTION[0] / TABLE_FRICTION[0],
                             spinningFriction=FINGER_FRICTION[1], rollingFriction=FINGER_FRICTION[2], physicsClientId=c)
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=TABLE_HALF, physicsClientId=c)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=TABLE_HALF, rgbaColor=[0.55, 0.45, 0.35, 1], physicsClientId=c)
        table = p.createMultiBody(0.0, col, vis, basePosition=TABLE_POS, physicsClientId=c)
        p.changeDynamics(table, -1, lateralFriction=1.0, spinningFriction=TABLE_FRICTION[1],
                         rollingFriction=TABLE_FRICTION[2], physicsClientId=c)
        self.objects[i] = {}
        self.built[i] = {}

    def _shape_args(self, kind: str, size) -> dict:
        p = self.p
        if kind == "box":
            return {"shapeType": p.GEOM_BOX, "halfExtents": list(size)}
        if kind == "sphere":
            return {"shapeType": p.GEOM_SPHERE, "radius": size[0]}
        if kind == "cylinder":
            return {"shapeType": p.GEOM_CYLINDER, "radius": size[0], "length": 2 * size[1]}
        raise ValueError(f"unknown shape kind {kind!r}")

    def _make_body(self, i: int, body: Body, shapes: list[tuple], mass: float, friction: float) -> int:
        """Create ``body`` in world ``i`` with shapes given as (shape, size, offset)."""
        p, c = self.p, self.clients[i]
        shown = [(sh, size, off) for sh, size, off in shapes if sh.depth]
        if body.free:
            if len(shapes) != 1:
                raise ValueError(f"{body.name}: free bodies have one shape in the pybullet backend")
            sh, size, off = shapes[0]
            col = p.createCollisionShape(collisionFramePosition=off, physicsClientId=c, **self._shape_args(sh.kind, size))
            vis = p.createVisualShape(visualFramePosition=off, rgbaColor=sh.rgba, physicsClientId=c,
                                      **self._shape_args(sh.kind, size))
            uid = p.createMultiBody(mass, col, vis, basePosition=body.pos, physicsClientId=c)
            dyn = dict(lateralFriction=max(friction, TABLE_FRICTION[0]), spinningFriction=body.friction[1],
                       rollingFriction=body.friction[2], linearDamping=0.0, angularDamping=0.0)
            if sh.kind == "box":
                dyn["localInertiaDiagonal"] = box_inertia(mass, size).tolist()
            p.changeDynamics(uid, -1, physicsClientId=c, **dyn)
            return uid
        if body.fixture:
            # One static body (mass 0) per shape, all with the fixture's pose as their origin, the
            # shape's offset in its own frame.
            uids = []
            for sh, size, off in shapes:
                args = self._shape_args(sh.kind, size)
                col = p.createCollisionShape(collisionFramePosition=off, physicsClientId=c, **args)
                vis = (p.createVisualShape(visualFramePosition=off, rgbaColor=sh.rgba, physicsClientId=c, **args)
                       if sh.depth else -1)
                uid = p.createMultiBody(0.0, col, vis, basePosition=body.pos, physicsClientId=c)
                p.changeDynamics(uid, -1, lateralFriction=max(friction, TABLE_FRICTION[0]),
                                 spinningFriction=body.friction[1], rollingFriction=body.friction[2],
                                 physicsClientId=c)
                uids.append(uid)
            return tuple(uids)
        if not shown:
            return -1
        vis = []
        for sh, size, off in shown:
            args = self._shape_args(sh.kind, size)
            vis.append(p.createVisualShape(visualFramePosition=off, rgbaColor=sh.rgba, physicsClientId=c, **args))
        if len(vis) == 1:
            return p.createMultiBody(0.0, -1, vis[0], basePosition=body.pos, physicsClientId=c)
        # Several visual shapes: one base shape and the rest as fixed, massless links.
        return p.createMultiBody(0.0, -1, vis[0], basePosition=body.pos, linkMasses=[0.0] * (len(vis) - 1),
                                 linkCollisionShapeIndices=[-1] * (len(vis) - 1), linkVisualShapeIndices=vis[1:],
                                 linkPositions=[[0, 0, 0]] * (len(vis) - 1),
                                 linkOrientations=[[0, 0, 0, 1]] * (len(vis) - 1),
                                 linkInertialFramePositions=[[0, 0, 0]] * (len(vis) - 1),
                                 linkInertialFrameOrientations=[[0, 0, 0, 1]] * (len(vis) - 1),
                                 linkParentIndices=[0] * (len(vis) - 1), linkJointTypes=[self.p.JOINT_FIXED] * (len(vis) - 1),
                                 linkJointAxis=[[0, 0, 1]] * (len(vis) - 1), physicsClientId=c)

    # ---------------------------------------------------------------------------------- reset
    def reset(self, items: list[tuple]) -> dict:
        for i, q_arm, finger, ops in items:
            self._reset_one(i, q_arm, finger, ops)
        return self._report([it[0] for it in items])

    def _reset_one(self, i: int, q_arm, finger: float, ops: list) -> None:
        p, c, robot = self.p, self.clients[i], self.robot[i]
        self.last_reset[i] = (q_arm, finger, ops)
        robot_ops = [op for op in ops if op[0] in ROBOT_EDITS]
        ops = [op for op in ops if op[0] not in ROBOT_EDITS]
        self._robot_edits(i, robot_ops)
        q = list(q_arm) + [finger, finger]
        for k, j in enumerate(self.joints):
            p.resetJointState(robot, j, q[k], 0.0, physicsClientId=c)
        self._motors(i, np.asarray(q_arm), finger)
        # Each body's shapes, mass, friction and pose: nominal, then the task's edits.
        sizes = {sh.name: (tuple(sh.size), tuple(sh.offset)) for b in self.bodies for sh in b.shapes}
        mass = {b.name: b.mass for b in self.bodies}
        friction = {b.name: b.friction[0] for b in self.bodies}
        pose = {b.name: (tuple(b.pos), (1.0, 0.0, 0.0, 0.0)) for b in self.bodies}
        for op in ops:
            kind, name = op[0], op[1]
            if kind == "pose":
                pose[name] = (op[2], op[3])
            elif kind == "size":
                sizes[name] = (op[2], op[3] if op[3] is not None else sizes[name][1])
            elif kind == "mass":
                mass[name] = op[2]
            elif kind == "friction":
                friction[name] = op[2]
            else:
                raise ValueError(f"unknown world edit {kind!r}")
        for b in self.bodies:
            shapes = [(sh, *sizes[sh.name]) for sh in b.shapes]
            key = (tuple((sh.name, sz, off) for sh, sz, off in shapes), mass[b.name], friction[b.name])
            # Free bodies are rebuilt every episode: a body carried over keeps solver state (contact
            # caches) that makes the first steps depend on the previous episode.
            if b.free or self.built[i].get(b.name) != key:
                for old in _uids(self.objects[i].get(b.name, -1)):
                    p.removeBody(old, physicsClientId=c)
                self.objects[i][b.name] = self._make_body(i, b, shapes, mass[b.name], friction[b.name])
                self.built[i][b.name] = key
            pos, (w, x, y, z) = pose[b.name]
            for uid in _uids(self.objects[i][b.name]):
                p.resetBasePositionAndOrientation(uid, pos, (x, y, z, w), physicsClientId=c)
                p.resetBaseVelocity(uid, (0, 0, 0), (0, 0, 0), physicsClientId=c)

    def _robot_edits(self, i: int, ops: list) -> None:
        """Nominal robot, gravity and camera for world ``i``, then the randomizers' edits.

        pybullet has no joint armature, dry joint friction or movable link centre of mass: edits
        asking for them raise. Its servo is first order (``Kp = dt kp / kv``, module docstring),
        so the gain scales enter as their ratio.
        """
        p, c, robot = self.p, self.clients[i], self.robot[i]
        if i in self.edited:
            for name, j in self.links.items():
                mass, inertia = self.nominal_links[name]
                p.changeDynamics(robot, j, mass=mass, localInertiaDiagonal=inertia, physicsClientId=c)
            for k, j in enumerate(self.joints):
                p.changeDynamics(robot, j, jointDamping=self.damping[k], physicsClientId=c)
            p.setGravity(*GRAVITY, physicsClientId=c)
            self.gains[i], self.views[i] = self.kp, self._views
            self.edited.discard(i)
        if not ops:
            return
        self.edited.add(i)
        index = self.joint_index
        gains, views = self.kp.copy(), dict(self._views)
        for op in ops:
            kind, name = op[0], op[1]
            if kind == "link_mass":
                if name not in self.links:
                    raise ValueError(f"world edit names robot link {name!r}; known: {sorted(self.links)}")
                mass, inertia = self.nominal_links[name]
                p.changeDynamics(robot, self.links[name], mass=mass * op[2],
                                 localInertiaDiagonal=[v * op[2] for v in inertia], physicsClientId=c)
            elif kind == "joint":
                if op[3] != 1.0 or op[4] != 0.0:
                    raise ValueError("the pybullet backend models no joint armature or dry joint friction: "
                                     "leave joint_armature_scale at [1, 1] and joint_frictionloss at [0, 0]")
                k = index[name]
                p.changeDynamics(robot, self.joints[k], jointDamping=self.damping[k] * op[2], physicsClientId=c)
            elif kind == "gains":
                gains[index[name]] *= op[2] / op[3]
            elif kind == "gravity":
                p.setGravity(*op[2], physicsClientId=c)
            elif kind == "camera":
                for key, r in self.requests.items():
                    if r.camera == name:
                        cam = camera(name).moved(op[2], op[3])
                        views[key] = (view_matrix(cam), self._views[key][1])
            else:
                raise ValueError(f"the pybullet backend cannot apply world edit {kind!r} "
                                 f"(no movable link centre of mass)" if kind == "link_com" else
                                 f"unknown world edit {kind!r}")
        self.gains[i], self.views[i] = gains, views

    def _motors(self, i: int, q_target, finger: float) -> None:
        p = self.p
        targets = list(q_target) + [finger, finger]
        p.setJointMotorControlArray(self.robot[i], self.joints, p.POSITION_CONTROL, targetPositions=targets,
                                    targetVelocities=[0.0] * 9, forces=self.effort.tolist(),
                                    positionGains=self.gains[i].tolist(), velocityGains=[1.0] * 9,
                                    physicsClientId=self.clients[i])

    def _kick(self, i: int, dv) -> None:
        """Add the linear velocity ``dv`` (m/s, world frame) to every free body of world ``i``."""
        p, c = self.p, self.clients[i]
        for b in self.bodies:
            if b.free:
                uid = self.objects[i][b.name]
                lin, ang = p.getBaseVelocity(uid, physicsClientId=c)
                p.resetBaseVelocity(uid, np.add(lin, dv).tolist(), ang, physicsClientId=c)

    # ----------------------------------------------------------------------------------- step
    def step(self, q_target: np.ndarray, finger: np.ndarray, kicks: np.ndarray | None = None) -> dict:
        diverged = []
        for k, i in enumerate(self.ids):
            self._motors(i, q_target[k], float(finger[k]))
            if kicks is not None and kicks[k].any():
                self._kick(i, kicks[k])
            self.p.stepSimulation(physicsClientId=self.clients[i])
        out = self._report(self.ids)
        bad = ~(np.isfinite(out["qpos"]).all(axis=1) & np.isfinite(out["qvel"]).all(axis=1)
                & (np.abs(out["qvel"]).max(axis=1) < 1e4))
        for k in np.flatnonzero(bad):
            i = self.ids[k]
            diverged.append(i)
            self._rebuild(i)
            self._reset_one(i, *self.last_reset[i])
        if diverged:
            fresh = self._report(diverged)
            for name in ("qpos", "qvel", "ee_pos", "ee_rot", "jac"):
                out[name][bad] = fresh[name]
            for key in out["images"]:
                out["images"][key][bad] = fresh["images"][key]
        out["diverged"] = bad
        return out

    def _rebuild(self, i: int) -> None:
        """A diverged world: a fresh client (its solver state is not to be trusted)."""
        self.p.disconnect(physicsClientId=self.clients[i])
        self.clients[i] = _connect(self.p)
        self._build(i, self.clients[i])
        self.edited.discard(i)   # a fresh world is nominal

    # --------------------------------------------------------------------------------- gather
    def _report(self, ids: list[int]) -> dict:
        p, L = self.p, self.layout
        k = len(ids)
        out = {"ids": list(ids), "qpos": np.zeros((k, L.nq)), "qvel": np.zeros((k, L.nv)),
               "ee_pos": np.zeros((k, 3)), "ee_rot": np.zeros((k, 3, 3)), "jac": np.zeros((k, 6, 7)),
               "images": {key: np.zeros((k, r.height, r.width), np.float32) for key, r in self.requests.items()}}
        zeros = [0.0] * 9
        for n, i in enumerate(ids):
            c, robot = self.clients[i], self.robot[i]
            js = p.getJointStates(robot, self.joints, physicsClientId=c)
            q = [s[0] for s in js]
            out["qpos"][n, :9] = q
            out["qvel"][n, :9] = [s[1] for s in js]
            ls = p.getLinkState(robot, self.tcp, computeForwardKinematics=1, physicsClientId=c)
            out["ee_pos"][n] = ls[4]
            out["ee_rot"][n] = np.reshape(p.getMatrixFromQuaternion(ls[5]), (3, 3))
            # calculateJacobian takes the point in the link's centre-of-mass frame.
            com_rot = np.reshape(p.getMatrixFromQuaternion(ls[1]), (3, 3))
            local = com_rot.T @ (np.asarray(ls[4]) - np.asarray(ls[0]))
            lin, ang = p.calculateJacobian(robot, self.tcp, local.tolist(), q, zeros, zeros, physicsClientId=c)
            out["jac"][n, :3] = np.asarray(lin)[:, :7]
            out["jac"][n, 3:] = np.asarray(ang)[:, :7]
            for b in self.bodies:
                if not b.free:
                    continue
                uid = self.objects[i][b.name]
                pos, (x, y, z, w) = p.getBasePositionAndOrientation(uid, physicsClientId=c)
                lin_v, ang_v = p.getBaseVelocity(uid, physicsClientId=c)
                R = np.reshape(p.getMatrixFromQuaternion((x, y, z, w)), (3, 3))
                out["qpos"][n, L.qpos[b.name]] = [*pos, w, x, y, z]
                out["qvel"][n, L.qvel[b.name]] = [*lin_v, *(R.T @ np.asarray(ang_v))]
            for key in self.requests:
                out["images"][key][n] = self.depth(i, key)
        return out

    def depth(self, i: int, key: str) -> np.ndarray:
        r = self.requests[key]
        view, proj = self.views[i][key]
        _, _, _, buf, _ = self.p.getCameraImage(r.width, r.height, view, proj, renderer=self.p.ER_TINY_RENDERER,
                                                flags=self.p.ER_NO_SEGMENTATION_MASK,
                                                physicsClientId=self.clients[i])
        z = linear_depth(np.asarray(buf, dtype=np.float64).reshape(r.height, r.width), PROJECTION_NEAR, PROJECTION_FAR)
        return np.clip(z, r.near, r.far).astype(np.float32)

    def rgb(self, i: int, width: int, height: int, camera_name: str) -> np.ndarray:
        cam = camera(camera_name)
        _, _, img, _, _ = self.p.getCameraImage(width, height, view_matrix(cam), projection_matrix(self.p, cam, width, height),
                                                renderer=self.p.ER_TINY_RENDERER,
                                                physicsClientId=self.clients[i])
        return np.asarray(img, dtype=np.uint8).reshape(height, width, 4)[..., :3].copy()

    # ------------------------------------------------------------------------------ benchmarks
    def rate(self, seconds: float, key: str | None) -> tuple[int, float]:
        """Bare stepSimulation (plus one render per world when ``key``) on this process's worlds;
        their states are saved before and restored after."""
        p = self.p
        saved = {i: p.saveState(physicsClientId=c) for i, c in self.clients.items()}
        try:
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for i, c in self.clients.items():
                    p.stepSimulation(physicsClientId=c)
                    if key is not None:
                        self.depth(i, key)
                count += len(self.clients)
            return count, time.perf_counter() - t0
        finally:
            for i, c in self.clients.items():
                p.restoreState(saved[i], physicsClientId=c)
                p.removeState(saved[i], physicsClientId=c)

    def close(self) -> None:
        for c in self.clients.values():
            try:
                self.p.disconnect(physicsClientId=c)
            except Exception:  # noqa: BLE001 (a client already gone)
                pass
        self.clients = {}


def _serve(fd: int) -> None:
    """Worker process: build a _Worlds from the first message, then answer (method, args)
    requests until 'close' or until the parent goes away."""
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    try:
        worlds = _Worlds(*conn.recv())
        conn.send(("ok", None))
    except BaseException:  # noqa: BLE001 (reported to the parent)
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            method, call_args = conn.recv()
        except (EOFError, OSError):
            break
        try:
            conn.send(("ok", getattr(worlds, method)(*call_args)))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
        if method == "close":
            break
    conn.close()


def _start_worker(args: tuple):
    """A worker process (a fresh interpreter, so a caller's script is never re-imported) and the
    connection to it."""
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    code = f"from robots_ts.envs.backends.pybullet_backend import _serve; _serve({theirs.fileno()})"
    proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(),))
    theirs.close()
    conn = Connection(ours.detach())
    conn.send(args)
    return conn, proc


class PyBulletBackend(Backend):
    name = "pybullet"

    def __init__(self, task_cls, num_envs: int, control_hz: float, state: StateBatch,
                 images: dict[str, ImageRequest], num_workers: int):
        super().__init__(task_cls, num_envs, control_hz, state, images, num_workers)
        n = self.num_envs
        k = max(1, min(int(num_workers), n))
        self.chunks = [c.tolist() for c in np.array_split(np.arange(n), k)]
        self._local = None
        self._conns, self._procs = [], []
        if k == 1:
            self._local = _Worlds(task_cls.name, self.chunks[0], control_hz, self.requests)
        else:
            for ids in self.chunks:
                conn, proc = _start_worker((task_cls.name, ids, control_hz, self.requests))
                self._conns.append(conn)
                self._procs.append(proc)
            for w in range(k):
                self._answer(w)

    @property
    def num_workers(self) -> int:
        return len(self.chunks)

    @property
    def renderer(self) -> str:
        return "pybullet-tinyrenderer"

    # --------------------------------------------------------------------------------- calls
    def _answer(self, w: int):
        try:
            status, value = self._conns[w].recv()
        except EOFError:
            raise RuntimeError(f"pybullet worker {w} (worlds {self.chunks[w][0]}-{self.chunks[w][-1]}) "
                               f"exited (exit code {self._procs[w].poll()})") from None
        if status == "error":
            raise RuntimeError(f"pybullet worker {w} failed:\n{value}")
        return value

    def _call_all(self, method: str, per_worker_args: list[tuple]) -> list:
        if self._local is not None:
            return [getattr(self._local, method)(*per_worker_args[0])]
        for w, a in enumerate(per_worker_args):
            self._conns[w].send((method, a))
        return [self._answer(w) for w in range(len(self._conns))]

    def _store(self, out: dict, post) -> None:
        ids = out["ids"]
        if not ids:
            return
        s = self.state
        s.qpos[ids] = out["qpos"]
        s.qvel[ids] = out["qvel"]
        s.ee_pos[ids] = out["ee_pos"]
        s.ee_rot[ids] = out["ee_rot"]
        s.jac[ids] = out["jac"]
        for key, img in out["images"].items():
            self.images[key][ids] = img
        if post is not None:
            for i in ids:
                post(i)

    # ---------------------------------------------------------------------------------- seam
    def reset(self, ids: Sequence[int], q_arm: np.ndarray, finger: float, edits: Sequence[list],
              post: Callable[[int], None] | None = None) -> None:
        where = {i: w for w, chunk in enumerate(self.chunks) for i in chunk}
        items: list[list] = [[] for _ in self.chunks]
        for k, i in enumerate(ids):
            items[where[int(i)]].append((int(i), np.asarray(q_arm[k], dtype=np.float64).tolist(), float(finger),
                                         list(edits[k])))
        busy = [w for w in range(len(self.chunks)) if items[w]]
        if self._local is not None:
            outs = [self._local.reset(items[0])]
        else:
            for w in busy:
                self._conns[w].send(("reset", (items[w],)))
            outs = [self._answer(w) for w in busy]
        for out in outs:
            self._store(out, post)

    def step(self, q_target: np.ndarray, finger: np.ndarray,
             post: Callable[[int], None] | None = None, kicks: np.ndarray | None = None) -> np.ndarray:
        outs = self._call_all("step", [(q_target[c], finger[c], None if kicks is None else kicks[c])
                                       for c in self.chunks])
        diverged = np.zeros(self.num_envs, dtype=bool)
        for out in outs:
            self._store(out, post)
            diverged[out["ids"]] = out["diverged"]
        return diverged

    def _worker_of(self, i: int) -> int:
        for w, chunk in enumerate(self.chunks):
            if i in chunk:
                return w
        raise IndexError(f"world {i} out of range 0..{self.num_envs - 1}")

    def rgb(self, i: int, width: int, height: int, camera: str = "scene", markers: bool = True) -> np.ndarray:
        if self._local is not None:
            return self._local.rgb(i, width, height, camera)
        w = self._worker_of(i)
        self._conns[w].send(("rgb", (i, width, height, camera)))
        return self._answer(w)

    def physics_rate(self, seconds: float) -> float:
        res = self._call_all("rate", [(seconds, None)] * len(self.chunks))
        return sum(c for c, _ in res) / max(t for _, t in res)

    def render_rate(self, key: str, seconds: float) -> float:
        res = self._call_all("rate", [(seconds, key)] * len(self.chunks))
        return sum(c for c, _ in res) / max(t for _, t in res)

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        for w, conn in enumerate(self._conns):
            try:
                conn.send(("close", ()))
                self._answer(w)
            except (OSError, RuntimeError, BrokenPipeError):
                pass
            conn.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._conns, self._procs = [], []

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass
