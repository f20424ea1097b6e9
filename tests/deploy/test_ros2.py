"""The ROS 2 deploy node's message handling, without rclpy: messages serialized to CDR and back with
``rosbags`` (ROS 2 Humble's definitions) go through the same :class:`DeployNode` handlers the
rclpy adapter subscribes, and the commands it builds from a rosbags typestore serialize as
``std_msgs/Float64MultiArray`` and ``trajectory_msgs/JointTrajectory``. The result must equal the
runtime fed the same data as numpy arrays. ROS 1 Noetic's definitions (``K`` and ``seq`` fields)
go through the same handlers. The node's control schedule is checked on an injected clock.
"""
from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from robots_ts.envs.world import WorldBatch
from robots_ts.sim2real.deploy import msgs
from robots_ts.sim2real.deploy.node import DeployNode, DeployOptions, make_runtime
from robots_ts.sim2real.deploy.ros2 import rosbags_types
from tests.deploy.test_core import FakeClock, camera_image, env_config, export_for, joint_message

HUMBLE = get_typestore(Stores.ROS2_HUMBLE)
NOETIC = get_typestore(Stores.ROS1_NOETIC)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return export_for(tmp_path_factory, "reach_depth")


@pytest.fixture(scope="module")
def world():
    w = WorldBatch(env_config("Reach", "depth", "ee"), seed=3)
    w.reset_worlds([0])
    yield w
    w.close()


def roundtrip(store, msg, typename: str):
    """Serialized as the middleware carries it (CDR for ROS 2, ROS 1 wire format), then read back."""
    if store is HUMBLE:
        return store.deserialize_cdr(store.serialize_cdr(msg, typename), typename)
    return store.deserialize_ros1(store.serialize_ros1(msg, typename), typename)


def header(store, t: float, frame: str = ""):
    T = store.types
    stamp = T["builtin_interfaces/msg/Time"](sec=int(t), nanosec=int(round((t % 1) * 1e9)))
    if store is NOETIC:
        return T["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id=frame)
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame)


def sensor_messages(store, world, rng, t: float, encoding: str = "16UC1", fx_offset: float = 0.0):
    """JointState, Image and CameraInfo of world 0, as a driver on ``store``'s ROS would send them."""
    T = store.types
    names, pos, vel = joint_message(world, rng)
    js = T["sensor_msgs/msg/JointState"](header=header(store, t), name=list(names), position=np.asarray(pos),
                                         velocity=np.asarray(vel), effort=np.zeros(0))
    img = camera_image(world, "depth", encoding)
    f = msgs.image_fields(img, encoding)
    image = T["sensor_msgs/msg/Image"](header=header(store, t, "camera"), **f)
    i = world_intrinsics(world, fx_offset)
    info = msgs.camera_info_fields(i, ros2=store is HUMBLE)
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    ci = T["sensor_msgs/msg/CameraInfo"](header=header(store, t, "camera"), binning_x=0, binning_y=0, roi=roi,
                                         **info)
    return (roundtrip(store, js, "sensor_msgs/msg/JointState"), roundtrip(store, image, "sensor_msgs/msg/Image"),
            roundtrip(store, ci, "sensor_msgs/msg/CameraInfo"), (names, pos, vel, img))


def world_intrinsics(world, fx_offset: float = 0.0) -> dict:
    from robots_ts.envs.backends.scene import camera
    from robots_ts.sim2real.export.describe import intrinsics

    d = world.cfg.depth
    i = intrinsics(d.width, d.height, camera(d.camera).fovy)
    return dict(width=i.width, height=i.height, fx=i.fx + fx_offset, fy=i.fy, cx=i.cx, cy=i.cy)


def make_node(export, clock, command_type: str = "float64", **kw):
    opts = DeployOptions(str(export), ros="ros2", arm=True, soft_start_s=0.0, command_type=command_type, **kw)
    rt = make_runtime(opts, log=lambda s: None, clock=clock)
    node = DeployNode(rt, rosbags_types(HUMBLE), opts, clock=clock, log=lambda s: None)
    sent = []
    node.publish = lambda kind, msg: sent.append((kind, msg))
    node.wall_time = lambda: 1700000000.25
    return node, sent


@pytest.mark.parametrize("store", [HUMBLE, NOETIC], ids=["ros2_humble", "ros1_noetic"])
def test_messages_through_the_node_match_the_runtime_on_arrays(export, world, store):
    clock = FakeClock()
    node, sent = make_node(export, clock)
    ref = make_runtime(DeployOptions(str(export), soft_start_s=0.0), log=lambda s: None, clock=clock)
    ref.arm()
    ref.dry_run = False
    rng = np.random.default_rng(0)
    for k in range(4):
        clock.t += 0.04
        js, image, info, (names, pos, vel, img) = sensor_messages(store, world, rng, clock.t)
        node.on_camera_info(info)
        node.on_joint_state(js)
        node.on_image(image)
        ref.on_joint_state(names, pos, vel, clock.t)
        ref.on_depth(img, "16UC1", clock.t, world_intrinsics(world))
        cmd, want = node.tick(clock.t), ref.tick(clock.t)
        assert node.error is None
        np.testing.assert_array_equal(cmd.positions, want.positions)
        np.testing.assert_array_equal(cmd.obs["depth"], want.obs["depth"])
        np.testing.assert_array_equal(cmd.obs["proprio"], want.obs["proprio"])
        kind, msg = sent[-1]
        assert kind == "command" and cmd.send and not cmd.held
        # What an rclpy publisher would put on the wire, read back.
        back = roundtrip(HUMBLE, msg, "std_msgs/msg/Float64MultiArray")
        np.testing.assert_array_equal(back.data, [*want.positions, want.gripper])


def test_trajectory_command_and_control_topics(export, world):
    clock = FakeClock()
    node, sent = make_node(export, clock, command_type="trajectory")
    rng = np.random.default_rng(1)
    T = HUMBLE.types

    def feed():
        clock.t += 0.04
        js, image, info, _ = sensor_messages(HUMBLE, world, rng, clock.t)
        node.on_camera_info(info)
        node.on_joint_state(js)
        node.on_image(image)
        return node.tick(clock.t)

    cmd = feed()
    msg = roundtrip(HUMBLE, sent[-1][1], "trajectory_msgs/msg/JointTrajectory")
    man = node.runtime.manifest
    assert list(msg.joint_names) == list(man.robot.arm_joints) + list(man.robot.finger_joints)
    (point,) = msg.points
    np.testing.assert_array_equal(point.positions, [*cmd.positions, cmd.gripper, cmd.gripper])
    assert (point.time_from_start.sec, point.time_from_start.nanosec) == (0, 40_000_000)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1700000000, 250_000_000)

    Bool = T["std_msgs/msg/Bool"]
    node.on_estop(roundtrip(HUMBLE, Bool(data=True), "std_msgs/msg/Bool"))
    cmd = feed()
    assert cmd.held and "estop" in cmd.interventions and sent[-1][0] == "command"
    node.on_estop(Bool(data=False))                 # does not clear the latch
    assert feed().held
    node.on_arm(Bool(data=True))                    # re-arming does
    cmd = feed()
    assert cmd.send and not cmd.held
    node.on_arm(Bool(data=False))
    feed()
    assert sent[-1][0] == "dry_run"


def test_camera_that_disagrees_with_the_manifest_stops_the_node(export, world):
    from robots_ts.sim2real.deploy.core import DeployError

    clock = FakeClock()
    node, _ = make_node(export, clock)
    js, image, info, _ = sensor_messages(HUMBLE, world, np.random.default_rng(2), clock.t, fx_offset=3.0)
    node.on_camera_info(info)
    node.on_joint_state(js)
    node.on_image(image)
    assert isinstance(node.error, DeployError) and "intrinsics" in str(node.error)
    with pytest.raises(DeployError, match="intrinsics"):
        node.run(lambda: True, sleep=lambda s: None)


def test_episode_topic_restarts_the_policy_after_a_fresh_joint_state(export, world):
    clock = FakeClock()
    node, _ = make_node(export, clock)
    Int32 = HUMBLE.types["std_msgs/msg/Int32"]
    rng = np.random.default_rng(3)
    js, image, info, _ = sensor_messages(HUMBLE, world, rng, clock.t)
    node.on_camera_info(info)
    node.on_image(image)
    node.on_episode(Int32(data=0))                  # the first value: nothing to restart
    node.on_joint_state(js)
    clock.t += 0.04
    node.tick()
    first = node.runtime.prev_action.copy()
    node.on_episode(Int32(data=1))
    clock.t += 0.04
    node.tick()                                     # no joint state since the change: not yet
    assert node.restarts == 0
    node.on_joint_state(js)
    clock.t += 0.04
    cmd = node.tick()
    assert node.restarts == 1
    lay = {f.field: f for f in node.runtime.manifest.observations["proprio"].fields}["prev_action"]
    np.testing.assert_array_equal(cmd.obs["proprio"][0, lay.start:lay.stop],
                                  node.runtime.manifest.control.prev_action_at_reset)
    assert not np.array_equal(first, node.runtime.manifest.control.prev_action_at_reset)


def test_the_schedule_keeps_absolute_deadlines_and_skips_missed_ones(export, world):
    clock = FakeClock()
    node, sent = make_node(export, clock)
    js, image, info, _ = sensor_messages(HUMBLE, world, np.random.default_rng(4), clock.t)
    node.on_camera_info(info)
    node.on_image(image)
    node.runtime.depth_max_age_s = node.runtime.watchdog_s = 1e9     # data stays fresh on the fake clock
    node.on_joint_state(js)
    publish = node.publish
    slow = {12}

    def publish_slowly(kind, msg):                  # tick 12 takes 2.5 periods
        publish(kind, msg)
        if len(node.tick_times) in slow:
            clock.t += 2.5 * node.period

    def sleep(s):
        clock.t += s + 1e-4                         # the OS wakes us a little late

    node.publish = publish_slowly
    stats = node.run(lambda: len(node.tick_times) < 20, sleep=sleep)
    t = np.array(node.tick_times)
    rel = (t - t[0]) / node.period
    # Ticks sit on the grid (plus the wake-up delay), never bunch up after the slow one.
    np.testing.assert_allclose(rel, np.round(rel), atol=1e-6)
    assert np.all(np.diff(np.round(rel)) >= 1) and stats["overruns"] == 2
    assert np.round(rel)[13] - np.round(rel)[12] == 3 and len(t) == 20
