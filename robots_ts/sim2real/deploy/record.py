"""``robots-ts deploy --record BAG``: the deploy node's own record of what it consumed and did.

The node writes the bag itself, from its callbacks and its tick, under the lock they share
(:class:`robots_ts.sim2real.deploy.node.DeployNode`), so the bag holds the messages in the order
the node consumed them and each at the time the node's clock read when it consumed it:

- every message a handler received (joint states, camera info, depth images or point clouds,
  e-stop, arm and episode messages), stamped with its receive time: the time the runtime records
  as the message's arrival and measures its age from;
- per tick, the command it built (on the command topic when sent, else on the dry-run topic) and a
  ``std_msgs/String`` marker on ``~tick`` holding the tick as JSON (time, send, held,
  interventions, command, gripper, raw action; NaN as null), both stamped with the tick time;
- first, a ``std_msgs/String`` on ``~robots_ts_record`` (:data:`CONFIG_TOPIC_SUFFIX`) with the
  node's options, its topics by kind and the clock mapping, as JSON.

Times: the node's clock is an integer nanosecond monotonic clock (strictly increasing over the
events it records); the runtime reads ``ns / 1e9`` seconds. Bag time is ``ns + offset_ns``, with
``offset_ns`` (wall time minus monotonic time when recording began, also in the record header)
making bag times wall-clock times. ``robots-ts replay`` recovers each ``ns`` exactly and feeds the
node's handlers and tick with the same floats the live node read (:mod:`.replay`).

ROS 1 (``--ros1``) writes a ROS 1 ``.bag`` (rosbags' writer, ROS 1 Noetic's definitions, which
are byte-identical with rospy's: the MD5 sums agree); ROS 2 writes a ROS 2 bag directory (sqlite3,
CDR). The adapters pass the serializer of their client library's messages (rospy's ``serialize``,
rclpy's ``serialize_message``); tests pass a rosbags typestore's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

RECORD_VERSION = 1
CONFIG_TOPIC_SUFFIX = "/robots_ts_record"

# What a handler of the node consumes, and what it publishes, by kind.
MSGTYPES = {"joint_states": "sensor_msgs/msg/JointState", "camera_info": "sensor_msgs/msg/CameraInfo",
            "depth": "sensor_msgs/msg/Image", "points": "sensor_msgs/msg/PointCloud2",
            "estop": "std_msgs/msg/Bool", "arm": "std_msgs/msg/Bool", "episode": "std_msgs/msg/Int32",
            "tick": "std_msgs/msg/String", "config": "std_msgs/msg/String"}
COMMAND_MSGTYPES = {"float64": "std_msgs/msg/Float64MultiArray", "trajectory": "trajectory_msgs/msg/JointTrajectory"}
INPUT_KINDS = ("joint_states", "camera_info", "depth", "points", "estop", "arm", "episode")


class BagRecorder:
    """A bag written in the order of :meth:`write` calls (the caller keeps times non-decreasing).

    ``fmt``: ``ros1`` (a ``.bag`` file) or ``ros2`` (a bag directory, sqlite3). ``topics``:
    kind -> topic name, ``msgtypes``: kind -> message type. ``serialize(msg, msgtype)``: the
    message's bytes in the bag's format. A write that fails (a full disk) stops the recording
    with one ``warn`` line, not the node; :attr:`error` says why.
    """

    def __init__(self, path, fmt: str, topics: dict[str, str], msgtypes: dict[str, str],
                 serialize: Callable[[object, str], bytes], offset_ns: int, warn: Callable[[str], None] = print):
        from rosbags.typesys import Stores, get_typestore

        if fmt not in ("ros1", "ros2"):
            raise ValueError(f"record format must be ros1 or ros2, got {fmt!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"--record {self.path} exists already: choose a new path (bags are never "
                                  "overwritten)")
        self.topics, self.msgtypes, self.serialize = dict(topics), dict(msgtypes), serialize
        self.offset_ns = int(offset_ns)
        self.warn = warn
        if fmt == "ros1":
            from rosbags.rosbag1 import Writer

            self.typestore = get_typestore(Stores.ROS1_NOETIC)
            self.writer = Writer(self.path)
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer

            self.typestore = get_typestore(Stores.ROS2_HUMBLE)
            self.writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.SQLITE3)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer.open()
        self.fmt = fmt
        self.connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.error: str | None = None
        self.closed = False

    def write(self, kind: str, ns: int, msg) -> None:
        """``msg`` (of kind ``kind``) at the node's clock time ``ns``."""
        if self.closed or self.error is not None:
            return
        try:
            msgtype = self.msgtypes[kind]
            conn = self.connections.get(kind)
            if conn is None:
                conn = self.connections[kind] = self.writer.add_connection(self.topics[kind], msgtype,
                                                                           typestore=self.typestore)
            self.writer.write(conn, int(ns) + self.offset_ns, self.serialize(msg, msgtype))
            self.counts[kind] = self.counts.get(kind, 0) + 1
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.warn(f"recording to {self.path} stopped: {self.error}")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.writer.close()
            except OSError as exc:
                self.error = self.error or f"{type(exc).__name__}: {exc}"
                self.warn(f"closing {self.path} failed: {self.error}")

    def stats(self) -> dict:
        return {"path": str(self.path), "format": self.fmt, "messages": dict(self.counts), "error": self.error}


def tick_record(cmd, now: float) -> dict:
    """A tick as JSON-ready values (the tick log's fields and the ``~tick`` marker's)."""
    return {"t": now, "send": bool(cmd.send), "held": bool(cmd.held), "interventions": list(cmd.interventions),
            "positions": [float(v) for v in cmd.positions], "gripper": float(cmd.gripper),
            "action": [None if not np.isfinite(v) else float(v) for v in np.asarray(cmd.action, dtype=np.float64)],
            "joint_state_age": None if cmd.joint_state_age is None else float(cmd.joint_state_age)}


def config_record(opts, topics: dict[str, str], offset_ns: int, runtime) -> dict:
    """The record's header: the node's options (those that shape what it does), its topics by kind,
    the clock mapping and the export it ran."""
    from dataclasses import asdict

    options = {k: v for k, v in asdict(opts).items()
               if k not in ("export_dir", "record", "stats", "tick_log", "duration_s", "ros_args")}
    man = runtime.manifest
    return {"robots_ts_record": RECORD_VERSION, "clock": "monotonic_ns", "offset_ns": int(offset_ns),
            "export_dir": str(opts.export_dir), "policy_sha256": man.policy.sha256, "period_s": runtime.period,
            "options": options, "topics": dict(topics)}


def dumps(value: dict) -> str:
    """JSON with floats written exactly (repr), NaN refused."""
    return json.dumps(value, allow_nan=False)
