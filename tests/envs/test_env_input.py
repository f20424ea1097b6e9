"""Bad env input gets a named error (issue 11): batched actions of the wrong shape or kind, and
construction parameters checked before anything is built."""
import gymnasium as gym
import numpy as np
import pytest

from robots_ts.config import ConfigError, EnvConfig, PointsConfig
from robots_ts.envs.vec_env import BatchedEnv


@pytest.fixture(scope="module")
def env16():
    env = BatchedEnv(EnvConfig(task="Reach", num_envs=16, num_threads=1), seed=0)
    env.reset()
    yield env
    env.close()


@pytest.mark.parametrize("shape", [(4, 16), (64,), (16, 4, 1), (1, 64)])
def test_wrongly_shaped_batched_actions_raise(env16, shape):
    with pytest.raises(ValueError, match=rf"shape \({', '.join(map(str, shape))},?\), expected \(16, 4\)"):
        env16.step(np.zeros(shape))


def test_complex_actions_are_rejected(env16):
    with pytest.raises(ValueError, match="real numbers, got dtype complex128"):
        env16.step(np.zeros((16, 4), complex))
    env = gym.make("robots_ts/Reach-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="real numbers"):
        env.step(np.zeros(4, complex))
    env.close()


def test_gym_make_control_hz_zero_is_a_named_error():
    with pytest.raises(ConfigError, match=r"env.control_hz: expected a positive finite number, got 0"):
        gym.make("robots_ts/Reach-v0", control_hz=0)


def test_gym_obs_groups_as_one_string_is_one_group():
    env = gym.make("robots_ts/Reach-v0", obs_groups="proprio")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"proprio"}
    env.close()


@pytest.mark.parametrize("cfg,match", [
    (EnvConfig(obs_groups=["proprio", "points"], points=PointsConfig(num_points=0)), "env.points.num_points"),
    (EnvConfig(obs_groups="proprio"), "env.obs_groups: expected a list"),
    (EnvConfig(control="torque"), r"env.control: unknown control mode 'torque'"),
    (EnvConfig(num_envs=-4), "env.num_envs: expected an integer >= 1, got -4"),
    (EnvConfig(reward_scales={"speed": 1.0}), r"env.reward_scales: unknown reward term\(s\) \['speed'\]"),
    (EnvConfig(episode_steps=-1), "env.episode_steps"),
])
def test_construction_parameters_are_checked_first(cfg, match):
    with pytest.raises(ConfigError, match=match):
        BatchedEnv(cfg)
