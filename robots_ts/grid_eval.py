"""Evaluation over the whole task-parameter space: success per grid cell, share mastered, heatmap.

A curriculum trains on its own distribution; this measures what a policy can do everywhere in
the space. Cells are the centres of an N-per-dimension grid over the task's bounds; each gets the
same number of episodes; a cell is mastered when its success rate reaches the threshold.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.evaluate import EVAL_TORCH_THREADS, torch_threads
from robots_ts.rollout import policy_env, run_episodes
from robots_ts.runs import atomic_write_json


def grid_cells(low: np.ndarray, high: np.ndarray, n: int) -> np.ndarray:
    """(n**d, d) cell centres, the last dimension varying fastest."""
    if n < 1:
        raise ValueError(f"--param-grid must be >= 1, got {n}")
    axes = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in zip(low, high)]
    return np.array(list(itertools.product(*axes)))


def rollout_on_params(policy, env_cfg: EnvConfig, params: np.ndarray, seed: int = 0, num_envs: int = 16,
                      obs_groups=None, threads: int = EVAL_TORCH_THREADS) -> list[dict]:
    """One episode per row of ``params``, in batches of ``num_envs`` worlds, the policy on ``threads``
    torch threads; records in row order."""
    params = np.asarray(params, dtype=np.float64)
    n = max(1, min(num_envs, len(params)))
    env = policy_env(policy, env_cfg, n, seed=seed, obs_groups=obs_groups)
    records: list[dict] = []
    try:
        with torch_threads(threads):
            for start in range(0, len(params), n):
                batch = params[start:start + n]
                quota = (np.arange(n) < len(batch)).astype(np.int64)  # world i runs row i once
                episodes = run_episodes(env, policy.act, [policy], quota=quota, params=batch)
                by_world = {r.pop("world"): r for r in episodes}
                records.extend(by_world[i] for i in range(len(batch)))
    finally:
        env.close()
    return records


def cell_success(records: list[dict], cells: int, episodes_per_cell: int) -> np.ndarray:
    """Success rate per cell of rollout records ordered cell by cell, ``episodes_per_cell`` each."""
    return np.array([r["success"] for r in records], dtype=float).reshape(cells, episodes_per_cell).mean(axis=1)


def evaluate_grid(policy, env_cfg, n: int, episodes_per_cell: int = 4, seed: int = 0, num_envs: int = 16,
                  threshold: float = 0.75, out_dir: str | Path | None = None, param_space=None,
                  threads: int = EVAL_TORCH_THREADS) -> dict:
    """Success per cell of an ``n``-per-dimension grid over the task's parameters, the policy on
    ``threads`` torch threads (recorded as ``torch_threads``)."""
    from robots_ts.envs.world import resolve_task

    space = param_space or resolve_task(env_cfg.task).params.with_bounds(env_cfg.params)
    cells = grid_cells(space.low, space.high, n)
    params = np.repeat(cells, episodes_per_cell, axis=0)
    records = rollout_on_params(policy, env_cfg, params, seed=seed, num_envs=num_envs, threads=threads)
    cell_rate = cell_success(records, len(cells), episodes_per_cell)
    res = {"task": env_cfg.task, "param_names": list(space.names), "grid": n, "cells": len(cells),
           "episodes_per_cell": episodes_per_cell, "threshold": threshold,
           "mastered_fraction": float(np.mean(cell_rate >= threshold)),
           "success_rate": float(cell_rate.mean()),
           "cell_centres": cells.tolist(), "cell_success": cell_rate.tolist(), "torch_threads": threads}
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / f"grid_eval_{n}.json", res)
        res["heatmap"] = str(plot_grid(cells, cell_rate, space, n, out_dir / f"grid_eval_{n}.png", threshold))
    return res


def plot_grid(cells: np.ndarray, rate: np.ndarray, space, n: int, path: Path, threshold: float) -> Path:
    """Success over the first two parameters, averaged over the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = cells.shape[1]
    grid = rate.reshape((n,) * d)
    img = grid.mean(axis=tuple(range(2, d))) if d > 2 else (grid if d == 2 else grid[:, None])
    fig, ax = plt.subplots(figsize=(5, 4))
    extent = [space.low[1], space.high[1], space.low[0], space.high[0]] if d >= 2 else None
    im = ax.imshow(img, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto", extent=extent)
    ax.set_ylabel(space.names[0])
    if d >= 2:
        ax.set_xlabel(space.names[1])
    fig.colorbar(im, ax=ax, label="success rate")
    ax.set_title(f"mastered (>= {threshold:.0%}): {np.mean(rate >= threshold):.0%} of {len(rate)} cells")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
