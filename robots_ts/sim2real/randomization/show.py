"""``robots-ts randomization show CONFIG``: what a randomization does to one scene, as a PNG.

The first column is the nominal world (no randomization at all); the others are the same scene
(same seed: the task's draws come first in each world's generator) under the randomization: its
per-episode draws (camera pose, physics) and successive draws of the sensor models. Depth images
on the top row (lost pixels black), point clouds seen from above on the bottom row.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def show(randomization: str, out: Path, task: str = "Push", draws: int = 4, seed: int = 0,
         backend: str = "mujoco") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robots_ts.config import EnvConfig, load_config
    from robots_ts.envs.vec_env import BatchedEnv

    value = randomization if randomization.startswith("@") else "@" + randomization
    base = [f"task={task}", f"backend={backend}", "num_envs=1", "obs_groups=[proprio,depth,points]"]
    cfg = load_config(EnvConfig, None, base + [f"randomization={value}"])
    nominal = BatchedEnv(load_config(EnvConfig, None, base), seed=seed)
    env = BatchedEnv(cfg, seed=seed)
    try:
        clean = nominal.reset()
        env.reset()
        w = env.world
        noisy = [w._sensed(w._clean_obs()) for _ in range(draws)]
    finally:
        env.close()
        nominal.close()
    fig, axes = plt.subplots(2, draws + 1, figsize=(2.6 * (draws + 1), 5.4))
    c = cfg.depth
    for j, obs in enumerate([clean] + noisy):
        d = np.ma.masked_equal(obs["depth"][0, 0], 0.0)
        cmap = plt.get_cmap("viridis").copy()
        cmap.set_bad("black")
        axes[0, j].imshow(d, cmap=cmap, vmin=c.near, vmax=min(c.far, 2.0))
        axes[0, j].set_title("nominal" if j == 0 else f"draw {j}", fontsize=9)
        p = obs["points"][0]
        axes[1, j].scatter(p[:, 0], p[:, 1], s=1, c=p[:, 2], cmap="viridis")
        axes[1, j].set_aspect("equal")
        axes[1, j].set_xlim(cfg.points.crop_low[0], cfg.points.crop_high[0])
        axes[1, j].set_ylim(cfg.points.crop_low[1], cfg.points.crop_high[1])
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{task}: {randomization} (depth: lost pixels black; points: top view)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts randomization", description=__doc__)
    sub = ap.add_subparsers(dest="action", required=True)
    s = sub.add_parser("show", help="render clean and randomized depth images and point clouds to a PNG")
    s.add_argument("config", help="a randomization YAML, e.g. configs/randomization/default.yaml")
    s.add_argument("--out", default="randomization.png")
    s.add_argument("--task", default="Push")
    s.add_argument("--backend", default="mujoco", choices=["mujoco", "pybullet"])
    s.add_argument("--draws", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    path = show(args.config, Path(args.out), args.task, args.draws, args.seed, args.backend)
    print(path)
    return 0
