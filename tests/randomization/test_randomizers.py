"""Domain randomization: each randomizer changes what it claims, draws restart from nominal values,
the same seed gives the same draws, latency is exactly k steps, and invalid depth never reaches a
network as NaN."""
import numpy as np
import pytest
import torch

from robots_ts.config import (ConfigError, DepthNoiseConfig, EnvConfig, PointNoiseConfig, RandomizationConfig,
                              load_config)
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.sim2real.randomization import DepthSensorModel, ProprioNoise, noisy_points
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
    lay = BatchedEnv(EnvConfig(**base)).world.proprio_layout
    own = np.r_[lay["prev_action"], lay["command"]]          # the controller's memory: never stale
    sensed = np.setdiff1d(np.arange(delayed[0]["proprio"].shape[1]), own)
    for t in range(len(clean)):
        want = clean[max(0, t - k)]   # an episode starts with its reset observation as its past
        np.testing.assert_array_equal(delayed[t]["privileged"], want["privileged"])
        np.testing.assert_array_equal(delayed[t]["proprio"][:, sensed], want["proprio"][:, sensed])
        np.testing.assert_array_equal(delayed[t]["proprio"][:, own], clean[t]["proprio"][:, own])
    # The last action is the one just sent, whatever the delay: as the deployed controller sees it.
    np.testing.assert_array_equal(delayed[3]["proprio"][:, lay["prev_action"]], actions[2].astype(np.float32))


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


def _scene(n: int = 6, size: int = 64) -> np.ndarray:
    """Render-like depth: a table plane seen at an angle, a box and a sphere, a strip with no
    surface (far), objects touching the image borders."""
    rng = np.random.default_rng(5)
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        z = rng.uniform(0.9, 1.2) / (1.0 + 0.6 * (v - size / 2) / size)
        y0, x0 = rng.integers(0, size - 12, 2)
        z[y0:y0 + 12, x0:x0 + 16] = rng.uniform(0.3, 0.7)
        z[:6, -10:] = 0.45                                    # at the image's corner
        inside = (v - rng.uniform(8, 56)) ** 2 + (u - rng.uniform(8, 56)) ** 2 < 49
        z[inside] = np.minimum(z[inside], 0.6)
        out[i] = np.clip(z, 0.3, 1.5)
    out[:, :4] = 2.5
    return out


def _default_depth_noise() -> DepthNoiseConfig:
    return load_config(EnvConfig, None, ["randomization=@configs/randomization/default.yaml"]).randomization.depth


def test_depth_strength_scales_each_world_and_zero_is_the_clean_render():
    """Per-world strength: 0 returns the clean image bit for bit, 1 is the plain model (same
    random stream, same image), and the loss rate and the noise grow with strength."""
    cfg = _default_depth_noise()
    img = np.repeat(_scene(1), 4, axis=0)
    model = DepthSensorModel(cfg, 0.1, 2.5)
    ones = model(img, np.random.default_rng(4), np.ones(4))
    np.testing.assert_array_equal(ones, DepthSensorModel(cfg, 0.1, 2.5)(img, np.random.default_rng(4)))
    strengths = np.array([0.0, 0.5, 1.0, 2.0])
    lost = np.mean([(model(img, np.random.default_rng(k), strengths) == 0).mean(axis=(1, 2)) for k in range(10)], 0)
    assert lost[0] == 0 and lost[1] < lost[2] < lost[3], lost
    noise = DepthSensorModel(DepthNoiseConfig(axial_noise=1.0), 0.1, 2.5)(img, np.random.default_rng(0), strengths)
    err = np.abs(noise - img).mean(axis=(1, 2))
    assert err[0] == 0 and np.allclose(err[1:] / err[2], [0.5, 1, 2], rtol=0.05), err
    shift = DepthSensorModel(DepthNoiseConfig(pixel_shift=1.0), 0.1, 2.5)(img, np.random.default_rng(0), strengths)
    moved = (shift != img).mean(axis=(1, 2))
    assert moved[0] == 0 < moved[1] < moved[2] and abs(moved[3] - moved[2]) < 0.02, moved   # a share min(s, 1)
    np.testing.assert_array_equal(model(img, np.random.default_rng(1), strengths)[0], img[0])
    with pytest.raises(ValueError, match="strength"):
        model(img, np.random.default_rng(0), np.array([1.0, -1.0, 1.0, 1.0]))


def test_depth_model_halves_give_the_same_images_on_one_core_or_many(monkeypatch):
    """A batch of 16+ images is processed in halves on two threads; the images depend on the seed
    only, not on the machine's cores, and every image is noised (no half left clean)."""
    import robots_ts.sim2real.randomization.depth as depth_mod

    cfg = _default_depth_noise()
    img = np.concatenate([_scene(6)] * 3)          # 18 images: two halves of 9
    strengths = np.linspace(0.2, 1.5, 18)
    model = DepthSensorModel(cfg, 0.1, 2.5)
    a = model(img, np.random.default_rng(7), strengths)
    monkeypatch.setattr(depth_mod.os, "cpu_count", lambda: 1)
    b = DepthSensorModel(cfg, 0.1, 2.5)(img, np.random.default_rng(7), strengths)
    np.testing.assert_array_equal(a, b)
    assert all((a[i] != img[i]).mean() > 0.05 for i in range(18))
    assert not np.array_equal(a[:6], a[6:12])      # the halves draw different noise


def test_a_depth_image_s_noise_depends_on_its_own_generator_only():
    """Each image draws from its world's generator: any slice of a batch, alone (so on one thread,
    with other blob slot counts beside it), gives that slice's images of the whole batch; the
    same holds for the point and proprioceptive noise."""
    cfg = _default_depth_noise()
    img = np.concatenate([_scene(6)] * 3)
    strengths = np.linspace(0.0, 1.5, 18)
    streams = lambda: np.random.default_rng(9).spawn(18)   # noqa: E731
    whole = DepthSensorModel(cfg, 0.1, 2.5)(img, streams(), strengths)
    for a, b in ((0, 1), (3, 10), (9, 18)):
        part = DepthSensorModel(cfg, 0.1, 2.5)(img[a:b], streams()[a:b], strengths[a:b])
        np.testing.assert_array_equal(part, whole[a:b])
    pts = np.random.default_rng(0).uniform(0, 0.5, (5, 64, 3)).astype(np.float32)
    pcfg, box = PointNoiseConfig(jitter=0.003, dropout=0.2, outliers=0.1), ([-0.1, -0.6, -0.02], [1.0, 0.6, 0.8])
    np.testing.assert_array_equal(noisy_points(pts[2:4], pcfg, np.random.default_rng(1).spawn(5)[2:4], *box),
                                  noisy_points(pts, pcfg, np.random.default_rng(1).spawn(5), *box)[2:4])
    noise = ProprioNoise(5, 0.01, 0.0, 0.05, 0.05)
    q, qd = np.zeros((5, 7)), np.zeros((5, 7))
    all_q, all_qd = noise.observe(q, qd, np.random.default_rng(2).spawn(5))
    some_q, some_qd = noise.observe(q[[1, 3]], qd[[1, 3]], [np.random.default_rng(2).spawn(5)[i] for i in (1, 3)], [1, 3])
    np.testing.assert_array_equal(some_q, all_q[[1, 3]])
    np.testing.assert_array_equal(some_qd, all_qd[[1, 3]])


def test_env_draws_depth_strength_per_episode_from_the_randomization_generators():
    base = ["task=Reach", "num_envs=3", "obs_groups=[proprio,depth]", "depth.width=32", "depth.height=32",
            "randomization=@configs/randomization/default.yaml"]
    cfg = load_config(EnvConfig, None, base + ["randomization.depth.strength=[0.0,1.5]"])
    env = BatchedEnv(cfg, seed=5)
    env.reset()
    first = env.world.depth_strength.copy()
    assert np.all((first >= 0) & (first <= 1.5)) and len(set(first)) == 3
    again = BatchedEnv(cfg, seed=5)
    again.reset()
    np.testing.assert_array_equal(again.world.depth_strength, first)
    # Task draws do not depend on the strength range: the same targets as without it.
    plain = BatchedEnv(load_config(EnvConfig, None, base), seed=5)
    plain.reset()
    np.testing.assert_array_equal(plain.world.state.params, env.world.state.params)
    env.close(), again.close(), plain.close()


def test_depth_model_output_is_a_fresh_float32_image_in_range_and_the_input_is_untouched():
    cfg = _default_depth_noise()
    img = _scene()
    before = img.copy()
    model = DepthSensorModel(cfg, 0.1, 2.5)
    a = model(img, np.random.default_rng(3))
    np.testing.assert_array_equal(img, before)
    assert a.dtype == np.float32 and a.shape == img.shape and a.flags.c_contiguous
    lost = a == 0
    assert 0.01 < lost.mean() < 0.2 and np.isfinite(a).all()
    assert a[~lost].min() >= 0.1 and a[~lost].max() <= 2.5
    assert np.all((a[:, :2] == 2.5) | lost[:, :2])           # no surface (rows 0-3; shifts reach 2 px) stays far
    # A second call returns new memory: results kept by a delay line are never overwritten.
    b = model(img, np.random.default_rng(4))
    assert not np.shares_memory(a, b) and not np.array_equal(a, b)
    # The same generator state gives the same image, also from another instance, and from float64.
    np.testing.assert_array_equal(DepthSensorModel(cfg, 0.1, 2.5)(img.astype(np.float64), np.random.default_rng(3)), a)


def _coded(n: int, size: int) -> np.ndarray:
    """Each pixel's value names its world, row and column."""
    idx = np.arange(size * size, dtype=np.float32).reshape(size, size) / (size * size)
    return (1.0 + np.arange(n, dtype=np.float32)[:, None, None] + idx[None]).astype(np.float32)


@pytest.mark.parametrize("bank", [None, 100])   # 100: the batch is larger than the bank, drawn fresh
def test_depth_model_pixel_shift_reads_its_own_image_within_two_pixels(bank):
    from robots_ts.sim2real.randomization.depth import NoiseBank

    n, size = 4, 32
    img = _coded(n, size)
    rows, cols = np.mgrid[0:size, 0:size]
    for sigma in (0.5, 3.0):
        model = DepthSensorModel(DepthNoiseConfig(pixel_shift=sigma), 0.1, 10.0)
        if bank is not None:
            model._bank = NoiseBank(0, size=bank)
        rng = np.random.default_rng(0)
        dv, tops = [], []
        for _ in range(8):
            out = model(img, rng)
            world = np.floor(out) - 1
            pix = np.rint((out - 1 - world) * size * size).astype(int)
            src_r, src_c = pix // size, pix % size
            assert np.array_equal(world, np.broadcast_to(np.arange(n)[:, None, None], out.shape))
            assert np.abs(src_r - rows).max() <= 2 and np.abs(src_c - cols).max() <= 2
            dv.append((src_r - rows)[:, 2:-2, 2:-2].ravel())
            tops.append(src_r[:, 0].ravel())                    # edge replicated: row 0 reads rows 0..2
            assert tops[-1].max() <= 2
        dv, top = np.concatenate(dv), np.concatenate(tops)
        if sigma == 0.5:   # P(rint(0.5 g) = d): 0.683 at 0, 0.157 at +-1, 0.0013 at +-2
            for d, p in ((0, 0.6827), (1, 0.1573), (-1, 0.1573)):
                assert np.mean(dv == d) == pytest.approx(p, abs=0.015)
            assert np.mean(np.abs(dv) == 2) < 0.01
            assert np.mean(top == 0) == pytest.approx(0.5 + 0.6827 / 2, abs=0.04)
        else:              # clipped at 2 px
            assert np.mean(np.abs(dv) == 2) > 0.3


def _reference_edges(z: np.ndarray, threshold: float) -> np.ndarray:
    inv = 1.0 / np.maximum(z, np.float32(1e-3))
    edge = np.zeros(z.shape, dtype=bool)
    for axis in (1, 2):
        bend = np.abs(np.diff(inv, n=2, axis=axis)) > threshold
        for off in (0, 1, 2):
            sl = [slice(None)] * 3
            sl[axis] = slice(off, z.shape[axis] - 2 + off)
            edge[tuple(sl)] |= bend
    return edge


def test_depth_model_edges_are_bends_of_inverse_depth_within_each_image():
    # Images whose borders jump against their neighbours' (next row, next image): jumps that the
    # flattened batch would show between images or rows must not count.
    img = _scene(n=5, size=24)
    img[1::2, -1, :] = 0.35
    img[0::2, :, 0] = 1.4
    img[2, 5, 5] = 0.0                                          # as 1 / max(z, 1e-3)
    out = DepthSensorModel(DepthNoiseConfig(edge_dropout=1.0), 0.1, 2.5)(img, np.random.default_rng(0))
    np.testing.assert_array_equal(out == 0, _reference_edges(img, 0.03))
    # A table seen at a grazing angle (inverse depth linear down the image) has no edges.
    ramp = 1.0 / np.linspace(1.0 / 0.5, 1.0 / 1.5, 16, dtype=np.float32)
    plane = np.repeat(ramp[None, :, None], 24, axis=2).repeat(2, axis=0)
    out = DepthSensorModel(DepthNoiseConfig(edge_dropout=1.0), 0.1, 2.5)(plane, np.random.default_rng(0))
    assert not (out == 0).any()


def test_depth_model_blobs_are_disks_inside_their_own_image():
    """The compiled blobs against one blob at a time over its bounding box, from the same draws
    (each world's count, then its blobs' rows, columns and radii as uniforms), with centres at
    the image borders and corners."""
    from robots_ts.sim2real.randomization.depth_kernel import _blobs

    n, h, w, b = 6, 16, 20, 3
    rng = np.random.default_rng(1)
    for trial in range(30):
        count_u, blob_u = rng.random(n), rng.random((n, 3, b))
        slots = blob_u.transpose(1, 0, 2)                       # a view: (rows, columns, radii) x worlds x slots
        if trial % 2:                                           # centres on the borders
            slots[0, :, 0], slots[1, :, 0] = 0.999, 0.999
            slots[0, :, 1], slots[1, :, 1] = 0.001, 0.5
            slots[0, :, 2], slots[1, :, 2] = 0.5, 0.999
        counts = np.minimum((count_u * (b + 1)).astype(int), b)
        keep = np.ones((n, h, w), dtype=bool)
        for i in range(n):
            _blobs(keep[i].reshape(-1), h, w, counts[i], blob_u[i], 1.0, 6.0)
        want = np.ones((n, h, w), dtype=bool)
        yy, xx = np.arange(h), np.arange(w)
        for i in range(n):
            for k in range(counts[i]):
                cy, cx = slots[0, i, k] * h, slots[1, i, k] * w
                r = 1.0 + slots[2, i, k] * 5.0
                y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 1)
                x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 1)
                disk = (yy[y0:y1, None] - cy) ** 2 + (xx[None, x0:x1] - cx) ** 2 <= r ** 2
                want[i, y0:y1, x0:x1] &= ~disk
        np.testing.assert_array_equal(keep, want)


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
