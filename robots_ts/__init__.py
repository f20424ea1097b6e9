"""robots_ts: teacher-student robot policy learning.

Privileged-state PPO teachers, DAgger-distilled depth / point-cloud students, curricula and
sim-to-real tooling on MuJoCo tasks.
"""
import os as _os

# MuJoCo picks its OpenGL backend when first imported; headless EGL (Mesa on the CPU) is the one
# that works on servers and CI. A user's explicit choice wins.
_os.environ.setdefault("MUJOCO_GL", "egl")
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])

__version__ = "0.1.0"
