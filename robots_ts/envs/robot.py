"""The arm: joint/actuator bookkeeping and the two action interfaces.

``ee`` control: action = [dx, dy, dz, gripper] in [-1, 1]; the end-effector target is the current
end-effector position plus ``ee_step`` metres times the first three entries, with the gripper kept
pointing down at a fixed yaw. Joint targets come from one damped-least-squares step on the 6-D
(position, orientation) error, batched over worlds in numpy.

``joint`` control: action = [dq1..dq7, gripper]; joint targets are the current targets plus
``joint_step`` radians times the first seven entries.

In both, the gripper entry maps [-1, 1] to a finger opening of [0, 0.04] m per finger
(absolute, not delta), as on a real parallel gripper driven by a width command.
"""
from __future__ import annotations

import mujoco
import numpy as np

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_left", "finger_right")
# Home pose: end-effector at (0.45, 0, 0.25), pointing down.
HOME_QPOS = np.array([0.0, 0.3071, 0.0, 1.8638, 0.0, 0.9691, 0.0])
FINGER_OPEN = 0.04
# Gripper pointing down: hand x along -world x, hand y along world y, hand z along -world z.
EE_DOWN = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])


class Arm:
    """Indices of the arm's joints/actuators/sites in a model, and the action mapping."""

    def __init__(self, model: mujoco.MjModel, control: str = "ee", ee_step: float = 0.03,
                 joint_step: float = 0.08, workspace_low=(0.15, -0.5, 0.008), workspace_high=(0.85, 0.5, 0.55),
                 ik_damping: float = 0.05):
        if control not in ("ee", "joint"):
            raise ValueError(f"unknown control mode {control!r}; expected 'ee' or 'joint'")
        self.control = control
        self.ee_step = float(ee_step)
        self.joint_step = float(joint_step)
        self.workspace_low = np.asarray(workspace_low, dtype=np.float64)
        self.workspace_high = np.asarray(workspace_high, dtype=np.float64)
        self.ik_damping = float(ik_damping)
        self.qpos_idx = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.qvel_idx = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.finger_qpos_idx = np.array([model.joint(j).qposadr[0] for j in FINGER_JOINTS])
        self.finger_qvel_idx = np.array([model.joint(j).dofadr[0] for j in FINGER_JOINTS])
        self.ctrl_idx = np.array([model.actuator(j).id for j in ARM_JOINTS])
        self.gripper_ctrl = model.actuator("gripper").id
        self.ee_site = model.site("ee").id
        self.joint_low = model.jnt_range[[model.joint(j).id for j in ARM_JOINTS], 0].copy()
        self.joint_high = model.jnt_range[[model.joint(j).id for j in ARM_JOINTS], 1].copy()
        self.finger_geoms = np.array([model.geom(g).id for g in FINGER_JOINTS])
        self.nv = model.nv

    @property
    def action_dim(self) -> int:
        return 4 if self.control == "ee" else 8

    def targets(self, actions: np.ndarray, q: np.ndarray, q_target: np.ndarray, ee_pos: np.ndarray,
                ee_rot: np.ndarray, jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint position targets (N, 7) and finger targets (N,) for clipped actions (N, A).

        q: current joint positions, q_target: the previous joint targets, ee_pos (N, 3),
        ee_rot (N, 3, 3) and jac (N, 6, nv) the end-effector pose and Jacobian of the current state.
        """
        finger = (actions[:, -1] + 1.0) * (0.5 * FINGER_OPEN)
        if self.control == "joint":
            qt = q_target + self.joint_step * actions[:, :7]
            return np.clip(qt, self.joint_low, self.joint_high), finger
        goal = np.clip(ee_pos + self.ee_step * actions[:, :3], self.workspace_low, self.workspace_high)
        err = np.empty((len(actions), 6))
        err[:, :3] = goal - ee_pos
        # Orientation error: 0.5 * sum_k r_k x r*_k (small-angle axis-angle to the target frame).
        err[:, 3:] = 0.5 * np.cross(np.swapaxes(ee_rot, 1, 2), EE_DOWN.T[None]).sum(axis=1)
        J = jac[:, :, self.qvel_idx]                                   # (N, 6, 7)
        JJt = J @ np.swapaxes(J, 1, 2) + (self.ik_damping ** 2) * np.eye(6)
        dq = np.einsum("nij,ni->nj", J, np.linalg.solve(JJt, err[..., None])[..., 0])
        return np.clip(q + dq, self.joint_low, self.joint_high), finger
