"""Conversions between ROS messages and the core library's types (no node logic here).

Input: sensor_msgs/Image -> RGB uint8 array, sensor_msgs/CameraInfo -> Camera.
Output: a PoseResult -> metrabs_ros/SkeletonArray, visualization_msgs/MarkerArray and
geometry_msgs/TransformStamped frames, all from the same pose arrays, in metres.
"""
from __future__ import annotations

import cv2
import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, TransformStamped
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from metrabs_ros.camera import Camera
from metrabs_ros.estimator import PoseResult
from metrabs_ros.msg import Skeleton, SkeletonArray
from metrabs_ros.visualization import track_colour

# encoding -> (channels, OpenCV conversion to RGB or None)
ENCODINGS = {
    'rgb8': (3, None), 'bgr8': (3, cv2.COLOR_BGR2RGB),
    'rgba8': (4, cv2.COLOR_RGBA2RGB), 'bgra8': (4, cv2.COLOR_BGRA2RGB),
    'mono8': (1, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', '')


class InputError(ValueError):
    """An input message that cannot be used (one clear reason)."""


def image_to_rgb(msg, max_pixels: int = 50_000_000) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB array."""
    check_size(msg.width, msg.height, max_pixels)
    if msg.encoding not in ENCODINGS:
        raise InputError(f'unsupported image encoding {msg.encoding!r}; '
                         f'supported: {", ".join(ENCODINGS)}')
    channels, conversion = ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise InputError(f'image data too short: {len(msg.data)} bytes for {msg.width}x'
                         f'{msg.height} {msg.encoding} with step {msg.step}')
    # A view of the message's buffer (array.array or bytes): no copy before the one below.
    data = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height)
    pixels = data.reshape(msg.height, msg.step)[:, :row_bytes].reshape(
        msg.height, msg.width, channels)
    if conversion is None:
        return np.array(pixels)  # a copy: the caller may keep it after the message is gone
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_to_rgb(msg, max_pixels: int = 50_000_000) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ... as OpenCV decodes) -> (H, W, 3) uint8 RGB."""
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise InputError('empty compressed image')
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f'cannot decode compressed image (format {msg.format!r})')
    check_size(bgr.shape[1], bgr.shape[0], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Raise InputError for an empty image or one of more than max_pixels pixels."""
    if width == 0 or height == 0:
        raise InputError(f'empty image ({width}x{height})')
    if width * height > max_pixels:
        raise InputError(f'image of {width}x{height} exceeds max_image_pixels ({max_pixels})')


def camera_from_info(msg, default_fov_degrees: float, image_size: tuple[int, int]):
    """sensor_msgs/CameraInfo -> (Camera, warning or None).

    Zero or missing K falls back to a default_fov_degrees camera (with a warning); non-finite
    K or D, an unsupported distortion model, or a size different from the image raise InputError.
    """
    width, height = image_size
    if (msg.width, msg.height) not in ((0, 0), (width, height)):
        raise InputError(f'CameraInfo is for {msg.width}x{msg.height} but the image is '
                         f'{width}x{height}')
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    D = np.asarray(msg.d, dtype=np.float64)
    if not np.all(np.isfinite(K)) or not np.all(np.isfinite(D)):
        raise InputError('CameraInfo K or D contains NaN or inf')
    if not np.any(K):
        warning = (f'CameraInfo has no intrinsics (K all zeros); using a '
                   f'{default_fov_degrees:g} deg field of view')
        return Camera.from_fov(default_fov_degrees, image_size), warning
    if msg.distortion_model not in SUPPORTED_DISTORTION_MODELS and np.any(D):
        raise InputError(f'unsupported distortion model {msg.distortion_model!r}; '
                         f'supported: plumb_bob, rational_polynomial')
    try:
        return Camera(K=K, distortion_coeffs=D, image_size=image_size), None
    except ValueError as e:
        raise InputError(f'invalid CameraInfo: {e}') from e


def skeleton_array_msg(result: PoseResult, ids: np.ndarray, header: Header) -> SkeletonArray:
    """All people of one image as a SkeletonArray stamped with the image header (frame kept)."""
    msg = SkeletonArray(header=header)
    names = list(result.skeleton.joint_names)
    for i in range(len(result)):
        msg.skeletons.append(Skeleton(
            id=int(ids[i]), skeleton=result.skeleton.name, joint_names=names,
            box_xywh=[float(v) for v in result.boxes[i, :4]], score=float(result.boxes[i, 4]),
            joints3d=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in result.poses3d[i]],
            joints2d=[Point(x=float(x), y=float(y), z=0.0) for x, y in result.poses2d[i]],
            uncertainty=[float(u) for u in result.uncertainty[i]]))
    return msg


def marker_array_msg(result: PoseResult, ids: np.ndarray, header: Header,
                     lifetime_s: float = 0.5, joint_diameter_m: float = 0.05) -> MarkerArray:
    """RViz markers: a DELETEALL first (no ghosts), then per person bones (LINE_LIST), joints
    (SPHERE_LIST) and an id label; marker id = track id in each namespace."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    edges = result.skeleton.edges
    for i in range(len(result)):
        r, g, b = (c / 255 for c in track_colour(int(ids[i])))
        colour = ColorRGBA(r=r, g=g, b=b, a=1.0)
        points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in result.poses3d[i]]
        common = dict(header=header, id=int(ids[i]), action=Marker.ADD, lifetime=lifetime,
                      color=colour, frame_locked=False)
        bones = Marker(ns='bones', type=Marker.LINE_LIST, **common)
        bones.points = [points[j] for edge in edges for j in edge]
        bones.scale.x = joint_diameter_m / 2
        joints = Marker(ns='joints', type=Marker.SPHERE_LIST, points=points, **common)
        joints.scale.x = joints.scale.y = joints.scale.z = joint_diameter_m
        label = Marker(ns='labels', type=Marker.TEXT_VIEW_FACING, text=str(int(ids[i])), **common)
        top = result.poses3d[i][np.argmin(result.poses3d[i][:, 1])]  # highest point (y down)
        label.pose.position = Point(x=float(top[0]), y=float(top[1]) - 0.2, z=float(top[2]))
        label.pose.orientation.w = 1.0
        label.scale.z = 0.15
        for marker in (bones, joints):
            marker.pose.orientation.w = 1.0
        markers += [bones, joints, label]
    return MarkerArray(markers=markers)


def transforms(result: PoseResult, ids: np.ndarray, header: Header, root_joint: str | None,
               frame_prefix: str = 'body_', joint_frames: bool = False) -> list[TransformStamped]:
    """TF frames: per person '<prefix><id>' at the root joint (or the joints' mean), and with
    joint_frames '<prefix><id>/<joint name>' children; orientation identity (the parent's)."""
    names = result.skeleton.joint_names
    root_index = names.index(root_joint) if root_joint in names else None
    frames = []
    for i in range(len(result)):
        pose = result.poses3d[i]
        root = pose[root_index] if root_index is not None else pose.mean(axis=0)
        body = f'{frame_prefix}{int(ids[i])}'
        frames.append(_transform(header, header.frame_id, body, root))
        if joint_frames:
            frames += [_transform(header, body, f'{body}/{name}', pose[j] - root)
                       for j, name in enumerate(names)]
    return frames


def _transform(header: Header, parent: str, child: str, translation) -> TransformStamped:
    t = TransformStamped()
    t.header.stamp, t.header.frame_id, t.child_frame_id = header.stamp, parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
        float(v) for v in translation)
    t.transform.rotation.w = 1.0
    return t
