"""The manifest says what the simulator did: the URDF's joints in order, the camera the env renders
from and back-projects through, the proprio layout and the action mapping; it loads back as typed
dataclasses, and a damaged one fails naming the field."""
import json
import shutil
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from robots_ts.envs.backends.scene import camera
from robots_ts.envs.sensors import camera_rays
from robots_ts.robot.arm import Arm, proprio_layout
from robots_ts.robot.description import panda, urdf_path
from robots_ts.sim2real.export import describe
from robots_ts.sim2real.export.manifest import (FORMAT, CameraSpec, Intrinsics, Manifest, ManifestError,
                                                load_manifest)


def test_loads_back_typed(exports):
    man = load_manifest(exports[("depth_gru", "onnx")])
    assert isinstance(man, Manifest) and man.format == FORMAT
    assert isinstance(man.camera, CameraSpec) and isinstance(man.camera.intrinsics, Intrinsics)
    assert man.source.kind == "student" and man.source.task == "Reach" and man.source.encoder == "depth"
    assert man.source.checkpoint == "latest" and man.source.checkpoint_file.endswith("iter_0000.json")
    assert man.obs_groups == ["proprio", "depth"] and man.observations["depth"].shape == [1, 12, 16]
    assert [t.name for t in man.policy.inputs] == ["proprio", "depth", "hidden"]
    assert [t.name for t in man.policy.outputs] == ["action", "hidden_out"]
    assert man.policy.recurrent.size == 8 and man.policy.opset == 17 and man.policy.dynamic_batch
    assert man.control.hz == 25.0 and man.control.period_s == pytest.approx(0.04)
    assert man.control.prev_action_at_reset == [0.0, 0.0, 0.0, 1.0] and man.control.episode_steps == 10
    assert man.points is None and man.randomization == man.env["randomization"]
    teacher = load_manifest(exports[("teacher", "torchscript")])
    assert teacher.obs_groups == ["privileged", "proprio"] and teacher.camera is None
    assert teacher.policy.recurrent is None and teacher.source.checkpoint == "best"
    assert teacher.source.checkpoint_file.endswith("best.zip") and teacher.policy.file == "policy.pt"


def test_history_student_takes_history_by_name(exports):
    """A student that reads its last actions takes them as an ONNX input named ``history``, after the
    sensor, described by the manifest with the run's width (3 actions of 4, newest first)."""
    import onnx

    man = load_manifest(exports[("depth_history", "onnx")])
    assert man.obs_groups == ["proprio", "depth", "history"]
    assert [t.name for t in man.policy.inputs] == ["proprio", "depth", "history"]
    assert [t.shape for t in man.policy.inputs][-1] == [12]
    hist = man.observations["history"]
    assert hist.shape == [12] and hist.units == "action units [-1, 1]" and "last 3 actions" in hist.description
    graph = onnx.load(str(exports[("depth_history", "onnx")] / man.policy.file)).graph
    assert [i.name for i in graph.input] == ["proprio", "depth", "history"]


def test_robot_is_the_urdf(exports):
    man = load_manifest(exports[("teacher", "onnx")])
    root = ET.parse(urdf_path()).getroot()
    moving = [(j.get("name"), j.get("type")) for j in root.findall("joint") if j.get("type") != "fixed"]
    assert [(j.name, j.kind) for j in man.robot.joints] == moving
    assert man.robot.arm_joints + man.robot.finger_joints == [n for n, _ in moving]
    desc = panda()
    for j in man.robot.joints:
        ref = desc.joint(j.name)
        assert (j.lower, j.upper, j.velocity, j.effort) == (ref.lower, ref.upper, ref.velocity, ref.effort)
        el = root.find(f"joint[@name='{j.name}']/limit")
        assert j.velocity == float(el.get("velocity"))
    np.testing.assert_array_equal(man.robot.home, Arm().home)
    assert man.robot.finger_range == [0.0, 0.04] and man.robot.home_fingers == [0.04, 0.04]
    assert man.robot.base_frame == "panda_link0" and man.robot.tcp_link == "panda_grasptarget"


def test_observation_layout_and_action_semantics(exports):
    man = load_manifest(exports[("points", "onnx")])
    layout = proprio_layout("ee", ())
    fields = man.observations["proprio"].fields
    assert [(f.field, f.start, f.stop, f.names) for f in fields] == [
        (d["field"], d["start"], d["stop"], d["names"]) for d in layout.to_dict()]
    assert {f.field: f.units for f in fields}["joint_vel"] == "rad/s"
    a = man.action
    arm = Arm(control="ee")
    assert a.control == "ee" and a.dim == 4 and a.ee_step == arm.ee_step and a.ik_damping == arm.ik_damping
    assert a.workspace_low == list(arm.workspace_low) and a.gripper.index == 3 and a.gripper.finger_range == [0, 0.04]
    np.testing.assert_allclose(a.ee_rotation_target, arm.ee_rot_target)
    # The gripper mapping stated is the one Arm.targets applies.
    acts = np.array([[0, 0, 0, -1.0], [0, 0, 0, 0.0], [0, 0, 0, 1.0]])
    _, finger = arm.targets(acts, np.tile(arm.home, (3, 1)), np.tile(arm.home, (3, 1)), np.zeros((3, 3)),
                            np.tile(np.eye(3), (3, 1, 1)), np.zeros((3, 6, 7)))
    np.testing.assert_allclose(finger, [0.0, 0.02, 0.04])
    # Joint control names the URDF's arm joints and its step.
    joint = describe.action_spec(Arm(control="joint"), "joint")
    assert joint.fields[0].names == list(panda().arm_joints) and joint.joint_step == Arm(control="joint").joint_step
    assert "previous joint targets" in joint.semantics
    # Push's command is its goal position, named as the task names it.
    from robots_ts.config import EnvConfig

    push = describe.proprio_group(EnvConfig(task="Push"), [26])
    assert push.fields[-1].names == ["goal_x", "goal_y", "goal_z"] and push.fields[-1].units == "m (base frame)"


@pytest.mark.parametrize("width,height,fovy", [(16, 12, 48.0), (64, 64, 48.0), (40, 30, 60.0)])
def test_intrinsics_back_project_as_camera_rays(width, height, fovy):
    K = describe.intrinsics(width, height, fovy)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    optical = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=-1)
    # camera_rays: MuJoCo/OpenGL axes (y up, looking along -z), unit optical-axis component.
    np.testing.assert_allclose(optical @ describe.GL_TO_OPTICAL, camera_rays(width, height, fovy), atol=1e-12)


def test_camera_is_the_scene_camera(exports):
    for kind, width, height in (("depth", 16, 12), ("points", 32, 24)):
        man = load_manifest(exports[(kind, "onnx")])
        cam, ref = man.camera, camera("scene")
        assert (cam.intrinsics.width, cam.intrinsics.height) == (width, height)
        assert cam.near == 0.1 and cam.far == 2.5 and cam.fovy_deg == ref.fovy
        np.testing.assert_allclose(cam.position, ref.pos)
        np.testing.assert_allclose(cam.rotation, ref.rotation(), atol=1e-12)
        np.testing.assert_allclose(cam.rotation_optical, np.asarray(cam.rotation) @ np.diag([1, -1, -1]), atol=1e-12)
        np.testing.assert_allclose(Rotation.from_quat(cam.quaternion_optical_xyzw).as_matrix(), cam.rotation_optical,
                                   atol=1e-9)
    # ... and the camera MuJoCo renders from: same pose in the compiled scene, whose world frame is
    # the robot base frame (panda_link0 at the origin, unrotated).
    from robots_ts.envs.tasks import Reach
    from robots_ts.robot.mujoco_scene import scene_model

    model = scene_model(tuple(Reach.bodies))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cid = model.camera("scene").id
    np.testing.assert_allclose(data.cam_xpos[cid], cam.position, atol=1e-6)
    np.testing.assert_allclose(data.cam_xmat[cid].reshape(3, 3), cam.rotation, atol=1e-4)
    assert model.cam_fovy[cid] == cam.fovy_deg
    np.testing.assert_allclose(data.xpos[model.body("panda_link0").id], 0.0)
    np.testing.assert_allclose(data.xmat[model.body("panda_link0").id].reshape(3, 3), np.eye(3))
    points = man.points
    assert points.num_points == 64 and (points.render.width, points.render.height) == (32, 24)
    assert points.crop_low == [-0.1, -0.6, -0.02] and points.voxel == 0.008 and points.remove_table
    assert points.table_margin == 0.004 and points.downsample == "voxel" and not points.table_fit


def test_manifest_back_projects_rendered_depth_as_the_env(runs, exports):
    """Base-frame points from the manifest alone (intrinsics, optical extrinsics, a depth image) are
    the env's own back-projection of that image."""
    from robots_ts.envs import make_batched_env
    from robots_ts.policies.load import load_policy

    man = load_manifest(exports[("points", "onnx")])
    env_cfg = load_policy(runs["points"]).env_cfg
    env = make_batched_env(env_cfg, seed=0, num_envs=1)
    try:
        env.reset()
        depth = env.world.backend.images["points"][0].astype(np.float64)
        ours = env.world.cloud.cam_pos + env.world.cloud.rays_world * depth.reshape(-1, 1)
    finally:
        env.close()
    K, cam = man.points.render, man.camera
    v, u = np.mgrid[0:K.height, 0:K.width].astype(np.float64)
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1).reshape(-1, 3)
    optical = rays * depth.reshape(-1, 1)       # z-depth scales the ray with unit optical-axis component
    theirs = np.asarray(cam.position) + optical @ np.asarray(cam.rotation_optical).T
    np.testing.assert_allclose(theirs, ours, atol=1e-9)
    assert np.ptp(depth) > 0.1     # a real scene, not a blank image


def test_damaged_manifests_fail_naming_the_field(exports, tmp_path):
    src = exports[("depth", "onnx")]
    good = json.loads((src / "manifest.json").read_text())

    def broken(edit, name):
        d = tmp_path / name
        shutil.copytree(src, d)
        data = json.loads(json.dumps(good))
        edit(data)
        (d / "manifest.json").write_text(json.dumps(data))
        return d

    cases = [
        (lambda m: m.update(format="robots_ts.export/99"), "format 'robots_ts.export/99' is not supported"),
        (lambda m: m.pop("format"), "missing field 'format'"),
        (lambda m: m.pop("robot"), "missing field 'robot'"),
        (lambda m: m["camera"]["intrinsics"].pop("fx"), "missing field 'camera.intrinsics.fx'"),
        (lambda m: m["robot"]["joints"][2].pop("upper"), "missing field 'robot.joints[2].upper'"),
        (lambda m: m["control"].update(hz="fast"), "field 'control.hz': expected a number, got 'fast'"),
        (lambda m: m["observations"].pop("depth"), "lacks the group(s) ['depth']"),
        (lambda m: m.update(camera=None), "missing field 'camera'"),
    ]
    for i, (edit, message) in enumerate(cases):
        with pytest.raises(ManifestError) as exc:
            load_manifest(broken(edit, f"case{i}"))
        assert message in str(exc.value) and "manifest.json" in str(exc.value), (message, str(exc.value))
    # A policy file that is not the exported one, or none at all.
    d = broken(lambda m: None, "swapped")
    (d / "policy.onnx").write_bytes((d / "policy.onnx").read_bytes() + b"\0")
    with pytest.raises(ManifestError, match="does not match the SHA-256"):
        load_manifest(d)
    (d / "policy.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="policy.onnx is missing"):
        load_manifest(d)
    with pytest.raises(FileNotFoundError, match="is not an export"):
        load_manifest(tmp_path)
