"""ROS 1 (rospy) for the deploy node and the simulated robot: imports and the node's I/O.

rospy and its message packages come from Debian (``ros-core``, ``python3-rospy``,
``python3-std-msgs``, ``python3-sensor-msgs``, ``python3-trajectory-msgs``; ``make bootstrap``
installs them when run as root). They are pure Python for the system CPython, the same 3.11 as the
venv's, so :func:`import_rospy` *appends* Debian's ``dist-packages`` to ``sys.path`` (after
importing numpy and yaml from the venv, so Debian's copies never shadow them). Only the processes
that talk ROS 1 (``robots-ts deploy --ros1``, ``robots-ts sim-robot --ros1``, the ROS benchmark's
helpers) do this; nothing else in robots_ts touches the path.

:func:`run_deploy` wires a :class:`robots_ts.sim2real.deploy.node.DeployNode` (the logic shared
with ROS 2) to rospy subscribers and publishers; the node's own loop keeps the control schedule.
``--record BAG`` writes a ROS 1 bag from the node's callbacks and ticks (:mod:`.record`).
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

DIST_PACKAGES = "/usr/lib/python3/dist-packages"
DEBIAN_PACKAGES = ("ros-core", "python3-rospy", "python3-std-msgs", "python3-sensor-msgs", "python3-trajectory-msgs")
INSTALL_HINT = "sudo apt-get install " + " ".join(DEBIAN_PACKAGES) + " (or `make bootstrap` as root)"


class RosUnavailable(RuntimeError):
    """ROS 1 (rospy, its message packages or roscore) is not installed here."""


def _with_dist_packages() -> None:
    import numpy  # noqa: F401  (the venv's numpy and yaml first: Debian's must never shadow them)
    import yaml  # noqa: F401

    if os.path.isdir(DIST_PACKAGES) and DIST_PACKAGES not in sys.path:
        sys.path.append(DIST_PACKAGES)


def import_rospy():
    """rospy, with std_msgs, sensor_msgs and trajectory_msgs importable; RosUnavailable if not."""
    _with_dist_packages()
    try:
        import rospy
        import sensor_msgs.msg  # noqa: F401
        import std_msgs.msg  # noqa: F401
        import trajectory_msgs.msg  # noqa: F401
    except ImportError as exc:
        raise RosUnavailable(f"ROS 1 is not installed ({exc}); install it with: {INSTALL_HINT}") from None
    return rospy


def ros1_available() -> tuple[bool, str]:
    """(whether roscore, rospy and the message packages are installed, why not), found without
    importing them (the caller's ``sys.path`` stays as it is)."""
    from importlib.machinery import PathFinder

    if shutil.which("roscore") is None:
        return False, f"roscore is not on PATH; install ROS 1: {INSTALL_HINT}"
    paths = [*sys.path, DIST_PACKAGES]
    missing = [m for m in ("rospy", "std_msgs", "sensor_msgs", "trajectory_msgs")
               if PathFinder.find_spec(m, paths) is None]
    if missing:
        return False, f"ROS 1 Python packages {missing} are not installed; install them with: {INSTALL_HINT}"
    return True, ""


def message_types():
    """The outgoing message classes and builders the shared node uses, from rospy's packages."""
    rospy = import_rospy()
    from std_msgs.msg import Bool, Float64MultiArray, Header, Int32, MultiArrayLayout, String
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    def stamp(seconds: float):
        return rospy.Time.from_sec(seconds)

    return SimpleNamespace(
        ros2=False, Float64MultiArray=Float64MultiArray, MultiArrayLayout=MultiArrayLayout,
        JointTrajectory=JointTrajectory, JointTrajectoryPoint=JointTrajectoryPoint, Header=Header, Bool=Bool,
        Int32=Int32, String=String, array=lambda values: [float(v) for v in values],
        duration=lambda seconds: rospy.Duration.from_sec(seconds), stamp=stamp,
        header=lambda seconds, frame="": Header(stamp=stamp(seconds), frame_id=frame))


def serialize_ros1(msg, msgtype: str) -> bytes:
    """A rospy message in the ROS 1 wire format (what a bag stores)."""
    buf = io.BytesIO()
    msg.serialize(buf)
    return buf.getvalue()


def run_deploy(opts) -> dict:
    """Run the deploy node on ROS 1 until shutdown (Ctrl-C, SIGTERM, ``opts.duration_s``); the run's stats."""
    rospy = import_rospy()
    from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
    from std_msgs.msg import Bool, Int32

    from robots_ts.sim2real.deploy.node import DeployNode, make_runtime

    types = message_types()
    # The export is loaded first: a bad one fails here, not after waiting for a master.
    early: list[str] = []
    log = [early.append]
    runtime = make_runtime(opts, log=lambda line: log[0](line))
    # Remappings (name:=value) pass through to rospy; robots-ts's own options were parsed already.
    rospy.init_node(opts.node_name, argv=[sys.argv[0], *opts.ros_args], anonymous=False)
    log[0] = rospy.loginfo
    for line in early:
        rospy.loginfo(line)
    node = DeployNode(runtime, types, opts, log=rospy.loginfo, warn=rospy.logwarn)
    command_cls = types.Float64MultiArray if opts.command_type == "float64" else types.JointTrajectory
    pubs = {"command": rospy.Publisher(opts.command_topic, command_cls, queue_size=10, tcp_nodelay=True),
            "dry_run": rospy.Publisher(opts.dry_run_topic, command_cls, queue_size=10, tcp_nodelay=True)}
    node.publish = lambda kind, msg: pubs[kind].publish(msg)
    node.wall_time = rospy.get_time
    node.start_recording(serialize_ros1, rospy.resolve_name)    # --record: before any message arrives
    subs = [rospy.Subscriber(opts.joint_states, JointState, node.on_joint_state, queue_size=5, tcp_nodelay=True),
            rospy.Subscriber(opts.estop_topic, Bool, node.on_estop, queue_size=10),
            rospy.Subscriber(opts.arm_topic, Bool, node.on_arm, queue_size=10)]
    if opts.episode_topic:
        subs.append(rospy.Subscriber(opts.episode_topic, Int32, node.on_episode, queue_size=10))
    if node.sensor_input == "points":
        subs.append(rospy.Subscriber(opts.points, PointCloud2, node.on_points, queue_size=2, buff_size=2 ** 24))
    elif node.sensor_input == "depth":
        subs.append(rospy.Subscriber(opts.camera_info, CameraInfo, node.on_camera_info, queue_size=2))
        subs.append(rospy.Subscriber(opts.depth, Image, node.on_image, queue_size=2, buff_size=2 ** 24,
                                     tcp_nodelay=True))
    rospy.loginfo(node.describe())
    stop = threading.Event()
    rospy.on_shutdown(stop.set)
    try:
        return node.run(lambda: not stop.is_set() and not rospy.is_shutdown())
    finally:
        for s in subs:
            s.unregister()
        if not rospy.is_shutdown():
            rospy.signal_shutdown("deploy node finished")


# ------------------------------------------------------------------------------------ roscore
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Roscore:
    """A private ``roscore`` on a free loopback port, for tests and benchmarks: its ROS_HOME and
    ROS_LOG_DIR in a temporary directory; :attr:`env` is the environment for the nodes that use
    it. A context manager: stopped (with everything it started) on exit."""

    def __init__(self, root: str | Path | None = None, port: int | None = None, timeout_s: float = 30.0):
        if shutil.which("roscore") is None:
            raise RosUnavailable(f"roscore is not on PATH; install ROS 1: {INSTALL_HINT}")
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="robots_ts_ros_")
        self.root = Path(root if root is not None else self._tmp.name)
        self.port = int(port or free_port())
        self.uri = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, ROS_MASTER_URI=self.uri, ROS_HOME=str(self.root / "ros_home"),
                        ROS_LOG_DIR=str(self.root / "ros_log"), ROS_IP="127.0.0.1", PYTHONUNBUFFERED="1")
        self.env.pop("ROS_HOSTNAME", None)
        self.timeout_s = float(timeout_s)
        self.proc: subprocess.Popen | None = None

    def online(self) -> bool:
        import xmlrpc.client

        try:
            code, _, _ = xmlrpc.client.ServerProxy(self.uri).getPid("/robots_ts_probe")
            return code == 1
        except (OSError, xmlrpc.client.Error):
            return False

    def start(self) -> "Roscore":
        self.root.mkdir(parents=True, exist_ok=True)
        self._out = open(self.root / "roscore.log", "w")
        # Its own session: roscore's children (rosmaster, rosout) stop with it.
        self.proc = subprocess.Popen(["roscore", "-p", str(self.port)], env=self.env, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout_s
        while not self.online():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.root / "roscore.log").read_text()[-2000:]
                raise RuntimeError(f"roscore on port {self.port} did not come up within {self.timeout_s:g} s:\n{log}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc)
        self.proc = None
        if getattr(self, "_out", None) is not None:
            self._out.close()
            self._out = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Roscore":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_group(proc: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """SIGINT to a process started with ``start_new_session=True`` and its group (ROS nodes shut
    down cleanly on it), then SIGKILL after ``timeout_s``. Returns its exit code."""
    for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()
