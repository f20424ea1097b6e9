"""Physics randomization, drawn per episode from each world's own generator.

Task objects: mass and friction scales multiply what the task's reset sets (e.g. Push's mass
parameter) or, where the task sets nothing, the body's nominal value. The task's privileged
observation keeps reporting its parameters: the teacher sees the nominal value, the world has the
drawn one.

Robot and world: link masses and centres of mass, joint damping, armature and dry friction, servo
gains, the gravity direction and the camera's rendering pose, emitted as
:class:`robots_ts.envs.backends.scene.WorldEdit` operations. Every backend starts each reset from
its nominal world, so a draw never builds on an earlier one. Nothing is drawn for a randomizer that
is off, so turning one on leaves the other draws of a world's generator where they were.

``fixed`` maps an ADR dimension (:data:`ADR_DIMS`) to this episode's value, chosen by a curriculum
teacher instead of drawn: one scale for every link or joint, the tilt angle, the camera's noise.
"""
from __future__ import annotations

import numpy as np

from robots_ts.envs.backends.scene import Body, WorldEdit
from robots_ts.robot.dynamics import LINK_INERTIALS

# Randomization dimensions a curriculum teacher can drive (RandomizationConfig.adr.dims), with
# what its value means for one episode, and the value a range starts from.
ADR_DIMS = {
    "object_mass_scale": ("scale of the objects' masses", 1.0),
    "object_friction_scale": ("scale of the objects' friction", 1.0),
    "link_mass_scale": ("scale of every robot link's mass", 1.0),
    "joint_damping_scale": ("scale of every joint's damping", 1.0),
    "gain_kp_scale": ("scale of every arm servo's stiffness", 1.0),
    "gravity_tilt": ("tilt of gravity, degrees", 0.0),
    "push_velocity": ("speed of each kick, m/s", 0.0),
    "camera_pos_noise": ("sigma of the camera position error, m", 0.0),
    "camera_rot_noise": ("sigma of the camera rotation error, degrees", 0.0),
    "joint_pos_noise": ("sigma of joint position noise, rad", 0.0),
    "action_noise": ("sigma of action noise", 0.0),
    "action_delay": ("action delay, control steps (rounded)", 0.0),
    "obs_delay": ("observation delay, control steps (rounded)", 0.0),
    "depth_strength": ("strength of the depth sensor model (0: the clean render)", 0.0),
}


def scale_object_edits(ops: list, bodies: tuple[Body, ...], mass_scale: float, friction_scale: float) -> list:
    """The reset edits ``ops`` with every free body's mass and sliding friction scaled."""
    if mass_scale == 1.0 and friction_scale == 1.0:
        return ops
    out, seen = [], set()
    for op in ops:
        if op[0] == "mass":
            op = ("mass", op[1], op[2] * mass_scale)
            seen.add(("mass", op[1]))
        elif op[0] == "friction":
            op = ("friction", op[1], op[2] * friction_scale)
            seen.add(("friction", op[1]))
        out.append(op)
    for b in bodies:
        if not b.free:
            continue
        if ("mass", b.name) not in seen and mass_scale != 1.0:
            out.append(("mass", b.name, b.mass * mass_scale))
        if ("friction", b.name) not in seen and friction_scale != 1.0:
            out.append(("friction", b.name, b.friction[0] * friction_scale))
    return out


def draw_scale(rng: np.random.Generator, bounds) -> float:
    lo, hi = float(bounds[0]), float(bounds[1])
    return lo if lo == hi else float(rng.uniform(lo, hi))


def _off(bounds, nominal: float) -> bool:
    return float(bounds[0]) == float(bounds[1]) == nominal


def robot_edits(r, rng: np.random.Generator, arm_joints, finger_joints, camera: str | None,
                fixed: dict | None = None) -> list:
    """World edits of one episode for the robot and world randomizers of ``r``
    (a :class:`robots_ts.config.RandomizationConfig`)."""
    fixed = fixed or {}
    edit = WorldEdit()
    links = tuple(LINK_INERTIALS)
    if "link_mass_scale" in fixed:
        for link in links:
            edit.scale_link_mass(link, fixed["link_mass_scale"])
    elif not _off(r.link_mass_scale, 1.0):
        for link, s in zip(links, rng.uniform(*r.link_mass_scale, len(links))):
            edit.scale_link_mass(link, float(s))
    if r.link_com_offset > 0:
        for link, d in zip(links, rng.uniform(-r.link_com_offset, r.link_com_offset, (len(links), 3))):
            edit.shift_link_com(link, d)
    joints = tuple(arm_joints) + tuple(finger_joints)
    n = len(joints)
    damping = np.full(n, fixed["joint_damping_scale"]) if "joint_damping_scale" in fixed else (
        np.ones(n) if _off(r.joint_damping_scale, 1.0) else rng.uniform(*r.joint_damping_scale, n))
    armature = np.ones(n) if _off(r.joint_armature_scale, 1.0) else rng.uniform(*r.joint_armature_scale, n)
    friction = np.zeros(n) if _off(r.joint_frictionloss, 0.0) else rng.uniform(*r.joint_frictionloss, n)
    if (damping != 1).any() or (armature != 1).any() or (friction != 0).any():
        for k, j in enumerate(joints):
            edit.scale_joint(j, float(damping[k]), float(armature[k]), float(friction[k]))
    m = len(arm_joints)
    kp = np.full(m, fixed["gain_kp_scale"]) if "gain_kp_scale" in fixed else (
        np.ones(m) if _off(r.gain_kp_scale, 1.0) else rng.uniform(*r.gain_kp_scale, m))
    kv = np.ones(m) if _off(r.gain_kv_scale, 1.0) else rng.uniform(*r.gain_kv_scale, m)
    if (kp != 1).any() or (kv != 1).any():
        for k, j in enumerate(arm_joints):
            edit.scale_gains(j, float(kp[k]), float(kv[k]))
    tilt = fixed.get("gravity_tilt", r.gravity_tilt)
    if tilt > 0:
        edit.set_gravity(tilted_gravity(rng, tilt, exact="gravity_tilt" in fixed))
    pos_sigma = fixed.get("camera_pos_noise", r.camera_pos_noise)
    rot_sigma = fixed.get("camera_rot_noise", r.camera_rot_noise)
    if camera is not None and (pos_sigma > 0 or rot_sigma > 0):
        offset = rng.normal(0.0, pos_sigma, 3) if pos_sigma > 0 else np.zeros(3)
        rotvec = np.deg2rad(rng.normal(0.0, rot_sigma, 3)) if rot_sigma > 0 else np.zeros(3)
        edit.move_camera(camera, offset, rotvec)
    return edit.ops


def tilted_gravity(rng: np.random.Generator, max_deg: float, exact: bool = False) -> np.ndarray:
    """Gravity of the nominal magnitude tilted from the vertical by U(0, max_deg) degrees (exactly
    ``max_deg`` when ``exact``) toward a uniformly drawn azimuth."""
    from robots_ts.envs.backends.scene import GRAVITY

    g = float(np.linalg.norm(GRAVITY))
    angle = np.deg2rad(max_deg if exact else rng.uniform(0.0, max_deg))
    azimuth = rng.uniform(0.0, 2 * np.pi)
    return g * np.array([np.sin(angle) * np.cos(azimuth), np.sin(angle) * np.sin(azimuth), -np.cos(angle)])


def kick(rng: np.random.Generator, max_speed: float, exact: bool = False) -> np.ndarray:
    """A horizontal velocity kick (m/s) of speed U(0, max_speed) (exactly ``max_speed`` when
    ``exact``) in a uniformly drawn direction."""
    speed = max_speed if exact else rng.uniform(0.0, max_speed)
    azimuth = rng.uniform(0.0, 2 * np.pi)
    return np.array([speed * np.cos(azimuth), speed * np.sin(azimuth), 0.0])
