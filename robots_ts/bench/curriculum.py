"""Curriculum teachers on the paper's toy problem: cells mastered, and teacher cost per episode.

    python -m robots_ts.bench.curriculum --json --seeds 5 --episodes 20000

Each teacher runs ``episodes`` episodes on a fresh ``CellGridToy`` per seed (10x10 cells over
[0,1]^2, a fraction of them unlearnable; see ``robots_ts.curriculum.toy``). For seed s the
teacher and the toy are both seeded with s, so every teacher faces the same unlearnable cells
and the comparison is paired. Reported per teacher:

* ``cells_mastered``: mean, std, min, max and per-seed counts at the episode budget;
* ``ms_per_episode``: wall time inside ``sample()`` + ``update()`` per episode, GMM refits
  included (the toy's own time is excluded), averaged over the run;
* ``mastered_curve_mean``: mean cells mastered after every 1000 episodes.

``comparison`` states the acceptance checks: ALP-GMM masters more cells than Random on
average, and ALP-GMM costs < 1 ms per episode averaged over >= 20,000 episodes (``null`` when
the run was shorter, because a short run under-weights the refits). Its cost is also given as
a ratio to Random's, measured in the same process.

Runs are sequential on purpose: parallel runs on a small machine would contend for cores
and inflate exactly the cost being measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from robots_ts.curriculum import TEACHERS, make_teacher
from robots_ts.curriculum.toy import CellGridToy, run_toy_curriculum

DEFAULT_TEACHERS = ("random", "alp_gmm", "covar_gmm")
COST_BUDGET_MS = 1.0
COST_MIN_EPISODES = 20_000
SCORE_EVERY = 1000


def _summary(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "per_seed": arr.tolist(),
    }


def run(
    seeds: int = 5,
    episodes: int = 20_000,
    teachers: Sequence[str] = DEFAULT_TEACHERS,
    json_out: bool = True,
    *,
    unlearnable_fraction: float = 0.2,
    cells_per_dim: int = 10,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every teacher on ``seeds`` toys for ``episodes`` episodes and summarise.

    With ``json_out`` the result holds only JSON-native values; without it the per-seed
    learning curves are kept as one ``(seeds, episodes // 1000)`` numpy array per teacher.
    """
    if seeds < 1 or episodes < 1:
        raise ValueError(f"seeds and episodes must be >= 1; got seeds={seeds}, episodes={episodes}")
    unknown = [name for name in teachers if name not in TEACHERS]
    if unknown or not teachers:
        raise ValueError(
            f"unknown teachers {unknown}; valid names: {', '.join(sorted(TEACHERS))}"
        )
    toy_config = {"cells_per_dim": cells_per_dim, "unlearnable_fraction": unlearnable_fraction}
    started = time.perf_counter()
    toys = [CellGridToy(seed=seed, **toy_config) for seed in range(seeds)]
    results: dict[str, Any] = {}
    for name in teachers:
        mastered, costs, curves = [], [], []
        name_started = time.perf_counter()
        for seed in range(seeds):
            # A fresh toy per run: the student's competence must start from zero.
            toy = CellGridToy(seed=seed, **toy_config)
            teacher = make_teacher(name, toy.low, toy.high, seed=seed)
            outcome = run_toy_curriculum(teacher, toy, episodes, score_every=SCORE_EVERY)
            mastered.append(outcome.cells_mastered)
            costs.append(outcome.ms_per_episode)
            curves.append(outcome.mastered_curve)
            if progress is not None:
                progress(
                    f"{name} seed {seed}: {outcome.cells_mastered}/{toy.reachable_cells} "
                    f"reachable cells mastered, {outcome.ms_per_episode:.3f} ms/episode"
                )
        curve_matrix = np.stack(curves) if curves[0].size else np.zeros((seeds, 0))
        results[name] = {
            "cells_mastered": _summary(mastered),
            "ms_per_episode": _summary(costs),
            "mastered_curve_mean": curve_matrix.mean(axis=0).tolist(),
            "wall_s": round(time.perf_counter() - name_started, 2),
        }
        if not json_out:
            results[name]["mastered_curves"] = curve_matrix

    report: dict[str, Any] = {
        "benchmark": "curriculum_toy",
        "command": (
            f"python -m robots_ts.bench.curriculum --json --seeds {seeds} --episodes {episodes}"
            f" --teachers {','.join(teachers)} --unlearnable-fraction {unlearnable_fraction}"
        ),
        "episodes": episodes,
        "seeds": list(range(seeds)),
        "toy": {
            "cells": toys[0].n_cells,
            "cells_per_dim": cells_per_dim,
            "unlearnable_fraction": unlearnable_fraction,
            "mastery_threshold": toys[0].mastery_threshold,
            "max_competence": toys[0].max_competence,
            "reachable_cells_per_seed": [toy.reachable_cells for toy in toys],
        },
        "teachers": results,
        "comparison": _comparison(results, episodes),
        "wall_s": round(time.perf_counter() - started, 2),
    }
    return report


def _comparison(results: dict[str, Any], episodes: int) -> dict[str, Any]:
    if "alp_gmm" not in results or "random" not in results:
        return {}
    alp, rnd = results["alp_gmm"], results["random"]
    alp_cells, rnd_cells = alp["cells_mastered"]["mean"], rnd["cells_mastered"]["mean"]
    alp_ms, rnd_ms = alp["ms_per_episode"]["mean"], rnd["ms_per_episode"]["mean"]
    cost_measured = episodes >= COST_MIN_EPISODES
    return {
        "alp_gmm_minus_random_cells": alp_cells - rnd_cells,
        "alp_gmm_over_random_cells": alp_cells / rnd_cells if rnd_cells else None,
        "alp_gmm_ms_per_episode": alp_ms,
        "alp_gmm_cost_over_random": alp_ms / rnd_ms if rnd_ms else None,
        "alp_gmm_beats_random": alp_cells > rnd_cells,
        "alp_gmm_under_1ms_per_episode": (alp_ms < COST_BUDGET_MS) if cost_measured else None,
    }


def _print_table(report: dict[str, Any], out: Any) -> None:
    print(f"curriculum toy: {report['episodes']} episodes x {len(report['seeds'])} seeds", file=out)
    print(f"{'teacher':<10} {'cells mastered (mean +- std, min..max)':<40} ms/episode", file=out)
    for name, row in report["teachers"].items():
        c, m = row["cells_mastered"], row["ms_per_episode"]
        cells = f"{c['mean']:.1f} +- {c['std']:.1f}  ({c['min']:.0f}..{c['max']:.0f})"
        print(f"{name:<10} {cells:<40} {m['mean']:.3f}", file=out)
    for key, value in report["comparison"].items():
        print(f"{key}: {value}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robots_ts.bench.curriculum",
        description="Curriculum teachers on the toy cell grid: cells mastered and cost.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per teacher (default 5)")
    parser.add_argument(
        "--episodes", type=int, default=20_000, help="episodes per run (default 20000)"
    )
    parser.add_argument(
        "--teachers",
        default=",".join(DEFAULT_TEACHERS),
        help=f"comma-separated teacher names (default {','.join(DEFAULT_TEACHERS)})",
    )
    parser.add_argument(
        "--unlearnable-fraction",
        type=float,
        default=0.2,
        help="share of toy cells that can never be learned (default 0.2)",
    )
    args = parser.parse_args(argv)
    teachers = tuple(name.strip() for name in args.teachers.split(",") if name.strip())
    try:
        report = run(
            seeds=args.seeds,
            episodes=args.episodes,
            teachers=teachers,
            unlearnable_fraction=args.unlearnable_fraction,
            # Progress goes to stderr so stdout stays pure JSON with --json.
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except ValueError as err:
        parser.error(str(err))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
