"""Depth images from MuJoCo's offscreen renderer.

One :class:`DepthCamera` owns an OpenGL context, so it must be used from one thread at a time; the
MuJoCo backend gives each worker thread its own. It renders any world (model, data) whose meshes
and textures match the model it was built from: per-world models that differ only in sizes, masses
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
