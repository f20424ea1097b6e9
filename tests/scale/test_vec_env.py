"""RayVecEnv: the same observations and episodes as the in-process BatchedEnv, however the worlds are
split over actors, with the curriculum in the driver; a killed actor's share restarts and the batch
goes on."""
import logging

import numpy as np
import pytest

from robots_ts.config import EnvConfig
from robots_ts.curriculum import make_teacher
from robots_ts.envs.vec_env import BatchedEnv

CFG = EnvConfig(task="Reach", num_envs=4, num_threads=1, episode_steps=9)
STEPS = 30


def roll(env, curriculum: bool) -> dict:
    """Observations, rewards, dones and finished episodes of STEPS random-action steps."""
    if curriculum:
        env.sampler = make_teacher("random", env.param_space.low, env.param_space.high, seed=3)
    rng = np.random.default_rng(0)
    out = {"obs": [env.reset()], "reward": [], "dones": [], "episodes": []}
    for _ in range(STEPS):
        obs, reward, dones, infos = env.step(rng.uniform(-1, 1, (env.num_envs, 4)).astype(np.float32))
        out["obs"].append(obs)
        out["reward"].append(reward)
        out["dones"].append(dones)
        out["episodes"] += [(int(i), infos[i]["episode"]["r"], infos[i]["is_success"],
                             infos[i]["params"].tolist(), infos[i]["terminal_observation"]["privileged"].tolist())
                            for i in np.flatnonzero(dones)]
    return out


def assert_same(a: dict, b: dict) -> None:
    for x, y in zip(a["obs"], b["obs"]):
        assert x.keys() == y.keys()
        for g in x:
            np.testing.assert_array_equal(x[g], y[g])
    np.testing.assert_array_equal(a["reward"], b["reward"])
    np.testing.assert_array_equal(a["dones"], b["dones"])
    assert a["episodes"] == b["episodes"]


def roll_both(env) -> list[dict]:
    """A rollout with the worlds drawing their own task parameters, then one with a curriculum
    in the driver (the two-phase step)."""
    return [roll(env, curriculum=False), roll(env, curriculum=True)]


@pytest.fixture(scope="session")
def reference():
    env = BatchedEnv(CFG, seed=5)
    try:
        return roll_both(env)
    finally:
        env.close()


@pytest.fixture(scope="module")
def two_actors(cluster):
    from robots_ts.scale.vec_env import RayVecEnv

    env = RayVecEnv(CFG, seed=5, actors=2)
    yield env
    env.close()


def test_one_and_two_actors_give_the_in_process_observations(cluster, reference, request):
    from robots_ts.scale.vec_env import RayVecEnv

    kind, nodes = cluster
    assert len(reference[0]["episodes"]) >= 8      # episodes ended and restarted during the rollouts
    one = RayVecEnv(CFG, seed=5, actors=1)
    try:
        got_one = roll_both(one)
    finally:
        one.close()                                 # its CPU is the second actor's
    two = request.getfixturevalue("two_actors")
    assert len(set(two.pool.nodes)) == nodes        # the two-node cluster holds one actor per node
    for got in (got_one, roll_both(two)):
        for ref, mine in zip(reference, got):
            assert_same(ref, mine)


def test_a_killed_actor_ends_its_share_of_episodes_and_the_batch_goes_on(cluster, two_actors, caplog):
    env = two_actors
    env.sampler = None
    env.reset()
    zero = np.zeros((4, 4), np.float32)
    env.step(zero)
    env.pool.actors[1].arm_fault.remote("scale.shard.step", 2)
    with caplog.at_level(logging.WARNING, logger="robots_ts.scale"):
        env.step(zero)                                  # actor 1 steps once more, then dies
        obs, reward, dones, infos = env.step(zero)
    assert list(dones) == [False, False, True, True]
    for i in (2, 3):
        assert infos[i]["actor_restarted"] and infos[i]["TimeLimit.truncated"] and "episode" not in infos[i]
        assert set(infos[i]["terminal_observation"]) == {"proprio", "privileged"}
    assert reward[2:].tolist() == [0.0, 0.0] and obs["proprio"].shape == (4, env.observation_space["proprio"].shape[0])
    assert env.actor_restarts == 1 and env.incidents[0]["worlds"] == [2, 3]
    assert "Ray actor 1 (worlds 2-3) died during step" in caplog.text
    ended = []
    for _ in range(12):                                 # the restarted worlds finish episodes again
        obs, reward, dones, infos = env.step(zero)
        ended += [i for i in np.flatnonzero(dones) if "episode" in infos[i]]
    assert all(np.isfinite(v).all() for v in obs.values()) and {2, 3} <= set(ended)


def test_a_slow_actor_is_dealt_fewer_worlds_and_the_episodes_do_not_change(cluster, two_actors, reference, caplog):
    """env.ray_split=speed: actor 1 stepping four times slower than its work takes (a slower core
    or node) holds one world of four after the probe; the rollouts are still the in-process ones,
    and when it dies Ray brings it back holding that one world."""
    env = two_actors
    env.sampler = None
    env.pool.actors[1].emulate_slow_core.remote(4.0)
    env.reset()
    env.actor_step_ms()
    for _ in range(5):
        env.step(np.zeros((4, 4), np.float32))
    fast, slow = env.actor_step_ms()             # the records' actor_step_ms show the slow actor
    assert slow > 2 * fast
    record = env.pool.balance(seconds=0.5)
    assert record["applied"] and record["worlds_before"] == [2, 2] and record["worlds"] == [3, 1]
    assert record["rates"][0] > 2 * record["rates"][1]
    assert env.pool.shares == [(0, 3), (3, 1)] and env.balance_record is record
    for ref, mine in zip(reference, roll_both(env)):
        assert_same(ref, mine)
    env.sampler = None
    env.reset()
    zero = np.zeros((4, 4), np.float32)
    env.pool.actors[1].arm_fault.remote("scale.shard.step", 2)
    with caplog.at_level(logging.WARNING, logger="robots_ts.scale"):
        env.step(zero)
        obs, reward, dones, infos = env.step(zero)      # actor 1 dies in this step
    assert dones.tolist() == [False, False, False, True] and infos[3]["actor_restarted"]
    assert env.incidents[-1]["worlds"] == [3, 3] and "Ray actor 1 (worlds 3-3) died during step" in caplog.text
    assert obs["proprio"].shape[0] == 4
    for _ in range(12):
        obs, reward, dones, infos = env.step(zero)
    assert all(np.isfinite(v).all() for v in obs.values())


def test_ray_split_is_checked(cluster):
    from dataclasses import replace

    from robots_ts.scale.vec_env import RayVecEnv

    with pytest.raises(ValueError, match="env.ray_split: expected one of \\['even', 'speed'\\], got 'fast'"):
        RayVecEnv(replace(CFG, ray_split="fast"), seed=5, actors=1)
