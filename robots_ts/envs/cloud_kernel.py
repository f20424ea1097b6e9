"""The per-pixel work of :class:`~robots_ts.envs.sensors.PointCloudMaker` as compiled loops (numba).

A world's cloud is made right after its depth image is rendered, on the backend's worker thread.
As numpy calls (back-projection of all pixels in float64, the crop mask, the voxel keys, a sort for
the first point of each voxel) it was a dozen passes over 9,216 pixels per world, each holding the
GIL between its short loops, so the two workers mostly took turns. These loops read each pixel
once, keep no intermediate arrays and run without the GIL.

They compute what those calls computed, in the same float64 operations and order: the same points
in the same order (the first point seen of each voxel, in pixel order), so a seed gives the same
clouds as before. Compiled on first use and cached next to this file.
"""
from __future__ import annotations

import numba
import numpy as np

_JIT = dict(nogil=True, cache=True, error_model="numpy")


@numba.njit(**_JIT)
def backproject(depth, rays, cam_pos, low, high, far_cut, pts):
    """Writes into ``pts`` (rows of 3, float64) the base-frame points ``cam_pos + rays[p] *
    depth[p]`` of the pixels nearer than ``far_cut`` (compared in the image's own type, as numpy
    compares an array with a Python float) whose point lies in the box [low, high], in pixel
    order; returns how many."""
    n = 0
    for p in range(depth.size):
        if not depth[p] < far_cut:
            continue
        z = np.float64(depth[p])
        x = cam_pos[0] + rays[p, 0] * z
        y = cam_pos[1] + rays[p, 1] * z
        h = cam_pos[2] + rays[p, 2] * z
        if low[0] <= x <= high[0] and low[1] <= y <= high[1] and low[2] <= h <= high[2]:
            pts[n, 0] = x
            pts[n, 1] = y
            pts[n, 2] = h
            n += 1
    return n


@numba.njit(**_JIT)
def first_per_voxel(pts, n, low, voxel, ny, nz, keys, stamps, stamp):
    """Keeps, in place and in order, the first of the ``n`` points of ``pts`` in each voxel of
    side ``voxel`` of the grid anchored at ``low`` (``ny``, ``nz`` cells along y and z); returns
    how many are kept. ``keys`` and ``stamps``: an open-addressing table (a power of two entries,
    more than twice ``n``) whose slots count as empty unless their stamp is ``stamp``, so that a
    new stamp empties the table without clearing it."""
    mask = keys.size - 1
    kept = 0
    for i in range(n):
        a = np.int64(np.floor((pts[i, 0] - low[0]) / voxel))
        b = np.int64(np.floor((pts[i, 1] - low[1]) / voxel))
        c = np.int64(np.floor((pts[i, 2] - low[2]) / voxel))
        key = (a * ny + b) * nz + c
        slot = (key * np.int64(-7046029254386353131)) & mask    # a multiplicative hash
        new = True
        while stamps[slot] == stamp:
            if keys[slot] == key:
                new = False
                break
            slot = (slot + 1) & mask
        if new:
            stamps[slot] = stamp
            keys[slot] = key
            pts[kept, 0] = pts[i, 0]
            pts[kept, 1] = pts[i, 1]
            pts[kept, 2] = pts[i, 2]
            kept += 1
    return kept
