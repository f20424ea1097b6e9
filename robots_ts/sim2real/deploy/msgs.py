"""ROS messages <-> numpy, as plain functions over objects with the ROS field names.

rospy's generated classes, rclpy's and rosbags' (both typestores) all carry the message fields as
attributes, so the deploy nodes, the simulated robot and bag replay share these. Field names that
differ between ROS 1 and ROS 2 (``CameraInfo.K`` / ``k``, ``Time.secs`` / ``sec``) are read
either way. Nothing here imports ROS.

Depth conventions (REP 118): ``16UC1`` is uint16 millimetres, ``32FC1`` float32 metres; 0 (both)
and NaN (32FC1) mean no return. :func:`depth_metres` turns either into float32 metres with NaN
for no return.
"""
from __future__ import annotations

import numpy as np

DEPTH_ENCODINGS = {"16UC1": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}
POINTFIELD_FLOAT32 = 7   # sensor_msgs/PointField.FLOAT32


class MessageError(ValueError):
    """A message that cannot be converted (encoding, sizes, fields), with what was expected."""


def stamp_seconds(stamp) -> float:
    """Seconds of a ``Time`` (ROS 2 / rosbags: ``sec``, ``nanosec``; rospy: ``secs``, ``nsecs``)."""
    if hasattr(stamp, "nanosec"):
        return float(stamp.sec) + 1e-9 * float(stamp.nanosec)
    if hasattr(stamp, "nsecs"):
        return float(stamp.secs) + 1e-9 * float(stamp.nsecs)
    raise MessageError(f"not a ROS time: {stamp!r} (expected sec/nanosec or secs/nsecs)")


def _bytes(data) -> bytes | np.ndarray:
    """A message's ``uint8[]`` payload (bytes under rospy, a uint8 array under rosbags, a list or
    array.array under rclpy) as something numpy reads without copying where it can."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return np.asarray(data, dtype=np.uint8)


# ---------------------------------------------------------------------------------- JointState
def joint_state(msg) -> tuple[list[str], np.ndarray, np.ndarray, float]:
    """``sensor_msgs/JointState`` -> names, positions, velocities (empty when the driver sends
    none), header stamp in seconds."""
    names = [str(n) for n in msg.name]
    pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    vel = np.asarray(msg.velocity, dtype=np.float64).reshape(-1)
    if len(pos) != len(names) or (len(vel) and len(vel) != len(names)):
        raise MessageError(f"JointState has {len(names)} names, {len(pos)} positions and {len(vel)} velocities "
                           "(expected as many positions, and as many velocities or none)")
    return names, pos, vel, stamp_seconds(msg.header.stamp)


# ---------------------------------------------------------------------------------- Image
def image_array(msg) -> tuple[np.ndarray, str]:
    """``sensor_msgs/Image`` (16UC1 or 32FC1) -> (H, W) array in native byte order, and the
    encoding. Honours ``is_bigendian`` and rows padded beyond ``width`` pixels (``step``)."""
    enc = str(msg.encoding)
    if enc not in DEPTH_ENCODINGS:
        raise MessageError(f"depth Image has encoding {enc!r}, expected one of {sorted(DEPTH_ENCODINGS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dt = DEPTH_ENCODINGS[enc].newbyteorder(">" if msg.is_bigendian else "<")
    if step < w * dt.itemsize:
        raise MessageError(f"{enc} Image of width {w} has step {step} bytes, expected at least {w * dt.itemsize}")
    raw = np.frombuffer(_bytes(msg.data), dtype=np.uint8)
    if raw.size < h * step:
        raise MessageError(f"{enc} Image {w}x{h} (step {step}) holds {raw.size} bytes, expected {h * step}")
    rows = raw[:h * step].reshape(h, step)[:, :w * dt.itemsize]
    img = np.ascontiguousarray(rows).view(dt).reshape(h, w)
    return img.astype(DEPTH_ENCODINGS[enc], copy=False), enc


def depth_metres(image: np.ndarray, encoding: str) -> np.ndarray:
    """A depth image as float32 metres, NaN where the sensor had no return (0, NaN, inf)."""
    if encoding == "16UC1":
        img = np.asarray(image)
        out = img.astype(np.float32) * np.float32(1e-3)
        out[img == 0] = np.nan
        return out
    if encoding == "32FC1":
        out = np.array(image, dtype=np.float32)
        out[~np.isfinite(out) | (out <= 0)] = np.nan
        return out
    raise MessageError(f"depth encoding {encoding!r} is not supported, expected one of {sorted(DEPTH_ENCODINGS)}")


def encode_depth(metres: np.ndarray, encoding: str) -> np.ndarray:
    """Float metres -> a 16UC1 (rounded millimetres, 0 for no return or out of range) or 32FC1
    (NaN for no return) image, as a depth driver publishes it."""
    m = np.asarray(metres, dtype=np.float64)
    bad = ~np.isfinite(m) | (m <= 0)
    if encoding == "16UC1":
        mm = np.rint(np.where(bad, 0.0, m) * 1000.0)
        mm[(mm > 65535) | bad] = 0
        return mm.astype(np.uint16)
    if encoding == "32FC1":
        return np.where(bad, np.nan, m).astype(np.float32)
    raise MessageError(f"depth encoding {encoding!r} is not supported, expected one of {sorted(DEPTH_ENCODINGS)}")


def image_fields(image: np.ndarray, encoding: str, bigendian: bool = False, pad: int = 0) -> dict:
    """The fields of a ``sensor_msgs/Image`` holding ``image`` (header left to the caller):
    height, width, encoding, is_bigendian, step (``pad`` extra bytes per row), data (uint8)."""
    dt = DEPTH_ENCODINGS[encoding].newbyteorder(">" if bigendian else "<")
    img = np.asarray(image).astype(dt)
    h, w = img.shape
    rows = np.zeros((h, w * dt.itemsize + int(pad)), np.uint8)
    rows[:, :w * dt.itemsize] = img.view(np.uint8).reshape(h, -1)
    return dict(height=h, width=w, encoding=encoding, is_bigendian=int(bool(bigendian)), step=rows.shape[1],
                data=rows.reshape(-1))


# ---------------------------------------------------------------------------------- CameraInfo
def camera_intrinsics(msg) -> dict:
    """``sensor_msgs/CameraInfo`` -> {width, height, fx, fy, cx, cy} from K (ROS 1 ``K``, ROS 2 ``k``)."""
    K = getattr(msg, "k", None)
    if K is None:
        K = getattr(msg, "K")
    K = np.asarray(K, dtype=np.float64).reshape(-1)
    if K.size != 9:
        raise MessageError(f"CameraInfo K has {K.size} entries, expected 9 (row-major 3x3)")
    return dict(width=int(msg.width), height=int(msg.height), fx=float(K[0]), fy=float(K[4]), cx=float(K[2]),
                cy=float(K[5]))


def camera_info_fields(intr: dict, ros2: bool = True) -> dict:
    """The fields of a ``sensor_msgs/CameraInfo`` for a distortion-free pinhole (header and ROI
    left to the caller); ROS 2 names (``k``, ``d``, ...) or ROS 1 (``K``, ``D``, ...)."""
    fx, fy, cx, cy = (float(intr[k]) for k in ("fx", "fy", "cx", "cy"))
    K = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64)
    P = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64)
    R = np.eye(3).reshape(-1)
    names = ("d", "k", "r", "p") if ros2 else ("D", "K", "R", "P")
    return dict(zip(("height", "width", "distortion_model"), (int(intr["height"]), int(intr["width"]), "plumb_bob")),
                **dict(zip(names, (np.zeros(5), K, R, P))))


# ---------------------------------------------------------------------------------- PointCloud2
def pointcloud_xyz(msg) -> np.ndarray:
    """``sensor_msgs/PointCloud2`` -> (N, 3) float32 x, y, z (NaN points kept; the cloud's frame
    is ``msg.header.frame_id``). x, y, z must be FLOAT32 fields; honours point_step, row_step
    and is_bigendian."""
    fields = {str(f.name): f for f in msg.fields}
    offsets = []
    for axis in "xyz":
        f = fields.get(axis)
        if f is None or int(f.datatype) != POINTFIELD_FLOAT32:
            raise MessageError(f"PointCloud2 needs a FLOAT32 field {axis!r}; it has "
                               f"{[(str(g.name), int(g.datatype)) for g in msg.fields]}")
        offsets.append(int(f.offset))
    h, w = int(msg.height), int(msg.width)
    ps, rs = int(msg.point_step), int(msg.row_step)
    if ps < max(offsets) + 4 or rs < w * ps:
        raise MessageError(f"PointCloud2 point_step {ps} / row_step {rs} too small for width {w} and fields "
                           f"at offsets {offsets}")
    raw = np.frombuffer(_bytes(msg.data), dtype=np.uint8)
    if raw.size < h * rs:
        raise MessageError(f"PointCloud2 {w}x{h} (row_step {rs}) holds {raw.size} bytes, expected {h * rs}")
    pts = raw[:h * rs].reshape(h, rs)[:, :w * ps].reshape(h * w, ps)
    dt = np.dtype(">f4" if msg.is_bigendian else "<f4")
    out = np.empty((h * w, 3), np.float32)
    for k, off in enumerate(offsets):
        out[:, k] = np.ascontiguousarray(pts[:, off:off + 4]).view(dt)[:, 0]
    return out


def pointcloud_fields(points: np.ndarray, bigendian: bool = False) -> dict:
    """The fields of an unorganized ``sensor_msgs/PointCloud2`` holding (N, 3) points (header
    left to the caller); ``fields`` as (name, offset, datatype, count) tuples for the caller's
    PointField class."""
    pts = np.asarray(points, dtype=">f4" if bigendian else "<f4").reshape(-1, 3)
    return dict(height=1, width=len(pts), fields=[(a, 4 * k, POINTFIELD_FLOAT32, 1) for k, a in enumerate("xyz")],
                is_bigendian=int(bool(bigendian)), point_step=12, row_step=12 * len(pts),
                data=np.ascontiguousarray(pts).view(np.uint8).reshape(-1), is_dense=int(bool(np.isfinite(pts).all())))
