"""Gaussian mixtures shared by the GMM-based teachers: model selection and sampling.

Both ALP-GMM and Covar-GMM fit a mixture on rows ``[task params in [0,1]^d, extra dims...]``
(extra = ALP, or time and reward), choose the number of components with an information
criterion, pick a component by a per-component progress score, and draw task parameters from
that component's Gaussian marginalised over the extra dimensions.

A fitted mixture is kept as plain arrays (``GmmComponents``), not as a scikit-learn object,
so it checkpoints without pickling and sampling skips scikit-learn's per-call overhead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

CRITERIA = ("aic", "bic")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def check_potential_ks(potential_ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in potential_ks)
    if not ks or any(k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise ValueError(
            f"potential_ks must be distinct component counts >= 1; got {list(potential_ks)}"
        )
    return ks


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}; got {criterion!r}")
    return criterion


def check_init_params(init_params: str) -> str:
    if init_params not in INIT_PARAMS:
        raise ValueError(
            f"init_params must be a GaussianMixture init, one of {list(INIT_PARAMS)}; "
            f"got {init_params!r}"
        )
    return init_params


@dataclass(frozen=True)
class GmmComponents:
    """A fitted full-covariance mixture whose first ``n_params`` dimensions are task params."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, D)
    covariances: np.ndarray  # (k, D, D)
    n_params: int
    _param_cholesky: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k, total_dims = self.means.shape
        if self.weights.shape != (k,) or self.covariances.shape != (k, total_dims, total_dims):
            raise ValueError(
                f"GMM arrays disagree: weights {self.weights.shape}, means {self.means.shape}, "
                f"covariances {self.covariances.shape}"
            )
        if not 0 < self.n_params <= total_dims:
            raise ValueError(f"n_params={self.n_params} must be in [1, {total_dims}]")
        d = self.n_params
        # Factor once per fit so each sample is one matrix-vector product.
        marginal = self.covariances[:, :d, :d]
        object.__setattr__(self, "_param_cholesky", _safe_cholesky(marginal))

    @property
    def n_components(self) -> int:
        return int(self.weights.size)

    def sample_params(self, rng: np.random.Generator, component: int) -> np.ndarray:
        """Draw the task-parameter part of one component (unit space, not yet clipped)."""
        d = self.n_params
        return self.means[component, :d] + self._param_cholesky[component] @ rng.standard_normal(d)

    def to_state(self) -> dict[str, Any]:
        return {
            "weights": self.weights.copy(),
            "means": self.means.copy(),
            "covariances": self.covariances.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], n_params: int) -> GmmComponents:
        return cls(
            weights=np.asarray(state["weights"], dtype=np.float64),
            means=np.asarray(state["means"], dtype=np.float64),
            covariances=np.asarray(state["covariances"], dtype=np.float64),
            n_params=n_params,
        )


def _safe_cholesky(covariances: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        # A component squeezed onto a line (e.g. all its points share one coordinate) can
        # lose positive definiteness in the marginal after rounding; lift tiny eigenvalues.
        eigvals, eigvecs = np.linalg.eigh(covariances)
        eigvals = np.maximum(eigvals, 1e-9)
        repaired = np.einsum("kij,kj,klj->kil", eigvecs, eigvals, eigvecs)
        return np.linalg.cholesky(repaired)


def fit_best_gmm(
    data: np.ndarray,
    n_params: int,
    potential_ks: Sequence[int],
    criterion: str,
    n_init: int,
    init_params: str,
    random_state: int,
) -> GmmComponents:
    """Fit one mixture per candidate component count; keep the lowest AIC/BIC.

    Counts larger than the number of rows are skipped (scikit-learn refuses them); with
    fewer rows than every candidate, the largest count the rows allow is fitted instead.
    """
    n_rows = data.shape[0]
    if n_rows < 2:
        raise ValueError(f"a Gaussian mixture needs at least 2 rows to fit; got {n_rows}")
    candidates = [k for k in potential_ks if k <= n_rows] or [min(min(potential_ks), n_rows)]
    best: GaussianMixture | None = None
    best_score = np.inf
    with warnings.catch_warnings():
        # EM on a few hundred points often stops at max_iter with a usable model; the
        # criterion already ranks poorly converged fits, so the warning is only noise.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # A few hundred rows are far too few to gain from BLAS/OpenMP threads, and when the
        # teacher shares the CPU with simulator workers, idle-spinning pools slow fits ~20x.
        with np.errstate(under="ignore"), threadpool_limits(limits=1):
            for k in candidates:
                model = GaussianMixture(
                    n_components=k,
                    covariance_type="full",
                    n_init=n_init,
                    init_params=init_params,
                    random_state=random_state,
                )
                model.fit(data)
                score = model.aic(data) if criterion == "aic" else model.bic(data)
                if score < best_score:
                    best, best_score = model, score
    assert best is not None  # candidates is never empty when n_rows >= 1
    return GmmComponents(
        weights=np.array(best.weights_, dtype=np.float64),
        means=np.array(best.means_, dtype=np.float64),
        covariances=np.array(best.covariances_, dtype=np.float64),
        n_params=n_params,
    )


def proportional_choice(rng: np.random.Generator, scores: np.ndarray) -> int:
    """Index drawn with probability proportional to ``scores`` (uniform if all are zero)."""
    scores = np.maximum(scores, 0.0)
    total = scores.sum()
    if total <= 0.0 or not np.isfinite(total):
        return int(rng.integers(scores.size))
    # Inverse-CDF on one uniform draw: same distribution as rng.choice(p=...), a fraction
    # of its per-call cost, which matters at one call per episode.
    index = int(np.searchsorted(np.cumsum(scores), rng.random() * total, side="right"))
    return min(index, scores.size - 1)
