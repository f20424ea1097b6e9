"""The ``history`` observation group: the last actions the policy sent, newest first, never delayed."""
import numpy as np
import pytest

from robots_ts.config import ConfigError, EnvConfig, RandomizationConfig
from robots_ts.envs.checks import check_env_config
from robots_ts.envs.vec_env import BatchedEnv

RESET_ACTION = np.array([0.0, 0.0, 0.0, 1.0], np.float32)   # what a fresh episode's past holds


def _rollout(cfg: EnvConfig, actions: np.ndarray) -> list[dict]:
    env = BatchedEnv(cfg, seed=0)
    out = [env.reset()]
    for a in actions:
        out.append(env.step(a)[0])
    env.close()
    return out


@pytest.mark.parametrize("delay", [0, 2])
def test_history_holds_the_last_actions_sent_newest_first_whatever_the_delays(delay):
    k = 3
    r = RandomizationConfig(action_delay=[delay, delay], obs_delay=[delay, delay])
    cfg = EnvConfig(task="Push", num_envs=2, num_threads=1, obs_groups=["proprio", "privileged", "history"],
                    action_history=k, randomization=r)
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 2, 4)).astype(np.float32)
    obs = _rollout(cfg, actions)
    assert obs[0]["history"].shape == (2, k * 4)
    for t, o in enumerate(obs):
        sent = [actions[t - 1 - j] if t - 1 - j >= 0 else np.tile(RESET_ACTION, (2, 1)) for j in range(k)]
        np.testing.assert_array_equal(o["history"], np.concatenate(sent, axis=1))
    # The newest entry is proprio's prev_action, at any observation delay.
    lay = BatchedEnv(cfg, seed=0).world.proprio_layout
    np.testing.assert_array_equal(obs[-1]["history"][:, :4], obs[-1]["proprio"][:, lay["prev_action"]])


def test_history_restarts_from_the_reset_action_with_a_new_episode():
    cfg = EnvConfig(task="Reach", num_envs=2, num_threads=1, episode_steps=3, obs_groups=["proprio", "history"],
                    action_history=2)
    env = BatchedEnv(cfg, seed=0)
    env.reset()
    a = np.full((2, 4), 0.5, np.float32)
    for _ in range(3):
        obs, _, dones, infos = env.step(a)
    assert dones.all()
    np.testing.assert_array_equal(infos[0]["terminal_observation"]["history"], np.tile(a[0], 2))
    np.testing.assert_array_equal(obs["history"], np.tile(RESET_ACTION, (2, 2)))
    env.close()


def test_a_history_of_no_actions_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="action_history"):
        check_env_config(EnvConfig(obs_groups=["proprio", "history"], action_history=0))
