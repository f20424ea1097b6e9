"""CLI surface and whole-space evaluation on the scripted oracle (no training needed)."""
import json

import numpy as np
import pytest

from robots_ts.cli import main as cli
from robots_ts.config import EnvConfig
from robots_ts.envs.world import resolve_task
from robots_ts.grid_eval import evaluate_grid, grid_cells, rollout_on_params
from robots_ts.policies.scripted import ScriptedTeacher
from robots_ts.runs import write_run_meta


def test_grid_cells_cover_the_space():
    cells = grid_cells(np.array([0.0, 10.0]), np.array([1.0, 20.0]), 2)
    np.testing.assert_allclose(cells, [[0.25, 12.5], [0.25, 17.5], [0.75, 12.5], [0.75, 17.5]])
    with pytest.raises(ValueError, match="param-grid"):
        grid_cells(np.zeros(1), np.ones(1), 0)


def test_grid_evaluation_finds_the_unreachable_region(tmp_path):
    """Widen Reach's distance bound past the arm's reach: far cells fail, near cells succeed."""
    cfg = EnvConfig(task="Reach", params={"distance": [0.35, 1.1]})
    res = evaluate_grid(ScriptedTeacher(), cfg, n=2, episodes_per_cell=2, seed=0, num_envs=8, out_dir=tmp_path)
    names = res["param_names"]
    rate = np.array(res["cell_success"])
    centres = np.array(res["cell_centres"])
    near = centres[:, names.index("distance")] < 0.7
    assert rate[near].min() == 1.0 and rate[~near].max() == 0.0
    assert res["mastered_fraction"] == pytest.approx(0.5) and res["torch_threads"] == 1
    assert (tmp_path / "grid_eval_2.png").stat().st_size > 0
    assert json.loads((tmp_path / "grid_eval_2.json").read_text())["cells"] == 8


def test_cli_reports_unknown_command_and_missing_run(tmp_path, capsys):
    assert cli(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert cli(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "nothing does not exist" in capsys.readouterr().err
    write_run_meta(tmp_path / "other", "bogus")
    assert cli(["evaluate", str(tmp_path / "other")]) == 2
    assert "unknown run kind 'bogus'; expected one of ['finetune', 'residual', 'student', 'teacher']" in capsys.readouterr().err
    assert cli(["bench", "nope"]) == 2


@pytest.mark.parametrize("task", ["Reach", "Push", "Lift"])
def test_every_tasks_parameters_reach_its_worlds(task):
    """Rows of the task's parameter space run in row order, each on the parameters it asked for
    (three rows on two worlds: the second batch leaves a world idle)."""
    space = resolve_task(task).params
    rows = np.stack([space.low + f * (space.high - space.low) for f in (0.1, 0.5, 0.9)])
    records = rollout_on_params(ScriptedTeacher(), EnvConfig(task=task, num_threads=1, episode_steps=3), rows,
                                num_envs=2)
    np.testing.assert_allclose([r["params"] for r in records], rows)
    assert all(1 <= r["length"] <= 3 for r in records)
