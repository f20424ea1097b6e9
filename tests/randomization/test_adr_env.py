"""ADR in the env: the curriculum teacher's per-episode values replace the preset's draws, the
env reports each episode's success back, and the ranges widen while the policy copes."""
import numpy as np
import pytest

from robots_ts.config import AdrConfig, ConfigError, EnvConfig, RandomizationConfig
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.policies.scripted import ScriptedTeacher


def _env(dims: dict, task: str = "Reach", n: int = 8, **adr_kw) -> BatchedEnv:
    kw = dict(boundary_prob=0.5, buffer_size=4, step=[0.1] * len(dims))
    kw.update(adr_kw)
    r = RandomizationConfig(adr=AdrConfig(dims=dims, kwargs=kw))
    return BatchedEnv(EnvConfig(task=task, num_envs=n, num_threads=1, randomization=r), seed=0)


def test_adr_values_reach_the_world_in_place_of_draws():
    env = _env({"object_mass_scale": [0.5, 2.0], "action_delay": [0.0, 3.0]}, task="Push", n=4,
               step=[0.5, 1.0], boundary_prob=1.0, buffer_size=1)
    w = env.world
    teacher = w.adr_sampler
    # Push the ranges out by hand (all-success reports), then check one episode's world against its values.
    for _ in range(6):
        teacher.update(teacher.sample(), 1.0)
    lo, hi = teacher.ranges()
    assert hi[0] > 1.0 and hi[1] >= 1.0
    env.reset()
    for i in range(4):
        mass_scale, delay = w.adr_params[i]
        assert lo[0] <= mass_scale <= hi[0] and lo[1] <= delay <= hi[1]
        m = w.backend.models[i]
        cube = m.body(w.task.bodies[0].name).id
        assert m.body_mass[cube] == pytest.approx(mass_scale * w.state.params[i, w.param_space.names.index("mass")])
        assert w.action_delay.delay[i] == int(round(delay))
    env.close()


def test_ranges_widen_while_the_policy_copes():
    """A scripted Reach controller copes with small action noise: the noise range grows from 0,
    and the env reported every finished episode to the teacher."""
    env = _env({"action_noise": [0.0, 1.0]})
    teacher = ScriptedTeacher(env.world)
    obs = env.reset()
    finished = 0
    for _ in range(400):
        obs, _, dones, infos = env.step(teacher.act(obs))
        teacher.reset(dones)
        finished += int(dones.sum())
        assert all("randomization" in info for info, d in zip(infos, dones) if d)
    adr = env.world.adr_sampler
    assert adr.summary()["episodes"] == finished
    lo, hi = adr.ranges()
    assert lo[0] == 0.0 and hi[0] >= 0.2, hi
    assert adr.widened >= 2
    env.close()


def test_adr_is_deterministic_per_seed():
    runs = []
    for _ in range(2):
        env = _env({"gain_kp_scale": [0.5, 1.5]}, boundary_prob=1.0, buffer_size=1)
        env.world.adr_sampler.update(env.world.adr_sampler.sample(), 1.0)
        env.reset()
        runs.append(env.world.adr_params.copy())
        env.close()
    assert np.array_equal(runs[0], runs[1])


def test_bad_adr_config_is_named():
    cases = [({"dims": {"wind": [0, 1]}}, "adr.dims.wind"),
             ({"dims": {"action_noise": [0.5, 0.1]}}, "adr.dims.action_noise"),
             ({"dims": {"gain_kp_scale": [0.5, 0.9]}}, "adr.nominal.gain_kp_scale"),
             ({"dims": {"action_noise": [0, 1]}, "teacher": "nope"}, "adr.teacher"),
             ({"dims": {"push_velocity": [0, 1]}}, "push_interval")]
    for kw, key in cases:
        with pytest.raises(ConfigError, match=key):
            BatchedEnv(EnvConfig(num_envs=1, randomization=RandomizationConfig(adr=AdrConfig(**kw))))


def test_alp_gmm_drives_randomization_through_the_same_interface():
    r = RandomizationConfig(adr=AdrConfig(dims={"action_noise": [0.0, 0.3], "gain_kp_scale": [0.7, 1.3]},
                                          teacher="alp_gmm"))
    env = BatchedEnv(EnvConfig(task="Reach", num_envs=4, num_threads=1, episode_steps=5, randomization=r), seed=0)
    env.reset()
    seen = []
    for _ in range(30):
        _, _, dones, infos = env.step(np.zeros((4, env.world.action_dim)))
        seen += [info["randomization"]["action_noise"] for info, d in zip(infos, dones) if d]
    assert len(seen) >= 20 and 0.0 <= min(seen) and max(seen) <= 0.3 and np.std(seen) > 0.01
    assert len(env.world.adr_sampler.params_history) == len(seen)
    env.close()
