"""Point clouds from depth images: back-projection through the camera model, crop, table removal
and downsampling. Simulator-neutral: both backends' depth images go through the same code.
"""
from __future__ import annotations

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

    ``downsample``: "voxel" (numpy voxel grid, then a seeded random subset) or "fps" (open3d's
    farthest-point sampling after the voxel grid). The output always has ``num_points`` rows: a
    cloud with fewer points repeats random ones; an empty crop gives all-zero points.
    """

    def __init__(self, cam_pos: np.ndarray, cam_rot: np.ndarray, width: int, height: int, fovy: float,
                 num_points: int, crop_low, crop_high, remove_table: bool, table_z: float = 0.0,
                 voxel: float = 0.01, downsample: str = "voxel", far: float = 2.5):
        if downsample not in ("voxel", "fps"):
            raise ValueError(f"points downsample must be 'voxel' or 'fps', got {downsample!r}")
        self.rays_world = (camera_rays(width, height, fovy).reshape(-1, 3) @ np.asarray(cam_rot).T)
        self.cam_pos = np.asarray(cam_pos, dtype=np.float64)
        self.num_points = int(num_points)
        self.low = np.asarray(crop_low, dtype=np.float64)
        self.high = np.asarray(crop_high, dtype=np.float64)
        if remove_table:
            self.low = self.low.copy()
            self.low[2] = max(self.low[2], table_z + 0.004)
        self.voxel = float(voxel)
        if self.voxel > 0:
            span = np.ceil((self.high - self.low) / self.voxel).astype(np.int64) + 1
            self._ny, self._nz = int(span[1]), int(span[2])
        self.downsample = downsample
        self.far = float(far)

    def __call__(self, depth: np.ndarray, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        z = depth.reshape(-1)
        pts = self.cam_pos + self.rays_world * z[:, None]
        keep = (z < self.far - 1e-3) & np.all((pts >= self.low) & (pts <= self.high), axis=1)
        pts = pts[keep]
        if len(pts) == 0:
            out[:] = 0.0
            return out
        if self.voxel > 0:
            # One int64 key per voxel (crop box offsets keep indices non-negative): a 1-D unique is
            # several times faster than np.unique(axis=0) over rows.
            idx = np.floor((pts - self.low) / self.voxel).astype(np.int64)
            keys = (idx[:, 0] * self._ny + idx[:, 1]) * self._nz + idx[:, 2]
            _, first = np.unique(keys, return_index=True)
            pts = pts[np.sort(first)]
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
