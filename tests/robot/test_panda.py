"""The robot description: the Panda URDF of pybullet_data, read once, used by every consumer."""
from __future__ import annotations

import numpy as np
import pytest

import robots_ts  # noqa: F401  (MuJoCo's GL backend is chosen on import)
import mujoco

from robots_ts.envs.tasks import TASKS
from robots_ts.robot import mujoco_scene
from robots_ts.robot.arm import action_layout, proprio_layout
from robots_ts.robot.description import READY_POSE, panda, rpy_matrix, urdf_dir, urdf_path
from robots_ts.robot.dynamics import LINK_INERTIALS
from robots_ts.robot.meshes import VISUAL_FACES, decimated
from robots_ts.envs.backends.mujoco_backend import task_model

# The Panda's datasheet limits (Franka Control Interface documentation): the soft limits the
# URDF's safety controllers carry.
DATASHEET_LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
DATASHEET_UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]


def test_names_and_limits_come_from_the_urdf():
    d = panda()
    assert d.arm_joints == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert d.finger_joints == ("panda_finger_joint1", "panda_finger_joint2")
    np.testing.assert_allclose(d.arm_lower, DATASHEET_LOWER)
    np.testing.assert_allclose(d.arm_upper, DATASHEET_UPPER)
    np.testing.assert_allclose(d.arm_effort, [87, 87, 87, 87, 12, 12, 12])
    np.testing.assert_allclose(d.arm_velocity, [2.175] * 4 + [2.61] * 3)
    assert d.finger_range == (0.0, 0.04)
    # The ready pose lies inside the limits (the old arm's wrist pose did not).
    assert np.all((READY_POSE > d.arm_lower) & (READY_POSE < d.arm_upper))


def test_model_carries_the_description():
    m = task_model(TASKS["Push"])
    d = panda()
    for name, lo, hi in zip(d.arm_joints, d.arm_lower, d.arm_upper):
        np.testing.assert_allclose(m.jnt_range[m.joint(name).id], [lo, hi])
        act = m.actuator(name)
        np.testing.assert_allclose(act.ctrlrange, [lo, hi])
        effort = d.joint(name).effort
        np.testing.assert_allclose(act.forcerange, [-effort, effort])
    for body, (mass, com, _) in LINK_INERTIALS.items():
        assert m.body(body).mass[0] == pytest.approx(mass)
        np.testing.assert_allclose(m.body(body).ipos, com, atol=1e-9)
    moving = [m.body(i).name for i in range(m.nbody) if m.body(i).name.startswith("panda_")
              and m.body(i).name != "panda_link0"]
    assert all(m.body_gravcomp[m.body(b).id] == 1.0 for b in moving)
    # Visual meshes decimated for the depth renderer, collision meshes hidden from it.
    for g in range(m.ngeom):
        if m.geom_bodyid[g] and m.body(m.geom_bodyid[g]).name.startswith("panda_"):
            if m.geom_contype[g]:
                assert m.geom_group[g] == mujoco_scene.GROUP_HIDDEN
            else:
                assert m.geom_group[g] == mujoco_scene.GROUP_ARM_VISUAL
                assert m.mesh_facenum[m.geom_dataid[g]] <= VISUAL_FACES


def _quat_angle_deg(r1: np.ndarray, r2: np.ndarray) -> float:
    c = (np.trace(r1.T @ r2) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def test_kinematic_parity_with_pybullet_over_1000_configurations():
    """MuJoCo's flange and TCP poses equal PyBullet's forward kinematics of the same URDF."""
    import pybullet as pb

    desc = panda()
    m = task_model(TASKS["Reach"])
    data = mujoco.MjData(m)
    qadr = [m.joint(n).qposadr[0] for n in desc.arm_joints]
    client = pb.connect(pb.DIRECT)
    try:
        robot = pb.loadURDF(str(urdf_path()), useFixedBase=True, physicsClientId=client)
        index = {pb.getJointInfo(robot, j, physicsClientId=client)[1].decode(): j
                 for j in range(pb.getNumJoints(robot, physicsClientId=client))}
        links = {pb.getJointInfo(robot, j, physicsClientId=client)[12].decode(): j for j in index.values()}
        rng = np.random.default_rng(0)
        worst_mm, worst_deg = 0.0, 0.0
        for _ in range(1000):
            q = rng.uniform(desc.arm_lower, desc.arm_upper)
            data.qpos[qadr] = q
            mujoco.mj_kinematics(m, data)
            for name, j in zip(desc.arm_joints, q):
                pb.resetJointState(robot, index[name], j, physicsClientId=client)
            for site, link in (("flange", desc.flange_link), ("ee", desc.tcp_link)):
                state = pb.getLinkState(robot, links[link], computeForwardKinematics=True, physicsClientId=client)
                pos_pb = np.array(state[4])
                rot_pb = np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3)
                pos_mj = data.site(site).xpos
                rot_mj = data.site(site).xmat.reshape(3, 3)
                worst_mm = max(worst_mm, 1000 * float(np.linalg.norm(pos_mj - pos_pb)))
                worst_deg = max(worst_deg, _quat_angle_deg(rot_mj, rot_pb))
                # The description's own forward kinematics agrees too.
                pos_d, rot_d = desc.forward_kinematics(q, link)
                np.testing.assert_allclose(pos_d, pos_mj, atol=1e-6)
                np.testing.assert_allclose(rot_d, rot_mj, atol=1e-6)
    finally:
        pb.disconnect(client)
    assert worst_mm < 1.0, f"TCP/flange position differs by {worst_mm:.3f} mm"
    assert worst_deg < 0.1, f"TCP/flange orientation differs by {worst_deg:.4f} deg"


def test_ready_pose_points_the_gripper_down_with_fingers_along_y():
    pos, rot = panda().forward_kinematics(READY_POSE, "panda_grasptarget")
    np.testing.assert_allclose(rot[:, 2], [0, 0, -1], atol=1e-9)     # approach axis down
    np.testing.assert_allclose(np.abs(rot[:, 1]), [0, 1, 0], atol=1e-9)  # fingers open along y
    np.testing.assert_allclose(pos, [0.3069, 0.0, 0.4853], atol=1e-3)


def test_rpy_matrix_is_urdf_fixed_axis_convention():
    r = rpy_matrix([0.3, -0.2, 1.1])
    rx = rpy_matrix([0.3, 0, 0])
    ry = rpy_matrix([0, -0.2, 0])
    rz = rpy_matrix([0, 0, 1.1])
    np.testing.assert_allclose(r, rz @ ry @ rx, atol=1e-12)


def test_layouts_name_every_element_from_the_description():
    lay = proprio_layout("joint", ("goal_x", "goal_y", "goal_z"))
    names = lay.names
    assert names[lay["joint_pos"]] == list(panda().arm_joints)
    assert names[lay["finger_pos"]] == list(panda().finger_joints)
    assert names[lay["prev_action"]] == [*panda().arm_joints, "gripper"]
    assert names[lay["command"]] == ["goal_x", "goal_y", "goal_z"]
    assert lay["command"].stop == 7 + 7 + 2 + 3 + 8 + 3
    assert action_layout("ee").names == ["dx", "dy", "dz", "gripper"]
    with pytest.raises(ValueError, match="torque"):
        action_layout("torque")


def test_gravity_compensated_arm_holds_the_ready_pose():
    m = task_model(TASKS["Reach"])
    d = mujoco.MjData(m)
    desc = panda()
    qadr = [m.joint(n).qposadr[0] for n in desc.arm_joints]
    d.qpos[qadr] = READY_POSE
    d.ctrl[:7] = READY_POSE
    mujoco.mj_step(m, d, nstep=1000)   # 2 s
    assert np.abs(d.qpos[qadr] - READY_POSE).max() < 1e-3


def test_pybullet_panda_carries_the_description_and_holds_the_ready_pose():
    """The PyBullet backend's Panda: identified masses and centres of mass, the URDF's joint order,
    and position motors that hold the ready pose against gravity."""
    from robots_ts.envs.backends.pybullet_backend import _Worlds

    w = _Worlds("Reach", [0], 25.0, {})
    try:
        p, c, robot = w.p, w.clients[0], w.robot[0]
        desc = panda()
        names = [p.getJointInfo(robot, j, physicsClientId=c)[1].decode() for j in w.joints]
        assert names == list(desc.arm_joints + desc.finger_joints)
        links = {p.getJointInfo(robot, j, physicsClientId=c)[12].decode(): j
                 for j in range(p.getNumJoints(robot, physicsClientId=c))}
        for body, (mass, com, _) in LINK_INERTIALS.items():
            info = p.getDynamicsInfo(robot, links[body], physicsClientId=c)
            assert info[0] == pytest.approx(mass)
            np.testing.assert_allclose(info[3], com, atol=1e-6)
        w.reset([(0, READY_POSE.tolist(), 0.04, [])])
        for _ in range(50):   # 2 s
            out = w.step(READY_POSE[None], np.array([0.04]))
        assert np.abs(out["qpos"][0, :7] - READY_POSE).max() < 2e-3
    finally:
        w.close()


@pytest.mark.parametrize("link", ["link6", "hand"])
def test_decimated_visual_mesh_stays_within_millimetres_of_the_original(link):
    """What the depth camera sees: the decimated mesh deviates from the original surface by < 6 mm
    at the 99th percentile (a 64x64 pixel spans about 1.5 cm at the table)."""
    import open3d as o3d

    path = str(urdf_dir() / "meshes" / "visual" / f"{link}.obj")
    vert, face = decimated(path, VISUAL_FACES)
    assert len(face) <= VISUAL_FACES
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vert.astype(np.float32)), o3d.core.Tensor(face.astype(np.uint32)))
    original = o3d.io.read_triangle_mesh(path)
    pts = np.asarray(original.sample_points_uniformly(20000).points, dtype=np.float32)
    dist = scene.compute_distance(o3d.core.Tensor(pts)).numpy()
    assert np.percentile(dist, 99) < 0.006


def test_a_temp_folder_that_cannot_be_written_costs_the_mesh_cache_not_the_meshes(tmp_path, monkeypatch):
    """Decimating still gives the meshes when the temp folder cannot take the cache file."""
    import tempfile

    path = str(urdf_dir() / "meshes" / "visual" / "link6.obj")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    decimated.cache_clear()
    try:
        vert, face = decimated(path, VISUAL_FACES)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))     # no such folder
        decimated.cache_clear()
        again = decimated(path, VISUAL_FACES)
        np.testing.assert_array_equal(again[0], vert)
        np.testing.assert_array_equal(again[1], face)
        assert not (tmp_path / "gone").exists()
    finally:
        decimated.cache_clear()


def test_decimated_meshes_are_kept_and_read_back_by_later_processes_without_open3d(tmp_path, monkeypatch):
    """A process that builds a scene decimates the meshes once and keeps them in the temp folder; a
    later process reads the same arrays back without importing open3d, and a torn file is made
    again."""
    import hashlib
    import os
    import subprocess
    import sys
    import tempfile

    path = str(urdf_dir() / "meshes" / "visual" / "link6.obj")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    decimated.cache_clear()
    try:
        vert, face = decimated(path, VISUAL_FACES)
        kept = list(tmp_path.glob("robots_ts_link6_*.npz"))
        assert len(kept) == 1
        code = ("import sys, hashlib; from robots_ts.robot.meshes import decimated; "
                f"v, f = decimated({path!r}, {VISUAL_FACES}); "
                "print('open3d' in sys.modules, hashlib.sha1(v.tobytes() + f.tobytes()).hexdigest())")
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(tmp_path)},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["False", hashlib.sha1(vert.tobytes() + face.tobytes()).hexdigest()]
        kept[0].write_bytes(b"torn")                      # a file cut short: made again, not trusted
        decimated.cache_clear()
        again = decimated(path, VISUAL_FACES)
        np.testing.assert_array_equal(again[0], vert)
        np.testing.assert_array_equal(again[1], face)
        with np.load(kept[0]) as f:
            np.testing.assert_array_equal(f["vertices"], vert)
    finally:
        decimated.cache_clear()
