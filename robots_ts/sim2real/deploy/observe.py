"""Observations on a robot, made as the simulator made them (robots_ts.envs.world ``_clean_obs``).

- :class:`JointMap`: a ``JointState`` in any joint order (extra joints ignored) -> the arm's 7
  positions and velocities and the 2 finger positions, in the URDF's order;
- :class:`TcpKinematics` (:func:`tcp_state`): TCP position, rotation and its 6x7 Jacobian from the
  URDF kinematics (what MuJoCo reports to the env, from the same URDF), in one walk of the chain;
- :class:`DepthInput`: a depth image (16UC1 / 32FC1) -> the ``depth`` group (metres, no return read
  as far, clipped to [near, far], as the env renders it) or the image a point cloud is made from,
  after checking the camera's intrinsics against the manifest (or, for point-cloud students that
  ask for it, resampling nearest to the manifest's resolution);
- :class:`CloudInput`: the ``points`` group from that image or from a base-frame cloud, through
  the env's own :class:`robots_ts.envs.sensors.PointCloudMaker` with the manifest's settings.
"""
from __future__ import annotations

import copy

import numpy as np

from robots_ts.sim2real.deploy import msgs
from robots_ts.sim2real.export.manifest import Intrinsics, Manifest


class DeployError(ValueError):
    """The robot's data does not fit the exported policy (joints, camera, task command), or the
    runtime was asked for something unsafe; the message names both sides."""


class JointMap:
    """Reads the arm and finger joints by URDF name out of ``JointState`` fields in any order."""

    def __init__(self, arm_joints, finger_joints):
        self.arm, self.fingers = list(arm_joints), list(finger_joints)
        self._cache: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None

    def indices(self, names) -> tuple[np.ndarray, np.ndarray]:
        key = tuple(names)
        if self._cache is None or self._cache[0] != key:
            where = {n: i for i, n in enumerate(key)}
            missing = [n for n in self.arm + self.fingers if n not in where]
            if missing:
                raise DeployError(f"JointState lacks joint(s) {missing} of the exported robot (it has {list(key)}; "
                                  f"the policy needs {self.arm + self.fingers})")
            self._cache = (key, np.array([where[n] for n in self.arm]), np.array([where[n] for n in self.fingers]))
        return self._cache[1], self._cache[2]

    def __call__(self, names, positions, velocities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arm positions (7,), arm velocities (7,), finger positions (2,)), float64."""
        arm, fingers = self.indices(names)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        vel = np.asarray(velocities, dtype=np.float64).reshape(-1)
        if len(pos) != len(names):
            raise DeployError(f"JointState has {len(names)} names and {len(pos)} positions")
        if len(vel) != len(names):
            raise DeployError(f"JointState has {len(names)} names and {len(vel)} velocities; the policy reads the "
                              "arm's joint velocities (the driver must publish them)")
        q, qd, f = pos[arm], vel[arm], pos[fingers]
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd)) and np.all(np.isfinite(f))):
            raise DeployError(f"JointState has non-finite values: positions {q.tolist()}, velocities {qd.tolist()}, "
                              f"fingers {f.tolist()}")
        return q, qd, f


class TcpKinematics:
    """TCP position (3,), rotation (3, 3) and Jacobian (6, 7) at arm angles ``q`` in one walk of
    the URDF chain, with each joint's fixed origin rotation and axis matrices computed once.

    The arithmetic is ``RobotDescription.forward_kinematics`` and ``jacobian``'s, operation for
    operation (the same products in the same order, the cross product written out as numpy
    computes it), so the results equal theirs bit for bit; it only avoids walking the chain twice
    and rebuilding the constant matrices on every call.
    """

    def __init__(self, desc, link: str | None = None):
        from robots_ts.robot.description import rpy_matrix

        self.n = len(desc.arm_joints)
        column = {name: c for c, name in enumerate(desc.arm_joints)}
        self.steps = []     # (origin xyz, origin rotation, revolute, arm column or None, unit axis, axis matrix)
        for j in desc.chain_to(link or desc.tcp_link):
            a = k = None
            if j.kind == "revolute":
                a = j.axis / np.linalg.norm(j.axis)
                k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
            self.steps.append((j.origin_xyz, rpy_matrix(j.origin_rpy), j.kind == "revolute", column.get(j.name), a, k))

    def __call__(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = np.asarray(q, dtype=np.float64)
        pos, rot = np.zeros(3), np.eye(3)
        axes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for xyz, origin_rot, revolute, c, a, k in self.steps:
            pos = pos + rot @ xyz
            rot = rot @ origin_rot
            if revolute:
                if c is not None:
                    axes[c] = (pos, rot @ a)
                angle = q[c] if c is not None else 0.0
                rot = rot @ (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k)
        jac = np.zeros((6, self.n))
        cols = sorted(axes)
        if cols:
            p, w = (np.array(v) for v in zip(*(axes[c] for c in cols)))
            d = pos - p
            jac[0, cols] = w[:, 1] * d[:, 2] - w[:, 2] * d[:, 1]     # w x d, as np.cross computes it
            jac[1, cols] = w[:, 2] * d[:, 0] - w[:, 0] * d[:, 2]
            jac[2, cols] = w[:, 0] * d[:, 1] - w[:, 1] * d[:, 0]
            jac[3:, cols] = w.T
        return pos, rot, jac


def tcp_state(desc, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TCP position (3,), rotation (3, 3) and Jacobian (6, 7) at arm angles ``q`` (URDF kinematics)."""
    return TcpKinematics(desc)(q)


def intrinsics_dict(i: Intrinsics) -> dict:
    return dict(width=i.width, height=i.height, fx=i.fx, fy=i.fy, cx=i.cx, cy=i.cy)


def same_intrinsics(a: dict, b: dict, px: float = 1e-3) -> bool:
    """Equal resolution, and focal lengths and principal point within ``px`` pixels."""
    return (int(a["width"]), int(a["height"])) == (int(b["width"]), int(b["height"])) and \
        all(abs(float(a[k]) - float(b[k])) <= px for k in ("fx", "fy", "cx", "cy"))


def _fmt(i: dict) -> str:
    return (f"{int(i['width'])}x{int(i['height'])} fx={float(i['fx']):.4f} fy={float(i['fy']):.4f} "
            f"cx={float(i['cx']):.4f} cy={float(i['cy']):.4f}")


class DepthInput:
    """Checks, converts and (when allowed) resamples incoming depth images.

    ``want``: the intrinsics of the image the policy's group is made from (the manifest's);
    ``resample``: map other intrinsics onto ``want`` by nearest pixel (point-cloud students only:
    a depth student's CNN reads pixels, and a resampled image is not what it saw).
    """

    def __init__(self, want: Intrinsics, near: float, far: float, resample: bool = False, what: str = "depth"):
        self.want = intrinsics_dict(want)
        self.near, self.far = np.float32(near), np.float32(far)
        self.resample, self.what = bool(resample), what
        self._checked: dict | None = None
        self._map: tuple[np.ndarray, np.ndarray] | None = None

    def _check(self, shape, intr: dict | None) -> None:
        h, w = shape
        got = dict(intr) if intr is not None else dict(self.want, width=w, height=h)
        if (int(got["width"]), int(got["height"])) != (w, h):
            raise DeployError(f"{self.what} image is {w}x{h} but its CameraInfo says "
                              f"{int(got['width'])}x{int(got['height'])}")
        if self._checked is not None and self._checked == got:
            return
        self._map = None
        if not same_intrinsics(got, self.want):
            if not self.resample:
                hint = (" (a point-cloud policy can resample nearest: pass resample=True)"
                        if self.what == "points" else "")
                raise DeployError(f"camera intrinsics {_fmt(got)} differ from the exported policy's {_fmt(self.want)}"
                                  f"{hint}")
            self._map = self._nearest_map(got)
        self._checked = got

    def _nearest_map(self, src: dict) -> tuple[np.ndarray, np.ndarray]:
        """Source row and column of each target pixel through the pinhole (-1: outside the image)."""
        t = self.want
        u = (np.arange(t["width"]) - t["cx"]) / t["fx"] * src["fx"] + src["cx"]
        v = (np.arange(t["height"]) - t["cy"]) / t["fy"] * src["fy"] + src["cy"]
        cols, rows = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
        cols[(cols < 0) | (cols >= src["width"])] = -1
        rows[(rows < 0) | (rows >= src["height"])] = -1
        return rows, cols

    def __call__(self, image: np.ndarray, encoding: str, intrinsics: dict | None = None) -> np.ndarray:
        """(H, W) float32 metres as the env renders them: no return reads ``far``, clipped to
        [near, far]; at the manifest's resolution."""
        image = np.asarray(image)
        if image.ndim != 2:
            raise DeployError(f"{self.what} image must be (H, W), got shape {image.shape}")
        self._check(image.shape, intrinsics)
        m = msgs.depth_metres(image, encoding)
        if self._map is not None:
            rows, cols = self._map
            out = m[np.clip(rows, 0, None)[:, None], np.clip(cols, 0, None)[None, :]]
            out[(rows < 0)[:, None] | (cols < 0)[None, :]] = np.nan
            m = out
        m[np.isnan(m)] = self.far
        return np.clip(m, self.near, self.far)


class CloudInput:
    """The ``points`` group of a point-cloud student, made by the env's PointCloudMaker."""

    def __init__(self, man: Manifest):
        from robots_ts.envs.sensors import PointCloudMaker

        cam, pc = man.camera, man.points
        if abs(pc.table_margin - PointCloudMaker.ABOVE) > 1e-12 or pc.table_z != 0.0:
            raise DeployError(f"the manifest's table removal (z={pc.table_z}, margin {pc.table_margin} m) is not "
                              f"this robots_ts's (z=0, margin {PointCloudMaker.ABOVE} m)")
        self.maker = PointCloudMaker(np.asarray(cam.position), np.asarray(cam.rotation), pc.render.width,
                                     pc.render.height, cam.fovy_deg, pc.num_points, pc.crop_low, pc.crop_high,
                                     pc.remove_table, table_z=pc.table_z, voxel=pc.voxel, downsample=pc.downsample,
                                     far=cam.far, table_fit=pc.table_fit)
        self.num_points = int(pc.num_points)

    def from_depth(self, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, 3) float32 from a depth image at the manifest's render resolution (metres, clipped)."""
        out = np.zeros((self.num_points, 3), np.float32)
        return self.maker(depth, rng, out)

    def from_points(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, 3) float32 from base-frame points (NaN points dropped): the maker's crop, table
        removal and downsampling, run by the maker itself on points given as rays of unit depth
        from the origin (its back-projection is then the identity)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        maker = copy.copy(self.maker)
        maker.cam_pos = np.zeros(3)
        maker.rays_world = pts
        maker.far = np.inf            # no depth to call "no return": the cloud has no such points
        out = np.zeros((self.num_points, 3), np.float32)
        return maker(np.ones(len(pts)), rng, out)
