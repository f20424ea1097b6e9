"""Cross-backend parity: MuJoCo and PyBullet build the same robot, camera and scene from the same
descriptions, so the same joint configuration and the same scene must give the same TCP pose,
the same depth image and (through the shared action mapping) nearly the same motion."""
import mujoco
import numpy as np
import pytest

from robots_ts.config import DepthConfig, EnvConfig
from robots_ts.envs.tasks import TASKS
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.policies.scripted import ScriptedTeacher
from robots_ts.robot.description import panda
from robots_ts.envs.backends.mujoco_backend import task_model
from robots_ts.envs.backends.scene import camera

BOX = [("size", "box", (0.03, 0.03, 0.03), None), ("pose", "box", (0.62, 0.12, 0.03), (1.0, 0.0, 0.0, 0.0))]


def _pair(task: str, n: int, **kw) -> dict[str, BatchedEnv]:
    envs = {b: BatchedEnv(EnvConfig(task=task, backend=b, num_envs=n, num_threads=1, **kw), seed=0)
            for b in ("mujoco", "pybullet")}
    for e in envs.values():
        e.reset()
    return envs


def _close(envs) -> None:
    for e in envs.values():
        e.close()


def test_same_joints_same_tcp_pose():
    """100 random configurations inside the soft limits: TCP position within 1 mm, orientation
    within 0.1 degree."""
    desc, rng, n = panda(), np.random.default_rng(0), 20
    envs = _pair("Lift", n)
    try:
        for _ in range(5):
            q = rng.uniform(desc.arm_lower, desc.arm_upper, (n, 7))
            for e in envs.values():
                e.world.backend.reset(range(n), q, 0.04, [[]] * n)
            a, b = envs["mujoco"].world.state, envs["pybullet"].world.state
            np.testing.assert_allclose(a.qpos[:, :7], q, atol=1e-9)
            np.testing.assert_allclose(b.qpos[:, :7], q, atol=1e-9)
            assert np.abs(a.ee_pos - b.ee_pos).max() < 1e-3
            rel = np.einsum("nji,njk->nik", a.ee_rot, b.ee_rot)
            angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
            assert angle.max() < 0.1
            # The Jacobians the action mapping uses agree too.
            np.testing.assert_allclose(a.jac, b.jac, atol=1e-4)
    finally:
        _close(envs)


def test_same_scene_same_depth():
    """A box at a known pose, the arm near its ready pose: on the pixels where both backends see a
    surface, >= 99% agree to 1 cm (the issue asks 95%; both renderers sample pixel centres), and
    both see a surface on the same pixels."""
    desc, rng, n = panda(), np.random.default_rng(1), 6
    envs = _pair("Lift", n, obs_groups=["depth"], depth=DepthConfig(width=64, height=64))
    try:
        q = desc.ready_pose + rng.uniform(-0.3, 0.3, (n, 7))
        for e in envs.values():
            e.world.backend.reset(range(n), q, 0.04, [BOX] * n)
        far = envs["mujoco"].cfg.depth.far - 1e-3
        dm, db = (envs[k].world.backend.images["depth"] for k in ("mujoco", "pybullet"))
        both = (dm < far) & (db < far)
        assert both.mean() > 0.5
        assert ((dm < far) != (db < far)).mean() < 0.005
        assert (np.abs(dm - db)[both] < 0.01).mean() >= 0.99
    finally:
        _close(envs)


def test_same_actions_similar_motion():
    """The scripted Reach controller from the same start: the backends' TCP paths stay within 1 cm
    (servo gains are mapped by time constant, see robots_ts.envs.backends.pybullet_backend)."""
    envs = {b: BatchedEnv(EnvConfig(task="Reach", backend=b, num_envs=4, num_threads=1, init_noise=0.0), seed=5)
            for b in ("mujoco", "pybullet")}
    try:
        paths = {}
        for b, e in envs.items():
            obs, teacher, path = e.reset(), ScriptedTeacher(e.world), []
            for _ in range(12):   # shorter than any success: no resets inside the window
                obs, _, dones, _ = e.step(teacher.act(obs))
                assert not dones.any()
                path.append(e.world.state.ee_pos.copy())
            paths[b] = np.array(path)
        moved = np.linalg.norm(paths["mujoco"][-1] - paths["mujoco"][0], axis=1)
        assert moved.min() > 0.05   # the arm really moved
        assert np.linalg.norm(paths["mujoco"] - paths["pybullet"], axis=2).max() < 0.01
    finally:
        _close(envs)


def test_camera_description_is_the_mujoco_camera():
    m = task_model(TASKS["Reach"])
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    cam, cid = camera("scene"), m.camera("scene").id
    np.testing.assert_allclose(d.cam_xpos[cid], cam.pos, atol=1e-9)
    np.testing.assert_allclose(d.cam_xmat[cid].reshape(3, 3), cam.rotation(), atol=1e-6)
    assert m.cam_fovy[cid] == pytest.approx(cam.fovy)
