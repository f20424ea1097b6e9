"""Task spec: the few hooks a manipulation task overrides on top of the shared Panda scene.

A task owns its objects (added to the scene spec by :meth:`Task.build`), its parameter space, its
reset (placing objects, setting physical parameters on the world's own MjModel), its privileged
observation, its reward terms and its success test. Everything after reset is computed batched
over worlds from a :class:`StateBatch`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
import mujoco
import numpy as np

from robots_ts.envs.params import ParamSpace
from robots_ts.robot.mujoco_scene import GROUP_HIDDEN, GROUP_SCENE, OBJECT_CONAFFINITY, OBJECT_CONTYPE


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
    params: ParamSpace
    episode_steps: int = 100
    command_names: tuple[str, ...] = ()   # the goal both teacher and student receive, per element
    command_dim: int = 0                  # len(command_names), set for each subclass
    privileged_dim: int = 0
    # Reward term scales; configs may override any of them by name. Episodes end on success, so
    # the dense terms are costs (scaled <= 0 per step) and success is a one-off bonus: a positive
    # per-step term would teach the policy to hover short of success to keep collecting it.
    reward_scales: dict[str, float] = {}
    # Whether reset_world changes masses or inertias (then derived model constants are refreshed).
    changes_inertia: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.command_dim = len(cls.command_names)

    def __init__(self, model: mujoco.MjModel):
        self.setup(model)

    @classmethod
    def build(cls, spec: mujoco.MjSpec) -> None:
        """Add the task's bodies and geoms to the scene spec (the Panda on its table)."""

    @classmethod
    def model(cls) -> mujoco.MjModel:
        """The task's compiled scene, built once per process (worlds copy it)."""
        from robots_ts.robot.mujoco_scene import scene_model

        return scene_model(cls.name, cls.build)

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


def add_free_box(spec: mujoco.MjSpec, name: str, half, mass: float, friction, rgba, solref=None) -> None:
    """A box on a free joint (joint, body and geom all named ``name``), colliding with arm and table."""
    body = spec.worldbody.add_body(name=name, pos=[0.5, 0.0, float(half[2])])
    body.add_freejoint(name=name)
    geom = body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(half), mass=mass, condim=4,
                         contype=OBJECT_CONTYPE, conaffinity=OBJECT_CONAFFINITY, friction=list(friction),
                         rgba=list(rgba), group=GROUP_SCENE)
    if solref is not None:
        geom.solref = list(solref)


def add_marker(body, name: str, geom_type, size, rgba, pos=(0.0, 0.0, 0.0), visible_in_depth: bool = True) -> None:
    """A geom nothing collides with: a goal or target marker."""
    body.add_geom(name=name, type=geom_type, size=list(size), pos=list(pos), contype=0, conaffinity=0,
                  rgba=list(rgba), group=GROUP_SCENE if visible_in_depth else GROUP_HIDDEN)
