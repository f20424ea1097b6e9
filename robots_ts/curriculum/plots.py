"""Pictures of a curriculum: where the teacher sampled, the mixture it sampled from, ADR ranges.

All functions write a PNG through matplotlib's Agg canvas and return the path written.
They build ``matplotlib.figure.Figure`` objects directly instead of using pyplot, so they
need no display, leave the process's backend and pyplot state alone, and leak no figures.

* ``plot_samples(params_history, alp_history, path)``: left, the first two parameter
  dimensions as a scatter coloured by ALP (later episodes drawn on top); right, every
  parameter against episode index, coloured by ALP, to show the curriculum moving.
* ``plot_gmm(teacher, path)``: the teacher's current mixture as 2-sigma ellipses over the
  first two parameter dimensions (in the caller's units), each ellipse's opacity
  proportional to the component's learning progress, over the recent samples.
* ``plot_adr_ranges(teacher, path, names=None)``: one panel per parameter of an ADR teacher,
  its current range [lo, hi] as a band over episodes, with dashed lines at the limits and at
  nominal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

# Ellipse half-axes at 2 standard deviations cover ~86 % of a 2-D Gaussian's mass.
ELLIPSE_SIGMAS = 2.0


def _prepare_path(path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def plot_samples(params_history: Any, alp_history: Any, path: str | Path) -> Path:
    """Sampled parameters over time, coloured by ALP (see module docstring)."""
    params = np.asarray(params_history, dtype=np.float64)
    alp = np.asarray(alp_history, dtype=np.float64).reshape(-1)
    if params.ndim == 1:
        params = params[:, None]
    if params.ndim != 2 or params.shape[0] != alp.shape[0]:
        raise ValueError(
            f"plot_samples needs params of shape (n, d) and n ALP values; got params "
            f"{np.asarray(params_history).shape} and ALP {np.asarray(alp_history).shape}"
        )
    if params.shape[0] == 0:
        raise ValueError("plot_samples needs at least one sample; got an empty history")
    out = _prepare_path(path)
    episodes = np.arange(params.shape[0])
    vmax = float(alp.max()) if alp.max() > 0 else 1.0

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    ax_space, ax_time = fig.subplots(1, 2)
    if params.shape[1] >= 2:
        points = ax_space.scatter(
            params[:, 0], params[:, 1], c=alp, s=6, cmap="viridis", vmin=0.0, vmax=vmax
        )
        ax_space.set_xlabel("param 0")
        ax_space.set_ylabel("param 1")
        ax_space.set_title("samples (first two dims)")
    else:
        points = ax_space.scatter(
            episodes, params[:, 0], c=alp, s=6, cmap="viridis", vmin=0.0, vmax=vmax
        )
        ax_space.set_xlabel("episode")
        ax_space.set_ylabel("param 0")
        ax_space.set_title("samples")
    fig.colorbar(points, ax=ax_space, label="ALP")

    markers = "o^sDv<>p*h"
    for dim in range(params.shape[1]):
        ax_time.scatter(
            episodes,
            params[:, dim],
            c=alp,
            s=4,
            cmap="viridis",
            vmin=0.0,
            vmax=vmax,
            marker=markers[dim % len(markers)],
            label=f"param {dim}",
        )
    ax_time.set_xlabel("episode (oldest kept = 0)")
    ax_time.set_ylabel("parameter value")
    ax_time.set_title("parameters over time")
    if params.shape[1] > 1:
        ax_time.legend(loc="upper right", fontsize="small", markerscale=2)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def _ellipse(mean: np.ndarray, cov: np.ndarray, alpha: float) -> Ellipse:
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals = np.maximum(eigvals, 0.0)
    # eigh sorts ascending: the last eigenvector is the major axis.
    angle = float(np.degrees(np.arctan2(eigvecs[1, -1], eigvecs[0, -1])))
    width, height = 2.0 * ELLIPSE_SIGMAS * np.sqrt(eigvals[::-1])
    return Ellipse(
        xy=(float(mean[0]), float(mean[1])),
        width=float(width),
        height=float(height),
        angle=angle,
        facecolor="tab:red",
        edgecolor="black",
        alpha=alpha,
    )


def plot_gmm(teacher: Any, path: str | Path) -> Path:
    """Draw ``teacher.gmm`` over its first two parameter dimensions (see module docstring).

    Works with any teacher exposing ``gmm`` (a ``GmmComponents`` over unit-scaled params),
    ``component_progress()``, ``params_history``, ``low``/``high`` and ``dim``: ALP-GMM and
    Covar-GMM both do.
    """
    gmm = getattr(teacher, "gmm", None)
    if gmm is None:
        raise ValueError(
            f"plot_gmm: teacher {getattr(teacher, 'name', teacher)!r} has no fitted GMM yet "
            f"(it fits after its bootstrap episodes)"
        )
    if teacher.dim < 2:
        raise ValueError(f"plot_gmm draws two parameter dims; teacher has {teacher.dim}")
    out = _prepare_path(path)
    low, span = teacher.low[:2], (teacher.high - teacher.low)[:2]
    progress = np.asarray(teacher.component_progress(), dtype=np.float64)
    top = float(progress.max()) if progress.size and progress.max() > 0 else 1.0

    fig = Figure(figsize=(6, 6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    samples = np.asarray(teacher.params_history)
    if samples.size:
        ax.scatter(samples[:, 0], samples[:, 1], s=3, c="tab:blue", alpha=0.3, label="samples")
    for k in range(gmm.n_components):
        # Unit space -> caller's units: scale mean and covariance by the box size.
        mean = low + gmm.means[k, :2] * span
        cov = gmm.covariances[k, :2, :2] * np.outer(span, span)
        alpha = 0.05 + 0.75 * float(progress[k]) / top
        ax.add_patch(_ellipse(mean, cov, alpha))
        ax.annotate(f"{progress[k]:.3g}", xy=(float(mean[0]), float(mean[1])), fontsize=7)
    ax.set_xlim(teacher.low[0], teacher.high[0])
    ax.set_ylim(teacher.low[1], teacher.high[1])
    ax.set_xlabel("param 0")
    ax.set_ylabel("param 1")
    ax.set_title(
        f"{getattr(teacher, 'name', 'teacher')}: {gmm.n_components} components "
        f"(opacity ~ progress), episode {getattr(teacher, 'episodes', '?')}"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def plot_adr_ranges(teacher: Any, path: str | Path, names: Any = None) -> Path:
    """Draw an ADR teacher's range history, one panel per parameter (see module docstring).

    Works with any teacher exposing ``range_history`` (episodes, lo, hi), ``nominal``,
    ``low``/``high``, ``dim`` and ``episodes``, as ``AdrTeacher`` does. ``names`` labels the
    panels (one per parameter); the default is "param i".
    """
    history = getattr(teacher, "range_history", None)
    if history is None:
        raise ValueError(
            f"plot_adr_ranges: teacher {getattr(teacher, 'name', teacher)!r} keeps no range "
            f"history (only the ADR teacher does)"
        )
    labels = [f"param {d}" for d in range(teacher.dim)] if names is None else list(names)
    if len(labels) != teacher.dim:
        raise ValueError(
            f"plot_adr_ranges needs one name per parameter ({teacher.dim}); got {len(labels)}"
        )
    out = _prepare_path(path)
    episodes, lo, hi = history
    # Ranges hold until the next change: extend the last one to the current episode count.
    end = max(int(teacher.episodes), int(episodes[-1]), 1)
    x = np.append(episodes, end)
    lo = np.vstack([lo, lo[-1:]])
    hi = np.vstack([hi, hi[-1:]])

    fig = Figure(figsize=(7, 1.0 + 1.8 * teacher.dim))
    FigureCanvasAgg(fig)
    axes = fig.subplots(teacher.dim, 1, sharex=True, squeeze=False)[:, 0]
    for d, ax in enumerate(axes):
        ax.fill_between(x, lo[:, d], hi[:, d], step="post", color="tab:blue", alpha=0.35,
                        label="range")
        ax.step(x, lo[:, d], where="post", color="tab:blue", linewidth=1.0)
        ax.step(x, hi[:, d], where="post", color="tab:blue", linewidth=1.0)
        ax.axhline(teacher.low[d], color="grey", linestyle="--", linewidth=1.0, label="limits")
        ax.axhline(teacher.high[d], color="grey", linestyle="--", linewidth=1.0)
        ax.axhline(teacher.nominal[d], color="tab:orange", linestyle="--", linewidth=1.0,
                   label="nominal")
        margin = 0.05 * (teacher.high[d] - teacher.low[d])
        ax.set_ylim(teacher.low[d] - margin, teacher.high[d] + margin)
        ax.set_xlim(0, end)
        ax.set_ylabel(labels[d])
    axes[0].legend(loc="best", fontsize="small", ncol=3)
    axes[0].set_title(
        f"{getattr(teacher, 'name', 'teacher')}: ranges over episodes "
        f"(episode {getattr(teacher, 'episodes', '?')})"
    )
    axes[-1].set_xlabel("episode")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out
