"""Task spec: the few hooks a manipulation task overrides on top of the shared Panda scene.

A task owns its objects (:attr:`Task.bodies`, simulator-neutral descriptions every backend
builds), its parameter space, its reset (placing objects and setting their sizes, masses and
frictions through a :class:`~robots_ts.envs.backends.scene.WorldEdit`), its privileged observation, its
reward terms and its success test. Everything after reset is computed batched over worlds from a
:class:`StateBatch`, whatever simulator produced it: tasks never import one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from robots_ts.envs.params import ParamSpace
from robots_ts.envs.backends.backend import StateBatch
from robots_ts.envs.backends.scene import Body, Shape, WorldEdit, box, state_layout

__all__ = ["Body", "Shape", "StateBatch", "Task", "WorldEdit", "box", "toward"]


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
    # The task's objects, built by every backend next to the Panda and the table.
    bodies: tuple[Body, ...] = ()
    # Backends the task refuses, each with the reason a user is told.
    unsupported_backends: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.command_dim = len(cls.command_names)

    def __init__(self):
        self.layout = state_layout(tuple(self.bodies))

    def body_slices(self, name: str) -> tuple[slice, slice]:
        """A free body's pose slice in ``qpos`` (position, quaternion w-x-y-z) and velocity slice in
        ``qvel`` (linear world-frame, angular body-frame)."""
        return self.layout.qpos[name], self.layout.qvel[name]

    @abstractmethod
    def reset_world(self, world: WorldEdit, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply ``params`` to one world and place its objects through ``world``; return the command."""

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


def toward(delta: np.ndarray, gain: float = 1.0 / 0.03) -> np.ndarray:
    """Action that moves the end effector by ``delta`` metres under ``ee`` control, clipped."""
    return np.clip(delta * gain, -1.0, 1.0)
