"""Continuous task-parameter spaces: named, bounded boxes that curricula and randomizers sample."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class ParamSpace:
    """A box of named task parameters, e.g. ``mass in [0.05, 0.5]``.

    ``low``/``high`` are float64 arrays; every sampler (uniform, curriculum teacher, randomizer)
    draws vectors of ``len(names)`` values inside them.
    """

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    def __post_init__(self):
        low = np.asarray(self.low, dtype=np.float64).reshape(-1)
        high = np.asarray(self.high, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        check_bounds(low, high, self.names)

    @classmethod
    def from_dict(cls, bounds: Mapping[str, Sequence[float]]) -> "ParamSpace":
        names = tuple(bounds)
        for name in names:
            b = bounds[name]
            if len(b) != 2:
                raise ValueError(f"parameter {name!r}: bounds must be [low, high], got {list(b)}")
        return cls(names, np.array([bounds[n][0] for n in names]), np.array([bounds[n][1] for n in names]))

    @property
    def dim(self) -> int:
        return len(self.names)

    def with_bounds(self, overrides: Mapping[str, Sequence[float]] | None) -> "ParamSpace":
        """A copy with some parameters' bounds replaced; unknown names are an error."""
        if not overrides:
            return self
        low, high = self.low.copy(), self.high.copy()
        for name, b in overrides.items():
            if name not in self.names:
                raise ValueError(f"unknown task parameter {name!r}; this task has {list(self.names)}")
            if len(b) != 2:
                raise ValueError(f"parameter {name!r}: bounds must be [low, high], got {list(b)}")
            i = self.names.index(name)
            low[i], high[i] = float(b[0]), float(b[1])
        return ParamSpace(self.names, low, high)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high)

    def clip(self, params: np.ndarray) -> np.ndarray:
        return np.clip(params, self.low, self.high)

    def as_dict(self, params: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, params)}


def check_bounds(low: np.ndarray, high: np.ndarray, names: Sequence[str] | None = None) -> None:
    """Raise ValueError naming the first parameter whose bounds are not finite with low < high."""
    if low.shape != high.shape:
        raise ValueError(f"parameter bounds: low has shape {low.shape}, high has shape {high.shape}")
    names = list(names) if names is not None else [f"param[{i}]" for i in range(low.size)]
    if len(names) != low.size:
        raise ValueError(f"parameter bounds: {low.size} bounds for {len(names)} names")
    for i, name in enumerate(names):
        if not (np.isfinite(low[i]) and np.isfinite(high[i])):
            raise ValueError(f"parameter {name!r}: bounds must be finite, got [{low[i]}, {high[i]}]")
        if not low[i] < high[i]:
            raise ValueError(f"parameter {name!r}: low must be < high, got [{low[i]}, {high[i]}]")
