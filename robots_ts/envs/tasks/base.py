"""Task spec: the few hooks a manipulation task overrides on top of the shared arm scene.

A task owns its MJCF file (which includes the arm scene), its parameter space, its reset
(placing objects, setting physical parameters on the world's own MjModel), its privileged
observation, its reward terms and its success test. Everything after reset is computed batched
over worlds from a :class:`StateBatch`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from robots_ts.envs.params import ParamSpace

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass
class StateBatch:
    """Simulator state of N worlds after a step, gathered once and shared by every consumer."""

    qpos: np.ndarray       # (N, nq)
    qvel: np.ndarray       # (N, nv)
    ee_pos: np.ndarray     # (N, 3)
    ee_rot: np.ndarray     # (N, 3, 3)
    jac: np.ndarray        # (N, 6, nv)  end-effector Jacobian (translation; rotation)
    params: np.ndarray     # (N, P) task parameters of each world's episode
    command: np.ndarray    # (N, C) goal given to teacher and student
    finger: np.ndarray     # (N, 2) finger joint positions


def box_inertia(mass: float, half: np.ndarray) -> np.ndarray:
    a2, b2, c2 = np.square(half)
    return mass / 3.0 * np.array([b2 + c2, a2 + c2, a2 + b2])


def set_box(model: mujoco.MjModel, geom: int, half: np.ndarray, mass: float | None = None) -> None:
    """Resize a box geom of a world's own model, keeping collision bounds and inertia consistent."""
    model.geom_size[geom] = half
    model.geom_rbound[geom] = float(np.linalg.norm(half))
    model.geom_aabb[geom, 3:] = half
    if mass is not None:
        body = model.geom_bodyid[geom]
        model.body_mass[body] = mass
        model.body_inertia[body] = box_inertia(mass, half)


class Task(ABC):
    """Base class: subclasses set the class attributes and override the hooks."""

    name: str = ""
    xml: str = ""
    params: ParamSpace
    episode_steps: int = 100
    command_dim: int = 0
    privileged_dim: int = 0
    # Reward term scales; configs may override any of them by name. Episodes end on success, so
    # the dense terms are costs (scaled <= 0 per step) and success is a one-off bonus: a positive
    # per-step term would teach the policy to hover short of success to keep collecting it.
    reward_scales: dict[str, float] = {}
    # Whether reset_world changes masses or inertias (then derived model constants are refreshed).
    changes_inertia: bool = False

    def __init__(self, model: mujoco.MjModel):
        self.setup(model)

    @classmethod
    def xml_path(cls) -> Path:
        return ASSETS / cls.xml

    def setup(self, model: mujoco.MjModel) -> None:
        """Look up bodies, geoms and joints by name."""

    @abstractmethod
    def reset_world(self, model: mujoco.MjModel, data: mujoco.MjData, params: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
        """Apply ``params`` to this world's model, place objects in ``data``; return the command."""

    @abstractmethod
    def privileged(self, s: StateBatch) -> np.ndarray:
        """(N, privileged_dim) simulator-only state: object pose/velocity, physical parameters."""

    @abstractmethod
    def reward_terms(self, s: StateBatch) -> dict[str, np.ndarray]:
        """Unscaled reward terms, each (N,); the env multiplies by ``reward_scales`` and sums."""

    @abstractmethod
    def success(self, s: StateBatch) -> np.ndarray:
        """(N,) bool: the task is achieved in this state."""

    @abstractmethod
    def scripted_action(self, s: StateBatch, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A privileged-state controller for ``ee`` control: (actions (N, 4), next phase (N,)).

        It proves the task solvable and gives tests a known-good policy.
        """


def free_joint_slices(model: mujoco.MjModel, joint: str) -> tuple[slice, slice]:
    j = model.joint(joint)
    qa, va = j.qposadr[0], j.dofadr[0]
    return slice(qa, qa + 7), slice(va, va + 6)


def toward(delta: np.ndarray, gain: float = 1.0 / 0.03) -> np.ndarray:
    """Action that moves the end effector by ``delta`` metres under ``ee`` control, clipped."""
    return np.clip(delta * gain, -1.0, 1.0)
