"""The MuJoCo scene: the Panda compiled from its URDF with ``MjSpec``, plus our additions in code.

What comes from the URDF (``robots_ts.robot.description``): bodies, joint names, axes, frames and
ranges, collision meshes, visual meshes. What we add, each in one place below:

- identified link inertials (the URDF's are placeholders of 0.1 kg m^2), joint armature and
  damping (:mod:`robots_ts.robot.dynamics`), gravity compensation on every moving body;
- position actuators per arm joint (gains from the same module, force limits = the URDF's effort
  limits), and one coupled width actuator for the two fingers;
- collision bits (the arm does not collide with itself, only with the table and task objects),
  finger contact parameters;
- visual meshes decimated for the software depth renderer (:mod:`robots_ts.robot.meshes`);
- sites ``ee`` (the URDF's ``panda_grasptarget``) and ``flange`` (``panda_link8``);
- the arena of :mod:`robots_ts.envs.backends.scene`: table (top at z = 0, the base frame's origin on it),
  the scene camera; a light;
- a task's bodies (:func:`add_body`, from their simulator-neutral descriptions).

The Panda spec is parsed and decimated once per process; each task's compiled model is cached.
"""
from __future__ import annotations

import functools
import logging
import re
import threading

import mujoco
import numpy as np

from robots_ts.robot.description import panda, urdf_dir
from robots_ts.robot.meshes import VISUAL_FACES, decimated
from robots_ts.robot.dynamics import (ARM_ARMATURE, ARM_DAMPING, ARM_KP, ARM_KV, FINGER_ARMATURE, FINGER_DAMPING,
                                      FINGER_KP, FINGER_KV, LINK_INERTIALS)
from robots_ts.envs.backends.scene import (CAMERAS, FINGER_FRICTION, TABLE_FRICTION, TABLE_HALF, TABLE_POS, TIMESTEP, Body,
                                 box_inertia)

log = logging.getLogger("robots_ts.mujoco")

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
        j.armature = FINGER_ARMATURE
        j.damping = [FINGER_DAMPING, 0.0, 0.0]
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
            vert, face = decimated(mesh.file, VISUAL_FACES)
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
    # No multisampling: a depth read-back of a multisampled buffer takes one sample's depth, about
    # 0.37 px off the pixel centre (2-4 mm on the table at 64x64); single-sampled depth is exact.
    vis.quality.offsamples = 0
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
    for c in CAMERAS.values():
        cam = world.add_camera(name=c.name, pos=list(c.pos), fovy=c.fovy)
        cam.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
        cam.alt.xyaxes = list(c.xyaxes)


_spec_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _panda_spec() -> mujoco.MjSpec:
    spec = mujoco.MjSpec.from_string(_urdf_text())
    _configure_panda(spec)
    _add_arena(spec)
    return spec


_GEOM_TYPES = {"box": mujoco.mjtGeom.mjGEOM_BOX, "sphere": mujoco.mjtGeom.mjGEOM_SPHERE,
               "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER}


def _mj_size(size) -> list[float]:
    return (list(size) + [0.0, 0.0])[:3]


def add_body(spec: mujoco.MjSpec, b: Body) -> None:
    """A task object: a free body (free joint, body and joint named ``b.name``, colliding with the
    arm, the table and other objects), a fixture (a mocap body whose geoms collide with the arm and
    the free bodies) or a mocap marker nothing collides with."""
    body = spec.worldbody.add_body(name=b.name, pos=list(b.pos), mocap=not b.free)
    if b.free:
        body.add_freejoint(name=b.name)
    for k, sh in enumerate(b.shapes):
        kw = dict(name=sh.name, type=_GEOM_TYPES[sh.kind], size=_mj_size(sh.size), pos=list(sh.offset),
                  rgba=list(sh.rgba), group=GROUP_SCENE if sh.depth else GROUP_HIDDEN)
        if b.collides:
            kw.update(contype=OBJECT_CONTYPE, conaffinity=OBJECT_CONAFFINITY, condim=4, friction=list(b.friction))
            kw["mass"] = b.mass if k == 0 else 0.0
        else:
            kw.update(contype=0, conaffinity=0)
        geom = body.add_geom(**kw)
        if b.free and b.soft_contact is not None:
            geom.solref = list(b.soft_contact)


def scene_spec(bodies: tuple[Body, ...] = ()) -> mujoco.MjSpec:
    """A fresh copy of the Panda-on-table spec with the task's ``bodies`` added."""
    with _spec_lock:
        spec = _panda_spec().copy()
    for b in bodies:
        add_body(spec, b)
    return spec


@functools.lru_cache(maxsize=None)
def scene_model(bodies: tuple[Body, ...] = ()) -> mujoco.MjModel:
    """The compiled scene with ``bodies`` (a task's objects), built once per process.

    Callers that change per-world values (sizes, masses) take their own ``copy.copy`` of it.
    """
    return scene_spec(bodies).compile()


def set_geom_size(model: mujoco.MjModel, geom: int, size, offset=None) -> None:
    """Resize a primitive geom of a world's own model, keeping its collision bounds consistent."""
    kind = model.geom_type[geom]
    size = np.asarray(size, dtype=np.float64)
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        model.geom_size[geom] = size
        model.geom_rbound[geom] = float(np.linalg.norm(size))
        model.geom_aabb[geom, 3:] = size
    elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        model.geom_size[geom, 0] = size[0]
        model.geom_rbound[geom] = size[0]
        model.geom_aabb[geom, 3:] = size[0]
    elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
        model.geom_size[geom, :2] = size[:2]
        model.geom_rbound[geom] = float(np.hypot(size[0], size[1]))
        model.geom_aabb[geom, 3:] = [size[0], size[0], size[1]]
    else:
        raise ValueError(f"geom {geom}: only box, sphere and cylinder geoms are resized")
    if offset is not None:
        model.geom_pos[geom] = offset


def set_body_mass(model: mujoco.MjModel, body: int, mass: float) -> None:
    """Mass of a body whose first geom is a solid box (inertia from its current size)."""
    geom = model.body_geomadr[body]
    model.body_mass[body] = mass
    model.body_inertia[body] = box_inertia(mass, model.geom_size[geom])
