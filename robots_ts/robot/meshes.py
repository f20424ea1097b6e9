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
import threading
import zipfile
from pathlib import Path

import numpy as np

# Faces kept per decimated visual mesh. The originals have 7k-22k faces, and a 64x64 software
# render of them costs several times the physics of a step. At 300 faces the surface stays within
# 2-5 mm of the original at the 99th percentile (7 mm at worst), under a depth pixel's 1.5 cm.
VISUAL_FACES = 300


@functools.lru_cache(maxsize=None)
def decimated(path: str, faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and faces (F, 3) of the mesh file ``path`` decimated to ``faces`` faces.

    Decimating the Panda's eight visual meshes, open3d's import included, took about 3 s of every
    process that builds a scene (a CLI command, a Ray actor, a test's subprocess). The result is
    kept in the temp folder (:func:`_cache_file`) and read back by later processes, without
    importing open3d; a file that cannot be read is made again."""
    cache = _cache_file(path, faces, "npz")
    try:
        with np.load(cache) as f:
            return f["vertices"], f["faces"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        pass                             # none yet, or torn: make it
    import open3d as o3d  # loaded only when a scene is built and its meshes are not cached

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    mesh = o3d.io.read_triangle_mesh(path)
    mesh = mesh.merge_close_vertices(1e-6)
    mesh.remove_unreferenced_vertices()
    if len(mesh.triangles) > faces:
        mesh = mesh.simplify_quadric_decimation(faces)
        mesh.remove_unreferenced_vertices()
    vert, face = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int32)
    tmp = cache.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, vertices=vert, faces=face)
        os.replace(tmp, cache)           # whole files only: a reader never sees half of one
    except OSError:                      # a temp folder we cannot write: no cache, same meshes
        tmp.unlink(missing_ok=True)
    return vert, face


def _cache_file(path: str, faces: int, suffix: str) -> Path:
    """Where the decimated mesh of ``path`` is kept: the temp folder, under a key of the file (its
    path, size and modification time), the face count and the decimating open3d's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        o3d_version = version("open3d")
    except PackageNotFoundError:
        o3d_version = "none"
    st = os.stat(path)
    key = hashlib.sha1(f"{path}:{faces}:{st.st_size}:{st.st_mtime_ns}:{o3d_version}".encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"robots_ts_{Path(path).stem}_{key}.{suffix}"


def decimated_obj(path: str, faces: int = VISUAL_FACES) -> Path:
    """The decimated mesh of ``path`` as an OBJ file in the temp folder (written once)."""
    out = _cache_file(path, faces, "obj")
    if not out.exists():
        vert, face = decimated(path, faces)
        lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in vert]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in face]
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, out)
    return out
