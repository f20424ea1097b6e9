"""Deploy: an exported policy on a robot.

- :mod:`.core`: :class:`PolicyRuntime`, the ROS-independent runtime (observations as the
  simulator made them, inference, the action mapping, the safety layer);
- :mod:`.safety`: the safety layer's steps and the intervention counters;
- :mod:`.observe`: proprio, depth and point clouds from joint states and camera data;
- :mod:`.msgs`: ROS messages <-> numpy (JointState, Image, CameraInfo, PointCloud2);
- :mod:`.replay`: ``robots-ts replay``: a recorded bag through the runtime (a deploy node's own
  record, :mod:`.record` / ``robots-ts deploy --record``, exactly as the node ran);
- :mod:`.node`, :mod:`.ros1`, :mod:`.ros2`, :mod:`.sim_robot`: the ROS side (``robots-ts deploy``,
  ``robots-ts sim-robot``) over the same core.

Importing this package loads neither ROS, onnxruntime nor torch.
"""
__all__ = ["Command", "DeployError", "PolicyRuntime"]


def __getattr__(name: str):
    if name in __all__:
        from robots_ts.sim2real.deploy import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# On ROS (each imports its ROS client only when used):
# - .node: the deploy node's logic, shared by ROS 1 and ROS 2 (``robots-ts deploy``);
# - .ros1: rospy I/O for it, the Debian dist-packages import, a private roscore for tests and benchmarks;
# - .ros2: rclpy I/O for it, and the same messages built from a rosbags typestore;
# - .sim_robot: ``robots-ts sim-robot``, the MuJoCo Panda of a task as a ROS 1 robot.
