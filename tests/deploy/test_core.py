"""PolicyRuntime against the simulator it must imitate: the URDF Jacobian against MuJoCo's, the
runtime's observations and joint targets against a real env's (joint states shuffled with an
extra joint, depth as 16UC1 millimetres and 32FC1 metres, point clouds from depth or as clouds),
and the runtime closing the loop on the env reproducing the policy's in-sim actions.

The exports are students of random weights with non-trivial normalization, saved and exported as
distillation and ``robots-ts export`` do (tests/export/conftest.py); :func:`export_for` builds
each once per test session and the other deploy test modules share them.
"""
from __future__ import annotations

import copy

import mujoco
import numpy as np
import pytest
import torch

from robots_ts.config import DepthConfig, EnvConfig, PointsConfig
from robots_ts.envs.world import WorldBatch
from robots_ts.policies.students.checkpoint import save_student
from robots_ts.policies.students.config import StudentNetConfig
from robots_ts.policies.students.networks import Student
from robots_ts.robot.description import panda
from robots_ts.runs import atomic_write_json, write_run_meta
from robots_ts.sim2real.deploy import msgs
from robots_ts.sim2real.deploy.core import PolicyRuntime
from robots_ts.sim2real.export.onnx_policy import OnnxPolicy

SMALL = dict(cnn_channels=[4, 8], cnn_kernels=[3, 3], cnn_strides=[2, 2], point_mlp=[16, 32], feature_dim=16,
             proprio_mlp=[16], head_mlp=[32])
# name -> task, encoder, control, GRU size, reads the `history` group (the last actions sent)
SPECS = {"reach_depth": ("Reach", "depth", "ee", 0, False), "push_depth_joint": ("Push", "depth", "joint", 0, False),
         "reach_depth_gru": ("Reach", "depth", "ee", 8, False), "reach_points": ("Reach", "points", "ee", 0, False),
         "reach_with_history": ("Reach", "depth", "ee", 0, True)}
_EXPORTS: dict = {}


def env_config(task: str, encoder: str, control: str, history: bool = False) -> EnvConfig:
    # action_history 3: the runtime must take K from the manifest, not assume the default 4.
    return EnvConfig(task=task, num_envs=1, control=control, num_threads=1, action_history=3,
                     obs_groups=["proprio", encoder, *(["history"] if history else [])],
                     depth=DepthConfig(width=16, height=12), points=PointsConfig(num_points=64, width=32, height=24))


def export_for(tmp_path_factory, name: str):
    """The ONNX export directory of student ``name`` (SPECS), made once per session."""
    from robots_ts.sim2real.export.exporter import export_run

    if name in _EXPORTS:
        return _EXPORTS[name]
    task, encoder, control, gru, history = SPECS[name]
    seed = sorted(SPECS).index(name)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = env_config(task, encoder, control, history)
    w = WorldBatch(env)
    p_dim, a_dim = w.proprio_layout.dim, w.action_dim
    spec = {g: list(w.observation_space[g].shape) for g in env.obs_groups}
    w.close()
    model = Student(StudentNetConfig(encoder=encoder, gru_hidden=gru, depth_norm="pixel", **SMALL), spec, a_dim,
                    (env.depth.near, env.depth.far))
    norm = {"proprio_mean": rng.normal(0, 0.3, p_dim).tolist(), "proprio_std": rng.uniform(0.3, 2.0, p_dim).tolist()}
    if encoder == "depth":
        norm["depth_mean"] = rng.uniform(0.8, 1.6, spec["depth"][1:]).tolist()
        norm["depth_std"] = [0.4]
    else:
        norm["points_mean"], norm["points_std"] = [0.5, 0.0, 0.2], [0.2, 0.3, 0.15]
    model.set_normalization(norm)
    run = tmp_path_factory.mktemp(f"run_{name}")
    write_run_meta(run, "student", task=task, backend="mujoco", encoder=encoder, obs_groups=list(env.obs_groups))
    save_student(model, run / "checkpoints" / "iter_0000", env, iteration=0)
    atomic_write_json(run / "checkpoints" / "latest.json", {"name": "iter_0000", "iteration": 0})
    _EXPORTS[name] = export_run(run, "onnx", tmp_path_factory.mktemp(f"export_{name}"))
    return _EXPORTS[name]


class FakeClock:
    """Injected time: what the runtime reads as message arrival and tick time."""

    def __init__(self, t: float = 100.0):
        self.t = float(t)

    def __call__(self) -> float:
        return self.t


def joint_message(w: WorldBatch, rng: np.random.Generator):
    """World 0's joints as a JointState would carry them: shuffled, with a joint the robot lacks."""
    d = w.desc
    names = list(d.arm_joints) + list(d.finger_joints) + ["base_rotator"]
    pos = np.concatenate([w.state.qpos[0, :9], [0.3]])
    vel = np.concatenate([w.state.qvel[0, :9], [-0.1]])
    order = rng.permutation(len(names))
    return [names[i] for i in order], pos[order], vel[order]


def camera_image(w: WorldBatch, key: str, encoding: str) -> np.ndarray:
    """World 0's rendered depth as a driver publishes it: no surface (far) as no return."""
    img = w.backend.images[key][0].astype(np.float64)
    img[img >= w.cfg.depth.far - 1e-6] = np.nan
    return msgs.encode_depth(img, encoding)


def step_targets(w: WorldBatch, positions: np.ndarray, gripper: float) -> None:
    """Step world 0 with the given joint and finger targets (what a position controller gets),
    bypassing the env's own action mapping."""
    w.q_target = np.asarray(positions, dtype=np.float64)[None].copy()
    w.diverged |= w.backend.step(w.q_target, np.array([gripper]), w._post, None)
    w.state.finger[:] = w.state.qpos[:, w.arm.finger_qpos_idx]
    w.t += 1


def live_runtime(export, clock, **kw) -> PolicyRuntime:
    kw = {"dry_run": False, "soft_start_s": 0.0, "clock": clock, "log": lambda s: None, **kw}
    rt = PolicyRuntime(export, **kw)
    rt.arm()
    return rt


def feed(rt: PolicyRuntime, w: WorldBatch, rng, encoding: str = "32FC1", key: str | None = None) -> None:
    names, pos, vel = joint_message(w, rng)
    rt.on_joint_state(names, pos, vel, stamp=rt.clock())
    if rt.sensor is not None:
        key = key or ("depth" if rt.sensor == "depth" else ("points" if "points" in w.backend.images else "depth"))
        intr = rt.depth_in.want
        rt.on_depth(camera_image(w, key, encoding), encoding, rt.clock(), dict(intr))


# ----------------------------------------------------------------------------------------- tests
def test_urdf_jacobian_matches_mujoco_site_jacobian():
    """description.jacobian (what the runtime's IK uses) equals mj_jacSite of the env's TCP site."""
    w = WorldBatch(env_config("Reach", "depth", "ee"))
    try:
        m, d = w.backend.models[0], w.backend.datas[0]
        desc, site = panda(), w.backend.ee_site
        dofs = [m.joint(n).dofadr[0] for n in desc.arm_joints]
        rng = np.random.default_rng(0)
        jp, jr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        for _ in range(100):
            q = rng.uniform(desc.arm_lower, desc.arm_upper)
            d.qpos[dofs] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            mujoco.mj_jacSite(m, d, jp, jr, site)
            np.testing.assert_allclose(desc.jacobian(q, desc.tcp_link), np.vstack([jp, jr])[:, dofs], rtol=0, atol=1e-6)
            pos, rot = desc.forward_kinematics(q, desc.tcp_link)
            np.testing.assert_allclose(pos, d.site_xpos[site], rtol=0, atol=1e-6)
    finally:
        w.close()


def test_tcp_kinematics_equal_the_urdf_reference_and_run_once_per_joint_state(tmp_path_factory):
    """TcpKinematics (one walk of the chain) gives description's forward_kinematics and jacobian bit
    for bit; the runtime computes them once per joint state, however many ticks read it."""
    from robots_ts.sim2real.deploy.observe import TcpKinematics

    desc = panda()
    kin = TcpKinematics(desc)
    rng = np.random.default_rng(1)
    for _ in range(50):
        q = rng.uniform(desc.arm_lower, desc.arm_upper)
        pos, rot, jac = kin(q)
        ref_pos, ref_rot = desc.forward_kinematics(q, desc.tcp_link)
        assert np.array_equal(pos, ref_pos) and np.array_equal(rot, ref_rot)
        assert np.array_equal(jac, desc.jacobian(q, desc.tcp_link))
    clock = FakeClock()
    rt = live_runtime(export_for(tmp_path_factory, "reach_depth"), clock)
    calls = []
    rt.kinematics = lambda q, f=rt.kinematics: calls.append(1) or f(q)
    w = WorldBatch(env_config("Reach", "depth", "ee"), seed=2)
    try:
        w.reset_worlds([0])
        feed(rt, w, np.random.default_rng(0))
        for _ in range(3):
            rt.tick()
            clock.t += 0.01
        assert len(calls) == 1
        feed(rt, w, np.random.default_rng(1))
        rt.tick()
        assert len(calls) == 2
    finally:
        w.close()


@pytest.mark.parametrize("name,encoding", [("reach_depth", "16UC1"), ("reach_depth", "32FC1"),
                                           ("push_depth_joint", "32FC1"), ("reach_depth_gru", "16UC1"),
                                           ("reach_points", "32FC1"), ("reach_with_history", "32FC1")])
def test_observations_and_targets_match_the_env(tmp_path_factory, name, encoding):
    export = export_for(tmp_path_factory, name)
    task, encoder, control, _, history = SPECS[name]
    w = WorldBatch(env_config(task, encoder, control, history), seed=5)
    snaps = []
    if encoder == "points":   # the runtime subsamples with the generator state the env's maker had
        post = w._post
        w._post = lambda i: (snaps.append(copy.deepcopy(w.cloud_rngs[i])), post(i))
    try:
        w.reset_worlds([0])
        clock = FakeClock()
        command = w.state.command[0].copy() if w.state.command.shape[1] else None
        rt = live_runtime(export, clock, command=command)
        rng = np.random.default_rng(1)
        quantum = 0.5e-3 + 1e-6
        for k in range(12):
            if snaps:
                rt.rng = snaps[-1]
            feed(rt, w, rng, encoding)
            cmd = rt.tick()
            want = w.observe()
            got = cmd.obs
            assert not cmd.interventions, cmd.interventions
            np.testing.assert_allclose(got["proprio"], want["proprio"], rtol=0, atol=2e-6)
            assert sorted(got) == sorted(want)
            if history:
                np.testing.assert_array_equal(got["history"], want["history"])
            if encoder == "depth":
                if encoding == "32FC1":
                    np.testing.assert_array_equal(got["depth"], want["depth"])
                else:
                    np.testing.assert_allclose(got["depth"], want["depth"], rtol=0, atol=quantum)
            else:
                np.testing.assert_array_equal(got["points"], want["points"])
            # The env maps the runtime's action from the same state: the same joint targets.
            w.step(cmd.action[None])
            np.testing.assert_allclose(cmd.target, w.q_target[0], rtol=0, atol=1e-6)
            np.testing.assert_allclose(cmd.positions, w.q_target[0], rtol=0, atol=1e-6)
            clock.t += rt.period
        assert rt.counters["nan"] == 0 and rt.counters["velocity_limit"] == 0
    finally:
        w.close()


class NonFinite:
    """Stands in for the network: an action with a NaN in it (the runtime must not count it as sent)."""

    def act(self, obs):
        return np.array([[0.5, np.nan, -0.5, 1.0]], np.float32)

    def reset(self, done):
        pass


def test_history_follows_the_env_over_an_episode_start_and_skips_non_finite_actions(tmp_path_factory):
    """A history student's ``history`` is the env's at every tick, before and after a new episode
    (the reset action in every row again), its width (3 actions) taken from the manifest; an action
    with a NaN is not entered, as it never becomes the previous action."""
    export = export_for(tmp_path_factory, "reach_with_history")
    w = WorldBatch(env_config("Reach", "depth", "ee", history=True), seed=6)
    try:
        w.reset_worlds([0])
        clock = FakeClock()
        rt = live_runtime(export, clock)
        rng = np.random.default_rng(2)
        seen = []
        for k in range(10):
            if k == 5:                 # the task is reset: a new episode on both sides
                w.reset_worlds([0])
                rt.new_episode()
            feed(rt, w, rng)
            cmd = rt.tick()
            assert not cmd.held
            np.testing.assert_array_equal(cmd.obs["history"], w.observe()["history"])
            seen.append(cmd.obs["history"][0].copy())
            w.step(cmd.action[None])
            clock.t += rt.period
        reset_rows = np.tile(rt.prev_action_reset, 3).astype(np.float32)
        assert seen[0].shape == (12,)
        np.testing.assert_array_equal(seen[0], reset_rows)
        assert not np.array_equal(seen[4], reset_rows)          # it moved during the first episode ...
        np.testing.assert_array_equal(seen[5], reset_rows)      # ... and starts over with the next
        np.testing.assert_array_equal(seen[9][:4], rt.history[1])   # newest first: row 0 is the last sent
        before = rt.history.copy()
        rt.policy = NonFinite()
        feed(rt, w, rng)
        cmd = rt.tick()
        assert "nan" in cmd.interventions
        np.testing.assert_array_equal(rt.history, before)
        np.testing.assert_array_equal(cmd.obs["history"][0], before.reshape(-1).astype(np.float32))
    finally:
        w.close()


def test_points_from_a_base_frame_cloud_match_the_env(tmp_path_factory):
    """on_points with the cloud a camera driver would publish (every pixel with a return,
    back-projected into the base frame) gives the env's points group."""
    export = export_for(tmp_path_factory, "reach_points")
    w = WorldBatch(env_config("Reach", "points", "ee"), seed=2)
    snaps = []
    post = w._post
    w._post = lambda i: (snaps.append(copy.deepcopy(w.cloud_rngs[i])), post(i))
    try:
        w.reset_worlds([0])
        clock = FakeClock()
        rt = live_runtime(export, clock)
        rng = np.random.default_rng(3)
        maker = w.cloud
        for _ in range(4):
            z = w.backend.images["points"][0].reshape(-1).astype(np.float64)
            cloud = maker.cam_pos + maker.rays_world * z[:, None]
            cloud[z >= maker.far - 1e-3] = np.nan
            rt.rng = snaps[-1]
            names, pos, vel = joint_message(w, rng)
            rt.on_joint_state(names, pos, vel, clock.t)
            rt.on_points(cloud, clock.t, frame="panda_link0")
            cmd = rt.tick()
            np.testing.assert_array_equal(cmd.obs["points"], w.observe()["points"])
            w.step(cmd.action[None])
            clock.t += rt.period
    finally:
        w.close()


@pytest.mark.parametrize("name,encoding", [("reach_depth", "32FC1"), ("reach_depth", "16UC1"),
                                           ("push_depth_joint", "32FC1"), ("reach_depth_gru", "32FC1"),
                                           ("reach_with_history", "32FC1")])
def test_closed_loop_reproduces_in_sim_actions(tmp_path_factory, name, encoding):
    """The runtime driving a simulated robot (its commands are the env's joint targets) acts as
    the exported policy acts in the env itself, step for step: exactly from 32FC1 metres, within
    what millimetre quantisation changes from 16UC1."""
    export = export_for(tmp_path_factory, name)
    task, encoder, control, _, history = SPECS[name]
    steps = 20
    ref = WorldBatch(env_config(task, encoder, control, history), seed=9)
    policy = OnnxPolicy(export)
    try:
        ref.reset_worlds([0])
        want = []
        for _ in range(steps):
            a = policy.act(ref.observe())
            want.append(a[0])
            ref.step(a)
    finally:
        ref.close()
    w = WorldBatch(env_config(task, encoder, control, history), seed=9)
    try:
        w.reset_worlds([0])
        clock = FakeClock()
        command = w.state.command[0].copy() if w.state.command.shape[1] else None
        rt = live_runtime(export, clock, command=command)
        rng = np.random.default_rng(0)
        got = []
        for _ in range(steps):
            feed(rt, w, rng, encoding)
            cmd = rt.tick()
            assert cmd.send and not cmd.held
            got.append(cmd.action)
            step_targets(w, cmd.positions, cmd.gripper)
            clock.t += rt.period
    finally:
        w.close()
    got, want = np.array(got), np.array(want)
    assert np.abs(want).max() > 0.05, "the comparison should not be of near-zero actions"
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 if encoding == "32FC1" else 5e-4)
    assert rt.counters["velocity_limit"] == 0 and rt.counters["nan"] == 0


def test_runtime_runs_without_torch_or_mujoco(tmp_path_factory):
    """A robot computer needs numpy, onnxruntime and the URDF (pybullet_data), not torch or MuJoCo."""
    import json
    import subprocess
    import sys
    import textwrap

    exports = [str(export_for(tmp_path_factory, n)) for n in ("reach_depth", "reach_points")]
    code = textwrap.dedent("""
        import json, sys
        for name in ("torch", "mujoco", "stable_baselines3", "open3d"):
            sys.modules[name] = None          # importing any of them fails
        import numpy as np
        from robots_ts.sim2real.deploy.core import PolicyRuntime
        out = []
        for export in json.loads(sys.argv[1]):
            rt = PolicyRuntime(export, dry_run=False, clock=lambda: 0.0, log=lambda s: None, soft_start_s=0.0)
            rt.arm()
            m = rt.manifest
            rt.on_joint_state(m.robot.arm_joints + m.robot.finger_joints, m.robot.home + m.robot.home_fingers,
                              [0.0] * 9, 0.0)
            i = rt.depth_in.want
            rt.on_depth(np.full((i["height"], i["width"]), 1000, np.uint16), "16UC1", 0.0, i)
            cmd = rt.tick(0.0)
            out.append(bool(cmd.send) and bool(np.all(np.isfinite(cmd.action))))
        print(json.dumps(out))
    """)
    res = subprocess.run([sys.executable, "-c", code, json.dumps(exports)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [True, True]
