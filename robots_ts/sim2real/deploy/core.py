"""The ROS-independent runtime of an exported policy: :class:`PolicyRuntime`.

A node (ROS 1, ROS 2, bag replay, a test) feeds it joint states and depth images or point clouds
as they arrive and calls :meth:`PolicyRuntime.tick` once per control period. Each tick:

1. checks the data (the watchdog: a joint state older than ``watchdog_periods`` periods, or depth
   older than ``depth_max_age_s``) and the latched e-stop; either one holds the robot;
2. otherwise assembles the observation groups as the env's ``_clean_obs`` did (joint positions
   and velocities, finger positions, the TCP position from the URDF kinematics, the previous
   policy action, the task command; depth clipped to [near, far] with no return read as far, or
   the point cloud from the env's own PointCloudMaker; for a policy that reads ``history``, the
   last actions sent, newest first), runs the exported ONNX policy, and maps
   its action to joint targets with the env's :class:`robots_ts.robot.arm.Arm` from the measured
   joint state (the TCP pose and Jacobian from the URDF) and the previous target;
3. passes the target through the safety layer (:mod:`robots_ts.sim2real.deploy.safety`) and
   returns a :class:`Command` saying whether to send it.

Holding means *sending* the pose measured when the hold began (clipped to the joint limits), as
long as the node has authority to send (armed, not dry-run): a forward position controller has no
command timeout and keeps the last command, which would be a policy target one period ahead;
the measured pose stops the arm where it is. Before any joint state nothing is sent.

Episodes: the runtime starts one (previous action, action history and recurrent state reset, the
previous target set to the measured pose) at the first tick with data after construction, after
each :meth:`arm` and after :meth:`new_episode`; once armed, with a soft start from that pose. After
a hold ends (watchdog), the policy's episode goes on, but the previous target is reset to the
measured pose and a new soft start ramps from it. A NaN or infinite action never becomes the
previous action (nor enters the history).

Everything is deterministic given the inputs and the injected ``clock`` (message arrival times
and ticks are read from it); point-cloud subsampling draws from ``rng`` (seeded by ``seed``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from robots_ts.sim2real.deploy.observe import CloudInput, DeployError, DepthInput, JointMap, TcpKinematics
from robots_ts.sim2real.deploy.safety import InterventionLog, SafetyFilter
from robots_ts.sim2real.export.manifest import Manifest, load_manifest

__all__ = ["Command", "DeployError", "PolicyRuntime", "DEFAULT_DEPTH_MAX_AGE_S"]

DEFAULT_DEPTH_MAX_AGE_S = 0.5     # depth_max_age_s=None: a camera silent this long holds the robot
HOLDS = ("estop", "stale_joint_state", "stale_depth")


@dataclass
class Command:
    positions: np.ndarray        # (7,) arm joint position targets, URDF order (joint_names)
    gripper: float               # finger opening target per finger, m
    joint_names: list[str]
    send: bool                   # publish positions to the controller this tick (armed and not dry-run)
    held: bool                   # the watchdog or the e-stop holds: positions is the hold pose
    interventions: list[str]     # what the safety layer did this tick
    action: np.ndarray           # the raw policy action (NaN where the policy gave NaN or did not run)
    target: np.ndarray | None = None   # Arm.targets' joint targets before the safety layer (None: not run)
    time: float = 0.0            # the tick's clock time, s
    obs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)   # what the policy read, (1, ...)
    joint_state_age: float | None = None   # s since the latest joint state arrived (None: none yet)


class PolicyRuntime:
    """An exported policy on a robot: observations, inference, action mapping, safety layer.

    ``export_dir``: an ONNX export (``robots-ts export RUN_DIR``) of a student (proprio + depth or
    points, and the history of its actions when it reads one). ``dry_run`` (default): commands are
    computed and logged, never sent. ``command``: the task command (e.g. the Push goal, base frame)
    when the task has one. ``task``: which task a multi-task student is asked to do (one of
    ``manifest.source.tasks``; its ``task`` group is then that task's one-hot id and command).
    ``resample``: allow a point-cloud student's depth camera to have other
    intrinsics (resampled nearest).
    ``joint_limit_margin``: rad inside the URDF's soft limits. ``log``: a callable taking one line.
    """

    def __init__(self, export_dir, *, dry_run: bool = True, command=None, task: str | None = None,
                 velocity_limit_scale: float = 1.0,
                 soft_start_s: float = 2.0, watchdog_periods: float = 3.0, depth_max_age_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] | None = None,
                 resample: bool = False, joint_limit_margin: float = 0.0, seed: int = 0, threads: int = 1):
        from robots_ts.robot.arm import Arm
        from robots_ts.robot.description import panda
        from robots_ts.sim2real.export.onnx_policy import OnnxPolicy

        self.export_dir = Path(export_dir)
        self.manifest: Manifest = load_manifest(self.export_dir)
        man = self.manifest
        if man.policy.format != "onnx":
            raise DeployError(f"{self.export_dir} holds a {man.policy.format} export; the runtime runs ONNX "
                              f"(robots-ts export {man.source.run_dir} --format onnx)")
        if "privileged" in man.obs_groups:
            raise DeployError(f"{self.export_dir} is a {man.source.kind} that reads simulator-only state "
                              f"('privileged'); a robot can run students (proprio + depth or points)")
        if not 0.0 < velocity_limit_scale <= 1.0:
            raise DeployError(f"velocity_limit_scale must be in (0, 1] (a fraction of the URDF velocity limits), "
                              f"got {velocity_limit_scale}")
        if soft_start_s < 0 or watchdog_periods <= 0 or (depth_max_age_s is not None and depth_max_age_s <= 0):
            raise DeployError(f"soft_start_s must be >= 0, watchdog_periods and depth_max_age_s > 0; got "
                              f"{soft_start_s}, {watchdog_periods}, {depth_max_age_s}")
        self.period = float(man.control.period_s)
        self.clock = clock
        self.dry_run = bool(dry_run)
        self.watchdog_s = float(watchdog_periods) * self.period
        self.depth_max_age_s = float(DEFAULT_DEPTH_MAX_AGE_S if depth_max_age_s is None else depth_max_age_s)
        self.interventions = InterventionLog(log)
        self.log = self.interventions.log

        # The robot and the action mapping: the env's Arm with the manifest's constants.
        self.desc = desc = panda()
        self.kinematics = TcpKinematics(desc)
        rob, act = man.robot, man.action
        if list(rob.arm_joints) != list(desc.arm_joints) or list(rob.finger_joints) != list(desc.finger_joints):
            raise DeployError(f"the export's robot joints {rob.arm_joints + rob.finger_joints} are not this URDF's "
                              f"{list(desc.arm_joints + desc.finger_joints)}")
        self.mapping = Arm(control=act.control, ee_step=act.ee_step, joint_step=act.joint_step,
                       workspace_low=act.workspace_low, workspace_high=act.workspace_high, ik_damping=act.ik_damping,
                       desc=desc)
        if act.dim != self.mapping.action_dim or not np.allclose(self.mapping.ee_rot_target, act.ee_rotation_target,
                                                             atol=1e-9):
            raise DeployError(f"the export's action ({act.control}, dim {act.dim}, TCP orientation "
                              f"{act.ee_rotation_target}) is not this Arm's (dim {self.mapping.action_dim}, "
                              f"{self.mapping.ee_rot_target.tolist()})")
        limits = {j.name: j for j in rob.joints}
        lower = np.array([limits[n].lower for n in rob.arm_joints])
        upper = np.array([limits[n].upper for n in rob.arm_joints])
        if not (np.allclose(lower, self.mapping.joint_low) and np.allclose(upper, self.mapping.joint_high)):
            raise DeployError(f"the export's joint limits {lower.tolist()}..{upper.tolist()} are not the URDF's "
                              f"{self.mapping.joint_low.tolist()}..{self.mapping.joint_high.tolist()}")
        margin = float(joint_limit_margin)
        if margin < 0 or np.any(upper - lower <= 2 * margin):
            raise DeployError(f"joint_limit_margin {margin} rad must be >= 0 and leave room inside the limits")
        step = np.array([limits[n].velocity for n in rob.arm_joints]) * self.period * float(velocity_limit_scale)
        self.safety = SafetyFilter(lower + margin, upper - margin, step, soft_start_s)
        self.finger_range = (float(act.gripper.finger_range[0]), float(act.gripper.finger_range[1]))
        self.joints = JointMap(rob.arm_joints, rob.finger_joints)
        self.joint_names = list(rob.arm_joints)

        # Observations: the proprio layout, the task (a multi-task student's) and its command, the sensor group.
        self.tasks = list(man.source.tasks or [])
        self.task = self.task_row = self.task_command_at = None
        if "task" in man.obs_groups:
            if not self.tasks:
                raise DeployError(f"{self.export_dir}: the policy reads a 'task' group but the manifest names no "
                                  "tasks (source.tasks); export the run again")
            if task not in self.tasks:
                raise DeployError(f"{self.export_dir} serves several tasks {self.tasks}: "
                                  f"{'choose one (task=..., --task)' if task is None else f'not {task!r}'}")
            self.task = task
            fields = {f.field: f for f in man.observations["task"].fields}
            key = f"{task}.command"
            # The row as the manifest lays it out: the one-hot id, then the command's columns.
            self.task_row = np.zeros(int(np.prod(man.observations["task"].shape)), np.float32)
            self.task_row[fields["task_id"].start + list(fields["task_id"].names).index(task)] = 1.0
            self.task_command_at = fields[key].start if key in fields else None
        else:
            if task is not None and task != man.source.task:
                raise DeployError(f"{self.export_dir} is a {man.source.task} policy; it cannot do task {task!r}")
            fields = {f.field: f for f in man.observations["proprio"].fields}
            key = "command"
        self.command_names = list(fields[key].names) if key in fields else []
        self.command = np.zeros(0)
        self.set_command(command)
        self.sensor = next((g for g in man.obs_groups if g in ("depth", "points")), None)
        self.depth_in = self.cloud = None
        if self.sensor == "depth":
            self.depth_in = DepthInput(man.camera.intrinsics, man.camera.near, man.camera.far, False, "depth")
        elif self.sensor == "points":
            self.depth_in = DepthInput(man.points.render, man.camera.near, man.camera.far, resample, "points")
            self.cloud = CloudInput(man)
        self.rng = np.random.default_rng(seed)

        self.policy = OnnxPolicy(self.export_dir, threads=threads)
        self.prev_action_reset = np.asarray(man.control.prev_action_at_reset, dtype=np.float64)
        self.prev_action = self.prev_action_reset.copy()
        # The env's `history` group: the last K actions sent, newest first (K rows of the action).
        self.history: np.ndarray | None = None
        if "history" in man.obs_groups:
            width, dim = int(np.prod(man.observations["history"].shape)), len(self.prev_action_reset)
            if width == 0 or width % dim:
                raise DeployError(f"{self.export_dir}: observation group 'history' has shape "
                                  f"{man.observations['history'].shape}, not a whole number of {dim}-wide actions")
            self.history = np.tile(self.prev_action_reset, (width // dim, 1))
        self.q_target: np.ndarray | None = None
        self.gripper: float | None = None

        self._joint = None           # (q, qd, fingers, stamp, arrival)
        self._tcp = None             # (the _joint it was computed for, (TCP position, rotation, Jacobian))
        self._sensor = None          # ("depth", (H, W) metres) or ("points", (N, 3)), stamp, arrival
        self._errors: set[str] = set()
        self.armed = False
        self.estopped = False
        self._start = "episode"      # what the next tick with data starts: "episode" | "resume" | None
        self._hold: tuple[np.ndarray, float] | None = None
        self.last: Command | None = None
        self.log(f"deploy: {man.source.kind} {man.source.task} ({self.sensor or 'proprio'}, {act.control} control) at "
                 f"{man.control.hz:g} Hz from {self.export_dir}; {'dry run' if self.dry_run else 'LIVE'}, not armed")

    # ------------------------------------------------------------------------------------ inputs
    @property
    def counters(self) -> dict[str, int]:
        return self.interventions.counters

    def set_command(self, command) -> None:
        """The task command (``manifest.observations['proprio']`` field ``command``, or a multi-task
        student's ``task`` field ``<Task>.command``), e.g. a goal."""
        what = self.task or self.manifest.source.task
        if not self.command_names:
            if command is not None and len(np.atleast_1d(command)):
                raise DeployError(f"the {what} policy takes no task command, got {command}")
        else:
            if command is None:
                raise DeployError(f"the {what} policy reads a task command {self.command_names} (pass command=[...])")
            c = np.asarray(command, dtype=np.float64).reshape(-1)
            if len(c) != len(self.command_names) or not np.all(np.isfinite(c)):
                raise DeployError(f"task command {c.tolist()} does not fit {self.command_names}")
            self.command = c
            if self.task_command_at is not None:
                self.task_row[self.task_command_at:self.task_command_at + len(c)] = c

    def _error_once(self, message: str) -> None:
        if message not in self._errors:
            self._errors.add(message)
            self.log(f"error: {message} (ignored until it changes; the watchdog holds without data)")

    def _arrival(self, arrival: float | None) -> float:
        return float(self.clock() if arrival is None else arrival)

    def on_joint_state(self, names, positions, velocities, stamp: float, arrival: float | None = None) -> None:
        """A JointState (any joint order, extra joints ignored). A message lacking a joint of the
        robot, or with non-finite values, is logged once and ignored. ``arrival``: its receive
        time on the runtime's clock (default: read the clock now); the on_* methods all take it."""
        try:
            q, qd, f = self.joints(list(names), positions, velocities)
        except DeployError as exc:
            self._error_once(str(exc))
            return
        self._joint = (q, qd, f, float(stamp), self._arrival(arrival))

    def on_depth(self, image: np.ndarray, encoding: str, stamp: float, intrinsics: dict | None = None,
                 arrival: float | None = None) -> None:
        """A depth image, 16UC1 (mm, 0 = no return) or 32FC1 (m, NaN/0 = no return), with its
        CameraInfo's intrinsics ({width, height, fx, fy, cx, cy}); other intrinsics than the
        export's raise DeployError (point-cloud students with ``resample=True`` resample)."""
        if self.depth_in is None:
            raise DeployError(f"the policy reads {self.manifest.obs_groups}, no depth image")
        self._sensor = ("depth", self.depth_in(image, encoding, intrinsics), float(stamp), self._arrival(arrival))

    def on_points(self, points: np.ndarray, stamp: float, frame: str = "base", arrival: float | None = None) -> None:
        """A point cloud (N, 3) in the robot base frame, for a point-cloud student; it is cropped,
        table-removed and downsampled at the next tick as the env's PointCloudMaker does."""
        if self.cloud is None:
            raise DeployError(f"the policy reads {self.manifest.obs_groups}, no point cloud")
        base = self.manifest.robot.base_frame
        if frame not in ("base", base):
            raise DeployError(f"point cloud in frame {frame!r}: transform it into the base frame {base!r} first")
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise DeployError(f"point cloud must be (N, 3), got shape {pts.shape}")
        self._sensor = ("points", pts, float(stamp), self._arrival(arrival))

    # --------------------------------------------------------------------------------- arming
    def arm(self) -> None:
        """Arm: the next tick with fresh data starts an episode and (unless dry-run) sends."""
        if self.estopped:
            self.log("arm refused: the e-stop is latched (reset_estop() first)")
            return
        if not self.armed:
            self.armed = True
            self._start = "episode"
            self.log(f"armed ({'dry run: commands are not sent' if self.dry_run else 'commands are sent'})")

    def new_episode(self) -> None:
        """Start a policy episode at the next tick with data (the task was reset): previous action
        and recurrent state reset, the previous target and (when armed) a soft start from the
        measured pose, as after arming."""
        self._start = "episode"

    def disarm(self) -> None:
        if self.armed:
            self.armed = False
            self.log("disarmed: commands are no longer sent")

    def estop(self) -> None:
        """Latch the e-stop: every tick holds until reset_estop() and arm()."""
        if not self.estopped:
            self.estopped = True
            self.log("E-STOP latched: holding the measured pose until reset_estop() and arm()")

    def reset_estop(self) -> None:
        if self.estopped:
            self.estopped = False
            self.armed = False
            self.log("e-stop reset: disarmed; arm() to run again")

    # ------------------------------------------------------------------------------------ tick
    def _fresh(self, now: float) -> list[str]:
        kinds = []
        if self.estopped:
            kinds.append("estop")
        if self._joint is None or now - self._joint[4] > self.watchdog_s:
            kinds.append("stale_joint_state")
        if self.sensor is not None and (self._sensor is None or now - self._sensor[3] > self.depth_max_age_s):
            kinds.append("stale_depth")
        return kinds

    def tcp_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """TCP position, rotation and Jacobian at the latest joint state's arm angles, computed once
        per joint state (by the tick that first needs them)."""
        if self._tcp is None or self._tcp[0] is not self._joint:
            self._tcp = (self._joint, self.kinematics(self._joint[0]))
        return self._tcp[1]

    def observe(self, ee_pos: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The observation groups (1, ...) from the latest data, as the env assembles them
        (``ee_pos``: the TCP position at the measured joints, when already computed)."""
        q, qd, f = self._joint[:3]
        if ee_pos is None:
            ee_pos = self.tcp_state()[0]
        if self.task_row is None:
            obs = {"proprio": np.concatenate([q, qd, f, ee_pos, self.prev_action, self.command])[None].astype(np.float32)}
        else:       # a multi-task student: the command is in its task row
            obs = {"proprio": np.concatenate([q, qd, f, ee_pos, self.prev_action])[None].astype(np.float32),
                   "task": self.task_row[None]}
        if self.history is not None:
            obs["history"] = self.history.reshape(1, -1).astype(np.float32)
        if self.sensor is not None:
            kind, data = self._sensor[:2]
            if self.sensor == "depth":
                obs["depth"] = data[None, None].astype(np.float32)
            elif kind == "depth":
                obs["points"] = self.cloud.from_depth(data, self.rng)[None]
            else:
                obs["points"] = self.cloud.from_points(data, self.rng)[None]
        return obs

    def _begin(self, now: float) -> None:
        q = self._joint[0]
        if self._start == "episode":
            self.prev_action = self.prev_action_reset.copy()
            if self.history is not None:    # as the env: a settled past of reset actions
                self.history[:] = self.prev_action_reset
            self.policy.reset(np.ones(1, dtype=bool))
            self.log(f"episode start t={now:.3f}s from the measured pose {np.round(q, 4).tolist()}")
        else:
            self.log(f"resume t={now:.3f}s from the measured pose{' (soft start)' if self.armed else ''}")
        self.q_target = q.copy()
        self.safety.start(q, now, soft=self.armed)   # no ramp for commands nobody sends
        self._start, self._hold = None, None

    def tick(self, now: float | None = None) -> Command:
        """One control period: the command to send (or not) and what the safety layer did."""
        now = float(self.clock() if now is None else now)
        state = self._fresh(now)
        if not self.armed:
            state.append("not_armed")
        if self.dry_run:
            state.append("dry_run")
        send = self.armed and not self.dry_run
        nan = np.full(self.mapping.action_dim, np.nan, np.float32)
        if any(k in HOLDS for k in state):
            if self._joint is None:        # nothing measured yet: nothing to hold, nothing sent
                cmd = Command(self.safety.clip(self.manifest.robot.home), self.finger_range[1], self.joint_names,
                              False, True, state, nan, time=now)
            else:
                if self._hold is None:
                    q, _, f = self._joint[:3]
                    grip = self.gripper if self.gripper is not None else float(np.mean(f))
                    self._hold = (self.safety.hold(q), grip)
                if self._start is None:
                    self._start = "resume"
                cmd = Command(self._hold[0].copy(), self._hold[1], self.joint_names, send, True, state, nan, time=now)
        else:
            if self._start is not None:
                self._begin(now)
            cmd = self._run(now, state, send)
        if self._joint is not None:
            cmd.joint_state_age = now - self._joint[4]
        self.interventions.tick(cmd.interventions, now)
        self.last = cmd
        return cmd

    def _run(self, now: float, state: list[str], send: bool) -> Command:
        q = self._joint[0]
        ee_pos, ee_rot, jac = self.tcp_state()
        obs = self.observe(ee_pos)
        raw = np.asarray(self.policy.act(obs), dtype=np.float32).reshape(-1)
        finite = bool(np.all(np.isfinite(raw)))
        target, finger = None, None
        if finite:
            a = np.clip(raw.astype(np.float64), -1.0, 1.0)
            qt, fg = self.mapping.targets(a[None], q[None], self.q_target[None], ee_pos[None], ee_rot[None], jac[None])
            target, finger = qt[0], float(fg[0])
            finite = bool(np.all(np.isfinite(target)) and np.isfinite(finger))
        positions, kinds = self.safety(target if finite else self.safety.last, finite, now)
        if finite:
            self.prev_action = a
            if self.history is not None:
                self.history = np.concatenate([a[None], self.history[:-1]])
            self.q_target = target
            self.gripper = float(np.clip(finger, *self.finger_range))
        elif self.gripper is None:
            self.gripper = float(np.mean(self._joint[2]))
        return Command(positions, self.gripper, self.joint_names, send, False, kinds + state, raw,
                       target=None if target is None else target.copy(), time=now, obs=obs)
