"""ALP-GMM: sample tasks where the student's absolute learning progress is high.

Portelas, Colas, Hofmann, Oudeyer, "Teacher algorithms for curriculum learning of Deep RL in
continuously parameterized environments", CoRL 2019 (arXiv:1910.07224).

For every finished episode on task parameters p with return r:

1. ALP(p) = |r - r'| where r' is the return of the nearest earlier task p' (Euclidean, in
   parameters normalised to [0,1]^d), found with a buffered k-d tree, never a history scan.
2. Every ``fit_rate`` episodes, Gaussian mixtures with each count in ``potential_ks`` are
   fitted on the last ``fit_window`` rows [p normalised, ALP]; the lowest AIC wins.
3. ``sample()``: with probability ``random_task_ratio`` a uniform task; otherwise pick a
   component with probability proportional to its mean ALP and draw p from that component's
   Gaussian marginalised over the ALP dimension, clipped to the bounds. Before the first fit
   (the ``bootstrap`` episodes) every task is uniform.

Defaults, from the authors' reference code (flowersteam/teachDeepRL,
``teachDRL/teachers/algos/alp_gmm.py``) unless noted:

==================  ======================  =====================================
fit_rate            250                     refit every 250 episodes
bootstrap           = fit_rate (250)        ``nb_random = fit_rate`` in their code
fit_window          = fit_rate (250)        they fit on the last ``fit_rate`` pairs
potential_ks        range(2, 11)            ``np.arange(2, 11)``
criterion           "aic"                   ``gmm_fitness_fun = "aic"``
random_task_ratio   0.2                     20 % uniform tasks after bootstrap
nb_em_init          1                       EM restarts per candidate count
alp_max_size        None (unbounded)        history kept for the nearest-neighbour ALP
alp_buffer_size     500                     their k-d tree buffer size
init_params         "k-means++"             ours: their scikit-learn default was "kmeans";
                                            k-means++ seeding halves the fit cost
history_size        10_000                  ours: (params, ALP) rows kept for plots
==================  ======================  =====================================

The first fit happens at episode ``bootstrap``, then every ``fit_rate`` episodes. The
authors' code ties the random bootstrap to ``fit_rate`` (250 episodes); pass e.g.
``bootstrap=1000`` for a longer uniform phase when early returns are very noisy.

Two further deviations, both for robustness rather than behaviour: parameters are normalised
to [0,1] before fitting (their code fitted raw values, which ties the GMM to units), and ALP
is computed from the second episode on (they waited for six points).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from robots_ts.curriculum.base import (
    CurriculumTeacher,
    check_positive_int,
    check_ratio,
    check_same_hyperparameters,
)
from robots_ts.curriculum.gmm import (
    GmmComponents,
    check_criterion,
    check_init_params,
    check_potential_ks,
    fit_best_gmm,
    proportional_choice,
)
from robots_ts.curriculum.history import BufferedNearestNeighbours, RecentRows


class AlpGmmTeacher(CurriculumTeacher):
    """Absolute-learning-progress Gaussian mixture teacher (see module docstring)."""

    name = "alp_gmm"

    def __init__(
        self,
        low: Any,
        high: Any,
        seed: int | None = 0,
        *,
        fit_rate: int = 250,
        bootstrap: int | None = None,
        fit_window: int | None = None,
        potential_ks: Sequence[int] = range(2, 11),
        criterion: str = "aic",
        random_task_ratio: float = 0.2,
        nb_em_init: int = 1,
        init_params: str = "k-means++",
        alp_max_size: int | None = None,
        alp_buffer_size: int = 500,
        history_size: int = 10_000,
    ) -> None:
        super().__init__(low, high, seed=seed)
        self.fit_rate = check_positive_int("fit_rate", fit_rate, minimum=2)
        self.bootstrap = check_positive_int(
            "bootstrap", self.fit_rate if bootstrap is None else bootstrap, minimum=2
        )
        self.fit_window = check_positive_int(
            "fit_window", self.fit_rate if fit_window is None else fit_window, minimum=2
        )
        self.potential_ks = check_potential_ks(potential_ks)
        self.criterion = check_criterion(criterion)
        self.random_task_ratio = check_ratio("random_task_ratio", random_task_ratio)
        self.nb_em_init = check_positive_int("nb_em_init", nb_em_init)
        self.init_params = check_init_params(init_params)
        self.alp_max_size = (
            None if alp_max_size is None else check_positive_int("alp_max_size", alp_max_size)
        )
        self.alp_buffer_size = check_positive_int("alp_buffer_size", alp_buffer_size)
        self.history_size = check_positive_int("history_size", history_size)

        self._nearest = BufferedNearestNeighbours(
            self.dim, buffer_size=self.alp_buffer_size, max_size=self.alp_max_size
        )
        # Rows are [params in unit space..., ALP]; one store serves fitting and plotting.
        self._recent = RecentRows(self.dim + 1, max(self.fit_window, self.history_size))
        self._gmm: GmmComponents | None = None
        self._component_alp = np.zeros(0)
        self.fit_count = 0

    # -- interface -----------------------------------------------------------------------
    def sample(self) -> np.ndarray:
        if self._gmm is None or self._rng.random() < self.random_task_ratio:
            return self._sample_uniform()
        component = proportional_choice(self._rng, self._component_alp)
        return self._from_unit(self._gmm.sample_params(self._rng, component))

    def _observe(self, params: np.ndarray, reward: float) -> None:
        unit = self._to_unit(params)
        previous = self._nearest.nearest_value(unit)
        alp = 0.0 if previous is None else abs(reward - previous)
        self._nearest.add(unit, reward)
        self._recent.append(np.append(unit, alp))

        seen = self.episodes + 1
        if seen >= self.bootstrap and (seen - self.bootstrap) % self.fit_rate == 0:
            self._fit()

    def _fit(self) -> None:
        window = self._recent.last(self.fit_window)
        # Drawn from the teacher's generator so fits are reproducible and resumable.
        fit_seed = int(self._rng.integers(2**31 - 1))
        self._set_gmm(
            fit_best_gmm(
                window,
                n_params=self.dim,
                potential_ks=self.potential_ks,
                criterion=self.criterion,
                n_init=self.nb_em_init,
                init_params=self.init_params,
                random_state=fit_seed,
            )
        )
        self.fit_count += 1

    def _set_gmm(self, gmm: GmmComponents | None) -> None:
        self._gmm = gmm
        # A component's mean on the ALP axis is its expected learning progress.
        self._component_alp = np.zeros(0) if gmm is None else np.maximum(gmm.means[:, -1], 0.0)

    # -- read-only views for plots and logging --------------------------------------------
    @property
    def gmm(self) -> GmmComponents | None:
        """The current mixture over [params in [0,1]^d, ALP]; None before the first fit."""
        return self._gmm

    def component_progress(self) -> np.ndarray:
        """Per-component learning progress used to pick components (here: mean ALP)."""
        return self._component_alp.copy()

    @property
    def params_history(self) -> np.ndarray:
        """Last ``history_size`` updated params (in the caller's units), oldest first."""
        rows = self._recent.last(self.history_size)
        return self.low + rows[:, : self.dim] * self.span

    @property
    def alp_history(self) -> np.ndarray:
        """ALP of each row of ``params_history``."""
        return self._recent.last(self.history_size)[:, -1]

    # -- checkpointing -------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "fit_rate": self.fit_rate,
            "bootstrap": self.bootstrap,
            "fit_window": self.fit_window,
            "potential_ks": list(self.potential_ks),
            "criterion": self.criterion,
            "random_task_ratio": self.random_task_ratio,
            "nb_em_init": self.nb_em_init,
            "init_params": self.init_params,
            "alp_max_size": self.alp_max_size,
            "alp_buffer_size": self.alp_buffer_size,
            "history_size": self.history_size,
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "hyperparameters": self._hyperparameters(),
            "nearest": self._nearest.state(),
            "recent": self._recent.state(),
            "gmm": None if self._gmm is None else self._gmm.to_state(),
            "fit_count": self.fit_count,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_hyperparameters(self.name, self._hyperparameters(), state["hyperparameters"])
        self._nearest.load_state(state["nearest"])
        self._recent.load_state(state["recent"])
        gmm_state = state["gmm"]
        self._set_gmm(None if gmm_state is None else GmmComponents.from_state(gmm_state, self.dim))
        self.fit_count = int(state["fit_count"])

