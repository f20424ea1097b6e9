"""Covar-GMM: sample tasks where reward rises with time, from a GMM over [task, time, reward].

The "Covar-GMM" baseline of Portelas et al. (CoRL 2019), an adaptation of the intrinsically
motivated goal sampler of Moulin-Frier, Nguyen and Oudeyer, "Self-organization of early vocal
development in infants and machines: the role of intrinsic motivation", Frontiers in
Psychology 2014.

Every ``fit_rate`` episodes a Gaussian mixture is fitted on the last ``fit_rate`` rows
[task params normalised to [0,1]^d, time, reward], where time is the episode's relative
position in that window (0 for the oldest, towards 1 for the newest). The number of
components is chosen by AIC. Within a component, a positive covariance between time and
reward means reward there went up over the window: learning progress. ``sample()`` picks a
component with probability proportional to max(0, cov(time, reward)) (or its absolute value
with ``absolute_lp=True``) and draws task params from that component's marginal Gaussian.
A share ``random_task_ratio`` of tasks stays uniform, and all tasks are uniform until the
first fit (``bootstrap`` episodes).

Compared with ALP-GMM it needs no nearest-neighbour history, but it only sees progress that
happens inside one window, and reward levels enter the mixture directly, so components split
on reward level as much as on progress.

Defaults follow the ALP-GMM authors' implementation of this baseline (flowersteam/teachDeepRL,
``covar_gmm.py``): fit_rate 250, bootstrap = fit_rate, potential_ks range(2, 11), AIC,
random_task_ratio 0.2, absolute_lp False. ``init_params="k-means++"`` is ours, for speed.
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
from robots_ts.curriculum.history import RecentRows


class CovarGmmTeacher(CurriculumTeacher):
    """Time-reward covariance Gaussian mixture teacher (see module docstring)."""

    name = "covar_gmm"

    def __init__(
        self,
        low: Any,
        high: Any,
        seed: int | None = 0,
        *,
        fit_rate: int = 250,
        bootstrap: int | None = None,
        potential_ks: Sequence[int] = range(2, 11),
        criterion: str = "aic",
        random_task_ratio: float = 0.2,
        absolute_lp: bool = False,
        nb_em_init: int = 1,
        init_params: str = "k-means++",
        history_size: int = 10_000,
    ) -> None:
        super().__init__(low, high, seed=seed)
        self.fit_rate = check_positive_int("fit_rate", fit_rate, minimum=2)
        self.bootstrap = check_positive_int(
            "bootstrap", self.fit_rate if bootstrap is None else bootstrap, minimum=2
        )
        self.potential_ks = check_potential_ks(potential_ks)
        self.criterion = check_criterion(criterion)
        self.random_task_ratio = check_ratio("random_task_ratio", random_task_ratio)
        if not isinstance(absolute_lp, bool):
            raise ValueError(f"absolute_lp must be True or False; got {absolute_lp!r}")
        self.absolute_lp = absolute_lp
        self.nb_em_init = check_positive_int("nb_em_init", nb_em_init)
        self.init_params = check_init_params(init_params)
        self.history_size = check_positive_int("history_size", history_size)

        # Rows are [params in unit space..., reward]; time is assigned at fit time from
        # the row's position, so it never needs storing.
        self._recent = RecentRows(self.dim + 1, max(self.fit_rate, self.history_size))
        self._gmm: GmmComponents | None = None
        self._component_progress = np.zeros(0)
        self.fit_count = 0

    def sample(self) -> np.ndarray:
        if self._gmm is None or self._rng.random() < self.random_task_ratio:
            return self._sample_uniform()
        component = proportional_choice(self._rng, self._component_progress)
        return self._from_unit(self._gmm.sample_params(self._rng, component))

    def _observe(self, params: np.ndarray, reward: float) -> None:
        self._recent.append(np.append(self._to_unit(params), reward))
        seen = self.episodes + 1
        if seen >= self.bootstrap and (seen - self.bootstrap) % self.fit_rate == 0:
            self._fit()

    def _fit(self) -> None:
        rows = self._recent.last(self.fit_rate)
        time = np.arange(rows.shape[0], dtype=np.float64) / self.fit_rate
        data = np.column_stack([rows[:, : self.dim], time, rows[:, -1]])
        fit_seed = int(self._rng.integers(2**31 - 1))
        self._set_gmm(
            fit_best_gmm(
                data,
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
        if gmm is None:
            self._component_progress = np.zeros(0)
            return
        # Entry [time, reward] of each component's covariance; time is column d, reward d+1.
        covariance = gmm.covariances[:, self.dim, self.dim + 1]
        self._component_progress = (
            np.abs(covariance) if self.absolute_lp else np.maximum(covariance, 0.0)
        )

    @property
    def gmm(self) -> GmmComponents | None:
        """The current mixture over [params in [0,1]^d, time, reward]; None before a fit."""
        return self._gmm

    def component_progress(self) -> np.ndarray:
        """Per-component learning progress used to pick components (time-reward covariance)."""
        return self._component_progress.copy()

    @property
    def params_history(self) -> np.ndarray:
        rows = self._recent.last(self.history_size)
        return self.low + rows[:, : self.dim] * self.span

    @property
    def reward_history(self) -> np.ndarray:
        return self._recent.last(self.history_size)[:, -1]

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "fit_rate": self.fit_rate,
            "bootstrap": self.bootstrap,
            "potential_ks": list(self.potential_ks),
            "criterion": self.criterion,
            "random_task_ratio": self.random_task_ratio,
            "absolute_lp": self.absolute_lp,
            "nb_em_init": self.nb_em_init,
            "init_params": self.init_params,
            "history_size": self.history_size,
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "hyperparameters": self._hyperparameters(),
            "recent": self._recent.state(),
            "gmm": None if self._gmm is None else self._gmm.to_state(),
            "fit_count": self.fit_count,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_hyperparameters(self.name, self._hyperparameters(), state["hyperparameters"])
        self._recent.load_state(state["recent"])
        gmm_state = state["gmm"]
        self._set_gmm(None if gmm_state is None else GmmComponents.from_state(gmm_state, self.dim))
        self.fit_count = int(state["fit_count"])
