"""The Gymnasium and SB3 contracts on every task, observation mode and backend, and bad input."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robots_ts.config import EnvConfig
from robots_ts.envs import TASKS
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.envs.backends.backend import BACKENDS

MODES = {"state": ["proprio", "privileged"], "depth": ["proprio", "depth"], "points": ["proprio", "points"],
         "all": ["proprio", "privileged", "depth", "points"]}


# Every task on every backend it runs on (PegInsert refuses pybullet: tests/envs/test_peg_insert.py).
TASK_BACKENDS = [(t, b) for t in sorted(TASKS) for b in BACKENDS if b not in TASKS[t].unsupported_backends]


@pytest.mark.parametrize("task,backend", TASK_BACKENDS)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_check_env(task, mode, backend):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(f"robots_ts/{task}-v0", obs_groups=MODES[mode], backend=backend,
                   depth={"width": 32, "height": 32}, points={"num_points": 128, "width": 48, "height": 48})
    try:
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=False)
        obs, _ = env.reset(seed=0)
        assert set(obs) == set(MODES[mode])
        assert env.observation_space.contains(obs)
    finally:
        env.close()


def test_unknown_task_and_group_are_named():
    with pytest.raises(ValueError, match="Stack.*available tasks"):
        BatchedEnv(EnvConfig(task="Stack"))
    with pytest.raises(ValueError, match="rgb"):
        BatchedEnv(EnvConfig(task="Reach", obs_groups=["proprio", "rgb"]))


def test_bad_actions_raise_and_out_of_range_is_clipped():
    env = BatchedEnv(EnvConfig(task="Reach", num_envs=2), seed=3)
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*expected \(2, 4\)"):
        env.step(np.zeros((2, 3)))
    bad = np.zeros((2, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at \(world, index\) \[\[1, 2\]\]"):
        env.step(bad)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(bad)
    env.close()
    # A finite action beyond [-1, 1] acts exactly like the clipped action.
    a, b = (BatchedEnv(EnvConfig(task="Reach", num_envs=2), seed=3) for _ in range(2))
    oa, ob = a.reset(), b.reset()
    for _ in range(3):
        oa, *_ = a.step(np.full((2, 4), 5.0))
        ob, *_ = b.step(np.full((2, 4), 1.0))
    np.testing.assert_array_equal(oa["proprio"], ob["proprio"])   # prev_action holds the clipped action too
    a.close()
    b.close()


@pytest.mark.parametrize("bounds,match", [({"mass": [0.5, 0.1]}, "low must be < high"),
                                          ({"mass": [0.1, float("nan")]}, "finite"),
                                          ({"weight": [0.1, 0.2]}, "unknown task parameter 'weight'"),
                                          ({"mass": [0.1]}, r"\[low, high\]")])
def test_invalid_parameter_bounds(bounds, match):
    with pytest.raises(ValueError, match=match):
        BatchedEnv(EnvConfig(task="Push", num_envs=1, params=bounds))


def _box_size_and_mass(backend, i: int) -> tuple[np.ndarray, float]:
    """The Lift box's half-extents and mass as the simulator holds them for world ``i``."""
    if backend.name == "mujoco":
        m = backend.models[i]
        geom = m.geom("box").id
        return m.geom_size[geom].copy(), float(m.body_mass[m.geom_bodyid[geom]])
    worlds = backend._local   # one worker: the worlds live in this process
    p, c, uid = worlds.p, worlds.clients[i], worlds.objects[i]["box"]
    return np.asarray(p.getCollisionShapeData(uid, -1, physicsClientId=c)[0][3]) / 2, \
        float(p.getDynamicsInfo(uid, -1, physicsClientId=c)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameters_stay_in_bounds_and_reach_the_simulator(backend):
    env = BatchedEnv(EnvConfig(task="Lift", backend=backend, num_envs=4, num_threads=1,
                               params={"mass": [0.3, 0.31]}), seed=1)
    env.reset()
    w = env.world
    p = w.state.params
    assert np.all(p >= w.param_space.low) and np.all(p <= w.param_space.high)
    for i in range(4):
        half, mass = _box_size_and_mass(w.backend, i)
        np.testing.assert_allclose(half, p[i, :3], rtol=1e-6)
        assert mass == pytest.approx(p[i, 3])
    # The box rests on the table: its centre at its half-height.
    for _ in range(10):
        env.step(np.zeros((4, 4)))
    np.testing.assert_allclose(w.task.box_pos(w.state)[:, 2], p[:, 2], atol=2e-3)
    env.close()
