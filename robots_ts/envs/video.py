"""RGB frames and videos of a world, for evaluation videos and reports (main thread only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def render_rgb(world, i: int, width: int = 256, height: int = 256, camera: str = "scene") -> np.ndarray:
    """(H, W, 3) uint8 image of world ``i`` from the scene camera, goal markers shown."""
    return world.backend.rgb(i, width, height, camera)


def render_depth(world, i: int) -> np.ndarray:
    return world.depth[i, 0].copy() if world.depth is not None else None


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 25) -> Path:
    """Write frames as .mp4 (imageio-ffmpeg) or .gif, chosen by the file's suffix."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    elif path.suffix.lower() == ".mp4":
        try:
            imageio.mimsave(path, frames, fps=fps)
        except (ImportError, ValueError, RuntimeError) as exc:
            raise RuntimeError(f"writing {path} needs the imageio-ffmpeg package ({exc}); use a .gif path") from exc
    else:
        raise ValueError(f"video path must end in .mp4 or .gif, got {path.name}")
    return path
