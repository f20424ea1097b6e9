"""Every bad input on the documented CLI exits with code 2 and one named line, without a traceback
and without creating or changing a run directory (issue 11)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robots_ts.bench.faults import TEACHER
from robots_ts.cli import main as cli
from robots_ts.policies.distill.dagger import _parse

REACH = "configs/teacher/reach.yaml"


def one_line_error(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"robots-ts {prog}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("t") / "teacher"
    assert cli(["train-teacher", REACH, "--run-dir", str(run), "--total-steps", "128", *TEACHER]) == 0
    return run


@pytest.mark.parametrize("args,named", [
    (["env.task=Stack"], "env.task: unknown task 'Stack'"),
    (["env.obs_groups=[proprio,rgb]"], "env.obs_groups: unknown observation group(s) ['rgb']"),
    (["env.num_envs=0"], "env.num_envs: expected an integer >= 1, got 0"),
    (["env.num_envs=-4"], "env.num_envs: expected an integer >= 1, got -4"),
    (["env.params.distance=[0.5,0.1]"], "env.params: parameter 'distance': low must be < high"),
    (["env.reward_scales.speed=1"], "env.reward_scales: unknown reward term(s) ['speed']"),
    (["env.control=torque"], "env.control: unknown control mode 'torque'"),
    (["--seed", "-1"], "seed: expected an integer >= 0, got -1"),
    (["ppo.batch_size=0"], "ppo.batch_size: expected a positive integer, got 0"),
    (["keep_checkpoints=0"], "keep_checkpoints: expected a positive integer, got 0"),
    (["keep_checkpoints=-1"], "keep_checkpoints: expected a positive integer, got -1"),
    (["env.control_hz=0"], "env.control_hz: expected a positive finite number, got 0"),
    (["--total-steps", "-5"], "total_steps: expected a positive integer, got -5"),
    (["env.curriculum.name=alp_gmmm"], "env.curriculum.name: unknown curriculum teacher 'alp_gmmm'"),
    (["env.ray_split=fast"], "env.ray_split: expected one of ['even', 'speed'], got 'fast'"),
    (["env.ray_actors=-2"], "env.ray_actors: expected a non-negative integer, got -2"),
])
def test_train_teacher_bad_config_is_one_named_line_and_no_run_dir(tmp_path, capsys, args, named):
    run = tmp_path / "run"
    assert cli(["train-teacher", REACH, "--run-dir", str(run), *args]) == 2
    assert named in one_line_error(capsys, "train-teacher")
    assert not run.exists()


def test_yaml_syntax_errors_are_named(tmp_path, capsys, teacher_run):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  task: [Reach\n")
    assert cli(["train-teacher", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert f"config file {bad} is not valid YAML at line" in one_line_error(capsys, "train-teacher")
    run = tmp_path / "copy"
    shutil.copytree(teacher_run, run)
    (run / "config.yaml").write_text("env: [\n")
    assert cli(["train-teacher", "--resume", str(run)]) == 2
    assert "config.yaml" in one_line_error(capsys, "train-teacher")
    assert cli(["evaluate", str(run), "--episodes", "2"]) == 2
    assert "config.yaml" in one_line_error(capsys, "evaluate")


def test_run_directory_state_is_checked_before_any_write(tmp_path, capsys, teacher_run):
    before = {p: p.read_bytes() for p in teacher_run.rglob("*") if p.is_file()}
    # A new run into an existing one.
    assert cli(["train-teacher", REACH, "--run-dir", str(teacher_run), *TEACHER]) == 2
    assert "already holds a run; use --resume" in one_line_error(capsys, "train-teacher")
    # A bad --total-steps on resume leaves config.yaml as it was (it used to write -5 into it).
    assert cli(["train-teacher", "--resume", str(teacher_run), "--total-steps", "-5"]) == 2
    assert "--total-steps: total_steps: expected a positive integer, got -5" in one_line_error(capsys, "train-teacher")
    assert {p: p.read_bytes() for p in teacher_run.rglob("*") if p.is_file()} == before
    # --resume of a missing directory, or of a student run.
    assert cli(["train-teacher", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in one_line_error(capsys, "train-teacher")
    from robots_ts.runs import write_run_meta

    write_run_meta(tmp_path / "student", "student")
    assert cli(["train-teacher", "--resume", str(tmp_path / "student")]) == 2
    assert "is a 'student' run, not a teacher run" in one_line_error(capsys, "train-teacher")
    assert cli(["train-teacher", "--resume", str(teacher_run), "ppo.n_epochs=3"]) == 2
    assert "only --total-steps may change" in one_line_error(capsys, "train-teacher")


def test_truncated_teacher_files_on_resume_are_named(tmp_path, capsys, teacher_run):
    for victim in ("checkpoints/latest.json", "checkpoints/step_0000000128.zip"):
        run = tmp_path / victim.replace("/", "_")
        shutil.copytree(teacher_run, run)
        path = run / victim
        path.write_bytes(path.read_bytes()[:20])
        assert cli(["train-teacher", "--resume", str(run), "--total-steps", "192"]) == 2
        assert str(path) in one_line_error(capsys, "train-teacher")


@pytest.mark.parametrize("args,named", [
    (["--episodes", "0"], "--episodes: expected an integer >= 1, got 0"),
    (["--param-grid", "0"], "--param-grid: expected an integer >= 1, got 0"),
    (["--num-envs", "0"], "--num-envs: expected an integer >= 1, got 0"),
    (["--threshold", "2"], "--threshold: expected a number in [0, 1], got 2.0"),
])
def test_evaluate_bad_arguments(capsys, teacher_run, args, named):
    with pytest.raises(SystemExit) as exc:
        cli(["evaluate", str(teacher_run), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_evaluate_bad_video_suffix_and_checkpoint(capsys, teacher_run):
    assert cli(["evaluate", str(teacher_run), "--video", "out.avi"]) == 2
    assert "--video: expected a .mp4 or .gif path" in one_line_error(capsys, "evaluate")
    assert cli(["evaluate", str(teacher_run), "--checkpoint", "step_9.zip"]) == 2
    assert "step_9.zip" in one_line_error(capsys, "evaluate")


def test_distill_accepts_overrides_after_options():
    args = _parse(["configs/student/reach_depth.yaml", "--seed", "1", "teacher=R", "--no-progress", "dagger.epochs=2"])
    assert args.seed == 1 and args.overrides == ["teacher=R", "dagger.epochs=2"] and args.no_progress
    with pytest.raises(SystemExit):
        _parse(["configs/student/reach_depth.yaml", "--seed", "1", "stray"])


def test_distill_bad_input_is_named(tmp_path, capsys, teacher_run):
    cfg = "configs/student/reach_points.yaml"
    assert cli(["distill", cfg, "teacher=scripted", "env.points.num_points=0", "--run-dir", str(tmp_path / "a")]) == 2
    assert "env.points.num_points: expected a positive integer, got 0" in one_line_error(capsys, "distill")
    assert cli(["distill", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in one_line_error(capsys, "distill")
    assert cli(["distill", "--resume", str(teacher_run)]) == 2
    assert "is a 'teacher' run, not a student run" in one_line_error(capsys, "distill")
    assert cli(["distill", cfg, "teacher=scripted", "--seed", "-2", "--run-dir", str(tmp_path / "b")]) == 2
    assert "seed: expected an integer >= 0, got -2" in one_line_error(capsys, "distill")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_corrupt_student_pointer_names_the_file(tmp_path, capsys):
    from robots_ts.runs import write_run_meta

    run = tmp_path / "student"
    write_run_meta(run, "student")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.json").write_text('{"name": "it')
    assert cli(["evaluate", str(run)]) == 2
    line = one_line_error(capsys, "evaluate")
    assert str(run / "checkpoints" / "latest.json") in line and "not valid JSON" in line


def test_real_entry_point_prints_no_traceback_unless_debug(tmp_path):
    cmd = [sys.executable, "-m", "robots_ts.cli", "train-teacher", REACH, "--run-dir", str(tmp_path / "r"),
           "ppo.batch_size=0"]
    env = {k: v for k, v in os.environ.items() if k != "ROBOTS_TS_DEBUG"}
    quiet = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip() == "robots-ts train-teacher: error: ppo.batch_size: expected a positive integer, got 0"
    loud = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, env=env)
    assert loud.returncode == 2 and "Traceback" in loud.stderr and "ConfigError" in loud.stderr
    via_env = subprocess.run(cmd, capture_output=True, text=True, env={**env, "ROBOTS_TS_DEBUG": "1"})
    assert "Traceback" in via_env.stderr
    assert not (tmp_path / "r").exists()


def test_student_checkpoint_from_another_version_is_named(tmp_path, capsys):
    """An env config key this version does not know (a checkpoint written by another version)."""
    import json

    from robots_ts.config import EnvConfig
    from robots_ts.policies.students.checkpoint import save_student
    from robots_ts.policies.students.config import StudentNetConfig
    from robots_ts.policies.students.networks import Student
    from robots_ts.runs import atomic_write_json, write_run_meta

    run = tmp_path / "student"
    write_run_meta(run, "student")
    model = Student(StudentNetConfig(encoder="depth"), {"proprio": [23], "depth": [1, 16, 16]}, 4)
    meta_path = save_student(model, run / "checkpoints" / "iter_0000", EnvConfig())
    meta = json.loads(Path(meta_path).read_text())
    meta["env"]["lighting"] = {}
    Path(meta_path).write_text(json.dumps(meta))
    atomic_write_json(run / "checkpoints" / "latest.json", {"name": "iter_0000", "iteration": 0})
    assert cli(["evaluate", str(run), "--episodes", "2"]) == 2
    line = one_line_error(capsys, "evaluate")
    assert "iter_0000.json" in line and "lighting" in line
