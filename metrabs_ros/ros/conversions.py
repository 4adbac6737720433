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

from metrabs_ros.camera import Camera, validate_intrinsics
from metrabs_ros.estimator import PoseResult
from metrabs_ros.msg import Skeleton, SkeletonArray
from metrabs_ros.visualization import track_colour

# encoding -> (channels, bytes per channel, OpenCV conversion to RGB or None). 16-bit images
# are scaled to 8 bits (/ 256, as cv_bridge does). 'yuv422' is UYVY (sensor_msgs naming),
# 'yuv422_yuy2' YUYV. OpenCV names a Bayer pattern by its second row: ROS's rggb is its BG.
ENCODINGS = {
    'rgb8': (3, 1, None), 'bgr8': (3, 1, cv2.COLOR_BGR2RGB),
    'rgba8': (4, 1, cv2.COLOR_RGBA2RGB), 'bgra8': (4, 1, cv2.COLOR_BGRA2RGB),
    'mono8': (1, 1, cv2.COLOR_GRAY2RGB),
    'rgb16': (3, 2, None), 'bgr16': (3, 2, cv2.COLOR_BGR2RGB),
    'rgba16': (4, 2, cv2.COLOR_RGBA2RGB), 'bgra16': (4, 2, cv2.COLOR_BGRA2RGB),
    'mono16': (1, 2, cv2.COLOR_GRAY2RGB),
    'yuv422': (2, 1, cv2.COLOR_YUV2RGB_UYVY), 'uyvy': (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    'yuv422_yuy2': (2, 1, cv2.COLOR_YUV2RGB_YUY2), 'yuyv': (2, 1, cv2.COLOR_YUV2RGB_YUY2),
    'bayer_rggb8': (1, 1, cv2.COLOR_BayerBG2RGB), 'bayer_bggr8': (1, 1, cv2.COLOR_BayerRG2RGB),
    'bayer_gbrg8': (1, 1, cv2.COLOR_BayerGR2RGB), 'bayer_grbg8': (1, 1, cv2.COLOR_BayerGB2RGB),
}
SUPPORTED_DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', '')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (SOF0..SOF15 less DHT, JPG and DAC); their segment holds the size.
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
MAX_JPEG_MARKERS = 1024
# A focal length below this fraction of the image side is a field of view over 177 degrees.
MIN_FOCAL_FRACTION = 0.01


class InputError(ValueError):
    """An input message that cannot be used (one clear reason)."""


def image_to_rgb(msg, max_pixels: int = 50_000_000) -> np.ndarray:
    """sensor_msgs/Image (any encoding in ENCODINGS: 8- and 16-bit RGB, BGR, RGBA, BGRA, mono;
    YUV 4:2:2; 8-bit Bayer) -> (H, W, 3) uint8 RGB array."""
    check_size(msg.width, msg.height, max_pixels)
    if msg.encoding not in ENCODINGS:
        raise InputError(f'unsupported image encoding {msg.encoding!r}; '
                         f'supported: {", ".join(ENCODINGS)}')
    channels, depth, conversion = ENCODINGS[msg.encoding]
    if channels == 2 and msg.width % 2:  # 4:2:2 YUV: a pixel pair shares its chroma
        raise InputError(f'{msg.encoding} needs an even width, got {msg.width}')
    row_bytes = msg.width * channels * depth
    if msg.step < row_bytes:
        raise InputError(f'image step {msg.step} is smaller than a row of {msg.width} px '
                         f'{msg.encoding} ({row_bytes} bytes)')
    if len(msg.data) < msg.step * msg.height:
        raise InputError(f'image data too short: {len(msg.data)} bytes for {msg.width}x'
                         f'{msg.height} {msg.encoding} with step {msg.step}')
    # A view of the message's buffer (array.array or bytes): no copy before the one below.
    data = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height)
    rows = data.reshape(msg.height, msg.step)[:, :row_bytes]
    if depth == 2:
        word = np.dtype('>u2' if msg.is_bigendian else '<u2')
        rows = (np.ascontiguousarray(rows).view(word) >> 8).astype(np.uint8)
    pixels = rows.reshape(msg.height, msg.width, channels)
    if conversion is None:
        return np.array(pixels)  # a copy: the caller may keep it after the message is gone
    if channels == 1:
        pixels = pixels[..., 0]  # (H, W): what the mono and Bayer conversions take
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_to_rgb(msg, max_pixels: int = 50_000_000) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ... as OpenCV decodes) -> (H, W, 3) uint8 RGB.

    A JPEG or PNG larger than max_pixels is rejected from its header, before any decoding.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise InputError('empty compressed image')
    size = compressed_image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise InputError(f'compressed image exceeds max_image_pixels ({max_pixels}): its header '
                         f'says {size[0]}x{size[1]}; not decoded')
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f'cannot decode compressed image (format {msg.format!r})')
    check_size(bgr.shape[1], bgr.shape[0], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def compressed_image_size(data) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header (bytes-like) without decoding; None otherwise."""
    view = memoryview(data).cast('B')
    if len(view) >= 24 and bytes(view[:8]) == PNG_SIGNATURE and bytes(view[12:16]) == b'IHDR':
        return int.from_bytes(view[16:20], 'big'), int.from_bytes(view[20:24], 'big')
    if bytes(view[:2]) == b'\xff\xd8':
        return _jpeg_size(view)
    return None


def _jpeg_size(view: memoryview) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame; None if there is none before the scan.

    Raise InputError past MAX_JPEG_MARKERS markers (real files have a few dozen): padding must not
    make this walk slow.
    """
    i = 2
    for _ in range(MAX_JPEG_MARKERS):
        if i + 4 > len(view):
            return None
        if view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, standalone
            i += 1 if marker == 0xFF else 2
        elif marker in JPEG_SOF_MARKERS:  # length (2), precision (1), height (2), width (2)
            if i + 9 > len(view):
                return None
            height, width = int.from_bytes(view[i + 5:i + 7], 'big'), int.from_bytes(view[i + 7:i + 9], 'big')
            return (width, height) if height else None  # height 0: defined later (DNL)
        elif marker in (0xD9, 0xDA):  # end of image or start of scan without a frame header
            return None
        else:
            i += 2 + int.from_bytes(view[i + 2:i + 4], 'big')
    raise InputError(f'compressed JPEG has over {MAX_JPEG_MARKERS} markers before its frame header')


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Raise InputError for an empty image or one of more than max_pixels pixels."""
    if width == 0 or height == 0:
        raise InputError(f'empty image ({width}x{height})')
    if width * height > max_pixels:
        raise InputError(f'image of {width}x{height} exceeds max_image_pixels ({max_pixels})')


def camera_from_info(msg, default_fov_degrees: float, image_size: tuple[int, int]):
    """sensor_msgs/CameraInfo -> (Camera, warning or None).

    Binning and ROI apply to K and to the expected image size as in image_geometry (binning 0 is 1,
    an all-zero ROI is the full resolution). Zero K falls back to a default_fov_degrees camera (with
    a warning); non-finite or implausible K, non-finite D, an unsupported distortion model, or an
    image size other than the (ROI, binned) one raise InputError.
    """
    binning = (msg.binning_x or 1, msg.binning_y or 1)
    region, full_size = _image_region(msg, binning, image_size)
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
        K = validate_intrinsics(K)
        check_plausible_intrinsics(K, full_size)
        K = crop_and_bin_intrinsics(K, region[:2], binning)
        return Camera(K=K, distortion_coeffs=D, image_size=image_size), None
    except ValueError as e:
        raise InputError(f'invalid CameraInfo: {e}') from e


def _image_region(msg, binning: tuple[int, int], image_size: tuple[int, int]
                  ) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """((x, y, width, height) of the image in full-resolution pixels, full (width, height)).

    Raise InputError for an ROI outside the full resolution or an image whose size is not the
    region's binned size. Width and height 0 (unknown) take the image's size times the binning.
    """
    roi = msg.roi
    if roi.x_offset or roi.y_offset or roi.width or roi.height:
        region = (roi.x_offset, roi.y_offset, roi.width, roi.height)
    else:
        region = (0, 0, msg.width or image_size[0] * binning[0], msg.height or image_size[1] * binning[1])
    x, y, width, height = region
    full = (msg.width or x + width, msg.height or y + height)
    if width == 0 or height == 0 or x + width > full[0] or y + height > full[1]:
        raise InputError(f'CameraInfo roi {width}x{height}+{x}+{y} is empty or outside the '
                         f'{full[0]}x{full[1]} calibration resolution')
    expected = (width // binning[0], height // binning[1])
    if expected != tuple(image_size):
        described = f'{full[0]}x{full[1]}'
        if region != (0, 0, *full):
            described += f' roi {width}x{height}+{x}+{y}'
        if binning != (1, 1):
            described += f' binned {binning[0]}x{binning[1]}'
        if described != f'{expected[0]}x{expected[1]}':
            described += f' (an image of {expected[0]}x{expected[1]})'
        raise InputError(f'CameraInfo is for {described} but the image is '
                         f'{image_size[0]}x{image_size[1]}')
    return region, full


def check_plausible_intrinsics(K: np.ndarray, full_size: tuple[int, int]) -> None:
    """Raise ValueError for a full-resolution K that cannot be a camera: a focal length below
    MIN_FOCAL_FRACTION of the image side, a principal point outside -1..2 times the image side,
    or a skew larger than fx (a shear over 45 degrees)."""
    max_fov = int(np.degrees(2 * np.arctan(0.5 / MIN_FOCAL_FRACTION)))
    for name, focal, centre, side, axis in (('fx', K[0, 0], K[0, 2], full_size[0], 'width'),
                                            ('fy', K[1, 1], K[1, 2], full_size[1], 'height')):
        minimum = MIN_FOCAL_FRACTION * side
        if focal < minimum:
            raise ValueError(f'focal length {name}={focal:g} px is below {minimum:g} px '
                             f'({MIN_FOCAL_FRACTION:.0%} of the {side} px {axis}: a field of view over '
                             f'{max_fov} degrees)')
        if not -side <= centre <= 2 * side:
            raise ValueError(f'principal point c{name[1]}={centre:g} px is outside [{-side}, {2 * side}] '
                             f'px (-1 to 2 times the {side} px {axis})')
    if abs(K[0, 1]) > K[0, 0]:
        raise ValueError(f'skew {K[0, 1]:g} px exceeds fx={K[0, 0]:g} px (a shear over 45 degrees)')


def crop_and_bin_intrinsics(K: np.ndarray, offset: tuple[int, int], binning: tuple[int, int]) -> np.ndarray:
    """Full-resolution K -> K of the ROI at offset (x, y), binned (bx, by); distortion unchanged."""
    K = K.copy()
    K[:2, 2] -= offset
    K[0] /= binning[0]
    K[1] /= binning[1]
    return K


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
