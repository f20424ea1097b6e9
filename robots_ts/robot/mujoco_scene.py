"""The MuJoCo scene: the Panda compiled from its URDF with ``MjSpec``, plus our additions in code.

What comes from the URDF (``robots_ts.robot.description``): bodies, joint names, axes, frames and
ranges, collision meshes, visual meshes. What we add, each in one place below:

- identified link inertials (the URDF's are placeholders of 0.1 kg m^2);
- joint armature and damping, gravity compensation on every moving body;
- position actuators per arm joint (gains below, force limits = the URDF's effort limits), and one
  coupled width actuator for the two fingers;
- collision bits (the arm does not collide with itself, only with the table and task objects),
  finger contact parameters;
- visual meshes decimated with open3d's quadric decimation for the software depth renderer;
- sites ``ee`` (the URDF's ``panda_grasptarget``) and ``flange`` (``panda_link8``);
- the arena: table (top at z = 0, the base frame's origin on it), light, the scene camera.

Tasks add their objects with :meth:`robots_ts.envs.tasks.base.Task.build`. The Panda spec is
parsed and decimated once per process; each task's compiled model is cached.
"""
from __future__ import annotations

import functools
import logging
import re
import threading

import mujoco
import numpy as np

from robots_ts.robot.description import FLANGE_LINK, TCP_LINK, panda, urdf_dir

log = logging.getLogger("robots_ts.mujoco")

# Link inertials of franka_description (franka_ros), which publishes the identified parameters of
# Gaz, Cognetti, Oliva, Robuffo Giordano and De Luca, "Dynamic identification of the Franka Emika
# Panda robot with retrieval of feasible parameters using penalty-based optimization", IEEE RA-L
# 4(4), 2019: (mass kg, centre of mass in the link frame m, [ixx, ixy, ixz, iyy, iyz, izz] kg m^2
# about the centre of mass). The link frames are the URDF's, identical in pybullet_data's file.
LINK_INERTIALS = {
    "panda_link1": (4.970684, (0.003875, 0.002081, -0.04762),
                    (0.70337, -0.000139, 0.006772, 0.70661, 0.019169, 0.009117)),
    "panda_link2": (0.646926, (-0.003141, -0.02872, 0.003495),
                    (0.007962, -0.003925, 0.010254, 0.02811, 0.000704, 0.025995)),
    "panda_link3": (3.228604, (0.027518, 0.039252, -0.066502),
                    (0.037242, -0.004761, -0.011396, 0.036155, -0.012805, 0.01083)),
    "panda_link4": (3.587895, (-0.05317, 0.104419, 0.027454),
                    (0.025853, 0.007796, -0.001332, 0.019552, 0.008641, 0.028323)),
    "panda_link5": (1.225946, (-0.011953, 0.041065, -0.038437),
                    (0.035549, -0.002117, -0.004037, 0.029474, 0.000229, 0.008627)),
    "panda_link6": (1.666555, (0.060149, -0.014117, -0.010517),
                    (0.001964, 0.000109, -0.001158, 0.004354, 0.000341, 0.005433)),
    "panda_link7": (0.735522, (0.010517, -0.004252, 0.061597),
                    (0.012516, -0.000428, -0.001196, 0.010027, -0.000741, 0.004815)),
    # Hand and fingers: franka_description's hand.xacro (CAD estimates, not identified).
    "panda_hand": (0.73, (-0.01, 0.0, 0.03), (0.001, 0.0, 0.0, 0.0025, 0.0, 0.0017)),
    "panda_leftfinger": (0.015, (0.0, 0.0, 0.0), (2.375e-6, 0.0, 0.0, 2.375e-6, 0.0, 7.5e-7)),
    "panda_rightfinger": (0.015, (0.0, 0.0, 0.0), (2.375e-6, 0.0, 0.0, 2.375e-6, 0.0, 7.5e-7)),
}

# Joint-space position servos: torque = kp (q_target - q) - kv qdot, clamped to the URDF's effort
# limits (87 N m for joints 1-4, 12 N m for 5-7). Gravity is compensated by the bodies' gravcomp,
# as Franka's controller does, so the servos only track.
ARM_KP = (2000.0, 2000.0, 2000.0, 2000.0, 600.0, 600.0, 600.0)
ARM_KV = (120.0, 120.0, 120.0, 120.0, 30.0, 30.0, 30.0)
ARM_ARMATURE = 0.1     # kg m^2, the motors' reflected inertia; also steadies the implicit integrator
ARM_DAMPING = 1.0      # N m s / rad
FINGER_KP, FINGER_KV = 1000.0, 40.0
FINGER_FRICTION = (1.5, 0.02, 0.001)
# Faces kept per decimated visual mesh. The originals have 7k-22k faces, and a 64x64 software
# render of them costs several times the physics of a step. At 300 faces the surface stays within
# 2-5 mm of the original at the 99th percentile (7 mm at worst), under a depth pixel's 1.5 cm.
VISUAL_FACES = 300

TIMESTEP = 0.002
TABLE_HALF = (0.6, 0.6, 0.025)
TABLE_POS = (0.4, 0.0, -0.025)
TABLE_FRICTION = (0.8, 0.005, 0.0001)
CAMERA = {"name": "scene", "pos": (0.95, -0.5, 0.75),
          "xyaxes": (0.7348, 0.6783, 0.0, -0.4933, 0.5344, 0.6863), "fovy": 48.0}
# Collision bits: arm geoms contype=2/conaffinity=1 (no self-collision), table and task objects
# contype=1/conaffinity=3 (collide with the arm and with each other).
ARM_CONTYPE, ARM_CONAFFINITY = 2, 1
OBJECT_CONTYPE, OBJECT_CONAFFINITY = 1, 3
GROUP_SCENE, GROUP_ARM_VISUAL, GROUP_HIDDEN = 0, 2, 3


def _route_mujoco_warnings() -> None:
    """MuJoCo's warnings go to our log instead of MUJOCO_LOG.TXT in the working directory."""
    mujoco.set_mju_user_warning(lambda msg: log.warning("MuJoCo: %s", msg.strip()))


_route_mujoco_warnings()


def _urdf_text() -> str:
    folder = urdf_dir()
    text = (folder / "panda.urdf").read_text()
    text = text.replace("package://", f"{folder}/")
    # Keep every URDF link as a body (frames by name) and its visual geoms (what the camera sees).
    compiler = '<mujoco><compiler discardvisual="false" fusestatic="false"/></mujoco>'
    return re.sub(r"(<robot\b[^>]*>)", r"\1" + compiler, text, count=1)


@functools.lru_cache(maxsize=None)
def _decimated(path: str, faces: int) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d  # loaded only when a scene is built

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    mesh = o3d.io.read_triangle_mesh(path)
    mesh = mesh.merge_close_vertices(1e-6)
    mesh.remove_unreferenced_vertices()
    if len(mesh.triangles) > faces:
        mesh = mesh.simplify_quadric_decimation(faces)
        mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int32)


def _configure_panda(spec: mujoco.MjSpec) -> None:
    desc = panda()
    for body in spec.bodies:
        if body.name in LINK_INERTIALS:
            mass, com, (ixx, ixy, ixz, iyy, iyz, izz) = LINK_INERTIALS[body.name]
            body.mass = mass
            body.ipos = com
            body.iquat = [1.0, 0.0, 0.0, 0.0]
            body.fullinertia = [ixx, iyy, izz, ixy, ixz, iyz]
            body.explicitinertial = True
        if body.name != "world" and body.name != "panda_link0":
            body.gravcomp = 1.0
    for name in desc.arm_joints:
        j = spec.joint(name)
        j.armature = ARM_ARMATURE
        j.damping = [ARM_DAMPING, 0.0, 0.0]
        j.range = desc.limits([name])[0].tolist() + desc.limits([name])[1].tolist()
    for name in desc.finger_joints:
        j = spec.joint(name)
        j.armature = 0.01
        j.damping = [5.0, 0.0, 0.0]
    visual_meshes = set()
    for geom in spec.geoms:
        if geom.contype == 0 and geom.conaffinity == 0:   # the URDF's <visual> elements
            geom.group = GROUP_ARM_VISUAL
            visual_meshes.add(geom.meshname)
        else:                                             # its <collision> elements
            geom.group = GROUP_HIDDEN
            geom.contype, geom.conaffinity = ARM_CONTYPE, ARM_CONAFFINITY
            body = geom.parent.name
            if body.endswith("finger"):
                geom.condim = 4
                geom.friction = FINGER_FRICTION
                geom.solref = [0.005, 1.0]
    for mesh in spec.meshes:
        if mesh.name in visual_meshes and "/visual/" in mesh.file:
            vert, face = _decimated(mesh.file, VISUAL_FACES)
            mesh.file = ""
            mesh.uservert = vert.reshape(-1).tolist()
            mesh.userface = face.reshape(-1).tolist()
    spec.body(desc.tcp_link).add_site(name="ee", size=[0.005, 0, 0], rgba=[1, 0, 0, 1], group=GROUP_HIDDEN)
    spec.body(desc.flange_link).add_site(name="flange", size=[0.005, 0, 0], group=GROUP_HIDDEN)
    effort = desc.arm_effort
    lower, upper = desc.arm_lower, desc.arm_upper
    for k, name in enumerate(desc.arm_joints):
        a = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        a.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        a.gainprm[0] = ARM_KP[k]
        a.biasprm[:3] = [0.0, -ARM_KP[k], -ARM_KV[k]]
        a.ctrlrange = [lower[k], upper[k]]
        a.forcerange = [-effort[k], effort[k]]
    f1, f2 = desc.finger_joints
    lo, hi = desc.finger_range
    g = spec.add_actuator(name="gripper", target=f1, trntype=mujoco.mjtTrn.mjTRN_JOINT)
    g.gaintype = mujoco.mjtGain.mjGAIN_FIXED
    g.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    g.gainprm[0] = FINGER_KP
    g.biasprm[:3] = [0.0, -FINGER_KP, -FINGER_KV]
    g.ctrlrange = [lo, hi]
    # One actuator drives both fingers through the coupling: twice one finger's effort limit.
    finger_effort = desc.joint(f1).effort
    g.forcerange = [-2 * finger_effort, 2 * finger_effort]
    # The URDF's <mimic> becomes a joint equality (finger 2 follows finger 1); stiffen it.
    couplings = [e for e in spec.equalities if e.type == mujoco.mjtEq.mjEQ_JOINT and {e.name1, e.name2} == {f1, f2}]
    if not couplings:
        couplings = [spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name1=f2, name2=f1)]
    for eq in couplings:
        eq.solref = [0.005, 1.0]


def _add_arena(spec: mujoco.MjSpec) -> None:
    spec.modelname = "robots_ts_panda"
    opt = spec.option
    opt.timestep = TIMESTEP
    opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    opt.impratio = 10.0
    spec.stat.center = [0.45, 0.0, 0.2]
    spec.stat.extent = 1.5
    vis = spec.visual
    vis.global_.offwidth = 256
    vis.global_.offheight = 256
    vis.map.znear = 0.05
    vis.map.zfar = 3.0
    # Coarse tessellation of primitives (ball, post): cheap software rendering, facets < 5 mm off.
    vis.quality.shadowsize = 0
    vis.quality.numslices = 8
    vis.quality.numstacks = 4
    vis.quality.numquads = 1
    tex = spec.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D,
                           builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, width=64, height=64,
                           rgb1=[0.55, 0.45, 0.35], rgb2=[0.5, 0.4, 0.3])
    mat = spec.add_material(name="table", texrepeat=[4, 4])
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
    world = spec.worldbody
    world.add_light(pos=[0.5, 0, 2], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                    castshadow=False)
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(TABLE_POS), size=list(TABLE_HALF),
                   material="table", contype=OBJECT_CONTYPE, conaffinity=OBJECT_CONAFFINITY,
                   friction=list(TABLE_FRICTION), group=GROUP_SCENE)
    cam = world.add_camera(name=CAMERA["name"], pos=list(CAMERA["pos"]), fovy=CAMERA["fovy"])
    cam.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
    cam.alt.xyaxes = list(CAMERA["xyaxes"])


_spec_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _panda_spec() -> mujoco.MjSpec:
    spec = mujoco.MjSpec.from_string(_urdf_text())
    _configure_panda(spec)
    _add_arena(spec)
    return spec


def scene_spec(build=None) -> mujoco.MjSpec:
    """A fresh copy of the Panda-on-table spec, with ``build(spec)`` adding a task's objects."""
    with _spec_lock:
        spec = _panda_spec().copy()
    if build is not None:
        build(spec)
    return spec


@functools.lru_cache(maxsize=None)
def _compiled(key: str, build) -> mujoco.MjModel:
    return scene_spec(build).compile()


def scene_model(key: str, build=None) -> mujoco.MjModel:
    """The compiled model of the scene ``key`` (a task name), built once per process.

    Callers that change per-world values (sizes, masses) take their own ``copy.copy`` of it.
    """
    return _compiled(key, build)
