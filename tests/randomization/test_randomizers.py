"""Domain randomization: each randomizer changes what it claims, draws restart from nominal values,
the same seed gives the same draws, latency is exactly k steps, and invalid depth never reaches a
network as NaN."""
import numpy as np
import pytest
import torch

from robots_ts.config import (ConfigError, DepthNoiseConfig, EnvConfig, PointNoiseConfig, RandomizationConfig,
                              load_config)
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.sim2real.randomization import DepthSensorModel, noisy_points
from robots_ts.envs.backends.backend import BACKENDS


def _box_mass_and_friction(backend, i: int) -> tuple[float, float]:
    if backend.name == "mujoco":
        m = backend.models[i]
        geom = m.geom("box").id
        return float(m.body_mass[m.geom_bodyid[geom]]), float(m.geom_friction[geom, 0])
    w = backend._local
    info = w.p.getDynamicsInfo(w.objects[i]["box"], -1, physicsClientId=w.clients[i])
    return float(info[0]), float(info[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_object_mass_and_friction_scales_reach_the_simulator_and_never_accumulate(backend):
    r = RandomizationConfig(object_mass_scale=[2.0, 2.0], object_friction_scale=[1.5, 1.5])
    env = BatchedEnv(EnvConfig(task="Lift", backend=backend, num_envs=2, num_threads=1, randomization=r), seed=0)
    w = env.world
    for _ in range(3):   # three resets of the same worlds: the scale applies to the nominal each time
        env.reset()
        for i in range(2):
            mass, friction = _box_mass_and_friction(w.backend, i)
            assert mass == pytest.approx(2.0 * w.state.params[i, 3])
            nominal = w.task.bodies[0].friction[0]
            # PyBullet combines frictions by product: an object gets max(own, table's) (see the backend).
            expect = 1.5 * nominal if backend == "mujoco" else max(1.5 * nominal, 0.8)
            assert friction == pytest.approx(expect)
    env.close()
    # Off: the nominal values, whatever an earlier env drew.
    env = BatchedEnv(EnvConfig(task="Lift", backend=backend, num_envs=2, num_threads=1), seed=0)
    env.reset()
    for i in range(2):
        mass, friction = _box_mass_and_friction(env.world.backend, i)
        assert mass == pytest.approx(env.world.state.params[i, 3])
    env.close()


def test_a_heavier_cube_moves_less_under_the_same_push():
    """The mass draw changes dynamics, not only a number: the scripted push moves a 20x heavier
    cube (about 9 kg, its friction force near the arm's pushing force) less far in the same time."""
    from robots_ts.policies.scripted import ScriptedTeacher

    moved = {}
    for scale in (1.0, 20.0):
        cfg = EnvConfig(task="Push", num_envs=4, num_threads=1, init_noise=0.0, params={"mass": [0.4, 0.5]},
                        terminate_on_success=False, episode_steps=200,
                        randomization=RandomizationConfig(object_mass_scale=[scale, scale]))
        env = BatchedEnv(cfg, seed=3)
        obs = env.reset()
        start = env.world.task.cube_pos(env.world.state).copy()
        teacher = ScriptedTeacher(env.world)
        for _ in range(90):
            obs, _, dones, _ = env.step(teacher.act(obs))
            assert not dones.any()
        moved[scale] = np.linalg.norm(env.world.task.cube_pos(env.world.state) - start, axis=1)
        env.close()
    assert moved[1.0].min() > 0.03   # the light cubes were pushed
    assert moved[20.0].mean() < 0.7 * moved[1.0].mean()


def _rollout(cfg: EnvConfig, actions: np.ndarray, seed: int = 0) -> list[dict]:
    env = BatchedEnv(cfg, seed=seed)
    out = [env.reset()]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    env.close()
    return out


def test_same_seed_same_draws_and_noise():
    cfg = load_config(EnvConfig, None, ["task=Push", "num_envs=3", "obs_groups=[proprio,depth,points]",
                                        "randomization=@configs/randomization/default.yaml"])
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 3, 4))
    a, b, c = _rollout(cfg, actions, 1), _rollout(cfg, actions, 1), _rollout(cfg, actions, 2)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(a[-1]["depth"], c[-1]["depth"])


@pytest.mark.parametrize("k", [1, 3])
def test_action_delay_is_exactly_k_steps(k):
    base = dict(task="Reach", num_envs=2, num_threads=1, init_noise=0.0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (12, 2, 4))
    hold = np.tile([0.0, 0.0, 0.0, 1.0], (k, 2, 1))   # what a fresh episode's history holds
    delayed = _rollout(EnvConfig(**base, randomization=RandomizationConfig(action_delay=[k, k])), actions)
    shifted = _rollout(EnvConfig(**base), np.concatenate([hold, actions[:-k]]))
    for x, y in zip(delayed, shifted):
        np.testing.assert_allclose(x["privileged"], y["privileged"], atol=1e-12)   # same physics
    # Not a no-op: without the delay the trajectory differs.
    plain = _rollout(EnvConfig(**base), actions)
    assert not np.allclose(plain[-1]["privileged"], delayed[-1]["privileged"])


@pytest.mark.parametrize("k", [1, 2])
def test_observation_delay_is_exactly_k_steps(k):
    base = dict(task="Reach", num_envs=2, num_threads=1, init_noise=0.0, obs_groups=["proprio", "privileged"])
    actions = np.random.default_rng(1).uniform(-1, 1, (10, 2, 4))
    delayed = _rollout(EnvConfig(**base, randomization=RandomizationConfig(obs_delay=[k, k])), actions)
    clean = _rollout(EnvConfig(**base), actions)
    for t in range(len(clean)):
        want = clean[max(0, t - k)]   # an episode starts with its reset observation as its past
        for g in want:
            np.testing.assert_array_equal(delayed[t][g], want[g])


def test_proprio_noise_and_bias():
    r = RandomizationConfig(joint_pos_noise=0.01, joint_pos_bias=0.02, joint_vel_noise=0.1)
    env = BatchedEnv(EnvConfig(task="Reach", num_envs=64, randomization=r), seed=0)
    obs = env.reset()
    lay = env.world.proprio_layout
    err = obs["proprio"][:, lay["joint_pos"]] - env.world.state.qpos[:, :7]
    # Bias (per episode) and noise (per step): total sigma sqrt(0.02^2 + 0.01^2).
    assert np.std(err) == pytest.approx(np.hypot(0.02, 0.01), rel=0.15)
    np.testing.assert_allclose(env.world.proprio_noise.bias.std(), 0.02, rtol=0.15)
    # Privileged state stays exact.
    assert np.array_equal(obs["privileged"], env.world._clean_obs()["privileged"])
    env.close()


def _plane(z: float, n: int = 4, size: int = 64) -> np.ndarray:
    return np.full((n, size, size), z, np.float32)


def test_depth_model_noise_grows_with_distance_and_quantises_disparity():
    model = DepthSensorModel(DepthNoiseConfig(axial_noise=1.0), 0.1, 2.5)
    rng = np.random.default_rng(0)
    near_err = model(_plane(0.6), rng) - 0.6
    far_err = model(_plane(1.6), rng) - 1.6
    assert np.std(near_err) == pytest.approx(0.0012 + 0.0019 * 0.2 ** 2, rel=0.1)
    assert np.std(far_err) == pytest.approx(0.0012 + 0.0019 * 1.2 ** 2, rel=0.1)
    q = DepthSensorModel(DepthNoiseConfig(disparity_step=0.125), 0.1, 2.5)
    ramp = np.linspace(1.0, 1.2, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
    out = q(ramp, rng)
    levels = np.unique(out)
    fb = 580.0 * 0.075
    assert len(levels) < 60   # a smooth ramp comes back in steps
    np.testing.assert_allclose((fb / levels) / 0.125, np.rint((fb / levels) / 0.125), atol=1e-3)
    assert np.abs(out - ramp).max() < 1.2 ** 2 * 0.125 / fb   # within half a step or so


def test_depth_model_loses_pixels_as_zero_and_keeps_background():
    cfg = DepthNoiseConfig(dropout=0.05, edge_dropout=1.0, blobs=3)
    img = _plane(1.0, 2)
    img[:, :, 40:] = 2.5       # no surface: the background reads far
    img[:, 20:30, 10:20] = 0.7  # a box with edges
    out = DepthSensorModel(cfg, 0.1, 2.5)(img, np.random.default_rng(0))
    lost = out == 0
    assert 0.04 < lost[:, :, :38].mean() < 0.3
    # Every pixel at a depth jump is lost with edge_dropout = 1.
    assert lost[:, 19, 12:18].all() and lost[:, 25, 9].all()
    assert np.all((out[:, :, 42:] == 2.5) | lost[:, :, 42:])
    assert np.isfinite(out).all()
    # Off: the image comes back unchanged.
    clean = DepthSensorModel(DepthNoiseConfig(), 0.1, 2.5)
    assert not clean.active
    np.testing.assert_array_equal(clean(img, np.random.default_rng(0)), img)


def test_invalid_depth_never_reaches_a_network_as_nan():
    from robots_ts.policies.students.config import StudentNetConfig
    from robots_ts.policies.students.networks import Student

    net = Student(StudentNetConfig(encoder="depth"), {"proprio": [23], "depth": [1, 64, 64]}, 4, depth_range=(0.1, 2.5))
    proprio = torch.zeros(3, 23)
    depth = torch.full((3, 1, 64, 64), 1.0)
    depth[0, 0, :10] = float("nan")    # 32FC1 no data
    depth[1, 0, :10] = 0.0             # 16UC1 no data
    depth[2, 0, :10] = 2.5             # what both mean: no return, far
    feats = net.encode(proprio, depth)
    assert torch.isfinite(feats).all()
    torch.testing.assert_close(feats[0], feats[2])
    torch.testing.assert_close(feats[1], feats[2])


def test_points_noise():
    pts = np.random.default_rng(0).uniform(0, 0.5, (4, 512, 3)).astype(np.float32)
    rng = np.random.default_rng(1)
    jit = noisy_points(pts, PointNoiseConfig(jitter=0.003), rng, [-0.1, -0.6, -0.02], [1.0, 0.6, 0.8])
    assert np.std(jit - pts) == pytest.approx(0.003, rel=0.05)
    out = noisy_points(pts, PointNoiseConfig(outliers=0.1), rng, [-0.1, -0.6, -0.02], [1.0, 0.6, 0.8])
    moved = np.any(out != pts, axis=2)
    assert 0.05 < moved.mean() < 0.15
    assert np.all(out[moved] >= [-0.1, -0.6, -0.02]) and np.all(out[moved] <= [1.0, 0.6, 0.8])
    dropped = noisy_points(pts, PointNoiseConfig(dropout=0.2), rng, [-0.1, -0.6, -0.02], [1.0, 0.6, 0.8])
    assert dropped.shape == pts.shape
    # Dropped slots hold copies of the cloud's own points: no new coordinates appear.
    for n in range(4):
        assert {tuple(p) for p in dropped[n]} <= {tuple(p) for p in pts[n]}


def test_presets_load_and_bad_ranges_are_named():
    for preset in ("default", "strong"):
        cfg = load_config(EnvConfig, None, [f"randomization=@configs/randomization/{preset}.yaml"])
        assert cfg.randomization.depth.axial_noise > 0
        BatchedEnv(cfg, seed=0).close()
    with pytest.raises(ConfigError, match="no file configs/randomization/none.yaml"):
        load_config(EnvConfig, None, ["randomization=@configs/randomization/none.yaml"])
    from robots_ts.envs.checks import check_env_config

    for override, key in [("randomization.object_mass_scale=[1.2,0.8]", "object_mass_scale"),
                          ("randomization.action_delay=[0,-1]", "action_delay"),
                          ("randomization.depth.dropout=1.5", "depth.dropout")]:
        with pytest.raises(ConfigError, match=f"env.randomization.{key}"):
            check_env_config(load_config(EnvConfig, None, [override]))
