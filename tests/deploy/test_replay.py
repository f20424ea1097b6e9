"""``robots-ts replay``: bags written with rosbags' own writers (ROS 1 .bag; ROS 2 sqlite3 and
mcap) from a simulated closed-loop episode replay to the actions the runtime gave when fed the
same data directly, within 1e-5, through JointState, Image (16UC1 big-endian with padded rows,
32FC1), CameraInfo and PointCloud2 messages. Plus topic choice and the CLI. And the deploy node's
own record (``--record``, written through DeployNode from rosbags messages, ROS 1 and ROS 2) replays
every tick exactly, at the recorded tick times."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from robots_ts.cli import main as cli
from robots_ts.envs.world import WorldBatch
from robots_ts.sim2real.deploy import msgs
from robots_ts.sim2real.deploy.core import PolicyRuntime
from robots_ts.sim2real.deploy.replay import read_actions, replay
from tests.deploy.test_core import (FakeClock, SPECS, camera_image, env_config, export_for, joint_message,
                                    step_targets)

T0 = 1_700_000_000 * 10**9 + 123_456_789        # bag time of the first message, ns


class Builder:
    """rosbags message objects of one typestore, filled by robots_ts.sim2real.deploy.msgs."""

    def __init__(self, store):
        self.ts = get_typestore(store)
        self.ros1 = store == Stores.ROS1_NOETIC
        self.T = self.ts.types

    def header(self, ns, frame=""):
        stamp = self.T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
        H = self.T["std_msgs/msg/Header"]
        return H(seq=0, stamp=stamp, frame_id=frame) if self.ros1 else H(stamp=stamp, frame_id=frame)

    def joint_state(self, ns, names, pos, vel):
        return self.T["sensor_msgs/msg/JointState"](self.header(ns), list(names), np.asarray(pos, np.float64),
                                                    np.asarray(vel, np.float64), np.zeros(0))

    def image(self, ns, img, encoding, bigendian=False, pad=0):
        return self.T["sensor_msgs/msg/Image"](header=self.header(ns, "camera_depth_optical_frame"),
                                               **msgs.image_fields(img, encoding, bigendian, pad))

    def camera_info(self, ns, intr):
        roi = self.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.T["sensor_msgs/msg/CameraInfo"](header=self.header(ns, "camera_depth_optical_frame"),
                                                    binning_x=0, binning_y=0, roi=roi,
                                                    **msgs.camera_info_fields(intr, ros2=not self.ros1))

    def cloud(self, ns, pts, bigendian=False):
        f = msgs.pointcloud_fields(pts, bigendian)
        PF = self.T["sensor_msgs/msg/PointField"]
        f["fields"] = [PF(name=n, offset=o, datatype=d, count=c) for n, o, d, c in f["fields"]]
        f["is_bigendian"], f["is_dense"] = bool(f["is_bigendian"]), bool(f["is_dense"])
        return self.T["sensor_msgs/msg/PointCloud2"](header=self.header(ns, "panda_link0"), **f)

    def serialize(self, msg):
        return (self.ts.serialize_ros1 if self.ros1 else self.ts.serialize_cdr)(msg, msg.__msgtype__)


def write_bag(path, store, records, storage="sqlite3"):
    """records: (topic, ns, message) in time order."""
    b = Builder(store)
    if store == Stores.ROS1_NOETIC:
        from rosbags.rosbag1 import Writer

        writer = Writer(path)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap"
                        else StoragePlugin.SQLITE3)
    with writer:
        conns = {}
        for topic, ns, msg in records:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=b.ts)
            writer.write(conns[topic], ns, b.serialize(msg))


def record_episode(export, name, store, encoding="32FC1", bigendian=False, pad=0, steps=16, gap=(), cloud=False):
    """A closed-loop episode in simulation: the runtime, fed directly (numpy), drives the env;
    every message it was fed goes into a list of bag records at the time it was fed."""
    task, encoder, control, *_ = SPECS[name]
    b = Builder(store)
    w = WorldBatch(env_config(task, encoder, control), seed=4)
    clock = FakeClock()
    rt = PolicyRuntime(export, dry_run=False, clock=clock, log=lambda s: None)
    rt.arm()
    rng = np.random.default_rng(0)
    period_ns = int(round(rt.period * 1e9))
    records, live = [], []
    try:
        w.reset_worlds([0])
        for k in range(steps):
            ns = T0 + k * period_ns
            clock.t = ns * 1e-9
            names, pos, vel = joint_message(w, rng)
            if k not in gap:     # the joint-state stream stalls during the gap
                rt.on_joint_state(names, pos, vel, clock.t)
                records.append(("/joint_states", ns, b.joint_state(ns, names, pos, vel)))
            if cloud:
                maker = w.cloud
                z = w.backend.images["points"][0].reshape(-1).astype(np.float64)
                pts = (maker.cam_pos + maker.rays_world * z[:, None]).astype(np.float32)
                pts[z >= maker.far - 1e-3] = np.nan
                rt.on_points(pts, clock.t, "panda_link0")
                records.append(("/camera/depth/points", ns, b.cloud(ns, pts, bigendian)))
            else:
                intr = dict(rt.depth_in.want)
                img = camera_image(w, "depth" if encoder == "depth" else "points", encoding)
                rt.on_depth(img, encoding, clock.t, intr)
                records.append(("/camera/depth/camera_info", ns, b.camera_info(ns, intr)))
                records.append(("/camera/depth/image_rect_raw", ns, b.image(ns, img, encoding, bigendian, pad)))
            cmd = rt.tick()
            live.append(cmd)
            step_targets(w, cmd.positions, cmd.gripper)
    finally:
        w.close()
    return records, live


def check_replay(got: dict, live: list, rt_names) -> None:
    assert len(got["time"]) == len(live)
    for n, cmd in enumerate(live):
        a = np.array([got[k][n] for k in got if k.startswith("action_")])
        np.testing.assert_allclose(a, cmd.action, rtol=0, atol=1e-5, equal_nan=True)
        q = np.array([got[f"position_{j}"][n] for j in rt_names])
        np.testing.assert_allclose(q, cmd.positions, rtol=0, atol=1e-5)
        assert abs(got["gripper"][n] - cmd.gripper) <= 1e-5
        assert bool(got["send"][n]) == cmd.send and bool(got["held"][n]) == cmd.held
        assert got["interventions"][n] == cmd.interventions


def test_ros1_bag_replays_the_live_actions_through_the_cli(tmp_path_factory, tmp_path, capsys):
    """16UC1, big-endian, padded rows; a stall of the joint states (the watchdog holds, live and
    replayed); the CLI writes actions.csv and actions.png."""
    export = export_for(tmp_path_factory, "reach_depth")
    records, live = record_episode(export, "reach_depth", Stores.ROS1_NOETIC, "16UC1", bigendian=True, pad=6,
                                   steps=24, gap=range(8, 14))
    assert any(c.held for c in live) and any(c.send and not c.held for c in live)
    bag = tmp_path / "episode.bag"
    write_bag(bag, Stores.ROS1_NOETIC, records)
    out = tmp_path / "out"
    assert cli(["replay", str(bag), str(export), "--out", str(out)]) == 0
    assert '"ticks": 24' in capsys.readouterr().out
    check_replay(read_actions(out / "actions.csv"), live, live[0].joint_names)
    assert (out / "actions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stale_joint_state" in (out / "replay.log").read_text()


@pytest.mark.parametrize("name,storage", [("reach_depth_gru", "sqlite3"), ("reach_points", "mcap")])
def test_ros2_bag_replays_the_live_actions(tmp_path_factory, tmp_path, name, storage):
    """A recurrent depth student from 32FC1 images in an sqlite3 bag; a point-cloud student from
    PointCloud2 messages in an mcap bag."""
    export = export_for(tmp_path_factory, name)
    cloud = name.endswith("points")
    records, live = record_episode(export, name, Stores.ROS2_HUMBLE, "32FC1", bigendian=cloud, cloud=cloud)
    bag = tmp_path / "episode"
    write_bag(bag, Stores.ROS2_HUMBLE, records, storage)
    summary = replay(bag, export, tmp_path / "out", plot=False)
    assert summary["ticks"] == len(live) and summary["sent"] == len(live)
    assert summary["topics"]["points" if cloud else "depth"] is not None
    check_replay(read_actions(tmp_path / "out" / "actions.csv"), live, live[0].joint_names)


def test_topics_are_chosen_or_refused_by_name(tmp_path_factory, tmp_path, capsys):
    export = export_for(tmp_path_factory, "reach_depth")
    records, live = record_episode(export, "reach_depth", Stores.ROS2_HUMBLE, steps=3)
    # A second joint-state topic (a gripper driver's) makes the choice ambiguous without /joint_states.
    records = [(t.replace("/joint_states", "/arm/joint_states_raw"), ns, m) for t, ns, m in records]
    records += [("/gripper/joint_states_raw", ns, m) for t, ns, m in records if t.endswith("joint_states_raw")]
    records.sort(key=lambda r: r[1])
    bag = tmp_path / "two"
    write_bag(bag, Stores.ROS2_HUMBLE, records)
    assert cli(["replay", str(bag), str(export), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "/arm/joint_states_raw" in err and "/gripper/joint_states_raw" in err and "--joint-states" in err
    summary = replay(bag, export, tmp_path / "o", joint_states="/arm/joint_states_raw", plot=False)
    assert summary["ticks"] == 3
    with pytest.raises(ValueError, match="no such topic"):
        replay(bag, export, tmp_path / "o", joint_states="/arm/joint_states_raw", depth="/nope", plot=False)
    with pytest.raises(ValueError, match="cannot be read"):
        replay(tmp_path / "o" / "actions.csv", export, tmp_path / "o2", plot=False)


def test_tick_topic_replays_at_the_recorded_ticks(tmp_path_factory, tmp_path):
    """A bag with the node's commands (published just after each tick): ticking at their receive
    times replays the live actions whatever the schedule's phase."""
    export = export_for(tmp_path_factory, "reach_depth")
    records, live = record_episode(export, "reach_depth", Stores.ROS2_HUMBLE, steps=8)
    b = Builder(Stores.ROS2_HUMBLE)
    ticks = sorted({ns for _, ns, _ in records})
    # Sensor messages arrive 7 ms before each tick, the command 1 ms after it.
    records = [(t, ns - 7_000_000, m) for t, ns, m in records]
    records += [("/policy/command", ns + 1_000_000, b.joint_state(ns, c.joint_names, c.positions, np.zeros(7)))
                for ns, c in zip(ticks, live)]
    records.sort(key=lambda r: r[1])
    bag = tmp_path / "with_commands"
    write_bag(bag, Stores.ROS2_HUMBLE, records)
    got = read_actions(replay(bag, export, tmp_path / "o", tick_topic="/policy/command", plot=False)["csv"])
    assert len(got["time"]) == len(live)
    a = np.stack([got[k] for k in got if k.startswith("action_")], axis=1)
    np.testing.assert_allclose(a, np.array([c.action for c in live]), rtol=0, atol=1e-5)


# --------------------------------------------------------------------- deploy --record, replayed exactly
class NsClock:
    """The deploy node's injected integer nanosecond clock."""

    def __init__(self, ns: int = 5_000 * 10**9 + 123_457):
        self.ns = int(ns)

    def __call__(self) -> int:
        return self.ns


@pytest.mark.parametrize("ros", ["ros1", "ros2"])
def test_deploy_record_replays_the_node_exactly(tmp_path_factory, tmp_path, ros):
    """DeployNode with --record, fed rosbags messages (ROS 1 Noetic wire format or ROS 2 CDR) on an
    irregular schedule and closing the loop on the env: dry run until armed by a message, a joint-state
    stall (watchdog holds), an e-stop and re-arm, an episode restart. The replay of its bag ticks at
    the recorded ticks and gives every tick's raw action and command (and send, held, interventions)."""
    from robots_ts.sim2real.deploy.node import DeployNode, DeployOptions, make_runtime
    from robots_ts.sim2real.deploy.ros2 import rosbags_types
    from tests.deploy.test_ros2 import HUMBLE, NOETIC, sensor_messages

    store = NOETIC if ros == "ros1" else HUMBLE
    serialize = store.serialize_ros1 if ros == "ros1" else store.serialize_cdr
    export = export_for(tmp_path_factory, "reach_depth")
    bag = tmp_path / ("run.bag" if ros == "ros1" else "run")
    opts = DeployOptions(str(export), ros=ros, soft_start_s=0.3, velocity_limit_scale=0.2, episode_topic="/episode",
                         record=str(bag))
    clock = NsClock()
    node = DeployNode(make_runtime(opts, log=lambda s: None), rosbags_types(store), opts, clock_ns=clock,
                      log=lambda s: None)
    node.start_recording(serialize)
    T = store.types
    Bool, Int32 = T["std_msgs/msg/Bool"], T["std_msgs/msg/Int32"]
    period = int(round(node.period * 1e9))
    w = WorldBatch(env_config("Reach", "depth", "ee"), seed=3)
    rng = np.random.default_rng(0)
    live = []
    try:
        w.reset_worlds([0])
        node.on_episode(Int32(data=0))
        for k in range(40):
            clock.ns += period // 3 + int(rng.integers(0, 10**6))
            js, image, info, _ = sensor_messages(store, w, rng, clock.ns / 1e9)
            if not 14 <= k < 20:
                node.on_joint_state(js)
            if k % 2 == 0:
                clock.ns += 1_234_567
                node.on_camera_info(info)
                node.on_image(image)
            control = {4: ("arm", True), 25: ("estop", True), 27: ("estop", False), 29: ("arm", True),
                       33: ("episode", 1)}.get(k)
            if control is not None:
                kind, value = control
                getattr(node, f"on_{kind}")(Int32(data=value) if kind == "episode" else Bool(data=value))
            clock.ns += period - period // 3 - int(rng.integers(0, 2 * 10**6))
            cmd = node.tick()
            live.append(cmd)
            step_targets(w, cmd.positions, cmd.gripper)
            if k == 9:      # a callback right at the tick's time: the node's clock orders the events
                node.on_joint_state(js)
    finally:
        node.stop_recording()
        w.close()
    kinds = [set(c.interventions) for c in live]
    assert any("not_armed" in s for s in kinds) and any(c.send and not c.held for c in live)
    assert any("stale_joint_state" in s for s in kinds) and any("estop" in s for s in kinds)
    assert any("soft_start" in s for s in kinds) and node.restarts == 1
    summary = replay(bag, export, tmp_path / "out", plot=False)
    rec = summary["recorded"]
    assert rec["ticks"] == len(live) == summary["ticks"] and rec["mismatched_ticks"] == 0 and rec["same_policy"]
    assert rec["max_action_diff"] <= 1e-5 and rec["max_command_diff"] <= 1e-5
    check_replay(read_actions(tmp_path / "out" / "actions.csv"), live, live[0].joint_names)
    # The replayed ticks ran at the live ticks' times (the bag's exact nanoseconds, less the offset).
    offset = json.loads((tmp_path / "out" / "summary.json").read_text())["recorded"]["offset_ns"]
    with open(tmp_path / "out" / "actions.csv") as f:
        bag_ns = [int(r["time"].replace(".", "")) for r in csv.DictReader(f)]
    assert [(ns - offset) / 1e9 for ns in bag_ns] == [c.time for c in live]
