"""ADR: automatic domain randomization, ranges that widen while the student copes with them.

OpenAI et al., "Solving Rubik's Cube with a Robot Hand", 2019 (arXiv:1910.07113), Section 5.

``low``/``high`` are the *limits* of each parameter. The teacher keeps a current range
``[lo_d, hi_d]`` per dimension, inside the limits, that starts collapsed at ``nominal`` (no
randomization at all) and is grown or shrunk one boundary at a time:

1. ``sample()``: every dimension uniform in its current range; with probability
   ``boundary_prob`` one boundary (dimension d, side low or high), chosen uniformly among the
   movable ones, is pinned: parameter d is set exactly to ``lo_d`` or ``hi_d``.
2. The return of an episode run on a pinned boundary goes into that boundary's buffer. When
   the buffer holds ``buffer_size`` returns, its mean decides: ``>= threshold_high`` widens
   the boundary outward by ``step[d]`` (clipped at its limit), ``< threshold_low`` moves it
   inward by ``step[d]`` (never past nominal), anything in between leaves it; the buffer is
   then cleared.
3. Episodes not run on a boundary never move a range; they are the randomized training
   distribution itself.

A side is *movable* unless it sits at nominal and nominal equals that side's limit: with the
default ``nominal = low`` every dimension is a one-sided "strength" that grows from its lower
limit, and only its upper boundary is ever pinned.

Many worlds sample before the first of them reports back, so the boundary behind a sample is
remembered, keyed by the exact bytes of the returned vector, until ``update`` hands that
vector back (the env stores the sampled float64 vector and returns it unchanged). Two
consequences, both deliberate:

* a boundary result is only counted while the boundary still sits where it was sampled; a
  result from before the boundary moved describes a task that is no longer the boundary, so
  it is dropped and counted in ``summary()["stale"]``;
* while every range is still collapsed, all samples are the same vector, so a plain sample's
  result may be matched to a pending boundary entry; it was run on exactly the same task, so
  the buffer's statistics are unchanged.

The thresholds are in the units of whatever the env reports to ``update``: a success rate in
[0, 1] with ``curriculum.reward: success`` (the defaults 0.4 / 0.8 assume that), or raw
returns otherwise. Defaults: ``boundary_prob`` 0.5, ``buffer_size`` 20, ``threshold_low`` 0.4,
``threshold_high`` 0.8, ``step`` 5 % of each dimension's limits span; these are this project's
choices, to be tuned per task like the paper's per-parameter values.

Checkpoints hold the ranges, the partly filled buffers, the move counters, the range history
and the generator state. In-flight boundary samples are not saved: after a restart every world
draws a fresh episode, so their results never come back.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from robots_ts.curriculum.base import (
    CurriculumTeacher,
    check_positive_int,
    check_ratio,
    check_same_hyperparameters,
)

# Boundary sides, used as the second index of the (dim, side) pairs and of per-boundary arrays.
LOW_SIDE = 0
HIGH_SIDE = 1


class RangeHistory(NamedTuple):
    """The ranges ``lo[t]``..``hi[t]`` in force after ``episodes[t]`` episodes."""

    episodes: np.ndarray  # (T,) int64
    lo: np.ndarray  # (T, D) float64
    hi: np.ndarray  # (T, D) float64


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return float(value)


def _check_vector(name: str, value: Any, dim: int) -> np.ndarray:
    """A scalar (broadcast) or a length-``dim`` sequence of finite reals, as float64."""
    if isinstance(value, bool) or (
        isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{name} must be numbers, not booleans; got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a number or a list of {dim} numbers; got {value!r}"
        ) from None
    if arr.ndim == 0:
        arr = np.full(dim, float(arr))
    if arr.shape != (dim,):
        raise ValueError(
            f"{name} must be a number or a list of {dim} numbers; got shape {arr.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] must be finite; got {arr[i]}")
    return arr


def _sample_key(params: np.ndarray) -> bytes:
    # Adding 0.0 turns -0.0 into 0.0, so equal vectors always give the same key.
    return (np.asarray(params, dtype=np.float64) + 0.0).tobytes()


class AdrTeacher(CurriculumTeacher):
    """Automatic domain randomization within the limits ``[low, high]`` (see module docstring)."""

    name = "adr"

    def __init__(
        self,
        low: Any,
        high: Any,
        seed: int | None = 0,
        *,
        nominal: Any = None,
        step: Any = None,
        boundary_prob: float = 0.5,
        buffer_size: int = 20,
        threshold_low: float = 0.4,
        threshold_high: float = 0.8,
    ) -> None:
        super().__init__(low, high, seed=seed)
        self.nominal = (
            self.low.copy() if nominal is None else _check_vector("nominal", nominal, self.dim)
        )
        outside = np.flatnonzero((self.nominal < self.low) | (self.nominal > self.high))
        if outside.size:
            i = int(outside[0])
            raise ValueError(
                f"nominal[{i}]={self.nominal[i]} lies outside its limits "
                f"[{self.low[i]}, {self.high[i]}]"
            )
        self.step = 0.05 * self.span if step is None else _check_vector("step", step, self.dim)
        bad = np.flatnonzero(~(self.step > 0.0))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"step[{i}] must be > 0; got {self.step[i]}")
        self.boundary_prob = check_ratio("boundary_prob", boundary_prob)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        self.threshold_low = _check_real("threshold_low", threshold_low)
        self.threshold_high = _check_real("threshold_high", threshold_high)
        if not self.threshold_high > self.threshold_low:
            raise ValueError(
                f"threshold_high ({threshold_high}) must be greater than "
                f"threshold_low ({threshold_low})"
            )

        # Boundaries that can move: a side pinned at a limit that is also nominal cannot.
        self._movable: list[tuple[int, int]] = [
            (d, side)
            for d in range(self.dim)
            for side, limit in ((LOW_SIDE, self.low[d]), (HIGH_SIDE, self.high[d]))
            if self.nominal[d] != limit
        ]
        self._lo = self.nominal.copy()
        self._hi = self.nominal.copy()
        # Returns of boundary episodes not yet judged, per [dim][side].
        self._buffers: list[list[list[float]]] = [[[], []] for _ in range(self.dim)]
        # Boundary samples awaiting their result: vector bytes -> (dim, side) per copy out.
        self._pending: dict[bytes, list[tuple[int, int]]] = {}
        self.widened = 0
        self.narrowed = 0
        self.stale = 0
        self._history_episodes: list[int] = []
        self._history_lo: list[np.ndarray] = []
        self._history_hi: list[np.ndarray] = []
        self._record(0)

    # -- the interface -------------------------------------------------------------------
    def sample(self) -> np.ndarray:
        # Clipped because float rounding of lo + (hi - lo) * u can land just past hi.
        params = np.clip(self._rng.uniform(self._lo, self._hi), self._lo, self._hi)
        if self._rng.random() < self.boundary_prob:  # low < high: some side always moves
            d, side = self._movable[int(self._rng.integers(len(self._movable)))]
            params[d] = self._lo[d] if side == LOW_SIDE else self._hi[d]
            self._pending.setdefault(_sample_key(params), []).append((d, side))
        return params

    def _observe(self, params: np.ndarray, reward: float) -> None:
        key = _sample_key(params)
        entries = self._pending.get(key)
        if not entries:
            return  # a plain sample (or one from before a restart): it moves no range
        d, side = entries.pop(0)
        if not entries:
            del self._pending[key]
        if params[d] != self._boundary(d, side):
            self.stale += 1  # the boundary moved while this episode ran
            return
        buffer = self._buffers[d][side]
        buffer.append(reward)
        if len(buffer) < self.buffer_size:
            return
        mean = float(np.mean(buffer))
        buffer.clear()
        if mean >= self.threshold_high:
            self._move(d, side, outward=True)
        elif mean < self.threshold_low:
            self._move(d, side, outward=False)

    def _boundary(self, d: int, side: int) -> float:
        return float(self._lo[d] if side == LOW_SIDE else self._hi[d])

    def _move(self, d: int, side: int, outward: bool) -> None:
        """Shift one boundary by ``step[d]``, held between nominal and its limit."""
        before = self._boundary(d, side)
        if side == LOW_SIDE:
            delta = -self.step[d] if outward else self.step[d]
            self._lo[d] = min(max(before + delta, self.low[d]), self.nominal[d])
        else:
            delta = self.step[d] if outward else -self.step[d]
            self._hi[d] = max(min(before + delta, self.high[d]), self.nominal[d])
        if self._boundary(d, side) == before:
            return  # already at its limit (widening) or at nominal (narrowing)
        if outward:
            self.widened += 1
        else:
            self.narrowed += 1
        # The update that moved it is still being observed: it counts as seen.
        self._record(self.episodes + 1)

    def _record(self, episodes: int) -> None:
        self._history_episodes.append(episodes)
        self._history_lo.append(self._lo.copy())
        self._history_hi.append(self._hi.copy())

    # -- read-only views for logging and plots --------------------------------------------
    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the current ranges ``(lo, hi)``, each of shape (D,)."""
        return self._lo.copy(), self._hi.copy()

    def boundary_success(self) -> np.ndarray:
        """Mean of each boundary's buffer, shape (D, 2) as [dim, low/high side]; NaN if empty."""
        means = np.full((self.dim, 2), np.nan)
        for d in range(self.dim):
            for side in (LOW_SIDE, HIGH_SIDE):
                if self._buffers[d][side]:
                    means[d, side] = float(np.mean(self._buffers[d][side]))
        return means

    @property
    def range_history(self) -> RangeHistory:
        """The ranges at the start and after every change, with the episode count then."""
        return RangeHistory(
            np.asarray(self._history_episodes, dtype=np.int64),
            np.stack(self._history_lo),
            np.stack(self._history_hi),
        )

    @property
    def pending_count(self) -> int:
        """Boundary samples handed out whose result has not come back yet."""
        return sum(len(entries) for entries in self._pending.values())

    def summary(self) -> dict[str, Any]:
        """JSON-native snapshot for a metrics record: ranges, episodes and move counters."""
        return {
            "episodes": int(self.episodes),
            "lo": self._lo.tolist(),
            "hi": self._hi.tolist(),
            "widened": int(self.widened),
            "narrowed": int(self.narrowed),
            "stale": int(self.stale),
            "pending": self.pending_count,
        }

    def __repr__(self) -> str:
        return (
            f"AdrTeacher(dim={self.dim}, episodes={self.episodes}, "
            f"lo={self._lo.tolist()}, hi={self._hi.tolist()})"
        )

    # -- checkpointing -------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "nominal": self.nominal.tolist(),
            "step": self.step.tolist(),
            "boundary_prob": self.boundary_prob,
            "buffer_size": self.buffer_size,
            "threshold_low": self.threshold_low,
            "threshold_high": self.threshold_high,
        }

    def _extra_state(self) -> dict[str, Any]:
        history = self.range_history
        return {
            "hyperparameters": self._hyperparameters(),
            "lo": self._lo.copy(),
            "hi": self._hi.copy(),
            "buffers": [[list(side) for side in sides] for sides in self._buffers],
            "widened": self.widened,
            "narrowed": self.narrowed,
            "stale": self.stale,
            "history_episodes": history.episodes,
            "history_lo": history.lo,
            "history_hi": history.hi,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_hyperparameters(self.name, self._hyperparameters(), state["hyperparameters"])
        lo = np.asarray(state["lo"], dtype=np.float64)
        hi = np.asarray(state["hi"], dtype=np.float64)
        if lo.shape != (self.dim,) or hi.shape != (self.dim,):
            raise ValueError(
                f"{self.name} teacher: saved ranges have shapes {lo.shape} and {hi.shape}, "
                f"expected ({self.dim},)"
            )
        if not (np.all(self.low <= lo) and np.all(lo <= self.nominal)
                and np.all(self.nominal <= hi) and np.all(hi <= self.high)):
            raise ValueError(
                f"{self.name} teacher: saved ranges lo={lo.tolist()} hi={hi.tolist()} must "
                f"satisfy low <= lo <= nominal <= hi <= high"
            )
        buffers = [[[float(r) for r in side] for side in sides] for sides in state["buffers"]]
        if len(buffers) != self.dim or any(len(sides) != 2 for sides in buffers):
            raise ValueError(f"{self.name} teacher: saved buffers are not {self.dim} x 2 lists")
        if any(len(side) >= self.buffer_size for sides in buffers for side in sides):
            raise ValueError(
                f"{self.name} teacher: a saved buffer holds {self.buffer_size} or more returns"
            )
        episodes = np.asarray(state["history_episodes"], dtype=np.int64).reshape(-1)
        history_lo = np.asarray(state["history_lo"], dtype=np.float64)
        history_hi = np.asarray(state["history_hi"], dtype=np.float64)
        shape = (episodes.shape[0], self.dim)
        if episodes.shape[0] == 0 or history_lo.shape != shape or history_hi.shape != shape:
            raise ValueError(
                f"{self.name} teacher: saved range history is empty or inconsistent "
                f"({episodes.shape[0]} episodes, lo {history_lo.shape}, hi {history_hi.shape})"
            )

        self._lo, self._hi = lo, hi
        self._buffers = buffers
        self._pending = {}  # results of samples handed out before the save never come back
        self.widened = check_positive_int("widened", state["widened"], minimum=0)
        self.narrowed = check_positive_int("narrowed", state["narrowed"], minimum=0)
        self.stale = check_positive_int("stale", state["stale"], minimum=0)
        self._history_episodes = episodes.tolist()
        self._history_lo = list(history_lo)
        self._history_hi = list(history_hi)
