"""robots_ts.sim2real.deploy.msgs on messages serialized and read back by rosbags (ROS 1 and ROS 2
typestores), and on rospy-style objects (``secs``/``nsecs`` stamps, ``K``)."""
from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest
from rosbags.typesys import Stores

from robots_ts.sim2real.deploy import msgs
from tests.deploy.test_replay import Builder

STORES = [Stores.ROS1_NOETIC, Stores.ROS2_HUMBLE]


def roundtrip(b: Builder, msg):
    data = b.serialize(msg)
    return (b.ts.deserialize_ros1 if b.ros1 else b.ts.deserialize_cdr)(data, msg.__msgtype__)


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
@pytest.mark.parametrize("bigendian,pad", [(False, 0), (True, 6), (False, 3)])
def test_depth_images_round_trip(store, encoding, bigendian, pad):
    b = Builder(store)
    rng = np.random.default_rng(0)
    metres = rng.uniform(0.2, 3.0, (5, 7))
    metres[1, 2] = np.nan
    img = msgs.encode_depth(metres, encoding)
    got, enc = msgs.image_array(roundtrip(b, b.image(1_500_000_000, img, encoding, bigendian, pad)))
    assert enc == encoding and got.dtype == img.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, img)
    m = msgs.depth_metres(got, enc)
    assert np.isnan(m[1, 2]) and np.nanmax(np.abs(m - metres)) <= (5e-4 + 1e-6 if encoding == "16UC1" else 1e-6)


def test_depth_conversion_reads_zero_and_nan_as_no_return():
    assert np.isnan(msgs.depth_metres(np.array([[0, 1500]], np.uint16), "16UC1")[0, 0])
    m = msgs.depth_metres(np.array([[0.0, np.nan, np.inf, 1.25]], np.float32), "32FC1")
    assert np.isnan(m[0, :3]).all() and m[0, 3] == np.float32(1.25)
    np.testing.assert_array_equal(msgs.encode_depth(np.array([np.nan, 0.0, 70.0, 1.2344]), "16UC1"), [0, 0, 0, 1234])


def test_bad_images_are_named():
    f = msgs.image_fields(np.zeros((2, 3), np.uint16), "16UC1")
    with pytest.raises(msgs.MessageError, match="'rgb8'"):
        msgs.image_array(NS(**dict(f, encoding="rgb8")))
    with pytest.raises(msgs.MessageError, match="holds 6 bytes, expected 12"):
        msgs.image_array(NS(**dict(f, data=f["data"][:6])))
    with pytest.raises(msgs.MessageError, match="step 4 bytes"):
        msgs.image_array(NS(**dict(f, step=4)))


@pytest.mark.parametrize("store", STORES)
def test_camera_info_and_joint_state(store):
    b = Builder(store)
    intr = dict(width=16, height=12, fx=13.4, fy=13.5, cx=7.5, cy=5.25)
    info = roundtrip(b, b.camera_info(2 * 10**9 + 5, intr))
    assert msgs.camera_intrinsics(info) == intr
    js = roundtrip(b, b.joint_state(3 * 10**9 + 250_000_000, ["b", "a"], [0.5, -1.0], [0.1, 0.2]))
    names, pos, vel, stamp = msgs.joint_state(js)
    assert names == ["b", "a"] and pos.tolist() == [0.5, -1.0] and vel.tolist() == [0.1, 0.2] and stamp == 3.25
    js = b.joint_state(0, ["a", "b"], [0.0, 1.0], [])
    assert msgs.joint_state(roundtrip(b, js))[2].size == 0          # no velocities: allowed here
    with pytest.raises(msgs.MessageError, match="2 names, 1 positions"):
        msgs.joint_state(b.joint_state(0, ["a", "b"], [0.0], []))


def test_rospy_style_fields():
    info = NS(width=4, height=3, K=[2.0, 0, 1.5, 0, 2.5, 1.0, 0, 0, 1])
    assert msgs.camera_intrinsics(info) == dict(width=4, height=3, fx=2.0, fy=2.5, cx=1.5, cy=1.0)
    assert msgs.stamp_seconds(NS(secs=7, nsecs=500_000_000)) == 7.5
    ros1 = msgs.camera_info_fields(dict(width=4, height=3, fx=2.0, fy=2.5, cx=1.5, cy=1.0), ros2=False)
    assert msgs.camera_intrinsics(NS(**ros1))["fy"] == 2.5 and "K" in ros1 and "k" not in ros1


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("bigendian", [False, True])
def test_point_clouds_round_trip(store, bigendian):
    b = Builder(store)
    pts = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    pts[3] = np.nan
    got = msgs.pointcloud_xyz(roundtrip(b, b.cloud(10**9, pts, bigendian)))
    np.testing.assert_array_equal(got, pts)


def test_organized_cloud_with_other_fields_and_padded_rows():
    """x, y, z among other fields (rgb, intensity), point_step 32, rows padded to 100 bytes."""
    h, w = 2, 3
    pts = np.arange(h * w * 3, dtype=np.float32).reshape(h * w, 3) / 7
    rows = np.zeros((h, 100), np.uint8)
    for n, p in enumerate(pts):
        r, c = divmod(n, w)
        rec = np.zeros(32, np.uint8)
        rec[0:4] = np.frombuffer(np.float32(9.0).tobytes(), np.uint8)    # intensity first
        rec[8:20] = np.frombuffer(p.astype(">f4").tobytes(), np.uint8)   # x, y, z big-endian at 8
        rows[r, c * 32:(c + 1) * 32] = rec
    fields = [NS(name="intensity", offset=0, datatype=7, count=1), NS(name="x", offset=8, datatype=7, count=1),
              NS(name="y", offset=12, datatype=7, count=1), NS(name="z", offset=16, datatype=7, count=1),
              NS(name="rgb", offset=20, datatype=6, count=1)]
    msg = NS(height=h, width=w, fields=fields, is_bigendian=True, point_step=32, row_step=100, data=rows.tobytes())
    np.testing.assert_array_equal(msgs.pointcloud_xyz(msg), pts)
    with pytest.raises(msgs.MessageError, match="FLOAT32 field 'z'"):
        msgs.pointcloud_xyz(NS(**dict(vars(msg), fields=fields[:3])))
