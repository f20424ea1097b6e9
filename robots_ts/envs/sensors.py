"""Depth camera and point clouds from MuJoCo's offscreen renderer.

One :class:`DepthCamera` owns an OpenGL context, so it must be used from one thread at a time; the
batched env gives each worker thread its own. It renders any world (model, data) whose meshes and
textures match the model it was built from: per-world models that differ only in sizes, masses
and frictions qualify.

The OpenGL calls of all cameras in a process are serialized by one lock. Mesa's software
rasterizer (the CPU ``swrast`` driver behind headless EGL) crashed the process with a segmentation
fault, now and then, when two threads rendered through their own contexts at the same time. Scene
updates and the depth conversion stay outside the lock, so worker threads still overlap there.
"""
from __future__ import annotations

import os
import threading

import mujoco
import numpy as np

GL_LOCK = threading.Lock()


class DepthCamera:
    """Renders linear depth (metres along the optical axis) from a named fixed camera."""

    def __init__(self, model: mujoco.MjModel, camera: str, width: int, height: int,
                 near: float, far: float):
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cam_id < 0:
            raise ValueError(f"camera {camera!r} is not in the model")
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            raise ValueError(f"depth image {width}x{height} exceeds the offscreen buffer "
                             f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}")
        self.width, self.height, self.near, self.far = int(width), int(height), float(near), float(far)
        try:
            from mujoco.gl_context import GLContext  # the backend chosen by MUJOCO_GL
        except ImportError as exc:
            raise RuntimeError(
                f"depth rendering needs an OpenGL backend, but MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
                "gives none: install libEGL and Mesa (Debian: libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri) "
                "and set MUJOCO_GL=egl before importing mujoco") from exc

        with GL_LOCK:
            self._gl = GLContext(self.width, self.height)
            self._gl.make_current()
            self._ctx = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._ctx)
        self._ctx.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._scene = mujoco.MjvScene(model, maxgeom=200)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG):
            self._scene.flags[flag] = False
        self._opt = mujoco.MjvOption()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._cam.fixedcamid = cam_id
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        self._raw = np.empty((self.height, self.width), dtype=np.float32)
        extent = model.stat.extent
        zn, zf = model.vis.map.znear * extent, model.vis.map.zfar * extent
        # Reversed-Z perspective: metric depth = d / (z_buffer + c).
        c = -(zf + zn) / (zf - zn)
        d = -(2.0 * zf * zn) / (zf - zn)
        self._c, self._d = -0.5 * c - 0.5, -0.5 * d

    def render_raw(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Scene update, render and read-back: the raw (H, W) depth buffer, row 0 at the bottom."""
        mujoco.mjv_updateScene(model, data, self._opt, None, self._cam, mujoco.mjtCatBit.mjCAT_STATIC |
                               mujoco.mjtCatBit.mjCAT_DYNAMIC, self._scene)
        with GL_LOCK:
            self._gl.make_current()
            mujoco.mjr_render(self._rect, self._scene, self._ctx)
            mujoco.mjr_readPixels(None, self._raw, self._rect, self._ctx)
        return self._raw

    def render(self, model: mujoco.MjModel, data: mujoco.MjData, out: np.ndarray) -> np.ndarray:
        """Depth image (H, W) float32 in metres, row 0 at the top, clipped to [near, far]."""
        raw = self.render_raw(model, data)
        depth = self._d / (raw[::-1].astype(np.float64) + self._c)
        np.clip(depth, self.near, self.far, out=out, casting="unsafe")
        return out

    def close(self) -> None:
        if self._ctx is not None:
            with GL_LOCK:
                self._gl.make_current()
                self._ctx.free()
                self._ctx = None
                self._gl.free()


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
