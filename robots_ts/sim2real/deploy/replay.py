"""``robots-ts replay BAG EXPORT_DIR``: a recorded ROS 1 or ROS 2 bag through an exported policy.

The bag (a ROS 1 ``.bag`` file, or a ROS 2 bag directory with ``metadata.yaml`` and ``.db3`` or
``.mcap`` files) is read with ``rosbags`` (``AnyReader``). Its joint states, depth images with
their camera info (or point clouds) go to a :class:`~robots_ts.sim2real.deploy.core.PolicyRuntime`
that is armed and live (not dry-run) and whose clock is bag time: the runtime's ages and its soft
start are measured on the bag's receive times, as the node measured them on its clock.

Timing: the runtime ticks at the manifest's control rate from the first message read, at
``t_first + k x period`` (integer nanoseconds), after every message received at or before that
time; with ``tick_topic`` it ticks at each message of that topic instead, after the messages
before it in the bag (e.g. the deploy node's command topic: the ticks of the live run). Topics default to the bag's
only topic of each type (``sensor_msgs/JointState``, ``Image``, ``CameraInfo``, ``PointCloud2``),
preferring ``/joint_states``, names with "depth", and the camera info next to the image.

A bag written by ``robots-ts deploy --record`` (:mod:`.record`; it has a ``.../robots_ts_record``
header) is replayed exactly, unless topics or ``tick_topic`` are given: a
:class:`~robots_ts.sim2real.deploy.node.DeployNode` with the recorded options (runtime options
given here override them) gets every recorded message through its own handlers, in the recorded
order, on a clock that reads the recorded receive time, and ticks at each recorded ``~tick``
marker, at the recorded tick time, so the runtime sees the same inputs, the same arrival and tick
times (the same floats: the node's clock is integer nanoseconds, read as ``ns / 1e9``), the same
arming, e-stops and episode restarts as the live node, and gives the same actions, holds
included. The summary's ``recorded`` entry compares every tick with its marker (the largest
differences of the raw action and of the command, and the ticks whose send, held or interventions
differ).

Output in ``out``: ``actions.csv`` (one row per tick: bag time, time since the first message, the
raw policy action, the commanded joint positions and gripper, send, held, the interventions joined
by ``|``), ``actions.png`` (actions, commands and interventions over time), ``replay.log`` (the
runtime's log lines) and ``summary.json``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robots_ts.sim2real.deploy import msgs

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
STRING = "std_msgs/msg/String"


class BagClock:
    """The runtime's clock during a replay: the bag time of what is being fed or ticked, in s."""

    def __init__(self):
        self.ns = 0

    def __call__(self) -> float:
        return self.ns * 1e-9


@dataclass
class Topics:
    joint_states: str
    depth: str | None = None
    camera_info: str | None = None
    points: str | None = None
    tick: str | None = None
    all: dict[str, str] = field(default_factory=dict)   # topic -> message type in the bag


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("/"), b.split("/")):
        if x != y:
            break
        n += 1
    return n


def _pick(types: dict[str, str], msgtype: str, given: str | None, flag: str, prefer=None, required=True):
    """The topic of ``msgtype``: the one given (checked), else the only one, else the preferred."""
    if given is not None:
        if given not in types:
            raise ValueError(f"{flag} {given}: the bag has no such topic; its topics: {types}")
        if types[given] != msgtype:
            raise ValueError(f"{flag} {given} carries {types[given]}, expected {msgtype}")
        return given
    found = sorted(t for t, m in types.items() if m == msgtype)
    if not found:
        if required:
            raise ValueError(f"the bag has no {msgtype} topic (its topics: {types})")
        return None
    if len(found) > 1 and prefer is not None:
        best = [t for t in found if prefer(t)]
        found = best or found
    if len(found) > 1:
        raise ValueError(f"the bag has several {msgtype} topics {found}: choose one with {flag}")
    return found[0]


def choose_topics(types: dict[str, str], sensor: str | None, joint_states=None, depth=None, camera_info=None,
                  points=None, tick=None) -> Topics:
    """The topics to replay for a policy reading ``sensor`` (depth | points | None)."""
    t = Topics(_pick(types, JOINT_STATE, joint_states, "--joint-states", lambda s: s.endswith("/joint_states")),
               all=dict(types))
    if tick is not None:
        if tick not in types:
            raise ValueError(f"--tick-topic {tick}: the bag has no such topic; its topics: {types}")
        t.tick = tick
    if sensor is None:
        if depth or points:
            raise ValueError("--depth / --points: the policy reads proprio alone")
        return t
    if points is not None and sensor != "points":
        raise ValueError(f"--points: the policy reads {sensor}, not a point cloud")
    if sensor == "points" and (points is not None or (depth is None and IMAGE not in types.values())):
        t.points = _pick(types, POINTCLOUD2, points, "--points")
        return t
    t.depth = _pick(types, IMAGE, depth, "--depth", lambda s: "depth" in s)
    t.camera_info = _pick(types, CAMERA_INFO, camera_info, "--camera-info", required=False,
                          prefer=lambda s: _common_prefix(s, t.depth) == max(
                              _common_prefix(u, t.depth) for u, m in types.items() if m == CAMERA_INFO))
    return t


def _seconds(ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds (a float64 loses them at bag epochs)."""
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    return f"{sign}{ns // 10**9}.{ns % 10**9:09d}"


def _row(cmd, t0_ns: int, ns: int) -> list:
    return [_seconds(ns), _seconds(ns - t0_ns), *[repr(float(v)) for v in cmd.action],
            *[repr(float(v)) for v in cmd.positions], repr(float(cmd.gripper)), int(cmd.send), int(cmd.held),
            "|".join(cmd.interventions)]


def record_header(reader) -> dict | None:
    """The header of a ``robots-ts deploy --record`` bag (None for other bags)."""
    from robots_ts.sim2real.deploy.record import CONFIG_TOPIC_SUFFIX, RECORD_VERSION

    conns = [c for c in reader.connections if c.topic.endswith(CONFIG_TOPIC_SUFFIX) and c.msgtype == STRING]
    if not conns:
        return None
    if len({c.topic for c in conns}) > 1:
        raise ValueError(f"the bag holds several deploy records {sorted({c.topic for c in conns})}")
    for conn, _, raw in reader.messages(connections=conns):
        header = json.loads(reader.deserialize(raw, conn.msgtype).data)
        if header.get("robots_ts_record") != RECORD_VERSION:
            raise ValueError(f"deploy record version {header.get('robots_ts_record')} on {conn.topic}; this "
                             f"robots_ts reads version {RECORD_VERSION}")
        return header
    return None


def _replay_record(reader, bag, export_dir, header: dict, runtime_kw: dict, rows: list, lines: list) -> dict:
    """A deploy record through a DeployNode as the live node ran (see the module docstring)."""
    import dataclasses

    from robots_ts.sim2real.deploy.node import DeployNode, DeployOptions, make_runtime

    fields = {f.name for f in dataclasses.fields(DeployOptions)}
    unknown = sorted(set(runtime_kw) - fields)
    if unknown:
        raise ValueError(f"runtime options {unknown} cannot be set for a deploy record (settable: the deploy "
                         f"options {sorted(fields)})")
    recorded = {k: v for k, v in header["options"].items() if k in fields}
    opts = DeployOptions(**{**recorded, **runtime_kw, "export_dir": str(export_dir)})
    offset = int(header["offset_ns"])
    now = [0]                       # the node's clock: the recorded monotonic time of the event being replayed
    rt = make_runtime(opts, log=lambda s: lines.append(f"{now[0] / 1e9:.6f} {s}"), clock=lambda: now[0] / 1e9)
    node = DeployNode(rt, None, opts, clock_ns=lambda: now[0],
                      log=lambda s: lines.append(f"{now[0] / 1e9:.6f} {s}"))
    handlers = {"joint_states": node.on_joint_state, "camera_info": node.on_camera_info, "depth": node.on_image,
                "points": node.on_points, "estop": node.on_estop, "arm": node.on_arm, "episode": node.on_episode}
    kind_of = {topic: kind for kind, topic in header["topics"].items() if kind in handlers or kind == "tick"}
    conns = [c for c in reader.connections if c.topic in kind_of]
    diff_action = diff_command = 0.0
    mismatched: list[float] = []
    t0 = None
    for conn, ns, raw in reader.messages(connections=conns):
        t0 = ns if t0 is None else t0
        kind = kind_of[conn.topic]
        now[0] = ns - offset
        msg = reader.deserialize(raw, conn.msgtype)
        if kind != "tick":
            handlers[kind](msg)
            if node.error is not None:
                raise ValueError(f"{bag}: {conn.topic} at {ns * 1e-9:.6f} s: {node.error}") from None
            continue
        live = json.loads(msg.data)
        cmd = node.tick()
        rows.append(_row(cmd, t0, ns))
        a = np.asarray(cmd.action, dtype=np.float64)
        b = np.array([np.nan if v is None else v for v in live["action"]], dtype=np.float64)
        same = (a.shape == b.shape and np.array_equal(np.isfinite(a), np.isfinite(b))
                and (bool(cmd.send), bool(cmd.held), list(cmd.interventions))
                == (live["send"], live["held"], live["interventions"]))
        if same:
            fin = np.isfinite(a)
            diff_action = max(diff_action, float(np.max(np.abs(a[fin] - b[fin]), initial=0.0)))
            diff_command = max(diff_command, float(np.max(np.abs(cmd.positions - np.asarray(live["positions"])))),
                               abs(float(cmd.gripper) - live["gripper"]))
        else:
            mismatched.append(round(now[0] / 1e9, 6))
    return {"ticks": len(rows), "max_action_diff": diff_action, "max_command_diff": diff_command,
            "mismatched_ticks": len(mismatched), "first_mismatches": mismatched[:10],
            "same_policy": header.get("policy_sha256") == rt.manifest.policy.sha256,
            "recorded_export": header.get("export_dir"), "offset_ns": offset, "options": dataclasses.asdict(opts),
            "runtime": rt}


def replay(bag, export_dir, out=None, *, joint_states: str | None = None, depth: str | None = None,
           camera_info: str | None = None, points: str | None = None, tick_topic: str | None = None,
           plot: bool = True, **runtime_kw) -> dict:
    """Replay ``bag`` through the export's runtime; returns the summary (also written to ``out``).
    ``runtime_kw`` go to :class:`PolicyRuntime` (command, soft_start_s, velocity_limit_scale, ...;
    None: the default); a deploy record (``robots-ts deploy --record``) is replayed exactly (see the
    module docstring) unless topics or ``tick_topic`` are given."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag {bag} does not exist")
    out = Path(out) if out is not None else bag.parent / f"{bag.name.removesuffix('.bag')}_replay"
    runtime_kw = {k: v for k, v in runtime_kw.items() if v is not None}
    lines: list[str] = []
    rows: list[list] = []
    try:
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as exc:   # rosbags' own errors: not a bag, unsupported storage, damaged
        raise ValueError(f"{bag} cannot be read as a ROS 1 or ROS 2 bag ({type(exc).__name__}: {exc})") from None
    try:
        header = None if any((joint_states, depth, camera_info, points, tick_topic)) else record_header(reader)
        recorded = None
        if header is not None:
            recorded = _replay_record(reader, bag, export_dir, header, runtime_kw, rows, lines)
            rt = recorded.pop("runtime")
            topics = Topics(**{k: header["topics"].get(k) for k in ("joint_states", "depth", "camera_info", "points",
                                                                    "tick")})
        else:
            rt, topics = _replay_schedule(reader, bag, export_dir, runtime_kw, rows, lines, joint_states, depth,
                                          camera_info, points, tick_topic)
    finally:
        reader.close()
    return _write(bag, export_dir, out, rt, rows, lines, topics, plot, recorded)


def _replay_schedule(reader, bag, export_dir, runtime_kw: dict, rows: list, lines: list, joint_states, depth,
                     camera_info, points, tick_topic):
    """Any bag: ticks on the control schedule or at ``tick_topic`` (see the module docstring)."""
    from robots_ts.sim2real.deploy.core import PolicyRuntime

    clock = BagClock()
    rt = PolicyRuntime(export_dir, dry_run=False, clock=clock, log=lambda s: lines.append(f"{clock():.6f} {s}"),
                       **runtime_kw)
    types = {c.topic: c.msgtype for c in reader.connections}
    topics = choose_topics(types, rt.sensor, joint_states, depth, camera_info, points, tick_topic)
    wanted = {topics.joint_states, topics.depth, topics.camera_info, topics.points, topics.tick} - {None}
    conns = [c for c in reader.connections if c.topic in wanted]
    period_ns = int(round(rt.period * 1e9))
    t0 = last = None
    k = 0                       # scheduled ticks so far: the next is at t0 + k * period
    intrinsics = None
    rt.arm()

    def tick(ns: int) -> None:
        clock.ns = ns
        rows.append(_row(rt.tick(ns * 1e-9), t0, ns))

    for conn, ns, raw in reader.messages(connections=conns):
        if t0 is None:
            t0 = ns
        while topics.tick is None and t0 + k * period_ns < ns:
            tick(t0 + k * period_ns)
            k += 1
        last = ns
        if conn.topic == topics.tick:
            tick(ns)
            if conn.topic not in (topics.joint_states, topics.depth, topics.camera_info, topics.points):
                continue
        clock.ns = ns
        msg = reader.deserialize(raw, conn.msgtype)
        try:
            if conn.topic == topics.joint_states:
                names, pos, vel, stamp = msgs.joint_state(msg)
                rt.on_joint_state(names, pos, vel, stamp)
            elif conn.topic == topics.camera_info:
                intrinsics = msgs.camera_intrinsics(msg)
            elif conn.topic == topics.depth:
                img, enc = msgs.image_array(msg)
                rt.on_depth(img, enc, msgs.stamp_seconds(msg.header.stamp), intrinsics)
            elif conn.topic == topics.points:
                rt.on_points(msgs.pointcloud_xyz(msg), msgs.stamp_seconds(msg.header.stamp),
                             str(msg.header.frame_id) or "base")
        except ValueError as exc:
            raise ValueError(f"{bag}: {conn.topic} at {ns * 1e-9:.6f} s: {exc}") from None
    if t0 is None:
        raise ValueError(f"{bag}: no messages on {sorted(wanted)}")
    while topics.tick is None and t0 + k * period_ns <= last:
        tick(t0 + k * period_ns)
        k += 1
    return rt, topics


def _write(bag, export_dir, out: Path, rt, rows: list, lines: list, topics: Topics, plot: bool,
           recorded: dict | None = None) -> dict:
    """actions.csv, replay.log, the plot and summary.json; returns the summary."""
    from robots_ts.runs import atomic_write_json, atomic_write_text

    man = rt.manifest
    action_names = [n for f in man.action.fields for n in f.names]
    header = ["time", "t", *[f"action_{n}" for n in action_names], *[f"position_{n}" for n in rt.joint_names],
              "gripper", "send", "held", "interventions"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "actions.csv", buf.getvalue())
    atomic_write_text(out / "replay.log", "\n".join(lines) + "\n")
    summary = {"bag": str(bag), "export": str(export_dir), "topics": {k: v for k, v in vars(topics).items()
                                                                     if k != "all"},
               "ticks": len(rows), "sent": sum(r[-3] for r in rows), "held": sum(r[-2] for r in rows),
               "duration_s": float(rows[-1][1]) if rows else 0.0, "control_hz": man.control.hz,
               "counters": dict(rt.counters), "csv": str(out / "actions.csv")}
    if recorded is not None:
        summary["recorded"] = recorded
    if plot and rows:
        plot_actions(out / "actions.png", header, rows, action_names, rt.joint_names)
        summary["plot"] = str(out / "actions.png")
    atomic_write_json(out / "summary.json", summary)
    return summary


def read_actions(path) -> dict[str, np.ndarray]:
    """``actions.csv`` back as columns: floats, and ``interventions`` as a list of lists."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(header):
        col = [r[j] for r in body]
        out[name] = [c.split("|") if c else [] for c in col] if name == "interventions" \
            else np.array(col, dtype=np.float64)
    return out


def plot_actions(path: Path, header: list[str], rows: list, action_names, joint_names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robots_ts.runs import atomic_write
    from robots_ts.sim2real.deploy.safety import INTERVENTIONS

    t = np.array([float(r[1]) for r in rows])
    a = np.array([[float(v) for v in r[2:2 + len(action_names)]] for r in rows])
    q = np.array([[float(v) for v in r[2 + len(action_names):2 + len(action_names) + len(joint_names)]] for r in rows])
    kinds = [r[-1].split("|") if r[-1] else [] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1.3]})
    for j, n in enumerate(action_names):
        axes[0].plot(t, a[:, j], lw=1, label=n)
    axes[0].set_ylabel("raw action")
    axes[0].legend(fontsize=7, ncol=4, loc="upper right")
    for j, n in enumerate(joint_names):
        axes[1].plot(t, q[:, j], lw=1, label=n.replace("panda_", ""))
    axes[1].set_ylabel("commanded position (rad)")
    axes[1].legend(fontsize=7, ncol=4, loc="upper right")
    for y, kind in enumerate(INTERVENTIONS):
        on = np.array([kind in k for k in kinds])
        axes[2].scatter(t[on], np.full(on.sum(), y), s=6, marker="|")
    axes[2].set_yticks(range(len(INTERVENTIONS)), INTERVENTIONS, fontsize=7)
    axes[2].set_ylim(-0.5, len(INTERVENTIONS) - 0.5)
    axes[2].set_xlabel("bag time since the first message (s)")
    axes[2].set_title("safety interventions", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts replay",
                                 description="Run a recorded ROS 1 / ROS 2 bag through an exported policy and its "
                                             "safety layer; write the actions it would have sent (CSV and a plot). "
                                             "A bag of `robots-ts deploy --record` replays exactly: the node's "
                                             "recorded ticks, messages and options (unless topics are given).")
    ap.add_argument("bag", help="a ROS 1 .bag file or a ROS 2 bag directory (metadata.yaml + .db3 / .mcap)")
    ap.add_argument("export_dir", help="an ONNX export directory (robots-ts export RUN_DIR)")
    ap.add_argument("--out", help="output directory (default: BAG_replay next to the bag)")
    ap.add_argument("--joint-states", metavar="TOPIC")
    ap.add_argument("--depth", metavar="TOPIC", help="sensor_msgs/Image, 16UC1 (mm) or 32FC1 (m)")
    ap.add_argument("--camera-info", metavar="TOPIC")
    ap.add_argument("--points", metavar="TOPIC",
                    help="sensor_msgs/PointCloud2 in the base frame (point-cloud policies)")
    ap.add_argument("--tick-topic", metavar="TOPIC",
                    help="tick at this topic's receive times (e.g. the deploy node's commands) instead of on a "
                         "schedule at the control rate")
    ap.add_argument("--command", type=float, nargs="+", metavar="X", help="the task command (e.g. a Push goal)")
    ap.add_argument("--soft-start", type=float, metavar="S", help="soft start after arming (s; default 2, or a "
                    "deploy record's own: the runtime options below override a record's)")
    ap.add_argument("--velocity-limit-scale", type=float, help="default 1")
    ap.add_argument("--watchdog-periods", type=float, help="default 3")
    ap.add_argument("--depth-max-age", type=float, metavar="S")
    ap.add_argument("--resample", action="store_true", default=None,
                    help="resample other camera intrinsics (point-cloud policies)")
    args = ap.parse_args(argv)
    summary = replay(args.bag, args.export_dir, args.out, joint_states=args.joint_states, depth=args.depth,
                     camera_info=args.camera_info, points=args.points, tick_topic=args.tick_topic,
                     command=args.command, soft_start_s=args.soft_start, velocity_limit_scale=args.velocity_limit_scale,
                     watchdog_periods=args.watchdog_periods, depth_max_age_s=args.depth_max_age,
                     resample=args.resample)
    print(json.dumps(summary, indent=1))
    return 0
