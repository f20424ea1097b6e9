"""What ``bench kickstart`` reads from a run's learning curve: the steps to the target success, the
end against the teacher, and whether the student kept improving after its weight reached 0."""
import pytest

from robots_ts.bench.kickstart import main, run_result

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
