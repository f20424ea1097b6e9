"""ROS 2 (rclpy) I/O for the deploy node; the logic is :class:`robots_ts.sim2real.deploy.node.DeployNode`,
the same as on ROS 1.

rclpy is imported lazily (a sourced ROS 2 workspace provides it; it cannot be pip-installed). An
executor spins the subscriptions in a background thread while the node's own loop keeps the
control schedule. Sensor topics are subscribed with the sensor-data QoS (best effort, which
matches reliable and best-effort publishers alike); commands and the e-stop / arm topics are
reliable.

:func:`rosbags_types` builds the same outgoing messages from a ``rosbags`` typestore (ROS 2
Humble's definitions), which is how the message handling is tested without rclpy.
"""
from __future__ import annotations

import sys
import threading
from types import SimpleNamespace

import numpy as np


class RosUnavailable(RuntimeError):
    """rclpy or a ROS 2 message package is not importable (source a ROS 2 workspace first)."""


def _seconds_to(cls, seconds: float):
    sec = int(np.floor(seconds))
    return cls(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def _types(Float64MultiArray, MultiArrayLayout, JointTrajectory, JointTrajectoryPoint, Header, Time, Duration,
           Bool, Int32, String, array):
    return SimpleNamespace(
        ros2=True, Float64MultiArray=Float64MultiArray, MultiArrayLayout=MultiArrayLayout,
        JointTrajectory=JointTrajectory, JointTrajectoryPoint=JointTrajectoryPoint, Header=Header, Bool=Bool,
        Int32=Int32, String=String, array=array, duration=lambda s: _seconds_to(Duration, s),
        stamp=lambda s: _seconds_to(Time, s), header=lambda s, frame="": Header(stamp=_seconds_to(Time, s),
                                                                                  frame_id=frame))


def message_types():
    """Outgoing message classes and builders from the ROS 2 message packages (rclpy's)."""
    try:
        from builtin_interfaces.msg import Duration, Time
        from std_msgs.msg import Bool, Float64MultiArray, Header, Int32, MultiArrayLayout, String
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    except ImportError as exc:
        raise RosUnavailable(f"ROS 2 message packages are not importable ({exc}); source a ROS 2 installation "
                             "(e.g. /opt/ros/humble/setup.bash) before `robots-ts deploy --ros2`") from None
    return _types(Float64MultiArray, MultiArrayLayout, JointTrajectory, JointTrajectoryPoint, Header, Time, Duration,
                  Bool, Int32, String, array=lambda values: [float(v) for v in values])


def rosbags_types(typestore):
    """The same builders over a rosbags typestore's classes (e.g. ``Stores.ROS2_HUMBLE``): what
    serializes to the CDR bytes an rclpy publisher would send."""
    t = typestore.types
    return _types(t["std_msgs/msg/Float64MultiArray"], t["std_msgs/msg/MultiArrayLayout"],
                  t["trajectory_msgs/msg/JointTrajectory"], t["trajectory_msgs/msg/JointTrajectoryPoint"],
                  t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"], t["builtin_interfaces/msg/Duration"],
                  t["std_msgs/msg/Bool"], t["std_msgs/msg/Int32"], t["std_msgs/msg/String"],
                  array=lambda values: np.asarray(list(values), dtype=np.float64))


def import_rclpy():
    try:
        import rclpy
    except ImportError as exc:
        raise RosUnavailable(f"rclpy is not importable ({exc}); source a ROS 2 installation "
                             "(e.g. /opt/ros/humble/setup.bash) before `robots-ts deploy --ros2`") from None
    return rclpy


def _private(node, topic: str) -> str:
    """ROS 1 style ``~name`` as the node's private namespace (rclpy also expands ``~``; explicit here)."""
    return f"{node.get_fully_qualified_name()}/{topic[1:].lstrip('/')}" if topic.startswith("~") else topic


def run_deploy(opts) -> dict:
    """Run the deploy node on ROS 2 until shutdown (Ctrl-C or ``opts.duration_s``); the run's stats."""
    rclpy = import_rclpy()
    types = message_types()
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2

    from robots_ts.sim2real.deploy.node import DeployNode, make_runtime

    args = [sys.argv[0], "--ros-args", *sum((["-r", a] for a in opts.ros_args), [])] if opts.ros_args else None
    rclpy.init(args=args)
    ros = rclpy.create_node(opts.node_name)
    logger = ros.get_logger()
    try:
        runtime = make_runtime(opts, log=logger.info)
        node = DeployNode(runtime, types, opts, log=logger.info, warn=logger.warning)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        command_cls = types.Float64MultiArray if opts.command_type == "float64" else types.JointTrajectory
        pubs = {"command": ros.create_publisher(command_cls, opts.command_topic, reliable),
                "dry_run": ros.create_publisher(command_cls, _private(ros, opts.dry_run_topic), reliable)}
        node.publish = lambda kind, msg: pubs[kind].publish(msg)
        clock = ros.get_clock()
        node.wall_time = lambda: clock.now().nanoseconds * 1e-9
        if opts.record:     # a ROS 2 bag directory (sqlite3, CDR), written by the node (deploy/record.py)
            from rclpy.serialization import serialize_message

            node.start_recording(lambda msg, msgtype: serialize_message(msg), lambda name: _private(ros, name))
        ros.create_subscription(JointState, opts.joint_states, node.on_joint_state, qos_profile_sensor_data)
        ros.create_subscription(types.Bool, opts.estop_topic, node.on_estop, reliable)
        ros.create_subscription(types.Bool, opts.arm_topic, node.on_arm, reliable)
        if opts.episode_topic:
            ros.create_subscription(types.Int32, opts.episode_topic, node.on_episode, reliable)
        if node.sensor_input == "points":
            ros.create_subscription(PointCloud2, opts.points, node.on_points, qos_profile_sensor_data)
        elif node.sensor_input == "depth":
            ros.create_subscription(CameraInfo, opts.camera_info, node.on_camera_info, qos_profile_sensor_data)
            ros.create_subscription(Image, opts.depth, node.on_image, qos_profile_sensor_data)
        logger.info(node.describe())
        executor = SingleThreadedExecutor()
        executor.add_node(ros)
        spinner = threading.Thread(target=executor.spin, daemon=True, name="robots_ts-ros2-spin")
        spinner.start()
        try:
            return node.run(rclpy.ok)
        except KeyboardInterrupt:
            return node.stats()
        finally:
            executor.shutdown()
    finally:
        ros.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
