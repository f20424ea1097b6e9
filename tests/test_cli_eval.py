"""CLI surface and whole-space evaluation on the scripted oracle (no training needed)."""
import json

import numpy as np
import pytest

from robots_ts.cli import main as cli
from robots_ts.config import EnvConfig
from robots_ts.envs.world import resolve_task
from robots_ts.grid_eval import evaluate_grid, grid_cells
from robots_ts.policies.scripted import ScriptedTeacher


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
    assert res["mastered_fraction"] == pytest.approx(0.5)
    assert (tmp_path / "grid_eval_2.png").stat().st_size > 0
    assert json.loads((tmp_path / "grid_eval_2.json").read_text())["cells"] == 8


def test_cli_reports_unknown_command_and_missing_run(tmp_path, capsys):
    assert cli(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert cli(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert cli(["bench", "nope"]) == 2


def test_task_registry_parameter_spaces_are_valid():
    for name in ("Reach", "Push", "Lift"):
        space = resolve_task(name).params
        assert space.dim == len(space.names) and np.all(space.low < space.high)
