"""The multi-task env: worlds split by share, the task group, each task's own groups, seeding."""
import numpy as np
import pytest

from robots_ts.config import DepthConfig, EnvConfig
from robots_ts.envs.multi_task import MultiTaskEnv, split_worlds

GROUPS = ["proprio", "depth", "task", "privileged", "Push/proprio", "Reach/privileged"]


def _env(worlds, seed=0, groups=GROUPS):
    cfg = EnvConfig(num_envs=sum(worlds.values()), obs_groups=["proprio", "depth"], num_threads=1,
                    depth=DepthConfig(width=16, height=16))
    return MultiTaskEnv(cfg, worlds, seed=seed, obs_groups=groups)


def test_shares_split_worlds_as_configured():
    assert split_worlds(12, {"Reach": 2, "Push": 1, "Lift": 1}) == {"Lift": 3, "Push": 3, "Reach": 6}
    assert split_worlds(7, {"Reach": 1, "Push": 1, "Lift": 1}) == {"Lift": 3, "Push": 2, "Reach": 2}
    # Every task keeps a world, however small its share.
    assert split_worlds(3, {"Reach": 100, "Push": 1, "Lift": 1}) == {"Lift": 1, "Push": 1, "Reach": 1}
    # The order a config lists the tasks in changes nothing.
    assert split_worlds(10, {"Push": 1, "Reach": 3}) == split_worlds(10, {"Reach": 3, "Push": 1})
    with pytest.raises(ValueError, match="2 worlds cannot hold the 3 tasks"):
        split_worlds(2, {"Reach": 1, "Push": 1, "Lift": 1})
    with pytest.raises(ValueError, match="positive"):
        split_worlds(4, {"Reach": 1, "Push": 0})


def test_task_group_encodes_each_worlds_task_and_command():
    env = _env({"Reach": 2, "Push": 3, "Lift": 1})
    try:
        spaces = env.observation_space.spaces
        # Shared widths for the student; each teacher's own widths under its task's key.
        assert spaces["proprio"].shape == (23,) and spaces["task"].shape == (3 + 3,)
        assert spaces["Push/proprio"].shape == (26,) and spaces["Reach/privileged"].shape == (6,)
        assert spaces["privileged"].shape == (22,)                    # Push's, the widest
        assert env.world_tasks.tolist() == ["Lift"] + ["Push"] * 3 + ["Reach"] * 2
        obs = env.reset()
        for _ in range(2):
            onehot = obs["task"][:, :3]
            assert np.array_equal(onehot.sum(1), np.ones(6))
            assert [env.tasks[i] for i in onehot.argmax(1)] == env.world_tasks.tolist()
            push = env.rows["Push"]
            # Push's command is its goal: the last 3 columns of its own proprio.
            np.testing.assert_array_equal(obs["task"][push, 3:], obs["Push/proprio"][push, -3:])
            np.testing.assert_array_equal(obs["proprio"][push], obs["Push/proprio"][push, :23])
            assert not obs["task"][env.world_tasks != "Push", 3:].any()     # no command: zero padding
            assert not obs["Push/proprio"][env.world_tasks != "Push"].any()  # other tasks' rows stay zero
            # Reach's privileged state (ball, ball - hand) padded into the shared group.
            reach = env.rows["Reach"]
            np.testing.assert_array_equal(obs["privileged"][reach, :6], obs["Reach/privileged"][reach])
            assert not obs["privileged"][reach, 6:].any()
            obs, reward, done, infos = env.step(np.zeros((6, 4)))
            assert reward.shape == done.shape == (6,) and [i["task"] for i in infos] == env.world_tasks.tolist()
    finally:
        env.close()


def test_same_seed_same_episodes_and_groups_only_when_asked():
    def first(seed):
        env = _env({"Reach": 1, "Push": 1}, seed=seed, groups=["proprio", "task"])
        try:
            assert "depth" not in env.observation_space.spaces
            assert not any(e.world.renders for e in env.envs.values())   # nobody asked for depth: no render
            obs = env.reset()
            return obs["task"].copy(), env.envs["Push"].world.state.params.copy()
        finally:
            env.close()

    a, b, c = first(3), first(3), first(4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_bad_requests_name_the_problem():
    with pytest.raises(ValueError, match="names task 'Lift', which this env does not hold"):
        _env({"Reach": 1, "Push": 1}, groups=["proprio", "Lift/proprio"])
    cfg = EnvConfig(num_envs=2, obs_groups=["proprio"], num_threads=1, ray_actors=2)
    with pytest.raises(ValueError, match="ray_actors are not supported"):
        MultiTaskEnv(cfg, {"Reach": 1, "Push": 1})
    env = _env({"Reach": 1, "Push": 1}, groups=["proprio"])
    try:
        env.reset()
        with pytest.raises(ValueError, match=r"action has shape \(3, 4\), expected \(2, 4\)"):
            env.step(np.zeros((3, 4)))
        with pytest.raises(ValueError, match="takes no sampler"):
            env.sampler = object()
    finally:
        env.close()
