"""The runtime's safety layer with real exports and real data paths: a NaN policy never moves or
breaks the command; adversarial actions never leave the joint limits nor exceed the velocity
limit; the soft start ramps from the measured pose; dry-run and unarmed never send; the watchdog
holds on stale joint states and stale depth; the e-stop latches through arm(); a camera with other
intrinsics is refused, naming both; counters count and the log has a line per change.

Where a test needs actions no trained network gives (NaN, inf, huge values, fixed sequences),
:class:`Scripted` stands in for the network: it is the safety layer under test, not the policy.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from robots_ts.runs import sha256_of
from robots_ts.sim2real.deploy import msgs
from robots_ts.sim2real.deploy.core import DeployError, PolicyRuntime
from robots_ts.sim2real.export.manifest import load_manifest
from tests.deploy.test_core import FakeClock, export_for

BAD = [np.nan, np.inf, -np.inf, 1e9, -1e9]


class Scripted:
    """Stands in for the network: returns the given actions in turn (the last one repeated)."""

    def __init__(self, actions):
        self.actions = [np.asarray(a, dtype=np.float32) for a in actions]
        self.k = 0

    def act(self, obs):
        a = self.actions[min(self.k, len(self.actions) - 1)]
        self.k += 1
        return a[None]

    def reset(self, done):
        pass


class Robot:
    """A perfect position-controlled arm: it reaches each command it is sent in one period."""

    def __init__(self, rt: PolicyRuntime, q=None):
        man = rt.manifest
        self.names = list(man.robot.arm_joints) + list(man.robot.finger_joints)
        self.q = np.array(man.robot.home if q is None else q, dtype=np.float64)
        self.qd = np.zeros(7)
        self.fingers = np.array(man.robot.home_fingers)

    def follow(self, cmd, period):
        if cmd.send:
            self.qd = (cmd.positions - self.q) / period
            self.q = cmd.positions.copy()
            self.fingers[:] = cmd.gripper

    def publish(self, rt):
        rt.on_joint_state(self.names, np.concatenate([self.q, self.fingers]), np.concatenate([self.qd, [0, 0]]),
                          rt.clock())


def depth_image(rt, value=1.2):
    i = rt.depth_in.want
    return np.full((i["height"], i["width"]), value, np.float32)


def runtime(tmp_path_factory, name="reach_depth", **kw):
    clock = kw.pop("clock", FakeClock())
    kw = {"dry_run": False, "clock": clock, "log": lambda s: None, **kw}
    return PolicyRuntime(export_for(tmp_path_factory, name), **kw)


def feed_all(rt, robot):
    robot.publish(rt)
    rt.on_depth(depth_image(rt), "32FC1", rt.clock(), dict(rt.depth_in.want))


def nan_export(tmp_path_factory):
    """A real ONNX export whose action head's bias is NaN (manifest SHA-256 updated)."""
    import onnx
    from onnx import numpy_helper

    src = export_for(tmp_path_factory, "reach_depth")
    dst = tmp_path_factory.mktemp("nan_export")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    model = onnx.load(dst / "policy.onnx")
    for init in model.graph.initializer:
        if init.name.endswith("mean.bias"):
            init.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(init).shape, np.nan, np.float32),
                                                  init.name))
    onnx.save(model, dst / "policy.onnx")
    man = json.loads((dst / "manifest.json").read_text())
    man["policy"]["sha256"] = sha256_of(dst / "policy.onnx")
    (dst / "manifest.json").write_text(json.dumps(man))
    load_manifest(dst)
    return dst


# ----------------------------------------------------------------------------------------- NaN
def test_nan_from_the_exported_policy_never_reaches_the_command(tmp_path_factory):
    clock = FakeClock()
    rt = PolicyRuntime(nan_export(tmp_path_factory), dry_run=False, soft_start_s=0.0, clock=clock,
                       log=lambda s: None)
    robot = Robot(rt, q=np.array(rt.manifest.robot.home) + 0.05)
    rt.arm()
    first = None
    for k in range(8):
        feed_all(rt, robot)
        cmd = rt.tick()
        assert np.isnan(cmd.action).all() and cmd.interventions == ["nan"]
        assert cmd.send and not cmd.held and np.all(np.isfinite(cmd.positions)) and np.isfinite(cmd.gripper)
        first = cmd.positions if first is None else first
        np.testing.assert_array_equal(cmd.positions, first)      # the measured pose, held every tick
        robot.follow(cmd, rt.period)
        clock.t += rt.period
    np.testing.assert_allclose(first, robot.q, atol=0)
    assert rt.counters["nan"] == 8
    np.testing.assert_array_equal(rt.prev_action, rt.prev_action_reset)   # a NaN is never "the previous action"


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_action_mid_run_repeats_the_last_safe_command(tmp_path_factory, bad):
    clock = FakeClock()
    rt = runtime(tmp_path_factory, "push_depth_joint", clock=clock, soft_start_s=0.0, command=[0.6, 0.1, 0.0])
    a_good = np.full(8, 0.2)
    a_bad = a_good.copy()
    a_bad[3] = bad
    rt.policy = Scripted([a_good, a_good, a_bad, a_good])
    robot = Robot(rt)
    rt.arm()
    cmds = []
    for _ in range(4):
        feed_all(rt, robot)
        cmds.append(rt.tick())
        robot.follow(cmds[-1], rt.period)
        clock.t += rt.period
    if np.isfinite(bad):   # huge values are clipped to [-1, 1] as the env clips them
        assert "nan" not in cmds[2].interventions
    else:
        assert cmds[2].interventions == ["nan"]
        np.testing.assert_array_equal(cmds[2].positions, cmds[1].positions)
        assert cmds[2].gripper == cmds[1].gripper
        # The next good action continues from the last finite target, not from the bad one.
        np.testing.assert_allclose(cmds[3].target, cmds[1].target + 0.08 * 0.2, atol=1e-12)
    for c in cmds:
        assert np.all(np.isfinite(c.positions)) and np.isfinite(c.gripper)


# ------------------------------------------------------------------------------ limits and rate
@pytest.mark.parametrize("name", ["push_depth_joint", "reach_depth"])
def test_adversarial_actions_never_leave_the_joint_limits_or_exceed_the_velocity_limit(tmp_path_factory, name):
    clock = FakeClock()
    margin, scale = 0.05, 0.5
    rt = runtime(tmp_path_factory, name, clock=clock, soft_start_s=0.2, joint_limit_margin=margin,
                 velocity_limit_scale=scale, command=[0.6, 0.1, 0.0] if name.startswith("push") else None)
    rng = np.random.default_rng(0)
    dim = rt.mapping.action_dim
    actions = []
    for k in range(400):   # long pushes to either side, random saturations, garbage
        kind = (k // 40) % 4
        a = np.full(dim, 1.0 if kind == 0 else -1.0) if kind < 2 else rng.choice([-1.0, 1.0, 0.0], dim)
        if kind == 3:
            a = rng.choice([*BAD, 1.0, -1.0], dim)
        actions.append(a * rng.choice([-1, 1], dim) if kind == 2 else a)
    rt.policy = Scripted(actions)
    robot = Robot(rt)
    lower, upper = rt.safety.lower, rt.safety.upper
    man = rt.manifest
    vel = np.array([j.velocity for j in man.robot.joints[:7]])
    step = vel * rt.period * scale
    np.testing.assert_allclose(lower, np.array([j.lower for j in man.robot.joints[:7]]) + margin)
    rt.arm()
    prev, touched = None, False
    for _ in range(len(actions)):
        feed_all(rt, robot)
        cmd = rt.tick()
        assert np.all(np.isfinite(cmd.positions))
        assert np.all(cmd.positions >= lower - 1e-12) and np.all(cmd.positions <= upper + 1e-12)
        if prev is not None:
            assert np.all(np.abs(cmd.positions - prev) <= step + 1e-12)
        prev = cmd.positions
        touched |= bool(np.any(np.isclose(cmd.positions, lower, rtol=0, atol=1e-9) |
                               np.isclose(cmd.positions, upper, rtol=0, atol=1e-9)))
        robot.follow(cmd, rt.period)
        clock.t += rt.period
    assert rt.counters["velocity_limit"] > 0 and rt.counters["nan"] > 0
    if name.startswith("push"):   # joint deltas drive the arm into its limits
        assert rt.counters["joint_limit"] > 0 and touched


# ---------------------------------------------------------------------------------- soft start
def test_soft_start_ramps_linearly_from_the_measured_pose(tmp_path_factory):
    clock = FakeClock()
    rt = runtime(tmp_path_factory, "push_depth_joint", clock=clock, soft_start_s=0.4, command=[0.6, 0.1, 0.0])
    rt.policy = Scripted([np.full(8, 0.3)])
    robot = Robot(rt, q=np.array(rt.manifest.robot.home) + 0.02)   # the robot does not follow: q stays
    q0 = robot.q.copy()
    feed_all(rt, robot)
    rt.tick()                       # unarmed: not sent
    clock.t += rt.period
    rt.arm()
    ramp = int(round(0.4 / rt.period))
    for k in range(ramp + 4):
        feed_all(rt, robot)
        cmd = rt.tick()
        alpha = min(k / ramp, 1.0)
        np.testing.assert_allclose(cmd.target, q0 + 0.08 * 0.3 * (k + 1), atol=1e-12)
        np.testing.assert_allclose(cmd.positions, q0 + alpha * (cmd.target - q0), atol=1e-9)
        assert ("soft_start" in cmd.interventions) == (alpha < 1.0 - 1e-9)
        clock.t += rt.period
    assert rt.counters["soft_start"] == ramp


# --------------------------------------------------------------------------- arming, dry run
def test_dry_run_and_unarmed_never_send(tmp_path_factory):
    for dry in (True, False):
        clock = FakeClock()
        rt = runtime(tmp_path_factory, clock=clock, dry_run=dry)
        robot = Robot(rt)
        sent = []
        for k in range(12):
            if k == 4:
                rt.arm()
            if k == 8:
                rt.disarm()
            feed_all(rt, robot)
            cmd = rt.tick()
            assert np.all(np.isfinite(cmd.action)) and not cmd.held     # the policy runs, commands are logged
            assert ("dry_run" in cmd.interventions) == dry
            assert ("not_armed" in cmd.interventions) == (not 4 <= k < 8)
            sent.append(cmd.send)
            clock.t += rt.period
        assert sent == ([False] * 12 if dry else [False] * 4 + [True] * 4 + [False] * 4)
    assert PolicyRuntime(export_for(tmp_path_factory, "reach_depth"), log=lambda s: None).dry_run   # the default


# ------------------------------------------------------------------------------------ watchdog
def test_watchdog_holds_the_measured_pose_on_stale_joint_states_and_resumes_softly(tmp_path_factory):
    clock = FakeClock()
    rt = runtime(tmp_path_factory, "push_depth_joint", clock=clock, soft_start_s=0.2, command=[0.6, 0.1, 0.0])
    rt.policy = Scripted([np.full(8, 0.5)])
    cmd = rt.tick()
    assert cmd.held and not cmd.send and "stale_joint_state" in cmd.interventions   # nothing measured yet
    robot = Robot(rt)
    rt.arm()
    for _ in range(8):
        feed_all(rt, robot)
        cmd = rt.tick()
        assert not cmd.held and cmd.send
        robot.follow(cmd, rt.period)
        clock.t += rt.period
    # The joint-state stream stalls (depth keeps coming); the robot is then somewhere else.
    robot.publish(rt)
    last_q, last_t = robot.q.copy(), clock.t
    clock.t += 0.3 * rt.period
    held_at = None
    for _ in range(8):
        rt.on_depth(depth_image(rt), "32FC1", clock.t, dict(rt.depth_in.want))
        cmd = rt.tick()
        age = clock.t - last_t
        assert cmd.held == (age > 3 * rt.period), (age, cmd.interventions)
        if cmd.held:
            held_at = held_at or age
            assert cmd.send and "stale_joint_state" in cmd.interventions
            np.testing.assert_array_equal(cmd.positions, last_q)    # the last measured pose, sent
        clock.t += rt.period
    assert held_at is not None and held_at <= 4 * rt.period
    # Joint states return: a soft start from the measured pose.
    robot.publish(rt)
    cmd = rt.tick()
    assert not cmd.held and "soft_start" in cmd.interventions
    np.testing.assert_allclose(cmd.positions, last_q, atol=1e-12)


def test_watchdog_holds_on_stale_depth(tmp_path_factory):
    clock = FakeClock()
    rt = runtime(tmp_path_factory, clock=clock, soft_start_s=0.0, depth_max_age_s=0.1)
    robot = Robot(rt)
    rt.arm()
    cmd = rt.tick()
    assert cmd.held and "stale_depth" in cmd.interventions and "stale_joint_state" in cmd.interventions
    feed_all(rt, robot)
    depth_t = clock.t
    held = []
    for _ in range(6):
        cmd = rt.tick()
        held.append(cmd.held)
        assert cmd.held == (clock.t - depth_t > 0.1)
        if cmd.held:
            assert cmd.interventions == ["stale_depth"] and cmd.send
            np.testing.assert_array_equal(cmd.positions, robot.q)
        clock.t += rt.period
        robot.publish(rt)                         # joint states keep coming
    assert held == [False, False, False, True, True, True]


# ------------------------------------------------------------------------------------- e-stop
def test_estop_latches_through_arm_until_reset_and_rearm(tmp_path_factory):
    clock = FakeClock()
    lines = []
    rt = runtime(tmp_path_factory, clock=clock, soft_start_s=0.0, log=lines.append)
    robot = Robot(rt)
    rt.arm()
    states = []
    for k in range(14):
        if k == 3:
            rt.estop()
        if k in (5, 7):
            rt.arm()                 # refused while latched
        if k == 9:
            rt.reset_estop()
        if k == 11:
            rt.arm()
        if k == 3:
            hold = robot.q.copy()             # measured when the e-stop hit
        feed_all(rt, robot)
        cmd = rt.tick()
        states.append((cmd.held, cmd.send))
        if cmd.held:
            assert "estop" in cmd.interventions
            np.testing.assert_array_equal(cmd.positions, hold)
        robot.follow(cmd, rt.period)
        robot.q = robot.q + 0.001             # the arm sags a little: the hold pose does not follow
        clock.t += rt.period
    assert states == [(False, True)] * 3 + [(True, True)] * 6 + [(False, False)] * 2 + [(False, True)] * 3
    assert rt.counters["estop"] == 6
    assert sum("arm refused" in s for s in lines) == 2


# ------------------------------------------------------------------------------------- camera
def test_camera_info_with_other_intrinsics_is_refused_naming_both(tmp_path_factory):
    rt = runtime(tmp_path_factory)
    want = dict(rt.depth_in.want)
    img = depth_image(rt)
    rt.on_depth(img, "32FC1", 0.0, want)
    other = dict(want, fx=want["fx"] * 1.1)
    with pytest.raises(DeployError) as exc:
        rt.on_depth(img, "32FC1", 0.0, other)
    assert f"fx={other['fx']:.4f}" in str(exc.value) and f"fx={want['fx']:.4f}" in str(exc.value)
    big = dict(want, width=2 * want["width"], height=2 * want["height"])
    with pytest.raises(DeployError, match="differ from the exported policy's"):
        rt.on_depth(np.ones((big["height"], big["width"]), np.float32), "32FC1", 0.0, big)
    with pytest.raises(DeployError, match="CameraInfo says"):
        rt.on_depth(img, "32FC1", 0.0, big)


def test_point_cloud_students_resample_other_intrinsics_only_when_asked(tmp_path_factory):
    clocks = FakeClock(), FakeClock()
    a = runtime(tmp_path_factory, "reach_points", clock=clocks[0], soft_start_s=0.0)
    b = runtime(tmp_path_factory, "reach_points", clock=clocks[1], soft_start_s=0.0, resample=True)
    want = dict(a.depth_in.want)
    rng = np.random.default_rng(0)
    img = rng.uniform(0.5, 1.6, (want["height"], want["width"])).astype(np.float32)
    img[:3] = np.nan
    # The same view at twice the resolution (each pixel replicated), as its CameraInfo says.
    big = np.repeat(np.repeat(img, 2, 0), 2, 1)
    big_intr = dict(width=2 * want["width"], height=2 * want["height"], fx=2 * want["fx"], fy=2 * want["fy"],
                    cx=2 * want["cx"] + 0.5, cy=2 * want["cy"] + 0.5)
    with pytest.raises(DeployError, match="resample=True"):
        a.on_depth(big, "32FC1", 0.0, big_intr)
    for rt, (image, intr) in ((a, (img, want)), (b, (big, big_intr))):
        robot = Robot(rt)
        robot.publish(rt)
        rt.on_depth(msgs.encode_depth(image, "16UC1"), "16UC1", 0.0, intr)
        rt.arm()
    ca, cb = a.tick(), b.tick()
    np.testing.assert_array_equal(ca.obs["points"], cb.obs["points"])
    np.testing.assert_array_equal(ca.action, cb.action)


# ------------------------------------------------------------------------------ counters, logs
def test_counters_count_every_tick_and_the_log_has_a_line_per_change(tmp_path_factory):
    clock = FakeClock()
    lines = []
    rt = runtime(tmp_path_factory, "push_depth_joint", clock=clock, soft_start_s=0.12, velocity_limit_scale=0.2,
                 log=lines.append, command=[0.6, 0.1, 0.0])
    rt.policy = Scripted([np.full(8, 1.0)] * 6 + [np.full(8, np.nan)] * 3 + [np.zeros(8)] * 30)
    robot = Robot(rt)
    names = robot.names
    for _ in range(3):   # a driver that leaves a joint out: one error line, then silence
        rt.on_joint_state(names[1:], np.zeros(8), np.zeros(8), 0.0)
    assert sum("lacks joint(s) ['panda_joint1']" in s for s in lines) == 1
    cmds = []
    for k in range(20):
        if k == 1:
            rt.arm()
        if k == 14:
            rt.estop()
        feed_all(rt, robot)
        cmds.append(rt.tick())
        robot.follow(cmds[-1], rt.period)
        clock.t += rt.period
    for kind, n in rt.counters.items():
        assert n == sum(kind in c.interventions for c in cmds), kind
    assert {k for k, n in rt.counters.items() if n} == {"not_armed", "soft_start", "velocity_limit", "nan", "estop"}
    changes = sum(set(a.interventions) != set(b.interventions) for a, b in zip(cmds, cmds[1:]))
    changes += bool(cmds[0].interventions)
    assert sum(s.startswith("safety ") for s in lines) == changes
