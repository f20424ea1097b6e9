"""The toy curriculum problem of Portelas et al. (CoRL 2019): a grid of cells to master.

The task space is [0,1]^D. Its first ``n_dims`` dimensions are cut into ``cells_per_dim``
bins each, giving ``cells_per_dim ** n_dims`` cells; any further dimensions
(``n_irrelevant_dims``) change nothing and only make the teacher's job harder, as in the
paper's scalability study. A simulated student holds a competence score per cell:

* an episode in a cell adds 1 to its competence (capped at ``max_competence``, 100) *if the
  cell is learnable now*: it is the seed cell (all indices 0), or one of its "previous"
  neighbours (each index equal or one lower, at least one lower) is mastered;
* a cell is mastered once its competence reaches ``mastery_threshold`` (75);
* ``unlearnable_fraction`` of the cells (never the seed cell), drawn from the toy's seed,
  never gain competence, modelling the unlearnable tasks of a procedural generator;
* the reward given to the teacher is the competence of the sampled cell scaled to [0,1],
  plus optional Gaussian noise (``noise``), clipped to [0,1].

So progress is only possible on a frontier that moves away from the seed cell; a teacher
that finds the frontier and follows it masters far more cells than uniform sampling in the
same number of episodes. Rules follow the authors' ``toy_env.py`` (flowersteam/teachDeepRL);
unlearnable cells and reward noise are the optional extras.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from robots_ts.curriculum.base import CurriculumTeacher, check_positive_int, check_ratio


class CellGridToy:
    """Simulated student on a grid of cells (see module docstring)."""

    def __init__(
        self,
        cells_per_dim: int = 10,
        n_dims: int = 2,
        n_irrelevant_dims: int = 0,
        unlearnable_fraction: float = 0.0,
        max_competence: int = 100,
        mastery_threshold: int = 75,
        noise: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        self.cells_per_dim = check_positive_int("cells_per_dim", cells_per_dim)
        self.n_dims = check_positive_int("n_dims", n_dims)
        self.n_irrelevant_dims = check_positive_int("n_irrelevant_dims", n_irrelevant_dims, 0)
        self.unlearnable_fraction = check_ratio("unlearnable_fraction", unlearnable_fraction)
        self.max_competence = check_positive_int("max_competence", max_competence)
        self.mastery_threshold = check_positive_int("mastery_threshold", mastery_threshold)
        if self.mastery_threshold > self.max_competence:
            raise ValueError(
                f"mastery_threshold ({mastery_threshold}) must not exceed "
                f"max_competence ({max_competence})"
            )
        if not (np.isfinite(noise) and noise >= 0.0):
            raise ValueError(f"noise must be a finite standard deviation >= 0; got {noise!r}")
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)

        shape = (self.cells_per_dim,) * self.n_dims
        self.competence = np.zeros(shape, dtype=np.int64)
        self.mastered = np.zeros(shape, dtype=bool)
        self.learnable = np.ones(shape, dtype=bool)
        n_cells = self.learnable.size
        n_blocked = int(round(self.unlearnable_fraction * (n_cells - 1)))
        if n_blocked:
            # Flat index 0 is the seed cell; it stays learnable so the task is never empty.
            blocked = 1 + self._rng.choice(n_cells - 1, size=n_blocked, replace=False)
            self.learnable.flat[blocked] = False
        # Offsets to the "previous" neighbours: every combination of 0/-1 except all zeros.
        self._offsets = [o for o in itertools.product((0, -1), repeat=self.n_dims) if any(o)]
        self.reachable_cells = self._count_reachable()

    @property
    def param_dim(self) -> int:
        return self.n_dims + self.n_irrelevant_dims

    @property
    def low(self) -> np.ndarray:
        return np.zeros(self.param_dim)

    @property
    def high(self) -> np.ndarray:
        return np.ones(self.param_dim)

    @property
    def n_cells(self) -> int:
        return int(self.competence.size)

    def cell_of(self, params: np.ndarray) -> tuple[int, ...]:
        last = self.cells_per_dim - 1
        return tuple(min(int(p * self.cells_per_dim), last) for p in params[: self.n_dims])

    def episode(self, params: np.ndarray) -> float:
        """Practise once at ``params``; return the cell's competence scaled to [0, 1]."""
        params = np.asarray(params, dtype=np.float64)
        if params.shape != (self.param_dim,):
            raise ValueError(f"toy params must have shape ({self.param_dim},); got {params.shape}")
        if np.any(params < 0.0) or np.any(params > 1.0) or not np.all(np.isfinite(params)):
            raise ValueError(f"toy params must lie in [0, 1]; got {params}")
        cell = self.cell_of(params)
        if self._can_learn(cell) and self.competence[cell] < self.max_competence:
            self.competence[cell] += 1
            if self.competence[cell] >= self.mastery_threshold:
                self.mastered[cell] = True
        reward = self.competence[cell] / self.max_competence
        if self.noise > 0.0:
            reward = min(1.0, max(0.0, reward + self.noise * self._rng.standard_normal()))
        return float(reward)

    def _can_learn(self, cell: tuple[int, ...]) -> bool:
        if not self.learnable[cell]:
            return False
        if not any(cell):
            return True
        for offset in self._offsets:
            previous = tuple(c + o for c, o in zip(cell, offset))
            if min(previous) >= 0 and self.mastered[previous]:
                return True
        return False

    def cells_mastered(self) -> int:
        return int(self.mastered.sum())

    def _count_reachable(self) -> int:
        """Cells a perfect teacher could master: learnable, linked to the seed cell."""
        reachable = np.zeros_like(self.learnable)
        # Lexicographic order visits every previous neighbour before the cell itself.
        for cell in np.ndindex(*reachable.shape):
            if not self.learnable[cell]:
                continue
            if not any(cell):
                reachable[cell] = True
                continue
            for offset in self._offsets:
                previous = tuple(c + o for c, o in zip(cell, offset))
                if min(previous) >= 0 and reachable[previous]:
                    reachable[cell] = True
                    break
        return int(reachable.sum())


@dataclass(frozen=True)
class ToyRunResult:
    cells_mastered: int
    mastered_curve: np.ndarray  # cells mastered after each block of `score_every` episodes
    teacher_seconds: float  # time spent inside teacher.sample() and teacher.update()
    episodes: int

    @property
    def ms_per_episode(self) -> float:
        return 1e3 * self.teacher_seconds / self.episodes


def run_toy_curriculum(
    teacher: CurriculumTeacher, toy: CellGridToy, episodes: int, score_every: int = 1000
) -> ToyRunResult:
    """Let ``teacher`` pick ``episodes`` tasks on ``toy``; time only the teacher's calls."""
    if teacher.dim != toy.param_dim:
        raise ValueError(f"teacher has {teacher.dim} dims but the toy needs {toy.param_dim}")
    episodes = check_positive_int("episodes", episodes)
    curve = []
    teacher_seconds = 0.0
    clock = time.perf_counter
    for episode in range(1, episodes + 1):
        start = clock()
        params = teacher.sample()
        teacher_seconds += clock() - start
        reward = toy.episode(params)
        start = clock()
        teacher.update(params, reward)
        teacher_seconds += clock() - start
        if episode % score_every == 0:
            curve.append(toy.cells_mastered())
    return ToyRunResult(
        cells_mastered=toy.cells_mastered(),
        mastered_curve=np.asarray(curve, dtype=np.int64),
        teacher_seconds=teacher_seconds,
        episodes=episodes,
    )
