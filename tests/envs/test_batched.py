"""The batched env: solvable tasks, determinism, SB3 auto-reset semantics, reward terms."""
import numpy as np
import pytest

from robots_ts.config import DepthConfig, EnvConfig
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.evaluate import rollout_policy
from robots_ts.policies.scripted import ScriptedTeacher
from robots_ts.envs.backends.backend import BACKENDS


def scripted_success(task: str, episodes: int, seed: int = 0, backend: str = "mujoco") -> float:
    env = BatchedEnv(EnvConfig(task=task, num_envs=8, backend=backend), seed=seed)
    obs = env.reset()
    teacher = ScriptedTeacher(env.world)
    results = []
    while len(results) < episodes:
        obs, _, dones, infos = env.step(teacher.act(obs))
        results += [infos[i]["is_success"] for i in np.flatnonzero(dones)]
        teacher.reset(dones)
    env.close()
    return float(np.mean(results[:episodes]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task,floor", [("Reach", 0.9), ("Push", 0.6), ("Lift", 0.6)])
def test_scripted_controller_solves_task(task, floor, backend):
    assert scripted_success(task, 40, backend=backend) >= floor


def random_success(task: str, episodes: int = 16, seed: int = 0) -> float:
    """Success rate of uniformly random actions on ``task`` (8 worlds)."""
    env = BatchedEnv(EnvConfig(task=task, num_envs=8), seed=seed)
    env.reset()
    rng = np.random.default_rng(seed)
    results = []
    while len(results) < episodes:
        _, _, dones, infos = env.step(rng.uniform(-1, 1, (8, 4)))
        results += [infos[i]["is_success"] for i in np.flatnonzero(dones)]
    env.close()
    return float(np.mean(results[:episodes]))


def test_random_actions_rarely_succeed():
    """Success is a real criterion: random actions do not reach it often on Push or Lift."""
    for task in ("Push", "Lift"):
        assert random_success(task) < 0.25


def _trajectory(seed: int, groups, steps: int = 30) -> list[dict]:
    env = BatchedEnv(EnvConfig(task="Push", num_envs=3, obs_groups=groups, num_threads=2,
                               depth=DepthConfig(width=32, height=32)),
                     seed=seed)
    out = [env.reset()]
    rng = np.random.default_rng(123)
    for _ in range(steps):
        obs, r, d, _ = env.step(rng.uniform(-1, 1, (3, 4)))
        out.append({**obs, "reward": r})
    env.close()
    return out


def test_same_seed_same_trajectory():
    groups = ["proprio", "privileged", "depth"]
    a, b, c = _trajectory(7, groups), _trajectory(7, groups), _trajectory(8, groups)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(a[0]["privileged"], c[0]["privileged"])


def test_autoreset_reports_terminal_observation_and_terms():
    env = BatchedEnv(EnvConfig(task="Reach", num_envs=4, episode_steps=5), seed=0)
    env.reset()
    for t in range(5):
        obs, reward, dones, infos = env.step(np.zeros((4, 4)))
        terms = infos[0]["reward_terms"]
        assert set(terms) == {"distance", "near", "success", "action_rate"}
        scales = env.world.reward_scales
        assert reward[0] == pytest.approx(sum(scales[k] * v for k, v in terms.items()), rel=1e-5)
    assert dones.all()
    for i in range(4):
        info = infos[i]
        assert info["TimeLimit.truncated"] and info["episode"]["l"] == 5
        assert not np.array_equal(info["terminal_observation"]["privileged"], obs["privileged"][i])
    # The returned observation is the fresh episode's: the step counter restarted.
    assert np.all(env.world.t == 0)
    env.close()


def test_rollout_policy_reports_interval():
    from robots_ts.evaluate import wilson_interval

    oracle = ScriptedTeacher()
    res = rollout_policy(oracle, EnvConfig(task="Reach"), episodes=20, num_envs=5, seed=0)
    assert res["episodes"] == 20 and res["success_rate"] >= 0.9
    k = round(res["success_rate"] * 20)
    np.testing.assert_allclose(res["success_ci95"], wilson_interval(k, 20))
