"""What ``bench kickstart`` reads from a run's learning curve: the steps to the target success, the
end against the teacher, and whether the student kept improving after its weight reached 0."""
import json

import numpy as np
import pytest

from robots_ts.bench.faults import TEACHER
from robots_ts.bench.kickstart import held_out_success, main, plot, run_result
from robots_ts.cli import main as cli

CURVE = [(100_000, 0.2), (200_000, 0.55), (300_000, 0.74), (400_000, 0.8), (500_000, 0.78), (600_000, 0.93)]


def test_steps_to_target_is_the_first_evaluation_at_or_above_it():
    res = run_result(CURVE, target=0.74, teacher=0.92, zero_step=None)
    assert res["steps_to_target"] == 300_000            # reaching the target exactly counts
    assert res["final_success"] == 0.93 and res["final_steps"] == 600_000
    assert res["at_or_above_teacher"] is True
    assert "success_when_weight_reached_0" not in res   # the scratch arm has no weight


def test_a_run_that_never_reaches_the_target_says_so():
    res = run_result(CURVE[:2], target=0.74, teacher=0.92, zero_step=None)
    assert res["steps_to_target"] is None and res["at_or_above_teacher"] is False
    empty = run_result([], target=0.74, teacher=0.92, zero_step=None)
    assert empty["steps_to_target"] is None and empty["final_success"] is None


@pytest.mark.parametrize("zero_step, at_zero, improved", [(400_000, 0.8, True), (600_000, 0.93, False),
                                                          (700_000, None, False)])
def test_improvement_after_the_weight_reaches_zero(zero_step, at_zero, improved):
    res = run_result(CURVE, target=0.74, teacher=0.92, zero_step=zero_step)
    assert res["success_when_weight_reached_0"] == at_zero
    assert res["improved_after_weight_0"] is improved


def test_cli_refuses_repeated_seeds_and_teacher_overrides(capsys):
    with pytest.raises(SystemExit):
        main(["--teacher", "runs/x", "--seeds", "0", "0"])
    assert "--seeds must be distinct" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--teacher", "runs/x", "kickstart.teachers=[runs/y]"])
    assert "use --teacher" in capsys.readouterr().err


def test_held_out_success_is_what_evaluate_reports_for_the_last_checkpoint(tmp_path, capsys):
    run = tmp_path / "student"
    assert cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run), "--total-steps", "128",
                *TEACHER]) == 0
    capsys.readouterr()
    held = held_out_success(run, episodes=12, seed=77)
    assert cli(["evaluate", str(run), "--checkpoint", "latest", "--episodes", "12", "--seed", "77", "--json"]) == 0
    assert held["success_rate"] == json.loads(capsys.readouterr().out)["success_rate"]
    assert held["step"] == json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    # Cached for that step; a run trained further is evaluated again.
    cache = run / "heldout_latest_12ep_seed77.json"
    cache.write_text(json.dumps({**held, "success_rate": -1.0}))
    assert held_out_success(run, episodes=12, seed=77)["success_rate"] == -1.0
    assert cli(["train-teacher", "--resume", str(run), "--total-steps", "256"]) == 0
    again = held_out_success(run, episodes=12, seed=77)
    assert again["step"] >= 256 and again["success_rate"] >= 0.0


def test_plot_draws_every_run(tmp_path):
    from PIL import Image

    res = {"seeds": [0, 1], "task": "Push", "target_fraction": 0.8, "target_success": 0.748,
           "teacher": {"success_rate": 0.935}, "kickstart": {"decay_steps": 300_000},
           "eval_episodes_during_training": 64,
           "per_run": {f"{arm}_s{s}": {"arm": arm, "seed": s, "curve": CURVE} for arm in ("kickstart", "scratch")
                       for s in (0, 1)}}
    res["per_run"]["scratch_s1"]["curve"] = []     # a run that recorded no evaluation yet
    path = plot(res, tmp_path / "kickstart.png")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape == (420, 750, 3)

    def pixels(rgb):      # pixels drawn in a colour (matplotlib's tab: colours)
        return int((np.abs(img - np.asarray(rgb)).sum(axis=2) < 30).sum())

    assert pixels((255, 127, 14)) > 150 and pixels((31, 119, 180)) > 100   # kickstart and scratch curves
