"""The scaffolding every Gaussian-mixture teacher shares: when to fit, how to sample, checkpoints.

ALP-GMM and Covar-GMM differ only in what they record per episode, what they fit on and how
a fitted component's learning progress is read off the mixture. Everything else lives here:

* one row per episode in a bounded ``RecentRows`` store, ``[params in [0,1]^d, value]``,
  where the value is whatever ``_episode_value`` returns (ALP, or the raw reward);
* a uniform bootstrap of ``bootstrap`` episodes, then a refit every ``fit_rate`` episodes,
  choosing the component count by AIC/BIC (``fit_best_gmm``);
* ``sample()``: a uniform task with probability ``random_task_ratio``, otherwise a component
  drawn in proportion to its progress and task params from its marginal Gaussian;
* the checkpoint layout ``{hyperparameters, <subclass state>..., recent, gmm, fit_count}``.

Subclasses implement ``_episode_value``, ``_fit_data`` and ``_progress_of``, list their
hyperparameters in ``_HYPERPARAMETERS`` and, when they keep more history, extend
``_own_state`` / ``_load_own_state``.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Sequence

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


class GmmTeacher(CurriculumTeacher):
    """Base class of the teachers that sample from a Gaussian mixture (see module docstring)."""

    # Attribute names recorded in the checkpoint, in the order they are saved. The order is
    # part of the saved dict, so it matches what each teacher wrote before this base existed.
    _HYPERPARAMETERS: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        low: Any,
        high: Any,
        seed: int | None,
        *,
        fit_rate: int,
        bootstrap: int | None,
        fit_window: int | None,
        potential_ks: Sequence[int],
        criterion: str,
        random_task_ratio: float,
        nb_em_init: int,
        init_params: str,
        history_size: int,
    ) -> None:
        super().__init__(low, high, seed=seed)
        self.fit_rate = check_positive_int("fit_rate", fit_rate, minimum=2)
        self.bootstrap = check_positive_int(
            "bootstrap", self.fit_rate if bootstrap is None else bootstrap, minimum=2
        )
        # Rows each fit sees. Covar-GMM always fits on the last fit_rate rows and passes None.
        self.fit_window = check_positive_int(
            "fit_window", self.fit_rate if fit_window is None else fit_window, minimum=2
        )
        self.potential_ks = check_potential_ks(potential_ks)
        self.criterion = check_criterion(criterion)
        self.random_task_ratio = check_ratio("random_task_ratio", random_task_ratio)
        self.nb_em_init = check_positive_int("nb_em_init", nb_em_init)
        self.init_params = check_init_params(init_params)
        self.history_size = check_positive_int("history_size", history_size)

        # One store serves both fitting (last fit_window rows) and the history views (last
        # history_size rows), so it keeps whichever is longer.
        self._recent = RecentRows(self.dim + 1, max(self.fit_window, self.history_size))
        self._gmm: GmmComponents | None = None
        self._component_progress = np.zeros(0)
        self.fit_count = 0

    # -- what a subclass decides ---------------------------------------------------------
    @abc.abstractmethod
    def _episode_value(self, unit: np.ndarray, reward: float) -> float:
        """The value stored beside the unit-space params of this episode's row."""

    @abc.abstractmethod
    def _fit_data(self) -> np.ndarray:
        """Rows ``[params in [0,1]^d, extra dims...]`` the next mixture is fitted on."""

    @abc.abstractmethod
    def _progress_of(self, gmm: GmmComponents) -> np.ndarray:
        """Per-component learning progress of a fitted mixture; components are picked in
        proportion to it, so it must be >= 0."""

    def _own_state(self) -> dict[str, Any]:
        """Subclass state saved between the hyperparameters and the shared keys."""
        return {}

    def _load_own_state(self, state: dict[str, Any]) -> None:
        return None

    # -- interface -----------------------------------------------------------------------
    def sample(self) -> np.ndarray:
        # Every task is uniform until the first fit; testing _gmm first also means bootstrap
        # episodes draw nothing for the ratio, only the task itself.
        if self._gmm is None or self._rng.random() < self.random_task_ratio:
            return self._sample_uniform()
        component = proportional_choice(self._rng, self._component_progress)
        return self._from_unit(self._gmm.sample_params(self._rng, component))

    def _observe(self, params: np.ndarray, reward: float) -> None:
        unit = self._to_unit(params)
        self._recent.append(np.append(unit, self._episode_value(unit, reward)))

        seen = self.episodes + 1
        if seen >= self.bootstrap and (seen - self.bootstrap) % self.fit_rate == 0:
            self._fit()

    def _fit(self) -> None:
        data = self._fit_data()
        # Drawn from the teacher's generator so fits are reproducible and resumable.
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
        # Progress is derived once per fit (or load), not per sample: sampling is per episode.
        self._gmm = gmm
        self._component_progress = np.zeros(0) if gmm is None else self._progress_of(gmm)

    # -- read-only views for plots and logging --------------------------------------------
    @property
    def gmm(self) -> GmmComponents | None:
        """The current mixture over [params in [0,1]^d, extra dims]; None before the first fit."""
        return self._gmm

    def component_progress(self) -> np.ndarray:
        """Per-component learning progress used to pick components (see ``_progress_of``)."""
        return self._component_progress.copy()

    @property
    def params_history(self) -> np.ndarray:
        """Last ``history_size`` updated params (in the caller's units), oldest first."""
        rows = self._recent.last(self.history_size)
        return self.low + rows[:, : self.dim] * self.span

    def _value_history(self) -> np.ndarray:
        """The stored value of each row of ``params_history`` (ALP or reward)."""
        return self._recent.last(self.history_size)[:, -1]

    # -- checkpointing -------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        # Tuples (potential_ks) are saved as lists: what JSON would turn them into anyway.
        values = {key: getattr(self, key) for key in self._HYPERPARAMETERS}
        return {key: list(v) if isinstance(v, tuple) else v for key, v in values.items()}

    def _extra_state(self) -> dict[str, Any]:
        return {
            "hyperparameters": self._hyperparameters(),
            **self._own_state(),
            "recent": self._recent.state(),
            "gmm": None if self._gmm is None else self._gmm.to_state(),
            "fit_count": self.fit_count,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_hyperparameters(self.name, self._hyperparameters(), state["hyperparameters"])
        self._load_own_state(state)
        self._recent.load_state(state["recent"])
        gmm_state = state["gmm"]
        self._set_gmm(None if gmm_state is None else GmmComponents.from_state(gmm_state, self.dim))
        self.fit_count = int(state["fit_count"])
