"""``student.proprio_exclude``: a student that does not read some proprio fields (the action it sent
last, against the copycat shortcut) ignores them in training, after loading, and once exported."""
import numpy as np
import pytest
import torch

from robots_ts.config import load_config
from robots_ts.policies.distill.config import StudentConfig
from robots_ts.policies.distill.dagger import distill
from robots_ts.policies.students.checkpoint import load_student
from robots_ts.policies.students.config import StudentNetConfig
from robots_ts.policies.students.networks import Student, proprio_fields
from tests.policies.test_dagger import TINY

FIELDS = proprio_fields("ee", ("goal_x", "goal_y", "goal_z"))      # Push's proprio: 26 columns


def test_proprio_fields_name_the_columns_the_env_writes():
    from robots_ts.config import EnvConfig
    from robots_ts.envs import make_batched_env

    env = make_batched_env(EnvConfig(task="Push", num_envs=2, obs_groups=["proprio"], num_threads=1), seed=0)
    try:
        obs = env.reset()
        action = np.array([[0.3, -0.2, 0.1, 1.0], [-0.4, 0.5, -0.6, -1.0]], dtype=np.float32)
        obs, *_ = env.step(action)
    finally:
        env.close()
    p = obs["proprio"]
    assert p.shape == (2, 26)
    np.testing.assert_allclose(p[:, FIELDS["prev_action"]], action, atol=1e-6)
    np.testing.assert_allclose(p[:, FIELDS["command"]], env.world.state.command, atol=1e-6)


def test_unknown_or_unlaid_fields_are_named():
    cfg = StudentNetConfig(encoder="points", proprio_exclude=["last_action"], point_mlp=[8], feature_dim=8)
    spec = {"proprio": [26], "points": [16, 3]}
    with pytest.raises(ValueError, match=r"unknown proprio field\(s\) \['last_action'\].*prev_action"):
        Student(cfg, spec, 4, proprio_fields=FIELDS)
    with pytest.raises(ValueError, match="needs the proprio layout"):
        Student(StudentNetConfig(encoder="points", proprio_exclude=["prev_action"]), spec, 4)
    with pytest.raises(ValueError, match="layout has 26 columns, the observation 23"):
        Student(StudentNetConfig(encoder="points", proprio_exclude=["prev_action"]), {**spec, "proprio": [23]}, 4,
                proprio_fields=FIELDS)


def test_a_distilled_student_ignores_excluded_fields_after_loading_and_export(tmp_path):
    from robots_ts.sim2real.export.exporter import export_run
    from robots_ts.sim2real.export.onnx_policy import OnnxPolicy

    run = tmp_path / "run"
    cfg = load_config(StudentConfig, "configs/student/reach_depth.yaml",
                      [*TINY, "dagger.iterations=1", "student.proprio_exclude=[prev_action]"])
    distill(cfg, run, progress=False)
    policy = load_student(run)
    fields = proprio_fields("ee", ())                                  # Reach has no command
    rng = np.random.default_rng(0)
    obs = {"proprio": rng.normal(size=(8, 23)).astype(np.float32),
           "depth": rng.uniform(0.5, 2.0, (8, 1, 16, 16)).astype(np.float32)}
    other_prev = dict(obs, proprio=obs["proprio"].copy())
    other_prev["proprio"][:, fields["prev_action"]] = rng.uniform(-1, 1, (8, 4))
    other_ee = dict(obs, proprio=obs["proprio"].copy())
    other_ee["proprio"][:, fields["ee_pos"]] += 0.1
    a = policy.act(obs)
    np.testing.assert_array_equal(policy.act(other_prev), a)
    assert np.abs(policy.act(other_ee) - a).max() > 1e-4
    # Nothing flows back into the excluded columns, so training cannot lean on them either.
    model = policy.model
    p = torch.tensor(obs["proprio"], requires_grad=True)
    mean, _, _ = model(p[:, None], torch.as_tensor(obs["depth"])[:, None])
    mean.sum().backward()
    assert torch.all(p.grad[:, fields["prev_action"]] == 0) and torch.any(p.grad[:, fields["ee_pos"]] != 0)
    exported = OnnxPolicy(export_run(run, "onnx", tmp_path / "export"))
    np.testing.assert_allclose(exported.act(other_prev), exported.act(obs), rtol=0, atol=1e-6)
    np.testing.assert_allclose(exported.act(obs), a, rtol=0, atol=1e-5)
