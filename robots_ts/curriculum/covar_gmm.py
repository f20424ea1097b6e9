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

from robots_ts.curriculum.gmm import GmmComponents
from robots_ts.curriculum.gmm_teacher import GmmTeacher


class CovarGmmTeacher(GmmTeacher):
    """Time-reward covariance Gaussian mixture teacher (see module docstring).

    Rows are [params in unit space..., reward]; time is assigned at fit time from the row's
    position, so it never needs storing. Fitting, sampling and checkpointing are
    ``GmmTeacher``'s.
    """

    name = "covar_gmm"
    _HYPERPARAMETERS = (
        "fit_rate",
        "bootstrap",
        "potential_ks",
        "criterion",
        "random_task_ratio",
        "absolute_lp",
        "nb_em_init",
        "init_params",
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
        potential_ks: Sequence[int] = range(2, 11),
        criterion: str = "aic",
        random_task_ratio: float = 0.2,
        absolute_lp: bool = False,
        nb_em_init: int = 1,
        init_params: str = "k-means++",
        history_size: int = 10_000,
    ) -> None:
        # fit_window=None: the time axis spans exactly one fit_rate window (see _fit_data).
        super().__init__(
            low,
            high,
            seed,
            fit_rate=fit_rate,
            bootstrap=bootstrap,
            fit_window=None,
            potential_ks=potential_ks,
            criterion=criterion,
            random_task_ratio=random_task_ratio,
            nb_em_init=nb_em_init,
            init_params=init_params,
            history_size=history_size,
        )
        # Overrides can arrive as strings, and "false" is truthy: accept real booleans only.
        if not isinstance(absolute_lp, bool):
            raise ValueError(f"absolute_lp must be True or False; got {absolute_lp!r}")
        self.absolute_lp = absolute_lp

    def _episode_value(self, unit: np.ndarray, reward: float) -> float:
        return reward

    def _fit_data(self) -> np.ndarray:
        rows = self._recent.last(self.fit_rate)
        time = np.arange(rows.shape[0], dtype=np.float64) / self.fit_rate
        return np.column_stack([rows[:, : self.dim], time, rows[:, -1]])

    def _progress_of(self, gmm: GmmComponents) -> np.ndarray:
        # Entry [time, reward] of each component's covariance; time is column d, reward d+1.
        covariance = gmm.covariances[:, self.dim, self.dim + 1]
        return np.abs(covariance) if self.absolute_lp else np.maximum(covariance, 0.0)

    @property
    def reward_history(self) -> np.ndarray:
        """Reward of each row of ``params_history``."""
        return self._value_history()
