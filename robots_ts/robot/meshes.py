"""Decimated visual meshes of the Panda, the same in every simulator.

The URDF's visual meshes have 7k-22k faces each; a software depth renderer (Mesa for MuJoCo,
TinyRenderer for pybullet) spends most of a frame on them. Both backends render the decimated
meshes made here, so they also see the same surfaces.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

# Faces kept per decimated visual mesh. The originals have 7k-22k faces, and a 64x64 software
# render of them costs several times the physics of a step. At 300 faces the surface stays within
# 2-5 mm of the original at the 99th percentile (7 mm at worst), under a depth pixel's 1.5 cm.
VISUAL_FACES = 300


@functools.lru_cache(maxsize=None)
def decimated(path: str, faces: int) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d  # loaded only when a scene is built

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    mesh = o3d.io.read_triangle_mesh(path)
    mesh = mesh.merge_close_vertices(1e-6)
    mesh.remove_unreferenced_vertices()
    if len(mesh.triangles) > faces:
        mesh = mesh.simplify_quadric_decimation(faces)
        mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int32)


def decimated_obj(path: str, faces: int = VISUAL_FACES) -> Path:
    """The decimated mesh of ``path`` as an OBJ file in the temp folder (written once)."""
    vert, face = decimated(path, faces)
    key = hashlib.sha1(f"{path}:{faces}:{os.path.getsize(path)}".encode()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"robots_ts_{Path(path).stem}_{key}.obj"
    if not out.exists():
        lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in vert]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in face]
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, out)
    return out
