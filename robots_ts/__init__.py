"""robots_ts: teacher-student robot policy learning.

Privileged-state PPO teachers, DAgger-distilled depth / point-cloud students, curricula and
sim-to-real tooling on MuJoCo tasks.
"""
import os as _os

# MuJoCo picks its OpenGL backend when first imported; headless EGL (Mesa on the CPU) is the one
# that works on servers and CI. A user's explicit choice wins. On a machine without libEGL,
# importing MuJoCo with MUJOCO_GL=egl fails outright, so rendering is disabled instead: state-only
# training still runs, and a depth or point-cloud env says what to install.
if "MUJOCO_GL" not in _os.environ:
    import ctypes.util as _ctypes_util

    _os.environ["MUJOCO_GL"] = "egl" if _ctypes_util.find_library("EGL") else "disable"
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])

__version__ = "0.1.0"

# gymnasium.make("robots_ts/<Task>-v0") works after `import robots_ts`; registering loads no simulator.
from robots_ts.envs.registration import register_envs as _register_envs  # noqa: E402

_register_envs()
