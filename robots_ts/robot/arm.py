"""The arm's action mapping and the named layouts of the proprio and action vectors.

``ee`` control: action = [dx, dy, dz, gripper] in [-1, 1]; the end-effector (TCP) target is the
current TCP position plus ``ee_step`` metres times the first three entries, with the gripper kept at
its ready-pose orientation (pointing down, fingers opening along world y). Joint targets come from
one damped-least-squares step on the 6-D (position, orientation) error, batched over worlds in
numpy.

``joint`` control: action = [dq1..dq7, gripper]; joint targets are the current targets plus
``joint_step`` radians times the first seven entries.

In both, the gripper entry maps [-1, 1] to a finger opening of [0, 0.04] m per finger (absolute,
not delta), as on a real parallel gripper driven by a width command. Joint names, limits and the
finger range come from the robot description.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robots_ts.robot.description import RobotDescription, panda
from robots_ts.envs.backends.scene import ARM_DOF, FINGER_DOF

CONTROL_MODES = ("ee", "joint")


@dataclass(frozen=True)
class Layout:
    """Names and slices of a flat vector: ``fields`` are (field, element names) in order."""

    fields: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def dim(self) -> int:
        return sum(len(names) for _, names in self.fields)

    @property
    def names(self) -> list[str]:
        return [n for _, names in self.fields for n in names]

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for field, names in self.fields:
            out[field] = slice(start, start + len(names))
            start += len(names)
        return out

    def __getitem__(self, field: str) -> slice:
        return self.slices()[field]

    def to_dict(self) -> list[dict]:
        sl = self.slices()
        return [{"field": f, "start": sl[f].start, "stop": sl[f].stop, "names": list(n)} for f, n in self.fields]


def action_layout(control: str, desc: RobotDescription | None = None) -> Layout:
    desc = desc or panda()
    if control == "ee":
        return Layout((("ee_delta", ("dx", "dy", "dz")), ("gripper", ("gripper",))))
    if control == "joint":
        return Layout((("joint_delta", desc.arm_joints), ("gripper", ("gripper",))))
    raise ValueError(f"unknown control mode {control!r}; expected one of {list(CONTROL_MODES)}")


def proprio_layout(control: str, command_names: tuple[str, ...], desc: RobotDescription | None = None) -> Layout:
    """joint positions, joint velocities, finger positions, TCP position, previous action, command."""
    desc = desc or panda()
    act = action_layout(control, desc)
    return Layout((("joint_pos", desc.arm_joints), ("joint_vel", desc.arm_joints),
                   ("finger_pos", desc.finger_joints), ("ee_pos", ("x", "y", "z")),
                   ("prev_action", tuple(act.names)), ("command", tuple(command_names))))


class Arm:
    """The action mapping, above the simulator seam: actions to joint and finger targets, from the
    state every backend reports (joint positions, TCP pose and its Jacobian over the arm joints)."""

    def __init__(self, control: str = "ee", ee_step: float = 0.03,
                 joint_step: float = 0.08, workspace_low=(0.15, -0.5, 0.008), workspace_high=(0.85, 0.5, 0.55),
                 ik_damping: float = 0.05, desc: RobotDescription | None = None):
        self.desc = desc = desc or panda()
        self.layout = action_layout(control, desc)
        self.control = control
        self.ee_step = float(ee_step)
        self.joint_step = float(joint_step)
        self.workspace_low = np.asarray(workspace_low, dtype=np.float64)
        self.workspace_high = np.asarray(workspace_high, dtype=np.float64)
        self.ik_damping = float(ik_damping)
        # Where the state layout (robots_ts.envs.backends.scene) keeps the arm and finger joints.
        self.qpos_idx = np.arange(ARM_DOF)
        self.qvel_idx = np.arange(ARM_DOF)
        self.finger_qpos_idx = np.arange(ARM_DOF, ARM_DOF + FINGER_DOF)
        self.joint_low, self.joint_high = desc.arm_lower, desc.arm_upper
        self.finger_open = desc.finger_range[1]
        self.home = desc.ready_pose
        # The orientation the TCP keeps under ee control: its orientation in the ready pose.
        _, self.ee_rot_target = desc.forward_kinematics(self.home, desc.tcp_link)

    @property
    def action_dim(self) -> int:
        return self.layout.dim

    def targets(self, actions: np.ndarray, q: np.ndarray, q_target: np.ndarray, ee_pos: np.ndarray,
                ee_rot: np.ndarray, jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint position targets (N, 7) and finger targets (N,) for clipped actions (N, A).

        q: current joint positions, q_target: the previous joint targets, ee_pos (N, 3),
        ee_rot (N, 3, 3) and jac (N, 6, 7) the TCP pose and its Jacobian over the arm joints.
        """
        finger = (actions[:, -1] + 1.0) * (0.5 * self.finger_open)
        if self.control == "joint":
            qt = q_target + self.joint_step * actions[:, :7]
            return np.clip(qt, self.joint_low, self.joint_high), finger
        goal = np.clip(ee_pos + self.ee_step * actions[:, :3], self.workspace_low, self.workspace_high)
        err = np.empty((len(actions), 6))
        err[:, :3] = goal - ee_pos
        # Orientation error: 0.5 * sum_k r_k x r*_k (small-angle axis-angle to the target frame).
        err[:, 3:] = 0.5 * np.cross(np.swapaxes(ee_rot, 1, 2), self.ee_rot_target.T[None]).sum(axis=1)
        J = jac                                                        # (N, 6, 7)
        JJt = J @ np.swapaxes(J, 1, 2) + (self.ik_damping ** 2) * np.eye(6)
        dq = np.einsum("nij,ni->nj", J, np.linalg.solve(JJt, err[..., None])[..., 0])
        return np.clip(q + dq, self.joint_low, self.joint_high), finger
