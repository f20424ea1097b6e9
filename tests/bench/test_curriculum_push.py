"""``robots-ts bench curriculum-push``: the test grid, the common budget and the command lines
(cheap parts only; the benchmark itself trains six PPO runs)."""
from pathlib import Path

import numpy as np
import pytest

from robots_ts.bench.curriculum_push import (DEFAULT_CONFIG, cell_index, common_budget, main, grid_rows,
                                             train_command)
from robots_ts.config import load_config
from robots_ts.envs.params import ParamSpace
from robots_ts.policies.teacher_config import TeacherConfig

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


def test_train_command_fresh_and_resume(tmp_path: Path):
    run = tmp_path / "alp_gmm_s1"
    cmd = train_command(DEFAULT_CONFIG, run, "alp_gmm", 1, 500_000, 2, ["ppo.n_epochs=5"])
    assert "env.curriculum.name=alp_gmm" in cmd and "env.num_threads=2" in cmd and "ppo.n_epochs=5" in cmd
    assert cmd[cmd.index("--seed") + 1] == "1" and cmd[cmd.index("--run-dir") + 1] == str(run)
    run.mkdir()
    (run / "config.yaml").write_text("")
    assert train_command(DEFAULT_CONFIG, run, "alp_gmm", 1, 500_000, 2, [])[-4:] == \
        ["--resume", str(run), "--total-steps", "500000"]


def test_config_has_constant_lr_and_an_unlearnable_mass_range():
    cfg = load_config(TeacherConfig, DEFAULT_CONFIG)
    assert cfg.ppo.lr_schedule == "constant"   # a stopped run equals a shorter run
    assert cfg.env.params["mass"][1] >= 8.0


def test_bad_grid_params_are_rejected(tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        main(["--grid-params", "mass"])
    assert main(["--grid-params", "mass,colour", "--out-dir", str(tmp_path / "out")]) == 2
    assert "'colour' is not a parameter of Push" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
