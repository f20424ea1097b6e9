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

from robots_ts.curriculum.base import check_positive_int
from robots_ts.curriculum.gmm import GmmComponents
from robots_ts.curriculum.gmm_teacher import GmmTeacher
from robots_ts.curriculum.history import BufferedNearestNeighbours


class AlpGmmTeacher(GmmTeacher):
    """Absolute-learning-progress Gaussian mixture teacher (see module docstring).

    Rows are [params in unit space..., ALP]; fitting, sampling and checkpointing are
    ``GmmTeacher``'s.
    """

    name = "alp_gmm"
    _HYPERPARAMETERS = (
        "fit_rate",
        "bootstrap",
        "fit_window",
        "potential_ks",
        "criterion",
        "random_task_ratio",
        "nb_em_init",
        "init_params",
        "alp_max_size",
        "alp_buffer_size",
        "history_size",
    )

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
        super().__init__(
            low,
            high,
            seed,
            fit_rate=fit_rate,
            bootstrap=bootstrap,
            fit_window=fit_window,
            potential_ks=potential_ks,
            criterion=criterion,
            random_task_ratio=random_task_ratio,
            nb_em_init=nb_em_init,
            init_params=init_params,
            history_size=history_size,
        )
        self.alp_max_size = (
            None if alp_max_size is None else check_positive_int("alp_max_size", alp_max_size)
        )
        self.alp_buffer_size = check_positive_int("alp_buffer_size", alp_buffer_size)
        # Every task ever seen (up to alp_max_size), not just the fit window: ALP compares
        # with the nearest earlier task however long ago it was run.
        self._nearest = BufferedNearestNeighbours(
            self.dim, buffer_size=self.alp_buffer_size, max_size=self.alp_max_size
        )

    def _episode_value(self, unit: np.ndarray, reward: float) -> float:
        previous = self._nearest.nearest_value(unit)
        alp = 0.0 if previous is None else abs(reward - previous)
        self._nearest.add(unit, reward)
        return alp

    def _fit_data(self) -> np.ndarray:
        return self._recent.last(self.fit_window)

    def _progress_of(self, gmm: GmmComponents) -> np.ndarray:
        # A component's mean on the ALP axis is its expected learning progress.
        return np.maximum(gmm.means[:, -1], 0.0)

    @property
    def alp_history(self) -> np.ndarray:
        """ALP of each row of ``params_history``."""
        return self._value_history()

    def _own_state(self) -> dict[str, Any]:
        return {"nearest": self._nearest.state()}

    def _load_own_state(self, state: dict[str, Any]) -> None:
        self._nearest.load_state(state["nearest"])
