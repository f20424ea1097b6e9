"""Refinement options: the share of episodes the refined policy acts in, the actor-only path of an
asymmetric run, and the fine-tuning baseline (PPO on the whole student). Bases as in
tests/policies/test_residual.py: tiny random-weight students on 10-step Reach episodes."""
import json

import numpy as np
import pytest
import torch

from robots_ts.cli import main as cli
from robots_ts.config import ConfigError
from robots_ts.policies.load import load_policy
from robots_ts.policies.residual.env import RESIDUAL_INFO, ShareSchedule
from robots_ts.policies.residual.policy import CriticWarmup, RefinedPolicy
from robots_ts.policies.students.checkpoint import StudentPolicy
from tests.policies.test_residual import bases  # noqa: F401  (a fixture)
from tests.policies.test_residual import TINY, random_obs, randomize_actor, setup


# -- the share schedule --------------------------------------------------------------------------
def test_share_schedule_grows_linearly_after_the_warmup():
    s = ShareSchedule([0.2, 1.0, 100], warmup_steps=50)
    assert [s(t) for t in (0, 50, 100, 150, 10_000)] == pytest.approx([0.2, 0.2, 0.6, 1.0, 1.0])
    assert ShareSchedule([0.2, 0.7, 0])(0) == 0.7                   # no ramp: the end share throughout
    assert ShareSchedule()(0) == 1.0                                 # the default: every episode
    for bad in ([1.5, 1.0, 0], [0.0, 1.0], [0.0, 1.0, -5], [0.0, 1.0, 2.5], [0.0, float("nan"), 0]):
        with pytest.raises(ValueError, match="share"):
            ShareSchedule(bad)


def test_worlds_outside_the_share_execute_the_base_exactly(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth"], "alpha=[1.0]", "share=[0.5,0.5,0]")
    try:
        randomize_actor(model)
        rng = np.random.default_rng(0)
        renv.reset()
        flags, by_world = [], [[] for _ in range(2)]
        for _ in range(60):                       # six episodes per world
            a_base, on = renv.a_base.copy(), renv.acting().copy()
            _, _, dones, infos = renv.step(rng.uniform(-1, 1, (2, 4)).astype(np.float32))
            for i in range(2):
                assert infos[i][RESIDUAL_INFO] == on[i]
                by_world[i].append(on[i])
                if on[i]:
                    assert np.abs(renv.last_action[i] - a_base[i]).max() > 1e-3
                else:
                    np.testing.assert_array_equal(renv.last_action[i], a_base[i])
                if dones[i]:
                    flags.append(on[i])
        assert 0 < np.mean(flags) < 1             # both kinds of episode happened
        for w in by_world:                        # one draw per episode: constant within each
            assert all(len(set(w[k:k + 10])) == 1 for k in range(0, 60, 10))
        # The draw follows the schedule's clock: at share 0 no episode is refined, at 1 every one.
        renv.share = ShareSchedule([0.0, 1.0, 1000])
        renv.num_timesteps = 0
        renv.reset()
        assert not renv.acting().any()
        renv.set_clock(1000)                      # a resumed run: episodes not yet begun draw again
        assert renv.acting().all()
        renv.step(np.zeros((2, 4), np.float32))
        renv.set_clock(0)                         # mid-episode: the episode keeps its draw
        assert renv.acting().all()
    finally:
        venv.close()


def test_bad_share_and_mode_are_named_before_any_file(bases, tmp_path, capsys):
    for override, word in (("share=[0.5,2.0,100]", "share"), ("mode=distill", "mode"),
                           (f"init={bases['depth']}", "init"), ("finetune_ppo.learnin_rate=1e-5", "learnin_rate"),
                           ("finetune_ppo.n_epochs=many", "finetune_ppo.n_epochs")):
        run = tmp_path / word
        assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['depth']}", override,
                    "--run-dir", str(run)]) == 2
        assert word in capsys.readouterr().err
        assert not run.exists()


# -- the actor-only path -------------------------------------------------------------------------
def test_asymmetric_run_acts_without_privileged_inputs(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth"], "asymmetric_critic=true")
    try:
        randomize_actor(model)
        from robots_ts.policies.teacher.load import norm_stats_of

        policy = RefinedPolicy(base, model, [0.1], cfg.env, norm_stats_of(venv))
        assert "privileged" in cfg.env.obs_groups                  # the env trains the critic on it
        assert policy.obs_groups == ("proprio", "depth") and "privileged" not in policy.env_cfg.obs_groups
        obs = random_obs(cfg, 16)
        sensors = {k: obs[k] for k in ("proprio", "depth")}
        a, a_base = policy.act_with_base(sensors)
        np.testing.assert_array_equal(a, policy.act(obs))         # privileged given or not: the same
        assert np.abs(a - a_base).max() > 1e-3
        # It is SB3's own deterministic action (clipped as predict clips) on the full observation.
        full = policy.normalize({**obs, "base_action": a_base})
        full["privileged"] = obs["privileged"]
        r, _ = model.predict(full, deterministic=True)
        np.testing.assert_allclose(policy.residual(sensors, a_base), r, atol=1e-6)
    finally:
        venv.close()


# -- fine-tuning the whole student ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["depth", "points"])
def test_finetune_starts_as_the_base(bases, kind):
    cfg, base, env, renv, venv, model = setup(bases[kind], "mode=finetune", "alpha=[0.2]", "ppo.log_std_init=-2.0")
    try:
        p = model.policy
        rng = np.random.default_rng(5)
        obs = {k: v for k, v in random_obs(cfg, 1000).items()}
        if kind == "points":
            obs = {"proprio": obs["proprio"], "points": rng.normal(0.3, 0.2, (1000, 64, 3)).astype(np.float32)}
        with torch.no_grad():
            mean = p.actor_mean({k: torch.as_tensor(v) for k, v in obs.items()}).numpy()
        np.testing.assert_allclose(np.clip(mean, -1, 1), base.act(obs), rtol=0, atol=1e-6)
        np.testing.assert_allclose(StudentPolicy(p.as_student(), cfg.env).act(obs), base.act(obs), rtol=0, atol=1e-6)
        # A new log-std exploring as much in the action as the residual would: alpha * exp(log_std_init).
        np.testing.assert_allclose(p.log_std.exp().detach().numpy(), 0.2 * np.exp(-2.0), rtol=1e-5)
        assert not set(map(id, p.actor_parameters())) & set(map(id, p.critic_parameters()))
        assert not set(map(id, p.actor_parameters())) & set(map(id, base.model.parameters()))
    finally:
        venv.close()


def test_finetune_trains_the_student_and_leaves_the_base(bases):
    cfg, base, env, renv, venv, model = setup(bases["depth"], "mode=finetune", "ppo.learning_rate=1e-3",
                                              "warmup_steps=64")
    try:
        student = model.policy.pi_features_extractor.student
        before = {k: v.clone() for k, v in student.state_dict().items()}
        base_before = {k: v.clone() for k, v in base.model.state_dict().items()}
        cb = CriticWarmup(renv, cfg.warmup_steps)
        model.learn(64, callback=cb)                           # warm-up: the student does not move
        assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
        model.learn(128, callback=cb, reset_num_timesteps=False)
        changed = [k for k, v in student.state_dict().items() if not torch.equal(before[k], v)]
        assert any(k.startswith("sensor.") for k in changed) and any(k.startswith("head.") for k in changed)
        assert all(torch.equal(base_before[k], v) for k, v in base.model.state_dict().items())
    finally:
        venv.close()


def test_finetune_ppo_replaces_ppo_in_finetune_mode_only(bases):
    settings = ("ppo.learning_rate=1e-3", "finetune_ppo.learning_rate=2e-5", "finetune_ppo.target_kl=0.03")
    for mode, lr, kl in (("finetune", 2e-5, 0.03), ("residual", 1e-3, None)):
        cfg, base, env, renv, venv, model = setup(bases["points"], f"mode={mode}", *settings)
        try:
            assert cfg.ppo.learning_rate == lr                  # the resolved config records what ran
            assert model.lr_schedule(1.0) == pytest.approx(lr) and model.target_kl == kl
            assert model.n_epochs == cfg.ppo.n_epochs           # keys not named stay ppo's
        finally:
            venv.close()


def test_finetune_refuses_a_recurrent_base(bases, tmp_path, capsys):
    run = tmp_path / "ft_gru"
    assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['depth_gru']}", "mode=finetune",
                "--run-dir", str(run)]) == 2
    assert "recurrent" in capsys.readouterr().err
    assert not run.exists()


def test_finetune_end_to_end_evaluate_and_resume(bases, tmp_path, capsys):
    run = tmp_path / "finetune"
    assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['depth']}", "mode=finetune",
                "--run-dir", str(run), "--total-steps", "128", *TINY, "warmup_steps=32", "share=[0.5,0.5,0]",
                "eval_every=128", "checkpoint_every=128", "ppo.norm_obs=false"]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["kind"] == "finetune" and meta["mode"] == "finetune"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rollouts = [r for r in records if "steps_per_s" in r]
    assert rollouts[0]["residual_share"] == 0.0 and rollouts[-1]["residual_share"] == 0.5
    assert any(0.0 <= r.get("refined_episodes", -1) <= 1.0 for r in rollouts)
    policy = load_policy(run)
    assert isinstance(policy, StudentPolicy) and policy.obs_groups == ("proprio", "depth")
    assert not policy.model.recurrent and policy.checkpoint.name == "best.zip"
    capsys.readouterr()
    assert cli(["evaluate", str(run), "--episodes", "2", "--num-envs", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    assert cli(["refine", "--resume", str(run), "--total-steps", "192"]) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 192
    assert isinstance(load_policy(run, "latest"), StudentPolicy)


def test_mode_finetune_is_a_config_error_for_a_teacher_base(tmp_path):
    from robots_ts.policies.residual.finetune import check_base

    with pytest.raises(ConfigError, match="distilled student"):
        check_base(object())


# -- a residual reading the cloud as a set ---------------------------------------------------------
def test_pointnet_actor_reads_the_cloud_as_a_set(bases, tmp_path, capsys):
    from robots_ts.policies.residual.policy import PointSetFeatures, set_actor_trainable

    cfg, base, env, renv, venv, model = setup(bases["points"], "point_mlp=[8,16]", "alpha=[0.3]")
    try:
        p = model.policy
        assert isinstance(p.pi_features_extractor, PointSetFeatures)
        shared = list(p.pi_features_extractor.shared.parameters())
        assert shared and {id(q) for q in shared} <= {id(q) for q in p.actor_parameters()}
        rng = np.random.default_rng(3)
        obs = {"proprio": rng.normal(0, 1, (200, 23)).astype(np.float32),
               "points": rng.normal(0.3, 0.2, (200, 64, 3)).astype(np.float32)}
        policy = RefinedPolicy(base, model, [0.3], cfg.env)
        np.testing.assert_array_equal(policy.act(obs), base.act(obs))      # zero at initialisation
        randomize_actor(model, scale=1.0)
        a, a_base = policy.act_with_base(obs)
        shuffled = {**obs, "points": obs["points"][:, rng.permutation(64)]}
        np.testing.assert_allclose(policy.residual(shuffled, a_base), policy.residual(obs, a_base), rtol=0, atol=1e-6)
        moved = {**obs, "points": obs["points"] + np.float32(0.05)}
        assert np.abs(policy.residual(moved, a_base) - policy.residual(obs, a_base)).max() > 1e-3
        set_actor_trainable(p, False)                                        # the warm-up freezes it too
        assert not any(q.requires_grad for q in shared)
    finally:
        venv.close()
    # Trained, saved and loaded with its PointNet; a base without a cloud is refused before any file.
    run = tmp_path / "points"
    assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['points']}", "point_mlp=[8,16]",
                "--run-dir", str(run), "--total-steps", "32", *TINY]) == 0
    loaded = load_policy(run, "latest")
    assert isinstance(loaded.policy.pi_features_extractor, PointSetFeatures)
    assert loaded.policy.point_mlp == [8, 16]
    bad = tmp_path / "depth"
    assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={bases['depth']}", "point_mlp=[8,16]",
                "--run-dir", str(bad)]) == 2
    assert "point_mlp" in capsys.readouterr().err and not bad.exists()
