"""The node's parameters, described once: name, default, description, range, read-only."""
from __future__ import annotations

import re
from dataclasses import dataclass

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)

from metrabs_ros.detection import DEFAULT_THRESHOLD
from metrabs_ros.ros.input_qos import RELIABILITY_CHOICES


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ''  # a string value must match it fully
    pattern_help: str = ''

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, read_only=self.read_only,
                                         description=self.description)
        if self.choices:
            descriptor.additional_constraints = 'one of: ' + ', '.join(self.choices)
        if self.range is not None and isinstance(self.default, int) and not isinstance(
                self.default, bool):
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.range[0]), to_value=int(self.range[1]), step=1)]
        elif self.range is not None:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.range[0]), to_value=float(self.range[1]), step=0.0)]
        return descriptor


PARAMETERS = (
    # Loaded at configure: read-only.
    Param('model_path', '', "model directory (metrabs_ros checkpoint or official release) or a "
          "release name (metrabs-fetch --list); '' = the bundled synthetic-humanoid model", True),
    Param('allow_download', False, 'model_path may name a registered release (metrabs-fetch '
          '--list) that is not cached yet: download it at configure', True),
    Param('detector', '', "person detector: centre-point detector directory, TorchScript file or "
          "'architecture:weights_file'; '' with model_path '' = the bundled detector", True),
    Param('device', 'auto', 'auto, cpu or cuda', True, choices=('auto', 'cpu', 'cuda')),
    Param('skeleton', '', "output joint set; '' = the model's first", True),
    Param('reliability', 'auto', "input QoS reliability: 'auto' = what the camera's "
          "publishers offer (as ros2 topic echo chooses), or 'reliable' / 'best_effort'", True,
          choices=RELIABILITY_CHOICES),
    Param('queue_size', 10, 'synchronizer queue (pending stamps)', True, (1, 1000)),
    Param('smoothing', 'none', 'joint smoothing across frames', True,
          choices=('none', 'ema', 'one_euro')),
    Param('autostart', True, 'configure and activate at start', True),
    Param('compressed_input', False,
          'subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image', True),
    # Changeable at runtime.
    Param('default_fov_degrees', 55.0, 'field of view used when CameraInfo has no K',
          range=(1.0, 179.0)),
    Param('num_aug', 1, 'test-time augmentations per person', range=(1, 20)),
    Param('internal_batch_size', 64, 'crops per model call', range=(1, 1024)),
    Param('antialias_factor', 1, 'crop supersampling factor', range=(1, 4)),
    Param('detector_threshold', DEFAULT_THRESHOLD, 'detector score threshold', range=(0.0, 1.0)),
    Param('detector_nms_iou_threshold', 0.7, 'detector NMS IoU threshold', range=(0.0, 1.0)),
    Param('max_detections', -1, 'people per image, -1 = no limit', range=(-1, 1000)),
    Param('suppress_implausible_poses', True, 'drop implausible poses and duplicates'),
    Param('track_max_distance_m', 0.5, 'tracking: max root motion between frames',
          range=(0.01, 10.0)),
    Param('track_max_age_s', 1.0, 'tracking: forget people unseen this long', range=(0.0, 60.0)),
    Param('max_image_pixels', 50_000_000, 'reject larger images', range=(1, 1_000_000_000)),
    Param('stale_after_s', 1.0, 'skip frames whose stamp is older than this (0 = never)',
          range=(0.0, 3600.0)),
    Param('target_frame', '', "frame for all outputs ('' = the image's frame); looked up in TF "
          'at the image stamp; its z axis is the world-up for the crops'),
    Param('tf_timeout_s', 0.05, 'how long to wait for the target_frame transform',
          range=(0.0, 10.0)),
    Param('publish_markers', True, 'publish RViz markers (built only while subscribed)'),
    Param('marker_lifetime_s', 0.5, 'marker lifetime', range=(0.0, 60.0)),
    Param('publish_debug_image', False,
          'publish the input with 2D skeletons drawn (built only while subscribed)'),
    Param('publish_tf', True, 'publish a TF frame per person'),
    Param('publish_joint_frames', False, "also a TF frame per joint: '<prefix><id>/<joint>'"),
    Param('tf_frame_prefix', 'body_', 'TF child frame prefix, followed by the track id',
          pattern=r'([A-Za-z0-9_]+/?)*',
          pattern_help='letters, digits, _ and single inner /, no leading /, no spaces'),
    Param('tf_root_joint', 'pelv', "joint at the person frame's origin ('' = mean of joints)"),
    Param('diagnostics_period_s', 1.0, 'diagnostics publishing period', True, (0.05, 60.0)),
)


BY_NAME = {p.name: p for p in PARAMETERS}


def declare_all(node) -> dict:
    """Declare every parameter on node; return {name: value}."""
    for p in PARAMETERS:
        node.declare_parameter(p.name, p.default, p.descriptor())
    return {p.name: node.get_parameter(p.name).value for p in PARAMETERS}


def problem(name: str, value) -> str | None:
    """Why `value` is not allowed for parameter `name` (choices and patterns), or None."""
    spec = BY_NAME.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f'{name} must be one of {", ".join(spec.choices)}; got {value!r}'
    if spec.pattern and not re.fullmatch(spec.pattern, str(value)):
        return f'{name} {value!r} is not allowed: {spec.pattern_help}'
    return None


def startup_problems(values: dict) -> list[str]:
    """problem() of every declared value (read-only ones never reach the set callback)."""
    return [reason for name, value in values.items() if (reason := problem(name, value))]


def validate_choices(params) -> SetParametersResult:
    """Reject values outside a parameter's choices or pattern (rclpy checks types and ranges)."""
    for param in params:
        reason = problem(param.name, param.value)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)
