"""Teacher warm start (``init=RUN_DIR``): a new run starts from another teacher run's PPO weights and
observation statistics, refuses another observation spec or network by name, and records its
origin. The use it exists for: the Push teacher fine-tuned on PushPrecise."""
import json

import numpy as np
import pytest
import torch

from robots_ts.bench.faults import TEACHER
from robots_ts.cli import main as cli
from robots_ts.config import ConfigError, load_config
from robots_ts.policies.teacher.config import TeacherConfig
from robots_ts.policies.teacher.load import load_teacher
from robots_ts.policies.teacher.train import LivePolicy, build
from robots_ts.policies.teacher.warm_start import warm_start


@pytest.fixture(scope="module")
def push_teacher(tmp_path_factory):
    run = tmp_path_factory.mktemp("init") / "push"
    assert cli(["train-teacher", "configs/teacher/push.yaml", "--run-dir", str(run), "--total-steps", "128",
                *TEACHER]) == 0
    return run


def test_warm_start_copies_weights_and_observation_statistics(push_teacher, tmp_path):
    cfg = load_config(TeacherConfig, "configs/teacher/push_precise.yaml",
                      [*TEACHER, f"init={push_teacher}", "init_checkpoint=latest"])
    env, venv, model = build(cfg, tmp_path)
    try:
        fresh = {k: v.clone() for k, v in model.policy.state_dict().items()}
        line = warm_start(model, venv, cfg)
        assert str(push_teacher) in line and "step_" in line
        teacher = load_teacher(push_teacher, "latest")
        theirs = teacher.model.policy.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in model.policy.state_dict().items())
        assert not all(torch.equal(v, theirs[k]) for k, v in fresh.items())
        stats = json.loads(teacher.checkpoint.with_name(teacher.checkpoint.name[:-4] + ".norm.json").read_text())
        for k in ("proprio", "privileged"):
            np.testing.assert_array_equal(venv.obs_rms[k].mean, stats["obs"][k]["mean"])
            np.testing.assert_array_equal(venv.obs_rms[k].var, stats["obs"][k]["var"])
            assert venv.obs_rms[k].count == stats["obs"][k]["count"]
        assert venv.ret_rms.count < 1      # the return statistics start over: the rewards changed
        # The new run's policy acts as the Push teacher does on PushPrecise observations.
        obs = venv.venv.reset()
        np.testing.assert_allclose(LivePolicy(model, venv, cfg.env).act(obs), teacher.act(obs), atol=1e-6)
    finally:
        venv.close()


def test_cli_init_run_records_where_it_started(push_teacher, tmp_path, capsys):
    run = tmp_path / "precise"
    assert cli(["train-teacher", "configs/teacher/push_precise.yaml", f"init={push_teacher}", "--run-dir", str(run),
                "--total-steps", "64", *TEACHER]) == 0
    assert "warm start from" in capsys.readouterr().out
    assert json.loads((run / "run.json").read_text())["init"] == str(push_teacher.resolve())
    from robots_ts.config import load_run_config

    saved = load_run_config(TeacherConfig, run / "config.yaml")
    assert saved.init == str(push_teacher.resolve()) and saved.env.task == "PushPrecise"
    # A resume continues from its own checkpoint, whatever the init run became.
    assert cli(["train-teacher", "--resume", str(run), "--total-steps", "128"]) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 128


@pytest.mark.parametrize("config,extra,words", [
    ("configs/teacher/reach.yaml", [], ["observation spec", "'privileged': (22,)", "'privileged': (6,)"]),
    ("configs/teacher/push_precise.yaml", ["ppo.net_arch=[32]"], ["ppo.net_arch=[16, 16]", "ppo.net_arch=[32]"]),
    ("configs/teacher/push_precise.yaml", ["init=/nonexistent/run"], ["init:", "/nonexistent/run"]),
])
def test_mismatched_init_is_refused_by_name_before_any_file(push_teacher, tmp_path, capsys, config, extra, words):
    run = tmp_path / "refused"
    argv = ["train-teacher", config, f"init={push_teacher}", "--run-dir", str(run), "--total-steps", "64",
            *TEACHER, *extra]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not run.exists()


def test_refine_refuses_init():
    from robots_ts.policies.residual.config import ResidualConfig
    from robots_ts.policies.residual.train import validate

    with pytest.raises(ConfigError, match="init"):
        validate(load_config(ResidualConfig, None, ["init=/some/teacher"]))
