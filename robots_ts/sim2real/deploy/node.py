"""The deploy node's logic, shared by ROS 1 and ROS 2 (only their I/O differs): ``robots-ts deploy``.

:class:`DeployNode` takes incoming messages (any object with the ROS field names: rospy's,
rclpy's, rosbags'), converts them with :mod:`robots_ts.sim2real.deploy.msgs` into a
:class:`~robots_ts.sim2real.deploy.core.PolicyRuntime`, and runs ``tick`` on a monotonic schedule
of absolute deadlines at the manifest's control rate (a missed deadline is skipped and counted,
never made up by a burst). Each tick's command goes out as ``std_msgs/Float64MultiArray`` (a
ros2_control forward position controller: the 7 arm joints, then the finger opening per finger in
metres unless ``--no-gripper``) or ``trajectory_msgs/JointTrajectory`` (one point, reached in one
period), to the command topic when the runtime says ``send`` (armed, not ``--dry-run``), else to
the dry-run side topic. The adapters (:mod:`.ros1`, :mod:`.ros2`) set :attr:`DeployNode.publish`
and subscribe the handlers.

Control topics (``std_msgs/Bool``): the e-stop topic latches the e-stop on ``true`` (``false`` does
not clear it); the arm topic arms on ``true`` (first resetting a latched e-stop: re-arming is
the way out of an e-stop) and disarms on ``false``. An optional episode topic
(``std_msgs/Int32``, published by ``robots-ts sim-robot``) restarts the policy's episode when its
value changes, at the first tick whose joint state arrived after the change.

A camera whose ``CameraInfo`` disagrees with the manifest (or a cloud in another frame than the
robot base) stops the node with an error naming both sides. Publish times are recorded for the
period jitter; ``--stats FILE`` writes them with the safety layer's counters at exit, and
``--tick-log FILE`` one JSON line per tick (time, send, held, interventions, command, action).

Time: the node's clock is integer nanoseconds (``time.monotonic_ns``), read as ``ns / 1e9``
seconds. Callbacks and the tick read it under the lock, strictly after the previous event, and
hand that time to the runtime (a message's arrival, the tick's time), so the order of events and
their times are exactly what ``--record BAG`` writes (:mod:`.record`) and ``robots-ts replay``
feeds back (:mod:`.replay`).
"""
from __future__ import annotations

import argparse
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from robots_ts.sim2real.deploy.record import dumps, tick_record

DEFAULT_TOPICS = dict(joint_states="/joint_states", depth="/camera/depth/image_rect_raw",
                      camera_info="/camera/depth/camera_info", points="/camera/depth/points",
                      estop_topic="/robots_ts/estop", arm_topic="/robots_ts/arm")
COMMAND_TOPICS = {"float64": "/forward_position_controller/commands",
                  "trajectory": "/joint_trajectory_controller/joint_trajectory"}


@dataclass
class DeployOptions:
    export_dir: str
    ros: str = "ros1"                       # ros1 | ros2
    dry_run: bool = False                   # never send, even when armed
    arm: bool = False                       # arm at start (else wait for the arm topic)
    joint_states: str = DEFAULT_TOPICS["joint_states"]
    depth: str = DEFAULT_TOPICS["depth"]
    camera_info: str = DEFAULT_TOPICS["camera_info"]
    points: str | None = None               # a PointCloud2 topic instead of depth (point-cloud students)
    command_topic: str | None = None        # default: COMMAND_TOPICS[command_type]
    command_type: str = "float64"           # float64 | trajectory
    gripper: bool = True                    # append the finger opening (8th entry / finger joint)
    dry_run_topic: str = "~dry_run_command"
    estop_topic: str = DEFAULT_TOPICS["estop_topic"]
    arm_topic: str = DEFAULT_TOPICS["arm_topic"]
    episode_topic: str | None = None
    velocity_limit_scale: float = 1.0
    soft_start_s: float = 2.0
    watchdog_periods: float = 3.0
    depth_max_age_s: float | None = None
    joint_limit_margin: float = 0.0
    resample: bool = False
    command: list[float] | None = None      # the task command, when the task has one
    task: str | None = None                 # the task a multi-task student is asked to do
    duration_s: float | None = None         # stop after this long (tests, benchmarks)
    stats: str | None = None
    tick_log: str | None = None
    record: str | None = None               # write what the node consumed and did to this bag
    node_name: str = "robots_ts_deploy"
    ros_args: list[str] = field(default_factory=list)   # name:=value remappings for the ROS client

    def __post_init__(self):
        if self.ros not in ("ros1", "ros2"):
            raise ValueError(f"ros must be 'ros1' or 'ros2', got {self.ros!r}")
        if self.command_type not in COMMAND_TOPICS:
            raise ValueError(f"--command-type must be one of {list(COMMAND_TOPICS)}, got {self.command_type!r}")
        if self.command_topic is None:
            self.command_topic = COMMAND_TOPICS[self.command_type]
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.record and Path(self.record).exists():
            raise FileExistsError(f"--record {self.record} exists already: choose a new path (bags are never "
                                  "overwritten)")


def make_runtime(opts: DeployOptions, log=None, clock=time.monotonic):
    from robots_ts.sim2real.deploy.core import PolicyRuntime

    return PolicyRuntime(opts.export_dir, dry_run=opts.dry_run, command=opts.command, task=opts.task,
                         velocity_limit_scale=opts.velocity_limit_scale, soft_start_s=opts.soft_start_s,
                         watchdog_periods=opts.watchdog_periods, depth_max_age_s=opts.depth_max_age_s, clock=clock,
                         log=log, resample=opts.resample, joint_limit_margin=opts.joint_limit_margin)


def restart_episode(runtime) -> None:
    """Start a new policy episode at the next tick with data (previous action and recurrent state
    reset, previous target and soft start from the measured pose), as after arming."""
    runtime.new_episode()


def jitter_stats(times, period: float) -> dict:
    """Rate and period jitter (|interval - period|) of event times (s)."""
    t = np.asarray(times, dtype=np.float64)
    if len(t) < 3:
        return {"count": int(len(t))}
    dt = np.diff(t)
    jit = np.abs(dt - period)
    return {"count": int(len(t)), "rate_hz": round(float((len(t) - 1) / (t[-1] - t[0])), 4),
            "period_median_ms": round(1e3 * float(np.median(dt)), 4),
            "jitter_median_ms": round(1e3 * float(np.median(jit)), 4),
            "jitter_p99_ms": round(1e3 * float(np.percentile(jit, 99)), 4),
            "jitter_max_ms": round(1e3 * float(jit.max()), 4)}


class DeployNode:
    """Messages in, commands out, on the runtime's control schedule. Thread-safe: ROS callbacks
    and the loop meet the runtime under one lock."""

    def __init__(self, runtime, types, opts: DeployOptions, clock: Callable[[], float] | None = None,
                 log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
                 clock_ns: Callable[[], int] | None = None):
        from robots_ts.sim2real.deploy import msgs

        self.msgs = msgs
        self.runtime, self.types, self.opts = runtime, types, opts
        if clock is None:      # the default: integer nanoseconds (time.monotonic_ns), read as ns / 1e9 s
            clock_ns = clock_ns or time.monotonic_ns
            clock = lambda: clock_ns() / 1e9  # noqa: E731
        self.clock, self.clock_ns = clock, clock_ns
        self._last_ns: int | None = None
        self.log, self.warn = log, warn or log
        self.recorder = None
        self.period = float(runtime.period)
        self.sensor = runtime.sensor                       # depth | points | None
        self.sensor_input = None if self.sensor is None else ("points" if opts.points else "depth")
        if opts.points and self.sensor != "points":
            raise ValueError(f"--points: the policy reads {runtime.manifest.obs_groups}, not a point cloud")
        self.publish: Callable[[str, object], None] = lambda kind, msg: None
        self.wall_time: Callable[[], float] = time.time  # ROS time for header stamps
        self.lock = threading.RLock()
        self.error: BaseException | None = None
        self.camera_info: dict | None = None
        self.episode: int | None = None
        self.restart_after: float | None = None           # episode change: restart once a joint state is newer
        self.joint_arrival = -math.inf
        self.publish_times: list[float] = []
        self.tick_times: list[float] = []
        self.overruns = 0
        self.sent = self.not_sent = self.held = self.restarts = 0
        self._tick_log = open(opts.tick_log, "w") if opts.tick_log else None
        self._warned: set[str] = set()
        if opts.arm:
            runtime.arm()

    def describe(self) -> str:
        m, o = self.runtime.manifest, self.opts
        inputs = {"depth": f"{o.depth} + {o.camera_info}", "points": o.points, None: "none"}[self.sensor_input]
        return (f"robots_ts deploy ({o.ros}): {m.source.kind} {m.source.task} at {m.control.hz:g} Hz; joint states "
                f"{o.joint_states}; sensor {inputs}; commands ({o.command_type}) to {o.command_topic} when armed"
                f"{' (never: --dry-run)' if o.dry_run else ''}, else {o.dry_run_topic}; e-stop {o.estop_topic}, "
                f"arm {o.arm_topic}{', episodes ' + o.episode_topic if o.episode_topic else ''}")

    # ------------------------------------------------------------------------------- recording
    def _now(self) -> tuple[float, int | None]:
        """The time of an event (a message consumed, a tick), read under the lock: on the integer
        nanosecond clock strictly after the previous event (so events never share a time), as
        (ns / 1e9 seconds, ns); on an injected float clock, (its value, None)."""
        if self.clock_ns is None:
            return float(self.clock()), None
        ns = int(self.clock_ns())
        if self._last_ns is not None and ns <= self._last_ns:
            ns = self._last_ns + 1
        self._last_ns = ns
        return ns / 1e9, ns

    def record_topics(self, resolve: Callable[[str], str] | None = None) -> dict[str, str]:
        """The bag topic of each kind of message the node consumes or writes (``~name``: under the node)."""
        o = self.opts
        resolve = resolve or (lambda name: f"/{o.node_name}/{name[1:]}" if name.startswith("~") else name)
        kinds = {"joint_states": o.joint_states, "estop": o.estop_topic, "arm": o.arm_topic,
                 "episode": o.episode_topic, "command": o.command_topic, "dry_run": o.dry_run_topic,
                 "tick": "~tick", "config": "~robots_ts_record"}
        if self.sensor_input == "points":
            kinds["points"] = o.points
        elif self.sensor_input == "depth":
            kinds.update(camera_info=o.camera_info, depth=o.depth)
        topics = {k: resolve(v) for k, v in kinds.items() if v}
        seen: dict[str, str] = {}
        for k, t in topics.items():
            if t in seen:
                raise ValueError(f"--record: {seen[t]} and {k} share the topic {t}")
            seen[t] = k
        return topics

    def start_recording(self, serialize: Callable[[object, str], bytes],
                        resolve: Callable[[str], str] | None = None) -> None:
        """Open ``opts.record`` (if set) and write its header; adapters call this before subscribing.
        ``serialize(msg, msgtype)``: a message of the client library as bytes in the bag's format."""
        from robots_ts.sim2real.deploy.record import COMMAND_MSGTYPES, MSGTYPES, BagRecorder, config_record

        if not self.opts.record:
            return
        if self.clock_ns is None:
            raise ValueError("--record needs the node's integer nanosecond clock (clock_ns)")
        with self.lock:
            topics = self.record_topics(resolve)
            t, ns = self._now()
            offset_ns = time.time_ns() - time.monotonic_ns()
            msgtypes = dict(MSGTYPES, command=COMMAND_MSGTYPES[self.opts.command_type],
                            dry_run=COMMAND_MSGTYPES[self.opts.command_type])
            self.recorder = BagRecorder(self.opts.record, self.opts.ros, topics, msgtypes, serialize, offset_ns,
                                        warn=self.warn)
            header = config_record(self.opts, topics, offset_ns, self.runtime)
            self.recorder.write("config", ns, self.types.String(data=dumps(header)))
        self.log(f"recording to {self.opts.record} ({self.opts.ros} bag): {sorted(topics.values())}")

    def stop_recording(self) -> None:
        with self.lock:
            if self.recorder is not None:
                self.recorder.close()

    # ------------------------------------------------------------------------------- callbacks
    def _receive(self, kind: str, what: str, msg, body: Callable[[float], None]) -> None:
        """Consume a message under the lock: its receive time (what the runtime reads as its
        arrival), the record, then ``body(time)``. A message that cannot be read is logged once
        per kind of error, a mismatch with the export (DeployError) stops the node."""
        from robots_ts.sim2real.deploy.core import DeployError

        with self.lock:
            t, ns = self._now()
            if self.recorder is not None:
                self.recorder.write(kind, ns, msg)
            try:
                body(t)
            except DeployError as exc:
                if self.error is None:
                    self.error = exc
            except self.msgs.MessageError as exc:
                key = f"{what}: {exc}"
                if key not in self._warned:
                    self._warned.add(key)
                    self.warn(f"ignoring {what} message: {exc}")

    def on_joint_state(self, msg) -> None:
        def body(t):
            names, pos, vel, stamp = self.msgs.joint_state(msg)
            self.runtime.on_joint_state(names, pos, vel, stamp, arrival=t)
            self.joint_arrival = t
        self._receive("joint_states", "JointState", msg, body)

    def on_camera_info(self, msg) -> None:
        def body(t):
            self.camera_info = self.msgs.camera_intrinsics(msg)
        self._receive("camera_info", "CameraInfo", msg, body)

    def on_image(self, msg) -> None:
        def body(t):
            if self.camera_info is None:
                if "no_info" not in self._warned:
                    self._warned.add("no_info")
                    self.warn(f"depth image before any CameraInfo on {self.opts.camera_info}: waiting for it")
                return
            img, enc = self.msgs.image_array(msg)
            self.runtime.on_depth(img, enc, self.msgs.stamp_seconds(msg.header.stamp), self.camera_info, arrival=t)
        self._receive("depth", "Image", msg, body)

    def on_points(self, msg) -> None:
        def body(t):
            pts = self.msgs.pointcloud_xyz(msg)
            self.runtime.on_points(pts, self.msgs.stamp_seconds(msg.header.stamp), str(msg.header.frame_id),
                                   arrival=t)
        self._receive("points", "PointCloud2", msg, body)

    def on_estop(self, msg) -> None:
        def body(t):
            if bool(msg.data):
                self.runtime.estop()
        self._receive("estop", "e-stop", msg, body)

    def on_arm(self, msg) -> None:
        def body(t):
            if bool(msg.data):
                self.runtime.reset_estop()
                self.runtime.arm()
            else:
                self.runtime.disarm()
        self._receive("arm", "arm", msg, body)

    def on_episode(self, msg) -> None:
        def body(t):
            value = int(msg.data)
            if self.episode is not None and value != self.episode:
                self.restart_after = t
                self.log(f"episode {value}: the policy restarts at the next tick with a fresh joint state")
            self.episode = value
        self._receive("episode", "episode", msg, body)

    # ------------------------------------------------------------------------------------ tick
    def command_message(self, cmd):
        """The command as the adapter's message (None without message types: replay)."""
        t, period = self.types, self.period
        if t is None:
            return None
        if self.opts.command_type == "float64":
            values = list(cmd.positions) + ([cmd.gripper] if self.opts.gripper else [])
            return t.Float64MultiArray(layout=t.MultiArrayLayout(dim=[], data_offset=0), data=t.array(values))
        names = list(cmd.joint_names)
        positions = list(cmd.positions)
        if self.opts.gripper:
            names += list(self.runtime.manifest.robot.finger_joints)
            positions += [cmd.gripper] * len(self.runtime.manifest.robot.finger_joints)
        point = t.JointTrajectoryPoint(positions=t.array(positions), velocities=t.array([]),
                                       accelerations=t.array([]), effort=t.array([]),
                                       time_from_start=t.duration(period))
        return t.JointTrajectory(header=t.header(self.wall_time()), joint_names=names, points=[point])

    def tick(self, now: float | None = None):
        """One control period at ``now`` (default: the event clock, read under the lock after the
        messages consumed so far); publishes the command and returns it."""
        with self.lock:
            ns = None
            if now is None:
                now, ns = self._now()
            if self.restart_after is not None and self.joint_arrival > self.restart_after:
                restart_episode(self.runtime)
                self.restart_after = None
                self.restarts += 1
            cmd = self.runtime.tick(now)
            msg = self.command_message(cmd)
            if self.recorder is not None:
                ns = int(round(now * 1e9)) if ns is None else ns
                self.recorder.write("tick", ns, self.types.String(data=dumps(tick_record(cmd, now))))
                self.recorder.write("command" if cmd.send else "dry_run", ns, msg)
        self.publish("command" if cmd.send else "dry_run", msg)
        published = self.clock()
        self.tick_times.append(now)
        if cmd.send:
            self.publish_times.append(published)
            self.sent += 1
        else:
            self.not_sent += 1
        self.held += int(cmd.held)
        if self._tick_log is not None:
            rec = dict(tick_record(cmd, round(now, 6)), pub=round(published, 6))
            self._tick_log.write(json.dumps(rec) + "\n")
            self._tick_log.flush()     # read while the node runs (tests, benchmarks)
        return cmd

    def run(self, ok: Callable[[], bool], sleep: Callable[[float], None] = time.sleep) -> dict:
        """Tick at absolute deadlines t0 + k * period until ``ok()`` turns false (or the duration
        passes); raises the first fatal error a callback met. Returns the stats."""
        start = self.clock()
        t0 = start + self.period
        k = 0
        try:
            while ok():
                if self.error is not None:
                    raise self.error
                deadline = t0 + k * self.period
                if self.opts.duration_s is not None and deadline - start > self.opts.duration_s:
                    break
                delay = deadline - self.clock()
                if delay > 0:
                    sleep(delay)
                    if not ok():
                        break
                self.tick()
                k += 1
                behind = self.clock() - (t0 + k * self.period)
                if behind > 0:   # the next deadline already passed: skip it, never catch up in a burst
                    missed = int(behind // self.period) + 1
                    k += missed
                    self.overruns += missed
            if self.error is not None:
                raise self.error
        finally:
            self.stop_recording()
            stats = self.stats()
            if self._tick_log is not None:
                self._tick_log.close()
            if self.opts.stats:
                from robots_ts.runs import atomic_write_json

                atomic_write_json(Path(self.opts.stats), stats)
            self.log(f"deploy stopped: {stats['ticks']} ticks, {stats['sent']} sent, {stats['held']} held, "
                     f"{stats['overruns']} missed deadlines; interventions {stats['counters']}")
        return stats

    def stats(self) -> dict:
        return {"period_s": self.period, "ticks": len(self.tick_times), "sent": self.sent, "not_sent": self.not_sent,
                "held": self.held, "overruns": self.overruns, "episode_restarts": self.restarts,
                "counters": dict(self.runtime.counters), "ticks_jitter": jitter_stats(self.tick_times, self.period),
                "publish_jitter": jitter_stats(self.publish_times, self.period),
                "publish_times": [round(t, 6) for t in self.publish_times],
                **({"record": self.recorder.stats()} if self.recorder is not None else {})}


# ------------------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="robots-ts deploy", description="Run an exported student on a ROS robot, behind the safety layer. "
        "Commands go to a dry-run side topic until armed (--arm or the arm topic); --dry-run never sends.")
    ap.add_argument("export_dir", help="an ONNX export (robots-ts export RUN_DIR)")
    ros = ap.add_mutually_exclusive_group(required=True)
    ros.add_argument("--ros1", dest="ros", action="store_const", const="ros1", help="rospy")
    ros.add_argument("--ros2", dest="ros", action="store_const", const="ros2", help="rclpy")
    ap.add_argument("--dry-run", action="store_true", help="never send commands, even when armed")
    ap.add_argument("--arm", action="store_true", help="arm at start (else wait for true on the arm topic)")
    ap.add_argument("--joint-states", default=DEFAULT_TOPICS["joint_states"], metavar="TOPIC")
    ap.add_argument("--depth", default=DEFAULT_TOPICS["depth"], metavar="TOPIC", help="sensor_msgs/Image depth")
    ap.add_argument("--camera-info", default=DEFAULT_TOPICS["camera_info"], metavar="TOPIC")
    ap.add_argument("--points", metavar="TOPIC", help="sensor_msgs/PointCloud2 in the robot base frame, instead "
                    "of depth (point-cloud students; by default they read the depth image as in simulation)")
    ap.add_argument("--resample", action="store_true", help="point-cloud students: resample a depth camera of "
                    "other intrinsics (nearest) instead of refusing it")
    ap.add_argument("--command-topic", metavar="TOPIC", help=f"default {COMMAND_TOPICS}")
    ap.add_argument("--command-type", choices=list(COMMAND_TOPICS), default="float64")
    ap.add_argument("--no-gripper", dest="gripper", action="store_false",
                    help="send the 7 arm joints only (no finger opening)")
    ap.add_argument("--dry-run-topic", default="~dry_run_command", metavar="TOPIC")
    ap.add_argument("--estop-topic", default=DEFAULT_TOPICS["estop_topic"], metavar="TOPIC")
    ap.add_argument("--arm-topic", default=DEFAULT_TOPICS["arm_topic"], metavar="TOPIC")
    ap.add_argument("--episode-topic", metavar="TOPIC", help="std_msgs/Int32: restart the policy's episode when "
                    "it changes (robots-ts sim-robot publishes 'episode')")
    ap.add_argument("--velocity-limit-scale", type=float, default=1.0, help="fraction of the URDF velocity limits")
    ap.add_argument("--soft-start", dest="soft_start_s", type=float, default=2.0, metavar="S")
    ap.add_argument("--watchdog-periods", type=float, default=3.0)
    ap.add_argument("--depth-max-age", dest="depth_max_age_s", type=float, metavar="S")
    ap.add_argument("--joint-limit-margin", type=float, default=0.0, metavar="RAD")
    ap.add_argument("--task-command", dest="command", type=float, nargs="+", metavar="X",
                    help="the task command (e.g. a goal) when the policy reads one")
    ap.add_argument("--task", metavar="TASK", help="the task a multi-task student is asked to do (one of the "
                    "manifest's source.tasks)")
    ap.add_argument("--duration", dest="duration_s", type=float, metavar="S", help="stop after S seconds")
    ap.add_argument("--stats", metavar="FILE", help="write publish times, jitter and counters as JSON at exit")
    ap.add_argument("--tick-log", metavar="FILE", help="one JSON line per tick")
    ap.add_argument("--record", metavar="BAG", help="write every message the node consumed (at its receive time) "
                    "and every tick and command (at the tick time) to a new bag (--ros1: a .bag file, --ros2: a bag "
                    "directory); robots-ts replay BAG EXPORT_DIR reproduces the run from it exactly")
    ap.add_argument("--node-name", default="robots_ts_deploy")
    return ap


def main(argv: list[str]) -> int:
    ros_args = [a for a in argv if ":=" in a]
    args = parser().parse_args([a for a in argv if ":=" not in a])
    opts = DeployOptions(**vars(args), ros_args=ros_args)
    if opts.ros == "ros1":
        from robots_ts.sim2real.deploy import ros1 as adapter
    else:
        from robots_ts.sim2real.deploy import ros2 as adapter
    try:
        stats = adapter.run_deploy(opts)
    except adapter.RosUnavailable as exc:
        from robots_ts.errors import report

        return report("robots-ts deploy", exc)
    print(json.dumps({k: v for k, v in stats.items() if k != "publish_times"}))
    return 0
