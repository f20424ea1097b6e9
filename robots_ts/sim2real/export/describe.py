"""The parts of an export manifest that describe the robot, its sensors and its action mapping,
read from the code the env runs: the robot description (URDF), the arm's action mapping
(:class:`robots_ts.robot.arm.Arm`, built as the env builds it), the proprio layout, the scene camera
and the point-cloud maker's settings. Nothing here restates a constant of its own, so the manifest
follows when the simulator side changes.
"""
from __future__ import annotations

import numpy as np

from robots_ts.config import EnvConfig, to_dict
from robots_ts.sim2real.export.manifest import (ActionSpec, CameraSpec, ControlSpec, FieldSpec, GripperSpec,
                                                GroupSpec, Intrinsics, JointLimits, PointsSpec, RobotSpec)

BASE_FRAME = "panda_link0"          # the URDF's root link: the env's world frame, table top at z = 0
GL_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])   # MuJoCo/OpenGL camera axes -> ROS optical axes

PROPRIO_UNITS = {"joint_pos": "rad", "joint_vel": "rad/s", "finger_pos": "m",
                 "ee_pos": "m (TCP position, base frame)", "prev_action": "action units [-1, 1]"}


def robot_spec(arm) -> RobotSpec:
    """Joint names in the URDF's order, limits, the env's home pose and the finger range."""
    from robots_ts.robot.description import URDF_FILE, URDF_PACKAGE

    desc = arm.desc
    joints = [desc.joint(n) for n in (*desc.arm_joints, *desc.finger_joints)]
    return RobotSpec(
        name=desc.name, urdf=f"pybullet_data/{URDF_PACKAGE}/{URDF_FILE}", base_frame=BASE_FRAME,
        tcp_link=desc.tcp_link, arm_joints=list(desc.arm_joints), finger_joints=list(desc.finger_joints),
        joints=[JointLimits(j.name, j.kind, float(j.lower), float(j.upper), float(j.velocity), float(j.effort))
                for j in joints],
        home=[float(v) for v in arm.home], home_fingers=[float(arm.finger_open)] * len(desc.finger_joints),
        finger_range=[float(v) for v in desc.finger_range],
        limits_source="position: the URDF safety_controller soft limits (the env clips joint targets to "
                      "the arm's); velocity and effort: the URDF <limit> element")


def command_units(names: tuple[str, ...]) -> str:
    """Task commands named ``*_x``, ``*_y``, ``*_z`` are positions (the Push goal)."""
    if names and all(n.rsplit("_", 1)[-1] in ("x", "y", "z") for n in names):
        return "m (base frame)"
    return "task-defined" if names else "none (the task has no command)"


def proprio_group(env_cfg: EnvConfig, shape, tasks=None) -> GroupSpec:
    """``tasks``: a multi-task policy's, whose proprio holds no command (it reads it in ``task``)."""
    from robots_ts.envs.world import resolve_task
    from robots_ts.robot.arm import proprio_layout

    names = () if tasks else resolve_task(env_cfg.task).command_names
    layout = proprio_layout(env_cfg.control, names)
    fields = [FieldSpec(d["field"], d["start"], d["stop"], d["names"],
                        PROPRIO_UNITS.get(d["field"]) or command_units(names))
              for d in layout.to_dict()]
    what = "+".join(sorted(tasks)) if tasks else env_cfg.task
    if layout.dim != shape[0]:
        raise ValueError(f"the policy reads proprio of size {shape[0]}, the {what} env's layout has "
                         f"{layout.dim} ({env_cfg.control} control)")
    command = "; the task command is in 'task'" if tasks else " and the task command"
    return GroupSpec("proprio", [int(s) for s in shape], "float32", "per field", BASE_FRAME,
                     "joint positions, joint velocities, finger positions, TCP position, the previous action "
                     "the policy sent (clipped, before any delay or noise; zeros with the gripper at +1 at "
                     f"an episode start){command}", fields)


def task_group(tasks, shape) -> GroupSpec:
    """A multi-task policy's ``task`` group (robots_ts.envs.multi_task.task_vector): the one-hot
    task id, then the task's command zero-padded; field ``<Task>.command`` per task with one."""
    from robots_ts.envs.multi_task import task_commands

    commands = task_commands(tasks)
    k = len(commands)
    width = k + max(len(c) for c in commands.values())
    if [int(s) for s in shape] != [width]:
        raise ValueError(f"the policy reads a 'task' group of shape {list(shape)}; tasks {list(commands)} make "
                         f"it [{width}]")
    fields = [FieldSpec("task_id", 0, k, list(commands), "one-hot: 1 for the task asked, 0 for the others")]
    fields += [FieldSpec(f"{t}.command", k, k + len(c), list(c), command_units(c)) for t, c in commands.items() if c]
    return GroupSpec("task", [width], "float32", "per field", BASE_FRAME,
                     f"which task the policy is asked to do: one-hot over {list(commands)}, then that task's "
                     f"command in columns {k}-{width - 1}, zero-padded (zeros for a task without one)", fields)


def observation_groups(env_cfg: EnvConfig, shapes: dict[str, list[int]], tasks=None) -> dict[str, GroupSpec]:
    """A GroupSpec per group the policy reads, ``shapes`` per sample (without the batch dimension);
    ``tasks``: those of a multi-task policy."""
    out = {}
    for name, shape in shapes.items():
        shape = [int(s) for s in shape]
        if name == "proprio":
            out[name] = proprio_group(env_cfg, shape, tasks)
        elif name == "task" and tasks:
            out[name] = task_group(tasks, shape)
        elif name == "depth":
            d = env_cfg.depth
            out[name] = GroupSpec(name, shape, "float32", "m", f"camera {d.camera!r}",
                                  f"z-depth along the optical axis, row 0 at the top, {d.width}x{d.height}; "
                                  f"the graph reads 0, NaN and inf as no return (far) and clips to "
                                  f"[{d.near}, {d.far}] itself")
        elif name == "points":
            out[name] = GroupSpec(name, shape, "float32", "m", BASE_FRAME,
                                  "point cloud (x, y, z) from the depth camera, made as described in 'points'")
        elif name == "privileged":
            out[name] = GroupSpec(name, shape, "float32", "task-defined", BASE_FRAME,
                                  f"simulator-only state of the {env_cfg.task} task (a teacher's input; a "
                                  "real robot has to estimate it)")
        elif name == "history":
            out[name] = GroupSpec(name, shape, "float32", "action units [-1, 1]", BASE_FRAME,
                                  f"the last {env_cfg.action_history} actions the policy sent, newest first, "
                                  "flattened (clipped, before any delay or noise; the reset action at an "
                                  "episode start)")
        else:
            raise ValueError(f"no manifest description for observation group {name!r}")
    return out


def intrinsics(width: int, height: int, fovy_deg: float) -> Intrinsics:
    """The pinhole of robots_ts.envs.sensors.camera_rays: f from the vertical field of view and the
    image height, square pixels, pixel centres at index + 0.5 (so cx = W/2 - 0.5 in ROS's terms)."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
    return Intrinsics(int(width), int(height), float(f), float(f), width / 2 - 0.5, height / 2 - 0.5)


def quaternion_xyzw(R: np.ndarray) -> list[float]:
    """Unit quaternion (x, y, z, w) of a rotation matrix, w >= 0 (ROS TF order)."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(R).as_quat()
    return [float(v) for v in (q if q[3] >= 0 else -q)]


def camera_spec(env_cfg: EnvConfig, groups) -> CameraSpec | None:
    """The nominal scene camera (what back-projection uses, whatever the randomization moved in
    rendering) at the resolution of the image the policy's sensor group comes from."""
    if "depth" not in groups and "points" not in groups:
        return None
    from robots_ts.envs.backends.scene import camera

    d = env_cfg.depth
    cam = camera(d.camera)
    width, height = (d.width, d.height) if "depth" in groups else (env_cfg.points.width, env_cfg.points.height)
    R = cam.rotation()
    R_opt = R @ GL_TO_OPTICAL
    return CameraSpec(
        name=cam.name, fovy_deg=float(cam.fovy), intrinsics=intrinsics(width, height, cam.fovy),
        near=float(d.near), far=float(d.far),
        depth="metres along the optical axis (z-depth), clipped to [near, far]; no return reads far in "
              "simulation, 0 (16UC1) or NaN (32FC1) on a real camera",
        frame=BASE_FRAME, position=[float(v) for v in cam.pos], rotation=R.tolist(), rotation_optical=R_opt.tolist(),
        quaternion_optical_xyzw=quaternion_xyzw(R_opt))


def points_spec(env_cfg: EnvConfig, groups) -> PointsSpec | None:
    if "points" not in groups:
        return None
    from robots_ts.envs.backends.scene import camera
    from robots_ts.envs.sensors import PointCloudMaker

    pc = env_cfg.points
    return PointsSpec(
        num_points=int(pc.num_points), render=intrinsics(pc.width, pc.height, camera(env_cfg.depth.camera).fovy),
        frame=BASE_FRAME, crop_low=[float(v) for v in pc.crop_low], crop_high=[float(v) for v in pc.crop_high],
        remove_table=bool(pc.remove_table), table_fit=bool(pc.table_fit), table_z=0.0,
        table_margin=float(PointCloudMaker.ABOVE), voxel=float(pc.voxel), downsample=pc.downsample,
        no_return_at=float(env_cfg.depth.far) - 1e-3,
        steps="back-project every pixel with depth < no_return_at through the camera (nominal pose); keep points "
              "inside [crop_low, crop_high]; table removal: with table_fit the plane fitted to the points near "
              "table_z (refitted on inliers), else the plane z = table_z, keeping points more than table_margin "
              "above it; voxel grid: the first point of each voxel; then num_points of them (a seeded random "
              "subset, or farthest-point sampling for 'fps'; a smaller cloud repeats random points, an empty "
              "one is all zeros)")


def action_spec(arm, control: str) -> ActionSpec:
    """The action mapping of :meth:`robots_ts.robot.arm.Arm.targets`, with its constants."""
    layout = arm.layout
    units = {"ee_delta": f"x {arm.ee_step} m", "joint_delta": f"x {arm.joint_step} rad", "gripper": "absolute width"}
    fields = [FieldSpec(d["field"], d["start"], d["stop"], d["names"], units[d["field"]]) for d in layout.to_dict()]
    open_ = float(arm.finger_open)
    if control == "ee":
        semantics = (f"TCP goal = measured TCP position + {arm.ee_step} m x action[0:3], clipped to the workspace "
                     "box; joint targets = measured joint positions + one damped-least-squares step "
                     f"(damping {arm.ik_damping}) on the 6-D error to that goal with the TCP orientation held at "
                     "ee_rotation_target, clipped to the joint limits")
    else:
        semantics = (f"joint targets = previous joint targets (not the measured positions) + {arm.joint_step} rad "
                     "x action[0:7], clipped to the joint limits; at an episode start the previous targets are "
                     "the measured pose")
    return ActionSpec(
        control=control, dim=int(arm.action_dim), fields=fields, clip=[-1.0, 1.0], ee_step=float(arm.ee_step),
        joint_step=float(arm.joint_step), workspace_low=[float(v) for v in arm.workspace_low],
        workspace_high=[float(v) for v in arm.workspace_high], ik_damping=float(arm.ik_damping),
        ee_rotation_target=np.asarray(arm.ee_rot_target).tolist(),
        gripper=GripperSpec(index=int(arm.action_dim) - 1, absolute=True, finger_range=[0.0, open_],
                            mapping=f"each finger's position target = (a + 1) / 2 x {open_} m: -1 closed, +1 open"),
        semantics=semantics + "; actions are clipped to [-1, 1] first, and non-finite actions are refused")


def control_spec(env_cfg: EnvConfig, action_dim: int, tasks=None) -> ControlSpec:
    """``tasks``: a multi-task policy's; its episode length is its longest task's."""
    from robots_ts.envs.world import resolve_task

    steps = int(env_cfg.episode_steps or max(resolve_task(t).episode_steps for t in (tasks or [env_cfg.task])))
    prev = [0.0] * action_dim
    prev[-1] = 1.0
    return ControlSpec(hz=float(env_cfg.control_hz), period_s=1.0 / float(env_cfg.control_hz), episode_steps=steps,
                       prev_action_at_reset=prev)


def env_record(env_cfg: EnvConfig) -> tuple[dict, dict]:
    """The run's randomization and its whole env config, as plain dicts for the record."""
    env = to_dict(env_cfg)
    return env["randomization"], env
