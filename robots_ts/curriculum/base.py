"""The contract every curriculum teacher follows, and the checks they all share.

A curriculum teacher proposes task parameters (a point in a box ``[low, high]``) for the
next episode and learns from the return the student obtained there::

    teacher = AlpGmmTeacher(low, high, seed=0)
    params = teacher.sample()          # float64 vector, low <= params <= high
    ...run one episode with params...
    teacher.update(params, reward)

``state_dict()`` captures everything needed to continue the curriculum exactly after a
restart, random-generator state included, as JSON-native values and numpy arrays only (no
pickled objects), so it can sit next to a checkpoint that is loaded without unpickling code.
"""

from __future__ import annotations

import abc
import copy
import math
from typing import Any, ClassVar

import numpy as np

# Bumped when the layout of state_dict() changes, so an old checkpoint fails loudly.
STATE_FORMAT_VERSION = 1


def validate_bounds(low: Any, high: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``low``/``high`` as float64 1-D arrays, or raise ValueError naming the problem."""
    low_arr = np.asarray(low, dtype=np.float64)
    high_arr = np.asarray(high, dtype=np.float64)
    if low_arr.ndim != 1 or high_arr.ndim != 1:
        raise ValueError(
            f"curriculum bounds must be 1-D vectors; got low with shape {low_arr.shape} "
            f"and high with shape {high_arr.shape}"
        )
    if low_arr.shape != high_arr.shape:
        raise ValueError(
            f"curriculum bounds must have the same shape; got low {low_arr.shape} "
            f"and high {high_arr.shape}"
        )
    if low_arr.size == 0:
        raise ValueError("curriculum bounds must have at least one dimension; got empty vectors")
    for which, arr in (("low", low_arr), ("high", high_arr)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"curriculum bound {which}[{i}] must be finite; got {arr[i]}")
    bad = np.flatnonzero(~(low_arr < high_arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"curriculum bounds need low < high in every dimension; "
            f"at index {i} low={low_arr[i]} and high={high_arr[i]}"
        )
    return low_arr, high_arr


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Hyperparameters arrive from YAML and CLI overrides: reject floats and bools early."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_ratio(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


def check_same_hyperparameters(name: str, current: dict[str, Any], saved: dict[str, Any]) -> None:
    """Resuming with other settings would silently change the curriculum: refuse it."""
    differing = sorted(
        key
        for key in set(current) | set(saved)
        if _normalise(current.get(key)) != _normalise(saved.get(key))
    )
    if differing:
        details = ", ".join(f"{k}: saved {saved.get(k)!r} vs {current.get(k)!r}" for k in differing)
        raise ValueError(f"{name} teacher: saved hyperparameters differ ({details})")


def _normalise(value: Any) -> Any:
    # JSON turns tuples into lists; compare sequences by content.
    return list(value) if isinstance(value, (list, tuple)) else value


class CurriculumTeacher(abc.ABC):
    """Base class: bounds, seeded generator, input validation and the checkpoint format.

    Subclasses implement ``sample``, ``_observe`` (the learning step, called with already
    validated input) and, when they hold state, ``_extra_state`` / ``_load_extra_state``.
    """

    name: ClassVar[str]

    def __init__(self, low: Any, high: Any, seed: int | None = 0) -> None:
        self.low, self.high = validate_bounds(low, high)
        self.dim = int(self.low.size)
        self.span = self.high - self.low
        # One generator drives every random choice of the teacher, so its state alone
        # (saved in state_dict) makes a resumed curriculum continue identically.
        self._rng = np.random.default_rng(seed)
        self.episodes = 0

    # -- the interface -------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self) -> np.ndarray:
        """Parameters for the next episode: a float64 vector within ``[low, high]``."""

    def update(self, params: Any, reward: float) -> None:
        """Tell the teacher the student's return on an episode run with ``params``."""
        params_arr = np.asarray(params, dtype=np.float64)
        if params_arr.shape != (self.dim,):
            raise ValueError(
                f"{self.name} teacher: params must have shape ({self.dim},); "
                f"got shape {params_arr.shape}"
            )
        if not np.all(np.isfinite(params_arr)):
            raise ValueError(f"{self.name} teacher: params must be finite; got {params_arr}")
        try:
            reward_f = float(reward)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.name} teacher: reward must be a real number; got {reward!r}"
            ) from None
        if not math.isfinite(reward_f):
            raise ValueError(f"{self.name} teacher: reward must be finite; got {reward_f}")
        self._observe(params_arr, reward_f)
        self.episodes += 1

    @abc.abstractmethod
    def _observe(self, params: np.ndarray, reward: float) -> None:
        """Learning step on validated input; ``self.episodes`` still counts earlier ones."""

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format_version": STATE_FORMAT_VERSION,
            "name": self.name,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "episodes": self.episodes,
            "rng_state": self._rng.bit_generator.state,
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a teacher saved by ``state_dict`` (arrays may come back as lists).

        All or nothing: the state is loaded into a copy first, so a bad checkpoint raises
        ValueError and leaves this teacher exactly as it was.
        """
        try:
            staged = self._staged_load(state)
        except KeyError as err:
            raise ValueError(f"{self.name} teacher: saved state lacks key {err}") from None
        except (TypeError, AttributeError) as err:
            raise ValueError(f"{self.name} teacher: saved state is malformed ({err})") from None
        self.__dict__.update(staged.__dict__)

    def _staged_load(self, state: dict[str, Any]) -> CurriculumTeacher:
        version = state.get("format_version")
        if version != STATE_FORMAT_VERSION:
            raise ValueError(
                f"{self.name} teacher: state format_version {version!r} is not the "
                f"supported version {STATE_FORMAT_VERSION}"
            )
        if state.get("name") != self.name:
            raise ValueError(
                f"{self.name} teacher: cannot load state saved by teacher {state.get('name')!r}"
            )
        low, high = validate_bounds(state["low"], state["high"])
        if not (np.array_equal(low, self.low) and np.array_equal(high, self.high)):
            raise ValueError(
                f"{self.name} teacher: saved bounds low={low.tolist()} high={high.tolist()} "
                f"differ from this teacher's low={self.low.tolist()} high={self.high.tolist()}"
            )
        rng_state = state["rng_state"]
        expected = type(self._rng.bit_generator).__name__
        if rng_state.get("bit_generator") != expected:
            raise ValueError(
                f"{self.name} teacher: saved generator {rng_state.get('bit_generator')!r} "
                f"is not {expected!r}"
            )
        staged = copy.deepcopy(self)
        staged._load_extra_state(state)
        staged._rng.bit_generator.state = rng_state
        staged.episodes = check_positive_int("episodes", state["episodes"], minimum=0)
        return staged

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # -- helpers for subclasses ----------------------------------------------------------
    def _sample_uniform(self) -> np.ndarray:
        return self._rng.uniform(self.low, self.high)

    def _to_unit(self, params: np.ndarray) -> np.ndarray:
        """Map parameters into [0, 1]^d so distances and GMMs do not depend on units."""
        return (params - self.low) / self.span

    def _from_unit(self, unit: np.ndarray) -> np.ndarray:
        # Clip after mapping back: float rounding of low + 1.0 * span can exceed high.
        return np.clip(self.low + np.clip(unit, 0.0, 1.0) * self.span, self.low, self.high)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, episodes={self.episodes})"
