"""Physics health: a diverged world is noticed, ends its episode and is reset properly; extreme
parameters and random actions keep every observation and reward finite."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from robots_ts.bench.physics import run_health
from robots_ts.config import EnvConfig
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.envs.backends.backend import BACKENDS


def _blow_up(backend, i: int) -> None:
    """Corrupt world ``i``'s cube velocity the way a physics blow-up does."""
    if backend.name == "mujoco":
        backend.datas[i].qvel[backend.datas[i].qvel.size - 6:] = 1e12   # beyond MuJoCo's limit: it resets the data
    else:
        worlds = backend._local
        worlds.p.resetBaseVelocity(worlds.objects[i]["cube"], [float("nan")] * 3, [0.0] * 3,
                                   physicsClientId=worlds.clients[i])


@pytest.mark.parametrize("backend", BACKENDS)
def test_diverged_world_ends_its_episode_and_is_reset(tmp_path, monkeypatch, caplog, backend):
    monkeypatch.chdir(tmp_path)
    env = BatchedEnv(EnvConfig(task="Push", backend=backend, num_envs=3, num_threads=1), seed=0)
    env.reset()
    for _ in range(5):
        env.step(np.zeros((3, 4)))
    w = env.world
    _blow_up(w.backend, 1)
    goal_before = w.state.command[1].copy()
    with caplog.at_level(logging.WARNING, logger="robots_ts.mujoco"):
        obs, reward, dones, infos = env.step(np.zeros((3, 4)))
    assert dones.tolist() == [False, True, False]
    info = infos[1]
    assert info["diverged"] is True
    assert info["is_success"] is False and info["TimeLimit.truncated"] is False
    assert reward[1] == 0.0
    assert env.diverged_episodes == 1
    # A fresh episode, not the simulator's reset state: arm near the ready pose, cube on the
    # table at a sampled spot, a new goal, the step counter at 0.
    assert w.t[1] == 0 and not w.diverged[1]
    np.testing.assert_allclose(w.state.qpos[1, w.arm.qpos_idx], w.arm.home, atol=0.05)
    cube_pos = w.task.cube_pos(w.state)[1]
    assert cube_pos[2] == pytest.approx(w.state.params[1, 0], abs=2e-3)
    assert not np.allclose(w.state.command[1], goal_before)
    assert np.isfinite(obs["proprio"]).all() and np.isfinite(obs["privileged"]).all()
    if backend == "mujoco":
        # MuJoCo's message reached our log, not a file in the working directory.
        assert any("MuJoCo" in r.getMessage() for r in caplog.records)
        assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task", ["Reach", "Push", "Lift"])
@pytest.mark.parametrize("control", ["ee", "joint"])
def test_extreme_parameters_and_random_actions_stay_finite(task, control, backend):
    rec = run_health(task, steps=16 * 150, num_envs=16, seed=3, control=control, backend=backend)
    assert rec["nonfinite_observations"] == 0
    assert rec["nonfinite_rewards"] == 0
    assert rec["episodes"] > 0
    assert rec["diverged_episodes"] == 0
