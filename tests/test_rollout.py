"""The one rollout loop: quotas, step budgets, fixed parameters, hooks and resets."""
import numpy as np
import pytest

from robots_ts.config import EnvConfig
from robots_ts.evaluate import rollout_policy
from robots_ts.policies.scripted import ScriptedTeacher
from robots_ts.rollout import policy_env, run_episodes, split_quota

CFG = EnvConfig(task="Reach", num_threads=1)


class Recording(ScriptedTeacher):
    """The oracle, remembering every reset it is told about."""

    def __init__(self):
        super().__init__()
        self.resets = []

    def reset(self, done):
        self.resets.append(np.asarray(done, dtype=bool).copy())
        if self.world is not None:
            super().reset(done)


def test_split_quota():
    assert split_quota(10, 4).tolist() == [3, 3, 2, 2]
    assert split_quota(3, 4).tolist() == [1, 1, 1, 0]


def test_quota_counts_each_worlds_first_episodes_only():
    policy = Recording()
    env = policy_env(policy, CFG, num_envs=3, seed=0)
    actives = []
    records = run_episodes(env, policy.act, [policy], quota=np.array([2, 1, 0]),
                           before_step=lambda obs, action, active: actives.append(active.copy()))
    env.close()
    assert sorted(r["world"] for r in records) == [0, 0, 1]
    assert all(r["success"] and r["length"] > 0 for r in records)     # the oracle reaches every ball
    assert actives[0].tolist() == [True, True, False]
    assert actives[-1].any() and not any(a[2] for a in actives)   # world 2 had nothing to run
    # Told once that every world starts, then after each step which ones did.
    assert policy.resets[0].all() and len(policy.resets) == len(actives) + 1


def test_step_budget_records_every_finished_episode_and_calls_after_step():
    policy = Recording()
    env = policy_env(policy, CFG, num_envs=2, seed=1)
    seen = []
    records = run_episodes(env, policy.act, [policy], steps=40, after_step=lambda t, dones, infos: seen.append(
        (t, int(dones.sum()))))
    env.close()
    assert [t for t, _ in seen] == list(range(40))
    assert len(records) == sum(d for _, d in seen) >= 4          # Reach episodes take ~10 steps


def test_fixed_params_reach_the_worlds_in_order_and_the_sampler_comes_back():
    policy = Recording()
    env = policy_env(policy, CFG, num_envs=3, seed=2)
    space = env.param_space
    rows = np.stack([space.low + f * (space.high - space.low) for f in (0.2, 0.8)])
    before = env.sampler
    records = run_episodes(env, policy.act, [policy], quota=np.array([1, 1, 0]), params=rows)
    assert env.sampler is before
    by_world = {r["world"]: r["params"] for r in records}
    np.testing.assert_allclose([by_world[0], by_world[1]], rows)
    with pytest.raises(ValueError, match="1 to 3 rows"):
        run_episodes(env, policy.act, quota=np.ones(3), params=np.zeros((4, space.dim)))
    with pytest.raises(ValueError, match="one count per world"):
        run_episodes(env, policy.act, quota=np.ones(2))
    with pytest.raises(ValueError, match="quota, a step budget"):
        run_episodes(env, policy.act)
    env.close()


def test_rollout_policy_writes_a_video_of_world_0(tmp_path):
    res = rollout_policy(ScriptedTeacher(), CFG, episodes=2, num_envs=2, seed=0, video=tmp_path / "reach.gif",
                         max_video_episodes=1)
    assert res["episodes"] == 2
    import imageio.v2 as imageio

    frames = imageio.mimread(res["video"])
    # One frame per step of world 0's first episode, at most the episode's length.
    assert 1 <= len(frames) <= 60 and frames[0].shape[:2] == (256, 256)


def test_point_cloud_episodes_do_not_depend_on_the_policy():
    """Held-out episodes are the same for every policy evaluated with a seed, point clouds too. How
    many draws a cloud's random subset takes depends on what is in view, so on the policy; here one
    run makes world 0 draw extra clouds, and its episodes' parameters stay those of the other run."""
    from robots_ts.config import PointsConfig
    from robots_ts.envs import make_batched_env
    from robots_ts.evaluate import episodes_digest

    cfg = EnvConfig(task="Push", num_envs=2, episode_steps=4, obs_groups=["proprio", "points"], num_threads=1,
                    points=PointsConfig(num_points=128, width=48, height=48, crop_low=[0.25, -0.45, -0.02],
                                        crop_high=[0.85, 0.45, 0.1]))   # fewer voxels than points: copies drawn
    digests = []
    for extra in (0, 3):
        env = make_batched_env(cfg, seed=5)

        def after_step(t, dones, infos):
            for _ in range(extra):
                env.world._post(0)        # world 0's cloud again, as if more of the scene were in view

        try:
            records = run_episodes(env, lambda obs: np.zeros((2, 4), np.float32), quota=np.array([3, 3]), seed=5,
                                   after_step=after_step)
        finally:
            env.close()
        digests.append(episodes_digest(records))
    assert digests[0] == digests[1]


def test_rollout_policy_runs_the_policy_on_the_asked_torch_threads_and_restores_the_callers():
    """A success rate can move with the torch thread count, so every evaluation pins one (unless told
    otherwise), records it, and hands the caller back its own count, also when the rollout fails."""
    import torch

    seen = []

    class Counting(ScriptedTeacher):
        def act(self, obs):
            seen.append(torch.get_num_threads())
            return super().act(obs)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = rollout_policy(Counting(), CFG, episodes=2, num_envs=2, seed=0)
        assert res["torch_threads"] == 1 and set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        res = rollout_policy(Counting(), CFG, episodes=2, num_envs=2, seed=0, threads=2)
        assert res["torch_threads"] == 2 and set(seen) == {2}

        class Failing(ScriptedTeacher):
            def act(self, obs):
                raise RuntimeError("policy failed")

        with pytest.raises(RuntimeError, match="policy failed"):
            rollout_policy(Failing(), CFG, episodes=2, num_envs=2, seed=0)
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="torch threads"):
            rollout_policy(Counting(), CFG, episodes=2, num_envs=2, seed=0, threads=0)
    finally:
        torch.set_num_threads(before)
