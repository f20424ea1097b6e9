"""``robots-ts sim-robot --ros1 TASK``: the MuJoCo Panda of a robots_ts world, as a ROS robot.

:class:`SimPanda` is one world of the task (:class:`robots_ts.envs.world.WorldBatch`, num_envs 1,
MuJoCo) driven like a ros2_control forward position controller: the latest command is the joint
target, kept until the next one (no timeout). Physics steps in real time in periods of the
joint-state rate (``--rate``, default 100 Hz: 5 MuJoCo steps of 2 ms); targets change only at
those boundaries, so between commands the physics is exactly the env's (a held target over 4
such periods is the env's one 40 ms control step). Joint states are published after each period,
measured, not interpolated. The depth camera (the task's scene camera, rendered as the env renders
it) publishes at ``--depth-rate`` (default 25 Hz) as ``16UC1`` millimetres (or ``32FC1`` metres),
no return (the far plane) as 0 (NaN), with a ``CameraInfo`` whose K is the export manifest's
(``robots_ts.sim2real.export.describe.intrinsics``).

Episodes: episode k draws its task parameters and start pose from a generator seeded by
(``--seed``, k) (:func:`episode_rng`), so an evaluation in simulation can replay the same
episodes. Success is checked at control-period boundaries (the env's rate, 25 Hz), as the env
checks it; an episode ends at success or after the task's episode length, and the next starts at
once (the arm is put at the new start pose, its target with it; commands arriving within one
joint-state period after a reset are dropped, as they were computed before it). The first
episode's clock starts (and its physics runs) at the first command. After ``--episodes N`` the
node exits.

Topics (relative to ``--namespace``): publishes ``joint_states``, ``camera/depth/image_rect_raw``,
``camera/depth/camera_info``, ``success`` (std_msgs/Bool, each control period) and ``episode``
(std_msgs/Int32, latched); subscribes ``forward_position_controller/commands``
(std_msgs/Float64MultiArray: 7 arm joints, optionally the finger opening per finger in metres),
``joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory by joint name;
its last point is applied at once) and ``~stall_joint_states`` (std_msgs/Bool: true pauses the
joint-state stream, a test hook for the deploy node's watchdog). ``--log FILE`` writes one JSON
line per event (episodes with their parameters and results, every command received with its
arrival time, stalls), times from ``time.monotonic``.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import numpy as np

JOINT_STATES, DEPTH, CAMERA_INFO = "joint_states", "camera/depth/image_rect_raw", "camera/depth/camera_info"
FLOAT64_COMMANDS, TRAJECTORY_COMMANDS = "forward_position_controller/commands", \
    "joint_trajectory_controller/joint_trajectory"


def episode_rng(seed: int, episode: int) -> np.random.Generator:
    """The generator episode ``episode`` of a seeded run draws its parameters and start pose from."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(episode)]))


class SimPanda:
    """One MuJoCo world of ``task`` stepped in periods of ``1 / rate`` s toward joint targets."""

    def __init__(self, task: str, seed: int = 0, rate: float = 100.0, episode_steps: int = 0,
                 camera_size: tuple[int, int] | None = None, depth: bool = True):
        from robots_ts.config import EnvConfig
        from robots_ts.envs.backends.scene import TIMESTEP
        from robots_ts.envs.world import WorldBatch

        env = EnvConfig(task=task)
        ratio = env.control_hz and rate / env.control_hz
        sub = 1.0 / (rate * TIMESTEP)
        if rate <= 0 or abs(sub - round(sub)) > 1e-9 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"--rate {rate} Hz must be a whole multiple of the control rate {env.control_hz:g} Hz "
                             f"with a whole number of {TIMESTEP * 1e3:g} ms physics steps per period (e.g. 100, 250)")
        self.cfg = EnvConfig(task=task, num_envs=1, obs_groups=["proprio"], num_threads=1, control_hz=rate,
                             episode_steps=episode_steps)
        self.world = w = WorldBatch(self.cfg, seed=seed)
        self.seed, self.rate, self.control_hz = int(seed), float(rate), float(env.control_hz)
        self.periods_per_control = int(round(ratio))
        self.episode_steps = int(episode_steps or w.task.episode_steps)      # control periods
        self.desc, self.arm = w.desc, w.arm
        self.names = list(self.desc.arm_joints) + list(self.desc.finger_joints)
        self.q_target = w.arm.home.copy()
        self.finger = float(w.arm.finger_open)
        self.camera = self.intr = None
        if depth:
            from robots_ts.envs.backends.mujoco_render import DepthCamera
            from robots_ts.envs.backends.scene import camera
            from robots_ts.sim2real.export.describe import intrinsics

            d = env.depth
            width, height = camera_size or (d.width, d.height)
            cam = camera(d.camera)
            self.camera = DepthCamera(w.backend.models[0], d.camera, width, height, d.near, d.far)
            self.intr = intrinsics(width, height, cam.fovy)
            self.near, self.far = float(d.near), float(d.far)
            self._depth = np.zeros((height, width), np.float32)
        self.episode = -1
        self.success = False
        self.steps = 0          # control periods into the episode
        self.periods = 0        # joint-state periods into the current control period

    def reset(self, episode: int) -> dict:
        """Start episode ``episode``: its parameters and start pose from :func:`episode_rng`."""
        w = self.world
        w.rngs[0] = episode_rng(self.seed, episode)
        w.reset_worlds([0])
        self.q_target = w.state.qpos[0, w.arm.qpos_idx].copy()
        self.finger = float(w.arm.finger_open)
        self.episode, self.steps, self.periods, self.success = int(episode), 0, 0, False
        return {"episode": self.episode, "params": w.param_space.as_dict(w.state.params[0]),
                "q0": [round(float(v), 6) for v in self.q_target]}

    def set_target(self, positions, gripper: float | None = None) -> bool:
        """Apply a command (7 arm positions, optional finger opening); clipped to the joint limits
        and finger range like the env's targets. Non-finite commands are refused (False)."""
        q = np.asarray(positions, dtype=np.float64).reshape(-1)
        if q.shape != (7,) or not np.all(np.isfinite(q)) or (gripper is not None and not np.isfinite(gripper)):
            return False
        self.q_target = np.clip(q, self.arm.joint_low, self.arm.joint_high)
        if gripper is not None:
            self.finger = float(np.clip(gripper, 0.0, self.arm.finger_open))
        return True

    def step(self) -> tuple[bool, bool]:
        """One joint-state period of physics. Returns (control boundary reached, episode over);
        at a boundary the episode's success is in :attr:`success`."""
        w = self.world
        w.backend.step(self.q_target[None], np.array([self.finger]))
        w.state.finger[:] = w.state.qpos[:, w.arm.finger_qpos_idx]
        self.periods += 1
        if self.periods < self.periods_per_control:
            return False, False
        self.periods = 0
        self.steps += 1
        self.success = bool(w.task.success(w.state)[0])
        return True, self.success or self.steps >= self.episode_steps

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        s, a = self.world.state, self.arm
        pos = np.concatenate([s.qpos[0, a.qpos_idx], s.qpos[0, a.finger_qpos_idx]])
        vel = np.concatenate([s.qvel[0, a.qvel_idx], s.qvel[0, a.finger_qpos_idx]])
        return pos, vel

    def depth(self) -> np.ndarray:
        """(H, W) metres along the optical axis, as the env renders it; NaN where nothing is
        within range (what a depth driver reports as no return)."""
        b = self.world.backend
        d = self.camera.render(b.models[0], b.datas[0], self._depth).copy()
        d[d >= self.far - 1e-6] = np.nan
        return d

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
        self.world.close()


class SimRobotRos1:
    """SimPanda on ROS 1: the real-time loop, the publishers and the command subscribers."""

    def __init__(self, sim: SimPanda, episodes: int, depth_rate: float, encoding: str = "16UC1",
                 log_file: str | None = None, wait_for_command: bool = True):
        from robots_ts.sim2real.deploy.ros1 import import_rospy

        self.rospy = rospy = import_rospy()
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from std_msgs.msg import Bool, Float64MultiArray, Int32
        from trajectory_msgs.msg import JointTrajectory

        self.msg = dict(JointState=JointState, Image=Image, CameraInfo=CameraInfo, Bool=Bool, Int32=Int32)
        self.sim, self.episodes, self.encoding = sim, int(episodes), encoding
        every = sim.rate / depth_rate if depth_rate > 0 else 0
        if sim.camera is not None and (depth_rate <= 0 or abs(every - round(every)) > 1e-9):
            raise ValueError(f"--depth-rate {depth_rate} Hz must divide the joint-state rate {sim.rate:g} Hz")
        self.depth_every = int(round(every)) if sim.camera is not None else 0
        self.wait = bool(wait_for_command)
        self.lock = threading.Lock()
        self.latest: tuple | None = None       # (positions, gripper, arrival)
        self.stalled = self.was_stalled = False
        self.last_js = 0.0
        self.results: list[dict] = []
        self._log = open(log_file, "w") if log_file else None
        self.log_lock = threading.Lock()
        self.pub = dict(js=rospy.Publisher(JOINT_STATES, JointState, queue_size=10, tcp_nodelay=True),
                        success=rospy.Publisher("success", Bool, queue_size=10),
                        episode=rospy.Publisher("episode", Int32, queue_size=10, latch=True))
        if sim.camera is not None:
            self.pub["depth"] = rospy.Publisher(DEPTH, Image, queue_size=2, tcp_nodelay=True)
            self.pub["info"] = rospy.Publisher(CAMERA_INFO, CameraInfo, queue_size=2)
            from robots_ts.sim2real.deploy.msgs import camera_info_fields

            i = sim.intr
            info = camera_info_fields(dict(width=i.width, height=i.height, fx=i.fx, fy=i.fy, cx=i.cx, cy=i.cy),
                                      ros2=False)
            self.info = CameraInfo(**{k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in info.items()})
            self.info.header.frame_id = self.frame = "camera_depth_optical_frame"
        self.subs = [rospy.Subscriber(FLOAT64_COMMANDS, Float64MultiArray, self.on_float64, queue_size=10,
                                      tcp_nodelay=True),
                     rospy.Subscriber(TRAJECTORY_COMMANDS, JointTrajectory, self.on_trajectory, queue_size=10,
                                      tcp_nodelay=True),
                     rospy.Subscriber("~stall_joint_states", Bool, self.on_stall, queue_size=10)]

    def event(self, **rec) -> None:
        if self._log is not None:
            line = json.dumps(rec) + "\n"
            with self.log_lock:        # callbacks and the loop write from their own threads
                self._log.write(line)
                self._log.flush()

    # ------------------------------------------------------------------------------ commands
    def _command(self, kind: str, positions, gripper) -> None:
        now = time.monotonic()
        pos = [float(v) for v in positions]
        self.event(event="command", t=round(now, 6), kind=kind, positions=pos,
                   gripper=None if gripper is None else float(gripper))
        with self.lock:
            self.latest = (pos, gripper, now)

    def on_float64(self, msg) -> None:
        data = list(msg.data)
        if len(data) not in (7, 8):
            self.rospy.logwarn_throttle(5.0, f"sim-robot: a Float64MultiArray command has {len(data)} values, "
                                        "expected 7 arm joints (+ the finger opening); ignored")
            return
        self._command("float64", data[:7], data[7] if len(data) == 8 else None)

    def on_trajectory(self, msg) -> None:
        if not msg.points:
            return
        where = {str(n): i for i, n in enumerate(msg.joint_names)}
        names = self.sim.desc.arm_joints
        missing = [n for n in names if n not in where]
        if missing:
            self.rospy.logwarn_throttle(5.0, f"sim-robot: JointTrajectory lacks joints {missing}; ignored")
            return
        p = list(msg.points[-1].positions)
        fingers = [where[n] for n in self.sim.desc.finger_joints if n in where]
        self._command("trajectory", [p[where[n]] for n in names], p[fingers[0]] if fingers else None)

    def on_stall(self, msg) -> None:
        with self.lock:
            self.stalled = bool(msg.data)

    # ----------------------------------------------------------------------------- publishing
    def publish_joint_state(self) -> None:
        pos, vel = self.sim.joint_state()
        m = self.msg["JointState"](name=self.sim.names, position=pos.tolist(), velocity=vel.tolist(), effort=[])
        m.header.stamp = self.rospy.Time.now()
        self.pub["js"].publish(m)
        self.last_js = time.monotonic()

    def publish_depth(self) -> None:
        from robots_ts.sim2real.deploy.msgs import encode_depth, image_fields

        f = image_fields(encode_depth(self.sim.depth(), self.encoding), self.encoding)
        img = self.msg["Image"](height=f["height"], width=f["width"], encoding=f["encoding"],
                                is_bigendian=f["is_bigendian"], step=f["step"], data=f["data"].tobytes())
        img.header.stamp = self.info.header.stamp = self.rospy.Time.now()
        img.header.frame_id = self.frame
        self.pub["info"].publish(self.info)
        self.pub["depth"].publish(img)

    def start_episode(self, k: int) -> None:
        rec = self.sim.reset(k)
        with self.lock:
            self.latest = None
        self.reset_at = time.monotonic()
        self.event(event="episode_start", t=round(self.reset_at, 6), **rec)
        self.rospy.loginfo(f"sim-robot: episode {k} {rec['params']}")
        self.publish_joint_state()
        self.pub["episode"].publish(self.msg["Int32"](data=k))

    # ----------------------------------------------------------------------------------- loop
    def run(self) -> list[dict]:
        rospy, sim = self.rospy, self.sim
        dt = 1.0 / sim.rate
        k = 0
        self.start_episode(0)
        started = not self.wait
        t_episode = time.monotonic()
        t0 = time.monotonic()
        n = late = 0
        while not rospy.is_shutdown() and (self.episodes <= 0 or len(self.results) < self.episodes):
            deadline = t0 + n * dt
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.1:      # far behind (the machine stalled): restart the schedule here
                t0, n, late = time.monotonic(), 0, late + 1
            n += 1
            with self.lock:
                latest, stalled = self.latest, self.stalled
            if latest is not None and latest[2] - self.reset_at > dt:
                if not sim.set_target(latest[0], latest[1]):
                    rospy.logwarn_throttle(5.0, "sim-robot: refused a non-finite command (the target stays)")
                if not started:
                    started, t_episode = True, time.monotonic()
                    self.event(event="clock_start", t=round(t_episode, 6), episode=sim.episode)
            if started:
                boundary, over = sim.step()
            else:
                boundary, over = False, False
            if stalled != self.was_stalled:   # logged here: the last joint state really was the last
                self.was_stalled = stalled
                self.event(event="stall", on=stalled, t=round(time.monotonic(), 6),
                           last_joint_state=round(self.last_js, 6))
            if not stalled:
                self.publish_joint_state()
            if self.depth_every and n % self.depth_every == 0:
                self.publish_depth()
            if boundary:
                self.pub["success"].publish(self.msg["Bool"](data=sim.success))
            if over:
                res = {"episode": sim.episode, "success": sim.success, "steps": sim.steps,
                       "duration_s": round(time.monotonic() - t_episode, 4)}
                self.results.append(res)
                self.event(event="episode_end", t=round(time.monotonic(), 6), **res)
                rospy.loginfo(f"sim-robot: episode {sim.episode} {'success' if sim.success else 'failure'} "
                              f"after {sim.steps} steps")
                k += 1
                if self.episodes <= 0 or k < self.episodes:
                    self.start_episode(k)
                    t_episode = time.monotonic()
        self.event(event="done", episodes=len(self.results), successes=sum(r["success"] for r in self.results),
                   late_restarts=late)
        return self.results

    def close(self) -> None:
        for s in self.subs:
            s.unregister()
        if self._log is not None:
            self._log.close()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="robots-ts sim-robot", description="The MuJoCo Panda of a robots_ts task "
                                 "as a ROS robot: joint states, depth + camera info, position commands, success.")
    ros = ap.add_mutually_exclusive_group(required=True)
    ros.add_argument("--ros1", dest="ros", action="store_const", const="ros1")
    ros.add_argument("--ros2", dest="ros", action="store_const", const="ros2")
    ap.add_argument("task", help="a robots_ts task, e.g. Reach")
    ap.add_argument("--seed", type=int, default=0, help="episode k draws from (seed, k)")
    ap.add_argument("--episodes", type=int, default=0, help="exit after N episodes (0: run until stopped)")
    ap.add_argument("--episode-steps", type=int, default=0, help="control periods per episode (0: the task's)")
    ap.add_argument("--rate", type=float, default=100.0, help="joint-state (and physics) rate, Hz")
    ap.add_argument("--depth-rate", type=float, default=25.0, help="depth camera rate, Hz (0: no camera)")
    ap.add_argument("--camera-width", type=int)
    ap.add_argument("--camera-height", type=int)
    ap.add_argument("--encoding", choices=["16UC1", "32FC1"], default="16UC1")
    ap.add_argument("--namespace", default="", metavar="NS")
    ap.add_argument("--no-wait", dest="wait", action="store_false",
                    help="start the first episode's clock at once, not at the first command")
    ap.add_argument("--log", metavar="FILE", help="one JSON line per episode, command and stall")
    ap.add_argument("--node-name", default="sim_robot")
    return ap


def main(argv: list[str]) -> int:
    import os
    import sys

    ros_args = [a for a in argv if ":=" in a]
    args = parser().parse_args([a for a in argv if ":=" not in a])
    if args.ros != "ros1":
        raise ValueError("sim-robot runs on ROS 1 (--ros1); a ROS 2 simulated robot is not implemented")
    if (args.camera_width is None) != (args.camera_height is None):
        raise ValueError("--camera-width and --camera-height go together")
    from robots_ts.sim2real.deploy.ros1 import RosUnavailable, import_rospy

    if args.namespace:   # read by rospy when it is imported
        os.environ["ROS_NAMESPACE"] = args.namespace
    try:
        rospy = import_rospy()
    except RosUnavailable as exc:
        from robots_ts.errors import report

        return report("robots-ts sim-robot", exc)
    size = (args.camera_width, args.camera_height) if args.camera_width else None
    sim = SimPanda(args.task, args.seed, args.rate, args.episode_steps, size, depth=args.depth_rate > 0)
    rospy.init_node(args.node_name, argv=[sys.argv[0], *ros_args])
    node = SimRobotRos1(sim, args.episodes, args.depth_rate, args.encoding, args.log, args.wait)
    try:
        results = node.run()
    finally:
        node.close()
        sim.close()
    wins = sum(r["success"] for r in results)
    print(json.dumps({"episodes": len(results), "successes": wins, "seed": args.seed, "task": args.task}))
    return 0
