"""Depth and point clouds against known geometry, in every backend: a box of known pose and size
on the table must appear where the camera model says it is."""
import numpy as np
import pytest

from robots_ts.config import DepthConfig, EnvConfig, PointsConfig
from robots_ts.envs.sensors import camera_rays
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.envs.backends.backend import BACKENDS
from robots_ts.envs.backends.scene import camera

BOX_CENTER = np.array([0.62, 0.12, 0.03])
BOX_HALF = np.array([0.03, 0.03, 0.03])


def _lift_env(groups, backend="mujoco", width=128, height=128, remove_table=True):
    env = BatchedEnv(EnvConfig(task="Lift", backend=backend, num_envs=1, obs_groups=groups,
                               depth=DepthConfig(width=width, height=height),
                               points=PointsConfig(width=width, height=height, remove_table=remove_table,
                                                   num_points=2048)), seed=0)
    env.reset()
    w = env.world
    # Put the box at a known pose through the seam, as a task's reset does; the backend renders.
    ops = [("size", "box", tuple(BOX_HALF), None), ("pose", "box", tuple(BOX_CENTER), (1.0, 0.0, 0.0, 0.0))]
    w.backend.reset([0], w.arm.home[None], w.arm.finger_open, [ops], w._post)
    cam = camera("scene")
    return env, np.asarray(cam.pos), cam.rotation(), cam.fovy


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_equals_distance_to_known_surfaces(backend):
    env, cam_pos, cam_rot, fovy = _lift_env(["depth"], backend)
    depth = env.world.observe()["depth"][0, 0]
    rays = camera_rays(128, 128, fovy) @ cam_rot.T          # world directions, unit optical component
    checked = {"box_top": 0, "table": 0}
    for v in range(0, 128, 2):
        for u in range(0, 128, 2):
            ray = rays[v, u]
            # Box top face: plane z = 0.06 within the face's extent.
            t_top = (BOX_CENTER[2] + BOX_HALF[2] - cam_pos[2]) / ray[2]
            p = cam_pos + t_top * ray
            if np.all(np.abs(p[:2] - BOX_CENTER[:2]) < BOX_HALF[:2] - 0.004):
                assert depth[v, u] == pytest.approx(t_top, abs=0.002)
                checked["box_top"] += 1
                continue
            # Open table, well away from the box and the robot.
            t_tab = -cam_pos[2] / ray[2]
            p = cam_pos + t_tab * ray
            if 0.45 < p[0] < 0.95 and abs(p[1]) < 0.5 and np.linalg.norm(p[:2] - BOX_CENTER[:2]) > 0.12:
                assert depth[v, u] == pytest.approx(t_tab, abs=0.002)
                checked["table"] += 1
    assert checked["box_top"] >= 5 and checked["table"] >= 50
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_is_clipped_to_near_far(backend):
    env, *_ = _lift_env(["depth"], backend, 64, 64)
    depth = env.world.observe()["depth"]
    c = env.cfg.depth
    assert depth.min() >= c.near and depth.max() <= c.far
    env.close()


def _box_surface_distance(p: np.ndarray) -> np.ndarray:
    q = np.abs(p - BOX_CENTER) - BOX_HALF
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    inside = np.minimum(np.max(q, axis=1), 0)
    return np.abs(outside + inside)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("remove_table", [True, False])
def test_points_lie_on_true_surfaces(remove_table, backend):
    env, *_ = _lift_env(["points"], backend, remove_table=remove_table)
    pts = env.world.observe()["points"][0].astype(np.float64)
    assert pts.shape == (2048, 3)
    near_box = np.all(np.abs(pts - BOX_CENTER) < BOX_HALF + 0.02, axis=1)
    # Every point near the box lies on the box or (when kept) on the table around it.
    dist = _box_surface_distance(pts[near_box])
    if not remove_table:
        dist = np.minimum(dist, np.abs(pts[near_box, 2]))
    assert dist.max() < 0.005
    assert (_box_surface_distance(pts[near_box]) < 0.005).sum() >= 8
    on_table = pts[:, 2] < 0.01
    if remove_table:
        # Only the plane goes: what stands on the table (box sides, robot base) starts 4 mm up.
        assert pts[:, 2].min() >= 0.004 - 1e-6
    else:
        far_from_box = np.linalg.norm(pts[:, :2] - BOX_CENTER[:2], axis=1) > 0.06
        tab = pts[on_table & far_from_box & (pts[:, 0] > 0.3)]
        assert len(tab) >= 50
        assert np.abs(tab[:, 2]).max() < 0.005
    env.close()


def test_without_an_opengl_backend_state_envs_run_and_depth_envs_say_what_to_install():
    """MUJOCO_GL=disable (what robots_ts picks on a machine without libEGL): a state-only env
    steps, and a depth env fails with a message naming the libraries, not a crash in MuJoCo."""
    import os
    import subprocess
    import sys

    code = """
import robots_ts
from robots_ts.config import EnvConfig
from robots_ts.envs.vec_env import BatchedEnv
env = BatchedEnv(EnvConfig(task="Reach", num_envs=2), seed=0)
env.reset()
env.close()
try:
    BatchedEnv(EnvConfig(task="Reach", num_envs=2, obs_groups=["proprio", "depth"]), seed=0).reset()
except RuntimeError as exc:
    print("ERROR:", exc)
"""
    env = {**os.environ, "MUJOCO_GL": "disable"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR: depth rendering needs an OpenGL backend" in out.stdout
    assert "libegl1" in out.stdout


def _maker_and_images(voxel: float, n_images: int = 6, size: int = 48):
    """A cloud maker on the scene camera and depth images of a bumpy surface under it, some pixels
    at the far plane (no surface)."""
    from robots_ts.envs.sensors import PointCloudMaker

    cam = camera("scene")
    maker = PointCloudMaker(np.asarray(cam.pos), cam.rotation(), size, size, cam.fovy, num_points=size * size,
                            crop_low=[-0.1, -0.6, -0.02], crop_high=[1.0, 0.6, 0.8], remove_table=True,
                            voxel=voxel, far=2.5)
    rng = np.random.default_rng(3)
    base = np.linalg.norm(cam.pos)
    imgs = (base + rng.normal(0, 0.15, (n_images, size, size))).astype(np.float32)
    imgs[:, :5] = 2.5
    return maker, imgs, np.asarray(cam.pos), cam.rotation(), cam.fovy


@pytest.mark.parametrize("voxel", [0.0, 0.004, 0.03])
def test_a_cloud_keeps_the_first_point_of_each_voxel_in_pixel_order(voxel):
    """Back-projection, crop and voxel grid against numpy: every pixel's point through the camera
    model, the pixels nearer than the far plane whose point lies in the crop box, then the first
    of them in each voxel (np.unique on the voxel keys), in pixel order. With more output rows
    than points, the cloud starts with exactly those points."""
    maker, imgs, cam_pos, cam_rot, fovy = _maker_and_images(voxel)
    size = imgs.shape[1]
    rays = camera_rays(size, size, fovy).reshape(-1, 3) @ cam_rot.T
    kept_counts = []
    for i, img in enumerate(imgs):
        z = img.reshape(-1)
        pts = cam_pos + rays * z[:, None]
        keep = (z < 2.5 - 1e-3) & np.all((pts >= maker.low) & (pts <= maker.high), axis=1)
        pts = pts[keep]
        if voxel > 0:
            idx = np.floor((pts - maker.low) / voxel).astype(np.int64)
            keys = (idx[:, 0] * maker._ny + idx[:, 1]) * maker._nz + idx[:, 2]
            pts = pts[np.sort(np.unique(keys, return_index=True)[1])]
        out = np.empty((size * size, 3), np.float32)
        maker(img, np.random.default_rng(i), out)
        np.testing.assert_array_equal(out[:len(pts)], pts.astype(np.float32))
        kept_counts.append(len(pts))
    assert min(kept_counts) > 100
    if voxel == 0.03:                        # coarse voxels: most points share one
        assert max(kept_counts) < 0.5 * size * size


def test_one_cloud_maker_serves_concurrent_worker_threads():
    """The backends' worker threads make their worlds' clouds at the same time with one maker:
    each thread's clouds equal those made one after the other."""
    import threading

    maker, imgs, *_ = _maker_and_images(0.004, n_images=8, size=96)
    num = 256
    want = np.empty((len(imgs), num, 3), np.float32)
    maker.num_points = num
    for i, img in enumerate(imgs):
        maker(img, np.random.default_rng(i), want[i])
    got = np.zeros_like(want)
    errors = []

    def work(ids):
        try:
            for _ in range(100):
                for i in ids:
                    maker(imgs[i], np.random.default_rng(i), got[i])
                    if not np.array_equal(got[i], want[i]):
                        errors.append(i)
        except Exception as exc:      # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids,)) for ids in ([0, 2, 4, 6], [1, 3, 5, 7])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    np.testing.assert_array_equal(got, want)
