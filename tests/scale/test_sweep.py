"""``robots-ts sweep``: 2 seeds x 2 learning rates as Ray Tune trials, each trial's run directory the
one the single-machine command writes (same config, same metrics, same checkpoints' statistics and
generator states); run again, the sweep restores its Tune experiment instead of training again."""
import json
from pathlib import Path

import pytest

from robots_ts.cli import main as cli
from robots_ts.scale.sweep import command_argv, parse_grid, plan_trials, run_sweep, table

CONFIG = "configs/teacher/reach.yaml"
TINY = ["env.num_envs=2", "env.episode_steps=8", "ppo.n_steps=16", "ppo.batch_size=32", "ppo.n_epochs=1",
        "ppo.net_arch=[16,16]", "eval_episodes=2", "eval_envs=2", "total_steps=64", "checkpoint_every=32",
        "eval_every=64"]
TIMING = {"wall_time", "steps_per_s"}


def plan():
    return plan_trials([0, 1], parse_grid(["ppo.learning_rate=0.001,0.0003"]), TINY, threads=1)


def metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def checkpoint_state(run: Path) -> dict:
    state = json.loads((run / "checkpoints" / "step_0000000064.state.json").read_text())
    state["callback"].pop("wall_time")
    return state


@pytest.fixture(scope="session")
def single_machine(tmp_path_factory) -> Path:
    """Every trial's command, run on this machine, one after the other."""
    root = tmp_path_factory.mktemp("single")
    for trial in plan():
        assert cli(command_argv("train-teacher", CONFIG, trial, root / trial.name)) == 0
    return root


def test_a_sweep_of_two_seeds_by_two_values_equals_the_single_machine_runs(cluster, single_machine, tmp_path, capsys):
    trials = plan()
    out = tmp_path / "sweep"
    summary = run_sweep("train-teacher", CONFIG, trials, out, cpus_per_run=0.5, verbose=0)
    assert [r["status"] for r in summary["trials"]] == ["done"] * 4
    assert json.loads((out / "sweep.json").read_text()) == summary
    seeds = {(r["grid"]["ppo.learning_rate"], r["seed"]) for r in summary["trials"]}
    assert seeds == {(lr, s) for lr in ("0.001", "0.0003") for s in (0, 1)}
    for row, trial in zip(summary["trials"], trials):
        mine, theirs = Path(row["run_dir"]), single_machine / trial.name
        assert mine == out / trial.name
        assert row["command"] == "robots-ts " + " ".join(command_argv("train-teacher", CONFIG, trial, mine))
        assert (mine / "config.yaml").read_text() == (theirs / "config.yaml").read_text()
        assert metrics(mine) == metrics(theirs)
        assert (mine / "checkpoints" / "latest.norm.json").read_text() == \
            (theirs / "checkpoints" / "latest.norm.json").read_text()
        assert checkpoint_state(mine) == checkpoint_state(theirs)
        assert row["metrics"]["eval_steps"] == 64 and row["metrics"]["steps"] == 64
    # Seeds differ, learning rates differ: four different runs.
    assert len({json.dumps(metrics(Path(r["run_dir"]))) for r in summary["trials"]}) == 4
    assert "ppo.learning_rate=0.001_s0" in table(summary)

    capsys.readouterr()
    again = run_sweep("train-teacher", CONFIG, trials, out, cpus_per_run=0.5, verbose=0)
    assert "restoring the interrupted Tune experiment" in capsys.readouterr().err
    assert [r["metrics"] for r in again["trials"]] == [r["metrics"] for r in summary["trials"]]
    # Other values into the same directories would resume runs that are not theirs: refused.
    other = plan_trials([0, 1], parse_grid(["ppo.learning_rate=0.001,0.0003"]), [*TINY, "ppo.n_epochs=2"], threads=1)
    with pytest.raises(ValueError, match="holds a run with other ppo.n_epochs"):
        run_sweep("train-teacher", CONFIG, other, out, cpus_per_run=0.5, verbose=0)


def test_a_bad_trial_config_stops_the_sweep_before_any_run(tmp_path):
    trials = plan_trials([0], parse_grid(["ppo.learning_rate=0.001,-1"]), TINY, threads=1)
    with pytest.raises(ValueError, match=r"sweep trial ppo.learning_rate=-1_s0: ppo.learning_rate: expected a posi"):
        run_sweep("train-teacher", CONFIG, trials, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_a_sweep_of_refinements_equals_the_single_machine_runs(cluster, tmp_path, capsys):
    """refine configs sweep too: each trial's run directory is the one ``robots-ts refine`` writes
    (its config as the run records it, with the base's env), and the sweep run again restores."""
    from robots_ts.scale.sweep import detect_command
    from tests.export.conftest import make_student_run

    config = "configs/residual/reach_depth.yaml"
    assert detect_command(config) == "refine"
    base = make_student_run(tmp_path / "base", "depth", 0, 11)
    tiny = [f"base={base}", "env.num_envs=2", "env.num_threads=1", "ppo.n_steps=16", "ppo.batch_size=32",
            "ppo.n_epochs=1", "ppo.net_arch=[16]", "eval_episodes=2", "eval_envs=2", "checkpoint_every=64",
            "eval_every=64", "warmup_steps=32", "torch_threads=1", "total_steps=64"]
    trials = plan_trials([0], parse_grid(["alpha=[0.05],[0.3]"]), tiny, threads=1)
    for trial in trials:
        assert cli(command_argv("refine", config, trial, tmp_path / "single" / trial.name)) == 0
    summary = run_sweep("refine", config, trials, tmp_path / "sweep", cpus_per_run=1, verbose=0)
    assert [r["status"] for r in summary["trials"]] == ["done"] * 2
    for row, trial in zip(summary["trials"], trials):
        mine, theirs = Path(row["run_dir"]), tmp_path / "single" / trial.name
        assert (mine / "config.yaml").read_text() == (theirs / "config.yaml").read_text()
        assert metrics(mine) == metrics(theirs)
        assert row["metrics"]["steps"] == 64 and row["metrics"]["eval_steps"] == 64
    assert metrics(Path(summary["trials"][0]["run_dir"])) != metrics(Path(summary["trials"][1]["run_dir"]))
    capsys.readouterr()
    again = run_sweep("refine", config, trials, tmp_path / "sweep", cpus_per_run=1, verbose=0)
    assert "restoring the interrupted Tune experiment" in capsys.readouterr().err
    assert [r["metrics"] for r in again["trials"]] == [r["metrics"] for r in summary["trials"]]
