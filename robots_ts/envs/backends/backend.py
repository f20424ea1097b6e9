"""The simulator seam: what the batched env asks of a simulator, and nothing more.

A :class:`Backend` holds N worlds of one task's scene (the Panda URDF, the arena of
:mod:`robots_ts.envs.backends.scene`, the task's bodies). The env above it owns everything else: parameter
sampling, the task's reset placement (a :class:`~robots_ts.envs.backends.scene.WorldEdit` per world), the
action mapping (:class:`robots_ts.robot.arm.Arm`), observations, rewards, success. Per call:

- :meth:`reset` puts worlds back to a joint pose and replays each world's edits;
- :meth:`step` sets joint and finger targets and advances one control step;
- after either, :attr:`state` (a :class:`StateBatch` owned by the env) holds the worlds' state in
  the layout of :func:`robots_ts.envs.backends.scene.state_layout`, :attr:`images` the depth images asked
  for (metres along the optical axis, row 0 at the top, clipped to [near, far]), and ``post(i)``
  (the env's per-world image consumer, e.g. point clouds) has run for every rendered world.

A world whose physics diverged is put back by the backend and flagged in the mask ``step``
returns; the env ends its episode.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from robots_ts.envs.backends.scene import TIMESTEP

BACKENDS = ("mujoco", "pybullet")


@dataclass
class StateBatch:
    """Simulator state of N worlds after a step, gathered once and shared by every consumer."""

    qpos: np.ndarray       # (N, nq)  see robots_ts.envs.backends.scene for the layout
    qvel: np.ndarray       # (N, nv)
    ee_pos: np.ndarray     # (N, 3)   TCP (the URDF's panda_grasptarget) in the base frame
    ee_rot: np.ndarray     # (N, 3, 3)
    jac: np.ndarray        # (N, 6, 7) TCP Jacobian over the arm joints (translation; rotation)
    params: np.ndarray     # (N, P) task parameters of each world's episode
    command: np.ndarray    # (N, C) goal given to teacher and student
    finger: np.ndarray     # (N, 2) finger joint positions


@dataclass(frozen=True)
class ImageRequest:
    """A depth image every world renders after each step: from ``camera``, ``width`` x ``height``."""

    camera: str
    width: int
    height: int
    near: float
    far: float


class Backend(ABC):
    name: str = ""

    def __init__(self, task_cls, num_envs: int, control_hz: float, state: StateBatch,
                 images: dict[str, ImageRequest], num_workers: int):
        self.task_cls = task_cls
        self.num_envs = int(num_envs)
        self.control_hz = float(control_hz)
        self.state = state
        self.substeps = max(1, int(round(1.0 / (self.control_hz * TIMESTEP))))   # physics steps per control step
        self.requests = dict(images)
        self.images = {k: np.zeros((self.num_envs, r.height, r.width), np.float32) for k, r in self.requests.items()}

    @property
    @abstractmethod
    def renderer(self) -> str:
        """Which renderer produces the depth images (reported in benchmarks)."""

    @abstractmethod
    def reset(self, ids: Sequence[int], q_arm: np.ndarray, finger: float, edits: Sequence[list],
              post: Callable[[int], None] | None = None) -> None:
        """Reset worlds ``ids``: arm joints to ``q_arm[k]`` (targets too), fingers to ``finger``,
        objects to their nominal bodies, then the task's ``edits[k]``; gather state and render."""

    @abstractmethod
    def step(self, q_target: np.ndarray, finger: np.ndarray,
             post: Callable[[int], None] | None = None, kicks: np.ndarray | None = None) -> np.ndarray:
        """One control step of every world toward joint targets (N, 7) and finger targets (N,).
        ``kicks`` (N, 3), when given: linear velocity (m/s, world frame) added to every free body
        of each world before it steps (the push randomizer). Returns the (N,) bool mask of worlds
        whose physics diverged (and were put back)."""

    @abstractmethod
    def rgb(self, i: int, width: int, height: int, camera: str = "scene", markers: bool = True) -> np.ndarray:
        """(H, W, 3) uint8 colour image of world ``i``; ``markers``: show goal markers hidden from depth."""

    @abstractmethod
    def physics_rate(self, seconds: float) -> float:
        """Control steps per second of bare physics (no gathering, no rendering) on copies of
        the current worlds, with every worker busy: the limit the env's state rate is held to."""

    @abstractmethod
    def render_rate(self, key: str, seconds: float) -> float:
        """Control steps per second of bare physics plus rendering image ``key``, as above."""

    @abstractmethod
    def close(self) -> None:
        """Free the worlds, renderers and workers."""


def make_backend(name: str, *args, **kwargs) -> Backend:
    if name == "mujoco":
        from robots_ts.envs.backends.mujoco_backend import MujocoBackend

        return MujocoBackend(*args, **kwargs)
    if name == "pybullet":
        from robots_ts.envs.backends.pybullet_backend import PyBulletBackend

        return PyBulletBackend(*args, **kwargs)
    raise ValueError(f"unknown simulator backend {name!r}; expected one of {list(BACKENDS)}")
