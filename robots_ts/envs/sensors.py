"""Point clouds from depth images: back-projection through the camera model, crop, table removal
and downsampling. Simulator-neutral: both backends' depth images go through the same code.
"""
from __future__ import annotations

import threading

import numpy as np


def camera_rays(width: int, height: int, fovy_deg: float) -> np.ndarray:
    """(H, W, 3) camera-frame directions with unit optical-axis component (MuJoCo: looks along -z)."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
    u = (np.arange(width) + 0.5 - width / 2) / f
    v = (np.arange(height) + 0.5 - height / 2) / f
    rays = np.empty((height, width, 3))
    rays[..., 0] = u[None, :]
    rays[..., 1] = -v[:, None]
    rays[..., 2] = -1.0
    return rays


class PointCloudMaker:
    """Back-projects depth to base-frame points, crops the workspace, drops the table, downsamples.

    ``downsample``: "voxel" (voxel grid, then a seeded random subset) or "fps" (open3d's
    farthest-point sampling after the voxel grid). The output always has ``num_points`` rows: a
    cloud with fewer points repeats random ones; an empty crop gives all-zero points.

    Table removal drops points less than 4 mm above the table: the plane ``z = table_z`` of the
    calibration, or with ``table_fit`` the plane fitted to each cloud's points near it (least
    squares, refitted on its inliers). A camera whose real pose is off its calibration sees a
    tilted, shifted table that a fixed threshold keeps in the cloud; the fit follows it.

    The back-projection, crop and voxel grid are compiled loops (:mod:`.cloud_kernel`); one maker
    serves every worker thread of its batch, each with scratch arrays of its own.
    """

    FIT_BAND = 0.08       # m around table_z: candidate table points for the first fit
    FIT_REFITS = (0.03, 0.01, 0.005)   # m: residual bands of the refits (objects drop out)
    ABOVE = 0.004         # m above the table: what table removal keeps

    def __init__(self, cam_pos: np.ndarray, cam_rot: np.ndarray, width: int, height: int, fovy: float,
                 num_points: int, crop_low, crop_high, remove_table: bool, table_z: float = 0.0,
                 voxel: float = 0.01, downsample: str = "voxel", far: float = 2.5, table_fit: bool = False):
        if downsample not in ("voxel", "fps"):
            raise ValueError(f"points downsample must be 'voxel' or 'fps', got {downsample!r}")
        from robots_ts.envs import cloud_kernel   # numba: loaded by the envs that make clouds

        self._kernel = cloud_kernel
        self._scratch = threading.local()
        self.rays_world = np.ascontiguousarray(camera_rays(width, height, fovy).reshape(-1, 3) @ np.asarray(cam_rot).T)
        self.cam_pos = np.asarray(cam_pos, dtype=np.float64)
        self.num_points = int(num_points)
        self.low = np.asarray(crop_low, dtype=np.float64)
        self.high = np.asarray(crop_high, dtype=np.float64)
        self.table_z, self.table_fit = float(table_z), bool(remove_table and table_fit)
        self.low = self.low.copy()
        if remove_table and not table_fit:
            self.low[2] = max(self.low[2], table_z + self.ABOVE)
        elif self.table_fit:   # the fitted table is the floor: a table seen lower than calibrated stays in
            self.low[2] = min(self.low[2], table_z - self.FIT_BAND)
        self.voxel = float(voxel)
        if self.voxel > 0:
            span = np.ceil((self.high - self.low) / self.voxel).astype(np.int64) + 1
            self._ny, self._nz = int(span[1]), int(span[2])
        self.downsample = downsample
        self.far = float(far)

    def _buffers(self, pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """This thread's scratch: a point buffer of ``pixels`` rows, the voxel table (keys,
        stamps) and its stamp counter."""
        buf = getattr(self._scratch, "buffers", None)
        if buf is None or len(buf[0]) < pixels:
            slots = 1 << int(2 * pixels).bit_length()          # more than twice the points
            buf = (np.empty((pixels, 3)), np.empty(slots, np.int64), np.zeros(slots, np.int64), [0])
            self._scratch.buffers = buf
        return buf

    def __call__(self, depth: np.ndarray, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        z = depth.reshape(-1)
        buf, keys, stamps, stamp = self._buffers(z.size)
        n = self._kernel.backproject(z, self.rays_world, self.cam_pos, self.low, self.high,
                                     z.dtype.type(self.far - 1e-3), buf)
        pts = buf[:n]
        if self.table_fit:
            pts = self._drop_table(pts)
        if len(pts) == 0:
            out[:] = 0.0
            return out
        if self.voxel > 0:
            # The first point of each voxel, in pixel order (a key per voxel: crop box offsets keep
            # indices non-negative).
            stamp[0] += 1
            pts = pts[:self._kernel.first_per_voxel(pts, len(pts), self.low, self.voxel, self._ny, self._nz,
                                                    keys, stamps, stamp[0])]
        n = len(pts)
        if self.downsample == "fps" and n > self.num_points:
            import open3d as o3d  # optional, loaded only when asked for

            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
            pts = np.asarray(pc.farthest_point_down_sample(self.num_points).points)
            out[:] = pts
            return out
        if n >= self.num_points:
            idx = rng.choice(n, self.num_points, replace=False)
        else:
            idx = np.concatenate([np.arange(n), rng.integers(0, n, self.num_points - n)])
        out[:] = pts[idx]
        return out

    def _drop_table(self, pts: np.ndarray) -> np.ndarray:
        near = np.abs(pts[:, 2] - self.table_z) < self.FIT_BAND
        if near.sum() < 30:   # too little table in view to fit: the calibrated plane
            return pts[pts[:, 2] > self.table_z + self.ABOVE]
        cand = pts[near]
        coef = self._fit(cand)
        for band in self.FIT_REFITS:   # refit on the inliers: what stands on the table drops out
            inliers = np.abs(cand[:, 2] - cand[:, :2] @ coef[:2] - coef[2]) < band
            if inliers.sum() < 30:
                break
            coef = self._fit(cand[inliers])
        return pts[pts[:, 2] - pts[:, :2] @ coef[:2] - coef[2] > self.ABOVE]

    @staticmethod
    def _fit(p: np.ndarray) -> np.ndarray:
        """Least-squares plane z = a x + b y + c through points (N, 3)."""
        A = np.column_stack([p[:, :2], np.ones(len(p))])
        return np.linalg.lstsq(A, p[:, 2], rcond=None)[0]
