"""Residual RL: the wrapper env, the zero-initialized residual, critic warm-up, refine end to end.

Bases are tiny random-weight students saved the way distillation saves them (tests/export/conftest.py),
feed-forward and recurrent, on 10-step Reach episodes with a 16x12 depth image."""
import json

import numpy as np
import pytest
import torch

from robots_ts.cli import main as cli
from robots_ts.config import load_config
from robots_ts.policies.load import load_policy
from robots_ts.policies.residual.config import ResidualConfig
from robots_ts.policies.residual.env import BASE_ACTION, combine
from robots_ts.policies.residual.policy import CriticWarmup, RefinedPolicy, set_actor_trainable
from robots_ts.policies.residual.train import build, load_base, resolved
from robots_ts.runs import sha256_of
from tests.export.conftest import make_student_run

TINY = ["env.num_envs=2", "env.num_threads=1", "ppo.n_steps=16", "ppo.batch_size=32", "ppo.n_epochs=2",
        "ppo.net_arch=[16]", "eval_episodes=2", "eval_envs=2", "checkpoint_every=1000000", "eval_every=1000000"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("residual_bases")
    return {"depth": make_student_run(root / "depth", "depth", 0, 11),
            "depth_gru": make_student_run(root / "depth_gru", "depth", 8, 12),
            "points": make_student_run(root / "points", "points", 0, 13)}


def setup(base_run, *overrides):
    cfg = load_config(ResidualConfig, None, [*TINY, f"base={base_run}", *overrides])
    base = load_base(cfg)
    cfg = resolved(cfg, base)
    env, renv, venv, model = build(cfg, base)
    return cfg, base, env, renv, venv, model


def random_obs(cfg, n, seed=0):
    rng = np.random.default_rng(seed)
    d = cfg.env.depth
    obs = {"proprio": rng.normal(0, 1, (n, 23)).astype(np.float32),
           "depth": rng.uniform(d.near, d.far, (n, 1, d.height, d.width)).astype(np.float32)}
    if cfg.asymmetric_critic:
        obs["privileged"] = rng.normal(0, 1, (n, 3)).astype(np.float32)   # unread by the actor
    return obs


def randomize_actor(model, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.policy.actor_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def refined(cfg, base, model, alpha):
    return RefinedPolicy(base, model, alpha, cfg.env)


def test_alpha_zero_equals_base_exactly(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth"])
    try:
        randomize_actor(model)
        obs = random_obs(cfg, 1000)
        a, a_base = refined(cfg, base, model, [0.0]).act_with_base(obs)
        assert np.abs(refined(cfg, base, model, [0.1]).act(obs) - a_base).max() > 1e-3   # the residual is live
        np.testing.assert_array_equal(a, base.act(obs))
        np.testing.assert_array_equal(a, a_base)
    finally:
        venv.close()


@pytest.mark.parametrize("kind", ["depth", "depth_gru", "points"])
def test_alpha_zero_closed_loop_matches_base_with_resets(bases, kind):
    """In the env, alpha = 0 reproduces the base's own rollout step for step, across episode ends
    (the recurrent base's memory cleared per world, never disturbed by terminal observations)."""
    from robots_ts.envs import make_batched_env

    cfg, base, env, renv, venv, model = setup(bases[kind], "alpha=[0.0]")
    try:
        ref_base = load_policy(bases[kind])
        ref = make_batched_env(cfg.env, seed=cfg.seed)
        obs_r, obs = ref.reset(), renv.reset()
        ref_base.reset(np.ones(2, bool))
        rng = np.random.default_rng(0)
        for _ in range(25):   # crosses two episode ends
            a_ref = ref_base.act(obs_r)
            np.testing.assert_array_equal(obs[BASE_ACTION], a_ref)
            obs, _, dones, infos = renv.step(rng.uniform(-5, 5, (2, 4)).astype(np.float32))
            np.testing.assert_array_equal(renv.last_action, a_ref)
            obs_r, _, dones_r, _ = ref.step(a_ref)
            ref_base.reset(dones_r)
            np.testing.assert_array_equal(dones, dones_r)
            for k in obs_r:
                np.testing.assert_array_equal(obs[k], obs_r[k])
            for i in np.flatnonzero(dones):
                assert infos[i]["terminal_observation"][BASE_ACTION].shape == (4,)
        ref.close()
    finally:
        venv.close()


def test_initial_residual_is_zero(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth"], "ppo.log_std_init=-3.0")
    try:
        assert torch.count_nonzero(model.policy.action_net.weight) == 0
        assert torch.count_nonzero(model.policy.action_net.bias) == 0
        assert torch.allclose(model.policy.log_std, torch.full((4,), -3.0))
        obs = random_obs(cfg, 1000, seed=1)
        a, a_base = refined(cfg, base, model, [0.1]).act_with_base(obs)
        np.testing.assert_array_equal(a, a_base)
        np.testing.assert_array_equal(a, base.act(obs))
    finally:
        venv.close()


def test_residual_bounded_by_alpha(bases):
    alpha = np.array([0.05, 0.1, 0.2, 0.3], np.float32)
    cfg, base, env, renv, venv, model = setup(bases["depth"], f"alpha={alpha.tolist()}")
    try:
        randomize_actor(model, scale=10.0)
        a, a_base = refined(cfg, base, model, alpha).act_with_base(random_obs(cfg, 1000, seed=2))
        dev = np.abs(a - a_base)
        assert np.all(dev <= alpha + 1e-6) and np.all(np.abs(a) <= 1.0)
        assert np.any(dev > 0.9 * alpha)         # the bound is reached, not trivially met
        renv.reset()
        rng = np.random.default_rng(3)
        for _ in range(15):                       # in the env, with residual actions far outside [-1, 1]
            a_base = renv.a_base.copy()
            renv.step(rng.normal(0, 10, (2, 4)).astype(np.float32))
            assert np.all(np.abs(renv.last_action - a_base) <= alpha + 1e-6)
        r = np.random.default_rng(4).normal(0, 100, (1000, 4)).astype(np.float32)
        b = np.random.default_rng(5).uniform(-1, 1, (1000, 4)).astype(np.float32)
        assert np.all(np.abs(combine(b, r, alpha) - b) <= alpha + 1e-6)
    finally:
        venv.close()


def test_base_bit_identical_after_refinement(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth_gru"], "warmup_steps=32")
    try:
        before = {k: v.clone() for k, v in base.model.state_dict().items()}
        model.learn(128, callback=CriticWarmup(renv, cfg.warmup_steps))
        assert not any(p.requires_grad for p in base.model.parameters())
        after = base.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
    finally:
        venv.close()


def test_critic_warmup_freezes_actor_while_value_loss_falls(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth"], "warmup_steps=100000", "ppo.n_epochs=10",
                                              "ppo.learning_rate=3e-3", "ppo.lr_schedule=constant",
                                              "asymmetric_critic=true")
    try:
        policy = model.policy
        actor = [p.detach().clone() for p in policy.actor_parameters()]
        critic = [p.detach().clone() for p in policy.critic_parameters()]
        executed, losses = [], []
        step_async = renv.step_async

        def record(actions):   # what the worlds execute against the base's action at that step
            a_base = renv.a_base.copy()
            step_async(actions)
            executed.append(np.array_equal(renv.last_action, a_base))
        renv.step_async = record

        class Record(CriticWarmup):
            def _on_rollout_start(self):
                super()._on_rollout_start()
                if "train/value_loss" in self.model.logger.name_to_value:
                    losses.append(self.model.logger.name_to_value["train/value_loss"])

        model.learn(16 * 2 * 8, callback=Record(renv, cfg.warmup_steps))
        assert not renv.residual_enabled and len(executed) == 16 * 8 and all(executed)   # the base acted alone
        assert all(torch.equal(a, p) for a, p in zip(actor, policy.actor_parameters()))
        assert not all(torch.equal(c, p) for c, p in zip(critic, policy.critic_parameters()))
        assert len(losses) >= 6 and losses[-1] < losses[0], losses
        print("warm-up value losses", [round(v, 4) for v in losses])
        # After warm-up the actor trains.
        set_actor_trainable(policy, True)
        renv.residual_enabled = True
        model.learn(64, reset_num_timesteps=False)
        assert not all(torch.equal(a, p) for a, p in zip(actor, policy.actor_parameters()))
    finally:
        venv.close()


def test_asymmetric_critic_reads_privileged_actor_does_not(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth"], "asymmetric_critic=true")
    try:
        p = model.policy
        assert "privileged" in p.critic_keys and "privileged" not in p.actor_keys
        assert BASE_ACTION in p.actor_keys
        assert "privileged" in renv.observation_space.spaces
        assert not set(map(id, p.actor_parameters())) & set(map(id, p.critic_parameters()))
        obs = random_obs(cfg, 8)
        o2 = {**obs, "privileged": obs["privileged"] + 100.0}
        randomize_actor(model)
        pol = refined(cfg, base, model, [0.1])
        np.testing.assert_array_equal(pol.act(obs), pol.act(o2))
    finally:
        venv.close()


def test_refine_end_to_end_and_evaluate(bases, tmp_path, capsys):
    run = tmp_path / "residual"
    tensors = bases["depth_gru"] / "checkpoints" / "iter_0000.safetensors"
    digest = sha256_of(tensors)
    assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['depth_gru']}", "--run-dir", str(run),
                "--total-steps", "256", *TINY, "warmup_steps=64", "eval_every=128", "checkpoint_every=128"]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["kind"] == "residual" and meta["base"] == str(bases["depth_gru"].resolve())
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "best.zip").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["steps"] for r in records) == 256 and any("eval_success_rate" in r for r in records)
    assert sha256_of(tensors) == digest
    policy = load_policy(run)
    assert isinstance(policy, RefinedPolicy)
    assert set(policy.obs_groups) == {"proprio", "depth"}            # the critic's privileged group is not read
    assert policy.env_cfg.obs_groups == ["proprio", "depth"]
    capsys.readouterr()
    assert cli(["evaluate", str(run), "--episodes", "2", "--num-envs", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0.0 <= res["success_rate"] <= 1.0
    # Resume extends the finished run from its last checkpoint; the base is still untouched.
    assert cli(["refine", "--resume", str(run), "--total-steps", "320"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["steps"] for r in records) == 320
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 320
    assert sha256_of(tensors) == digest
    assert isinstance(load_policy(run, "latest"), RefinedPolicy)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rollouts = [r for r in records if "steps_per_s" in r]
    # Warm-up rollouts (up to step 64) executed the base alone; after them the residual acts everywhere.
    assert [r["residual_share"] for r in rollouts if r["steps"] <= 64] == [0.0, 0.0]
    assert all(r["residual_share"] == 1.0 for r in rollouts if r["steps"] > 64)


def test_evaluations_leave_a_recurrent_base_s_training_state_alone(bases, tmp_path):
    """The run's evaluations act with the base's network but their own GRU state: training on 4
    worlds evaluates on 2 (it raised on the shared state's shape before), and an evaluation in the
    middle of training leaves the training worlds' state as it was."""
    from robots_ts.policies.residual.train import ResidualCallback, own_state

    run = tmp_path / "gru_4_worlds"
    assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['depth_gru']}", "--run-dir", str(run),
                "--total-steps", "128", *TINY, "env.num_envs=4", "warmup_steps=32", "eval_every=64"]) == 0
    assert sum("eval_success_rate" in json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()) == 2
    cfg, base, env, renv, venv, model = setup(bases["depth_gru"])
    try:
        venv.reset()
        for _ in range(3):
            venv.step(np.zeros((venv.num_envs, venv.action_space.shape[0]), np.float32))
        training_state = base.hidden.clone()
        assert training_state.abs().sum() > 0
        twin = own_state(base)
        assert twin.model is base.model and twin.hidden is None
        cb = ResidualCallback.__new__(ResidualCallback)
        cb.base, cb.model, cb.cfg, cb.venv = base, model, cfg, venv
        policy = cb.live_policy()
        obs = env.reset()
        policy.reset(np.ones(env.num_envs, bool))
        policy.act(obs)
        assert policy.base.hidden.abs().sum() > 0
        assert torch.equal(base.hidden, training_state)
    finally:
        venv.close()


def test_refine_without_base_is_a_named_error(tmp_path, capsys):
    assert cli(["refine", "configs/residual/reach_depth.yaml", "--run-dir", str(tmp_path / "r")]) == 2
    assert "base" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_env_setting_the_base_decides_is_refused_unless_it_is_the_base_s(bases, tmp_path, capsys):
    """A refinement trains in its base's env: env.task or env.randomization set otherwise would be
    ignored, so they are named errors; the counts and the Ray settings are the refinement's own."""
    from robots_ts.config import ConfigError

    load = lambda *o: load_config(ResidualConfig, None, [*TINY, f"base={bases['depth']}", *o])   # noqa: E731
    base = load_base(load())
    assert base.env_cfg.task == "Reach"
    cfg = resolved(load("env.task=Reach", f"env.episode_steps={base.env_cfg.episode_steps}", "env.num_envs=3",
                        "env.ray_actors=2", "env.ray_split=speed"), base)
    assert (cfg.env.num_envs, cfg.env.ray_actors, cfg.env.ray_split) == (3, 2, "speed")
    for bad, named in (("env.task=Push", "env.task"),
                       ("env.randomization=@configs/randomization/default.yaml", "env.randomization")):
        with pytest.raises(ConfigError, match=named):
            resolved(load(bad), base)
    run = tmp_path / "r"
    assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['depth']}", "env.task=Lift",
                "--run-dir", str(run), *TINY]) == 2
    err = capsys.readouterr().err
    assert "env.task" in err and "'Reach'" in err and "'Lift'" in err
    assert not run.exists()
