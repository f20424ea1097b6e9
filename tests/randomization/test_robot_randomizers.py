"""Robot and world randomizers: link masses, joint dynamics, servo gains, gravity tilt, camera
extrinsics and velocity kicks change what they claim on both backends (where the backend models
them), every reset starts from the nominal world again, and the same seed gives the same draws."""
import numpy as np
import pytest

from robots_ts.config import ConfigError, EnvConfig, RandomizationConfig
from robots_ts.envs.backends.backend import BACKENDS
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.envs.world import WorldBatch


def _world(backend: str, r: RandomizationConfig, task: str = "Reach", n: int = 2, **kw) -> WorldBatch:
    cfg = EnvConfig(task=task, backend=backend, num_envs=n, num_threads=1, init_noise=0.0, randomization=r, **kw)
    w = WorldBatch(cfg, seed=0)
    w.reset_worlds(range(n))
    return w


def _hold(w: WorldBatch, steps: int) -> np.ndarray:
    """Joint angles after holding the home targets (zero actions) for ``steps`` control steps."""
    for _ in range(steps):
        w.step(np.tile(np.r_[np.zeros(w.action_dim - 1), 1.0], (w.num_envs, 1)))
    return w.state.qpos[:, :7].copy()


@pytest.mark.parametrize("backend", ["mujoco"])
def test_heavier_links_sag_further_under_gravity(backend):
    """Gravity compensation cancels the nominal weight only: 1.5x heavier links pull the arm away
    from its held pose. (PyBullet's motor is a velocity constraint that holds any pose exactly
    below its force limit: there the draw reaches the links, see the gravity test, but not the
    held pose.)"""
    nominal = _world(backend, RandomizationConfig())
    heavy = _world(backend, RandomizationConfig(link_mass_scale=[1.5, 1.5]))
    q0, q1 = _hold(nominal, 15), _hold(heavy, 15)
    sag = np.abs(q1 - q0)[:, 1]
    assert sag.min() > 1e-3, sag
    if backend == "mujoco":
        m, nom = heavy.backend.models[0], heavy.backend.nominal
        link = m.body("panda_link3").id
        assert m.body_mass[link] == pytest.approx(1.5 * nom.body_mass[link])
        assert m.body_gravcomp[link] == pytest.approx(1 / 1.5)
    nominal.close()
    heavy.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_softer_servos_track_a_step_more_slowly(backend):
    """Half the stiffness gain (MuJoCo: same damping gain; PyBullet: its first-order servo's gain
    ratio) leaves a larger tracking error one control step after a joint-target step."""
    err = {}
    for kp in (1.0, 0.5):
        w = _world(backend, RandomizationConfig(gain_kp_scale=[kp, kp]), control="joint")
        a = np.zeros((w.num_envs, w.action_dim))
        a[:, 0], a[:, -1] = 1.0, 1.0
        w.step(a)
        err[kp] = np.abs(w.q_target[:, 0] - w.state.qpos[:, 0])
        w.close()
    assert (err[0.5] > 1.2 * err[1.0]).all(), err


def test_joint_damping_armature_and_friction_reach_the_model_and_are_restored():
    r = RandomizationConfig(joint_damping_scale=[2.0, 2.0], joint_armature_scale=[1.05, 1.05],
                            joint_frictionloss=[0.3, 0.3], link_com_offset=0.01, gravity_tilt=5.0)
    w = _world("mujoco", r)
    m, nom = w.backend.models[1], w.backend.nominal
    assert np.allclose(m.dof_damping[:9], 2 * nom.dof_damping[:9])
    assert np.allclose(m.dof_armature[:9], 1.05 * nom.dof_armature[:9])
    assert np.allclose(m.dof_frictionloss[:9], 0.3)
    shift = np.abs(m.body_ipos - nom.body_ipos).max(axis=1)
    assert 0 < shift.max() <= 0.01
    tilt = np.degrees(np.arccos(-m.opt.gravity[2] / np.linalg.norm(m.opt.gravity)))
    assert 0 < tilt <= 5.0 and np.linalg.norm(m.opt.gravity) == pytest.approx(9.81)
    # The same backend reset without edits is the nominal model again, field by field.
    w.backend.reset([1], np.tile(w.arm.home, (1, 1)), w.arm.finger_open, [[]])
    for field in ("dof_damping", "dof_armature", "dof_frictionloss", "body_ipos", "body_mass", "body_gravcomp",
                  "actuator_gainprm", "actuator_biasprm", "cam_pos", "cam_quat"):
        assert np.array_equal(getattr(m, field), getattr(nom, field)), field
    assert np.array_equal(m.opt.gravity, nom.opt.gravity)
    w.close()


def test_pybullet_gravity_tilt_and_restore():
    w = _world("pybullet", RandomizationConfig(gravity_tilt=5.0, link_mass_scale=[2.0, 2.0]), n=1)
    pb = w.backend._local
    p, c = pb.p, pb.clients[0]

    def gravity():
        info = p.getPhysicsEngineParameters(physicsClientId=c)
        return np.array([info["gravityAccelerationX"], info["gravityAccelerationY"], info["gravityAccelerationZ"]])

    g = gravity()
    tilt = np.degrees(np.arccos(-g[2] / np.linalg.norm(g)))
    assert 0 < tilt <= 5.0
    link = pb.links["panda_link3"]
    assert p.getDynamicsInfo(pb.robot[0], link, physicsClientId=c)[0] == pytest.approx(2 * pb.nominal_links["panda_link3"][0])
    w.backend.reset([0], np.tile(w.arm.home, (1, 1)), w.arm.finger_open, [[]])
    assert np.allclose(gravity(), [0, 0, -9.81])
    assert p.getDynamicsInfo(pb.robot[0], link, physicsClientId=c)[0] == pytest.approx(pb.nominal_links["panda_link3"][0])
    w.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_camera_jitter_moves_the_render_and_nothing_else(backend):
    """The rendered depth changes with the camera's drawn pose; a world reset without the draw
    renders exactly the nominal image again."""
    kw = dict(obs_groups=["proprio", "depth"], depth={"width": 32, "height": 32})
    from robots_ts.config import DepthConfig

    kw["depth"] = DepthConfig(width=32, height=32)
    base = _world(backend, RandomizationConfig(), **kw)
    moved = _world(backend, RandomizationConfig(camera_pos_noise=0.02, camera_rot_noise=1.0), **kw)
    diff = np.abs(base.depth - moved.depth)
    assert np.median(diff) > 1e-3
    ops = [op for op in moved._randomize_physics(0, [], {}) if op[0] != "camera"]
    assert ops == []   # only the camera is randomized here
    moved.backend.reset([0], np.tile(moved.arm.home, (1, 1)), moved.arm.finger_open,
                        [[op for op in moved.episode_edits[0] if op[0] != "camera"]])
    assert np.abs(moved.depth[0] - base.depth[0]).max() < 1e-5
    base.close()
    moved.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_kicks_move_the_cube_at_the_drawn_steps(backend):
    """Velocity kicks arrive at the drawn intervals and slide a resting cube; without them it
    stays put."""
    moved = {}
    for speed in (0.0, 1.5):
        r = RandomizationConfig(push_interval=[3, 3], push_velocity=speed)
        w = _world(backend, r, task="Push", n=2)
        start = w.task.cube_pos(w.state).copy()
        assert (w.next_push == 3).all() if speed else True
        _hold(w, 7)
        moved[speed] = np.linalg.norm(w.task.cube_pos(w.state) - start, axis=1)
        if speed:
            assert (w.next_push == 9).all()
        w.close()
    assert moved[0.0].max() < 1e-3
    assert (moved[1.5] > 0.005).any()


def test_same_seed_same_robot_draws_and_off_draws_nothing():
    r = RandomizationConfig(link_mass_scale=[0.9, 1.1], joint_damping_scale=[0.8, 1.2], gain_kp_scale=[0.9, 1.1],
                            gravity_tilt=2.0, camera_pos_noise=0.01)
    a = _world("mujoco", r, n=3)
    b = _world("mujoco", r, n=3)
    ea = [a._randomize_physics(i, [], {}) for i in range(3)]
    eb = [b._randomize_physics(i, [], {}) for i in range(3)]
    assert ea == eb and ea[0] != ea[1]
    # A randomizer that is off draws nothing from a world's generator: its other draws stay put.
    off = _world("mujoco", RandomizationConfig(), n=3)
    state = off.rngs[0].bit_generator.state
    assert off._randomize_physics(0, [], {}) == []
    assert off.rngs[0].bit_generator.state == state
    for w in (a, b, off):
        w.close()


def test_pybullet_refuses_what_it_does_not_model():
    for field, value in (("joint_armature_scale", [1.0, 1.1]), ("joint_frictionloss", [0.0, 0.1]),
                         ("link_com_offset", 0.01)):
        r = RandomizationConfig(**{field: value})
        with pytest.raises(ConfigError, match=field):
            BatchedEnv(EnvConfig(backend="pybullet", num_envs=1, randomization=r))


def test_bad_robot_randomization_is_named():
    for field, value in (("link_mass_scale", [0.0, 1.0]), ("gravity_tilt", 95.0), ("push_interval", [2.5, 3]),
                         ("camera_rot_noise", -1.0)):
        with pytest.raises(ConfigError, match=field):
            BatchedEnv(EnvConfig(num_envs=1, randomization=RandomizationConfig(**{field: value})))


def _table_points(w: WorldBatch, pts: np.ndarray) -> np.ndarray:
    """Per world, how many cloud points lie on the real table: each point (in the calibrated frame)
    mapped back through the camera's drawn pose to the world, within 3 mm of z = 0."""
    from robots_ts.envs.backends.scene import camera

    cal = camera(w.cfg.depth.camera)
    counts = []
    for i in range(w.num_envs):
        ops = [op for op in w.episode_edits[i] if op[0] == "camera"]
        real = cal.moved(ops[0][2], ops[0][3]) if ops else cal
        world = np.asarray(real.pos) + (pts[i] - np.asarray(cal.pos)) @ cal.rotation() @ real.rotation().T
        counts.append(int((np.abs(world[:, 2]) < 0.003).sum()))
    return np.array(counts)


def test_table_fit_removes_the_table_a_moved_camera_sees_tilted():
    """A camera 1.5 degrees and 1 cm off its calibration sees the table tilted and shifted in the
    calibrated frame: the fixed 4 mm threshold keeps table points, the per-cloud plane fit keeps
    about as few as the calibrated camera does."""
    from robots_ts.config import PointsConfig

    table = {}
    for name, fit, r in (("nominal", False, RandomizationConfig()),
                         ("fixed", False, RandomizationConfig(camera_pos_noise=0.01, camera_rot_noise=1.5)),
                         ("fit", True, RandomizationConfig(camera_pos_noise=0.01, camera_rot_noise=1.5))):
        w = _world("mujoco", r, task="Lift", n=6, obs_groups=["proprio", "points"],
                   points=PointsConfig(num_points=1024, table_fit=fit))
        table[name] = _table_points(w, w.observe()["points"])
        w.close()
    assert table["nominal"].max() <= 5, table
    assert table["fixed"].max() > 100, table
    assert table["fit"].max() <= 10, table
