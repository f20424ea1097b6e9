"""Students that read the ``history`` group (the last actions they sent, newest first): the network
takes it beside proprio, distillation stores and trains on it, checkpoints load and evaluate with
it, multi-task and refined (residual, finetune) students carry it; a student without it is the one
it always was."""
import json

import numpy as np
import pytest
import torch

from robots_ts.config import DepthConfig, EnvConfig, load_config
from robots_ts.evaluate import rollout_policy
from robots_ts.policies.distill.config import StudentConfig
from robots_ts.policies.distill.dagger import distill
from robots_ts.policies.distill.dataset import ChunkDataset
from robots_ts.policies.students.checkpoint import StudentPolicy, load_student
from robots_ts.policies.students.config import StudentNetConfig
from robots_ts.policies.students.networks import Student
from robots_ts.policies.residual.env import BASE_ACTION
from robots_ts.policies.residual.policy import RefinedPolicy
from tests.export.conftest import make_student_run
from tests.policies.test_dagger import TINY_NET
from tests.policies.test_residual import setup

SMALL = dict(cnn_channels=[4, 8], cnn_kernels=[3, 3], cnn_strides=[2, 2], point_mlp=[16, 32], feature_dim=16,
             proprio_mlp=[16], head_mlp=[32])
DEPTH_SPEC = {"proprio": [23], "depth": [1, 16, 16]}
POINTS_SPEC = {"proprio": [23], "points": [64, 3]}
# A distillation of a depth student reading its last 3 actions, labelled by the task's oracle.
TINY = ["teacher=scripted", "env.obs_groups=[proprio,depth,history]", "env.action_history=3", "env.num_envs=4",
        "env.episode_steps=8", "env.depth.width=16", "env.depth.height=16", "env.num_threads=1", "torch_threads=1",
        "dagger.steps_per_iteration=12", "dagger.chunk_steps=6", "dagger.eval_episodes=4", "dagger.batch_size=32",
        "dagger.epochs=1", "dagger.final_epochs=0", "dagger.train_samples=0", "augment.depth_noise=0",
        "student.aux_weight=0", "student.aux_indices=[]", *TINY_NET]


def batch(n, spec, seed=0):
    rng = np.random.default_rng(seed)
    out = {"proprio": rng.normal(size=(n, 23)).astype(np.float32)}
    if "depth" in spec:
        out["depth"] = rng.uniform(0.1, 2.5, (n, *spec["depth"])).astype(np.float32)
    else:
        out["points"] = rng.uniform(-0.5, 0.8, (n, *spec["points"])).astype(np.float32)
    for g in ("task", "history"):
        if g in spec:
            out[g] = rng.uniform(-1, 1, (n, *spec[g])).astype(np.float32)
    return out


# Recorded with the code before students could read `history` (torch 2.13, CPU): parameter counts and
# outputs of seed-0 students, so that anything history adds to a student without it shows here.
BEFORE = {"depth": (3976, [0.0016500912606716156, 0.18123000860214233, -0.03746567666530609, -0.2429829239845276],
                    -0.6147420406341553),
          "points": (2952, [-0.10292976349592209, 0.03625714033842087, 0.2086760401725769, 0.004254564642906189],
                     1.0330371856689453)}


@pytest.mark.parametrize("encoder,gru", [("depth", 0), ("points", 8)])
def test_a_student_without_history_is_unchanged(encoder, gru):
    spec = DEPTH_SPEC if encoder == "depth" else POINTS_SPEC
    torch.manual_seed(0)
    m = Student(StudentNetConfig(encoder=encoder, gru_hidden=gru, **SMALL), spec, 4)
    count, first, total = BEFORE[encoder]
    assert sum(p.numel() for p in m.parameters()) == count
    assert m.obs_groups == ("proprio", encoder) and m.proprio[0].in_features == 23
    rng = np.random.default_rng(0)
    p = torch.as_tensor(rng.normal(size=(2, 3, 23)).astype(np.float32))
    s = rng.uniform(0.1, 2.5, (2, 3, 1, 16, 16)) if encoder == "depth" else rng.uniform(-0.5, 0.8, (2, 3, 64, 3))
    with torch.no_grad():
        out = m(p, torch.as_tensor(s.astype(np.float32)))[0]
    np.testing.assert_allclose(out[0, 0].numpy(), first, rtol=0, atol=1e-6)
    assert float(out.sum()) == pytest.approx(total, abs=1e-5)


def test_history_joins_proprio_after_task_and_is_required():
    spec = {**DEPTH_SPEC, "task": [5], "history": [12]}
    torch.manual_seed(0)
    m = Student(StudentNetConfig(gru_hidden=8, **SMALL), spec, 4)
    torch.manual_seed(0)
    plain = Student(StudentNetConfig(gru_hidden=8, **SMALL), DEPTH_SPEC, 4)
    assert m.obs_groups == ("proprio", "depth", "task", "history") and m.extra_groups == ("task", "history")
    # The only parameter that differs in shape is the proprio MLP's input layer.
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    plain_shapes = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert {k for k in shapes if shapes[k] != plain_shapes[k]} == {"proprio.0.weight"}
    assert shapes["proprio.0.weight"] == (16, 23 + 5 + 12)
    policy = StudentPolicy(m, EnvConfig(obs_groups=["proprio", "depth", "history"], action_history=3,
                                        depth=DepthConfig(width=16, height=16)))
    assert policy.env_cfg.obs_groups == ["proprio", "depth", "history"]
    obs = batch(6, spec)
    a = policy.act(obs)
    policy.reset(np.ones(6, bool))
    other = dict(obs, history=-obs["history"])
    assert np.abs(policy.act(other) - a).max() > 1e-4, "the history must reach the action"
    with pytest.raises(ValueError, match="reads observation group 'history'"):
        policy.act({k: v for k, v in obs.items() if k != "history"})
    p, s = torch.as_tensor(obs["proprio"])[:, None], torch.as_tensor(obs["depth"])[:, None]
    with pytest.raises(ValueError, match=r"reads the 'history' group .*12 columns.*not given"):
        m(p, s, task=torch.as_tensor(obs["task"])[:, None])
    for bad in ([3, 4], [10]):
        with pytest.raises(ValueError, match="'history' must be flat"):
            Student(StudentNetConfig(**SMALL), {**DEPTH_SPEC, "history": bad}, 4)


def test_distill_a_depth_student_with_history_then_load_and_evaluate(tmp_path):
    cfg = load_config(StudentConfig, "configs/student/reach_depth.yaml", [*TINY, "dagger.iterations=2"])
    run = tmp_path / "run"
    distill(cfg, run, progress=False)
    data = ChunkDataset(run / "dataset")
    chunks = [data.load(r) for r in data.records(0) if r["iteration"] == 0]
    hist = np.concatenate([c["history"] for c in chunks])        # (T, N, 12), newest action first
    action, first = np.concatenate([c["action"] for c in chunks]), np.concatenate([c["first"] for c in chunks])
    assert hist.shape == (12, 4, 12) and first[0].all() and first[1:].any()
    # Iteration 0 is the teacher's alone (beta 1): the newest entry is the label it acted on one step
    # before, the older ones shift down, and an episode starts from the reset action in every row.
    np.testing.assert_array_equal(hist[first], np.tile([0.0, 0.0, 0.0, 1.0], (int(first.sum()), 3)))
    go_on = ~first[1:]
    np.testing.assert_allclose(hist[1:, :, :4][go_on], action[:-1][go_on], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(hist[1:, :, 4:][go_on], hist[:-1, :, :8][go_on])
    # What `robots-ts evaluate` does with the run: the checkpoint loads with the group and its width.
    meta = json.loads((run / "checkpoints" / "iter_0001.json").read_text())
    assert meta["obs_groups"] == ["proprio", "depth", "history"] and meta["obs_spec"]["history"] == [12]
    policy = load_student(run)
    assert policy.obs_groups == ("proprio", "depth", "history") and policy.env_cfg.action_history == 3
    assert policy.model.proprio[0].in_features == 23 + 12
    res = rollout_policy(policy, policy.env_cfg, episodes=4, num_envs=2)
    assert res["episodes"] == 4
    obs = batch(8, policy.model.obs_spec)
    a = policy.act(obs)
    assert np.abs(policy.act(dict(obs, history=np.zeros_like(obs["history"]))) - a).max() > 1e-5


def test_multi_task_student_reads_task_and_history(tmp_path):
    from tests.policies.test_multi_teacher import TASKS
    from tests.policies.test_multi_teacher import TINY as MULTI

    run = tmp_path / "run"
    cfg = load_config(StudentConfig, "configs/student/multi_depth.yaml",
                      [*[f"teachers.{t}=scripted" for t in TASKS], *MULTI, "dagger.iterations=1",
                       "env.obs_groups=[proprio,depth,task,history]", "env.action_history=2"])
    distill(cfg, run, progress=False)
    data = ChunkDataset(run / "dataset")
    assert all(data.load(r)["history"].shape[1:] == (6, 8) for r in data.records())
    policy = load_student(run)
    assert policy.obs_groups == ("proprio", "depth", "task", "history")
    assert rollout_policy(policy, policy.env_cfg, episodes=3, num_envs=3)["episodes"] == 3


@pytest.fixture(scope="module")
def history_base(tmp_path_factory):
    return make_student_run(tmp_path_factory.mktemp("history_base") / "base", "depth", 0, 21, history=True)


def test_residual_over_a_history_base_reads_it_and_starts_as_the_base(history_base):
    cfg, base, env, renv, venv, model = setup(history_base, "alpha=[0.0]")
    try:
        assert base.obs_groups == ("proprio", "depth", "history")
        assert "history" in cfg.env.obs_groups and "history" in model.policy.actor_keys
        obs = renv.reset()
        assert obs["history"].shape == (2, 12)
        for _ in range(3):        # 10-step episodes: no reset in between
            np.testing.assert_array_equal(obs[BASE_ACTION], base.act({g: obs[g] for g in base.obs_groups}))
            sent = obs[BASE_ACTION]
            obs = renv.step(np.ones((2, 4), np.float32))[0]
            # The history holds what was sent: with alpha 0, the base's action, whatever the residual said.
            np.testing.assert_array_equal(obs["history"][:, :4], sent)
        policy = RefinedPolicy(base, model, [0.0], cfg.env)
        a, a_base = policy.act_with_base(obs)
        np.testing.assert_array_equal(a, a_base)
    finally:
        venv.close()


def test_finetune_over_a_history_base_reads_it_and_starts_as_the_base(history_base):
    cfg, base, env, renv, venv, model = setup(history_base, "mode=finetune")
    try:
        p = model.policy
        assert p.actor_keys == ["proprio", "depth", "history"]
        obs = batch(64, base.model.obs_spec, seed=3)
        with torch.no_grad():
            mean = p.actor_mean({k: torch.as_tensor(v) for k, v in obs.items()}).numpy()
        np.testing.assert_allclose(np.clip(mean, -1, 1), base.act(obs), rtol=0, atol=1e-6)
        tuned = StudentPolicy(p.as_student(), cfg.env)
        assert tuned.obs_groups == ("proprio", "depth", "history")
        np.testing.assert_allclose(tuned.act(obs), base.act(obs), rtol=0, atol=1e-6)
    finally:
        venv.close()
