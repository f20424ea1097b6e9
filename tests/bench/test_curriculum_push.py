"""``robots-ts bench curriculum-push``: the test grid, the common budget and the command lines
(cheap parts only; the benchmark itself trains six PPO runs)."""
from pathlib import Path

import numpy as np
import pytest

from robots_ts.bench.curriculum_push import (DEFAULT_CONFIG, cell_index, common_budget, evaluate_policy_on_grid,
                                             grid_rows, main, permutation_p_value, run_cpus, training_trials)
from robots_ts.config import load_config
from robots_ts.envs.params import ParamSpace
from robots_ts.policies.teacher.config import TeacherConfig

SPACE = ParamSpace(("half_size", "friction", "mass", "goal_distance"),
                   np.array([0.02, 0.3, 0.05, 0.08]), np.array([0.03, 1.2, 10.0, 0.14]))


def test_grid_rows_pair_cells_and_stay_in_bounds():
    cells, rows = grid_rows(SPACE, ("mass", "friction"), 3, 4, seed=0)
    assert cells.shape == (9, 2) and rows.shape == (36, 4)
    per_cell = rows.reshape(9, 4, 4)
    # Grid values come from the cell, the other parameters are the same episodes in every cell.
    np.testing.assert_allclose(per_cell[:, :, [2, 1]], np.repeat(cells[:, None], 4, axis=1))
    np.testing.assert_allclose(per_cell[:, :, [0, 3]], np.repeat(per_cell[:1, :, [0, 3]], 9, axis=0))
    assert np.all(rows >= SPACE.low) and np.all(rows <= SPACE.high)
    # Seeded: the same rows again.
    np.testing.assert_array_equal(rows, grid_rows(SPACE, ("mass", "friction"), 3, 4, seed=0)[1])


def test_cell_index_inverts_the_grid():
    _, rows = grid_rows(SPACE, ("mass", "friction"), 4, 2, seed=1)
    np.testing.assert_array_equal(cell_index(rows, SPACE, ("mass", "friction"), 4), np.repeat(np.arange(16), 2))
    edge = SPACE.high[None].copy()
    assert cell_index(edge, SPACE, ("mass", "friction"), 4)[0] == 15


def test_common_budget_is_the_largest_step_every_run_has():
    assert common_budget([{25024, 50016, 75008}, {25024, 50016}, {25024, 50016, 75008, 100000}]) == 50016
    assert common_budget([{25024}, set()]) is None
    assert common_budget([]) is None


def test_permutation_p_value_is_exact_and_one_sided():
    # Complete separation: only 1 of the C(6,3) = 20 splits (1 of C(10,5) = 252) is as extreme.
    assert permutation_p_value([0.3, 0.4, 0.5], [0.0, 0.1, 0.2]) == pytest.approx(1 / 20)
    assert permutation_p_value([5, 6, 7, 8, 9], [0, 1, 2, 3, 4]) == pytest.approx(1 / 252)
    # The other direction, and no difference at all, are no evidence.
    assert permutation_p_value([0.0, 0.1, 0.2], [0.3, 0.4, 0.5]) == 1.0
    assert permutation_p_value([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]) == 1.0
    # One high seed does not make a difference significant.
    assert permutation_p_value([0.84, 0.16, 0.05], [0.16, 0.05, 0.0]) > 0.1
    with pytest.raises(ValueError):
        permutation_p_value([], [1.0])


def test_training_runs_are_sweep_trials_that_run_all_at_once(tmp_path: Path):
    from robots_ts.scale.sweep import command_argv

    trials = training_trials(("random", "alp_gmm"), 2, 500_000, 2, ["ppo.n_epochs=5"])
    assert [t.name for t in trials] == ["random_s0", "random_s1", "alp_gmm_s0", "alp_gmm_s1"]
    t = trials[3]
    argv = command_argv("train-teacher", DEFAULT_CONFIG, t, tmp_path / t.name)
    assert "env.curriculum.name=alp_gmm" in argv and "env.num_threads=2" in argv and "ppo.n_epochs=5" in argv
    assert "total_steps=500000" in argv and "torch_threads=1" in argv
    assert argv[argv.index("--seed") + 1] == "1" and argv[argv.index("--run-dir") + 1] == str(tmp_path / "alp_gmm_s1")
    # Every run at once: whole CPUs each when there are enough, else a share of them.
    assert run_cpus(8, 4) == 2.0 and run_cpus(2, 14) == pytest.approx(1 / 7, abs=1e-4)


def test_config_has_constant_lr_and_a_mostly_unlearnable_mass_range():
    cfg = load_config(TeacherConfig, DEFAULT_CONFIG)
    assert cfg.ppo.lr_schedule == "constant"   # a stopped run equals a shorter run
    lo, hi = cfg.env.params["mass"]
    assert (hi - 12.0) / (hi - lo) >= 0.6      # most of the range is beyond the scripted push
    assert cfg.env.params["friction"][1] <= 0.8  # at or below the table's: friction = max(...) = 0.8


def test_heavy_cubes_of_the_config_stay_put_and_light_ones_are_pushed():
    """The region the benchmark calls unlearnable is physical: at the shortest goal distance
    (2 cm of travel into the goal disc), the scripted push moves a 2 kg cube there and neither an
    18 kg nor a 36 kg cube. (On the Panda it still moves an 11-14 kg cube now and then.)"""
    from dataclasses import replace

    from robots_ts.policies.scripted import ScriptedTeacher

    cfg = load_config(TeacherConfig, DEFAULT_CONFIG)
    env_cfg = replace(cfg.env, num_threads=1, curriculum=replace(cfg.env.curriculum, name="none"))
    episodes = 8
    goal = cfg.env.params["goal_distance"][0]
    rows = np.array([[0.0275, 0.8, m, goal] for m in (2.0, 18.0, cfg.env.params["mass"][1])
                     for _ in range(episodes)])
    success = evaluate_policy_on_grid(ScriptedTeacher(), env_cfg, rows, 3, episodes, seed=3, num_envs=24)
    assert success[0] >= 7 / 8, success
    assert success[1] == 0.0 and success[2] == 0.0, success


def test_bad_grid_params_are_rejected(tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        main(["--grid-params", "mass"])
    assert main(["--grid-params", "mass,colour", "--out-dir", str(tmp_path / "out")]) == 2
    assert "'colour' is not a parameter of Push" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
