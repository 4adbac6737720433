"""Test harness: start the pose node in its own process and talk to it over DDS."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.msg import SkeletonArray
from metrabs_ros.ros.node_process import pose_node_process
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.weights import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SKELETON = get_skeleton('smpl_24')
BOXES_XYXY = [[40.0, 30.0, 110.0, 200.0, 0.9], [180.0, 40.0, 240.0, 190.0, 0.8]]
WIDTH, HEIGHT = 320, 240
K = (300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0)


class FixedBoxes(torch.nn.Module):
    """TorchScript detector finding the same two people (scores 0.9 and 0.8) in every image."""

    def __init__(self):
        super().__init__()
        self.register_buffer('boxes', torch.tensor(BOXES_XYXY))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.boxes


def write_model_and_detector(root: Path) -> tuple[Path, Path]:
    """A small random-weight ResNet-18 smpl_24 model (crop side 128) and the fixed detector."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='smpl_24', crop_side=128)
    save_checkpoint(Metrabs(cfg), root / 'model')
    torch.jit.script(FixedBoxes()).save(str(root / 'detector.ts'))
    return root / 'model', root / 'detector.ts'


@contextmanager
def private_ros_domain(domain_id: int | None = None):
    """rclpy on a DDS domain of this process's own (default 100 + pid % 100), discovery limited
    to loopback."""
    keys = ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(ROS_DOMAIN_ID=str(100 + os.getpid() % 100 if domain_id is None
                                        else domain_id),
                      ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    rclpy.init()
    try:
        yield
    finally:
        rclpy.shutdown()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@contextmanager
def node_process(root: Path, namespace: str, *parameters: str):
    """The pose node as pose.launch.py starts it: params.yaml, then overrides ('name:=value')."""
    model, detector = write_model_and_detector(root)
    log_path = root / 'node.log'
    overrides = dict(model_path=model, detector=detector, reliability='reliable',
                     diagnostics_period_s=0.2)
    overrides.update(p.split(':=', 1) for p in parameters)
    with pose_node_process(namespace, overrides, log_path,
                           REPO / 'config' / 'params.yaml') as process:
        yield process, log_path


OUTPUT_QUEUE_DEPTH = 1000


class CameraPeer:
    """Test-side node: publishes Image (or CompressedImage) + CameraInfo, collects outputs."""

    def __init__(self, namespace: str, compressed: bool = False):
        self.node = rclpy.create_node('test_camera', namespace=namespace)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.compressed = compressed
        self.image_pub = self.node.create_publisher(
            CompressedImage if compressed else Image,
            'image/compressed' if compressed else 'image', qos)
        self.info_pub = self.node.create_publisher(CameraInfo, 'camera_info', qos)
        self.skeletons, self.markers, self.diagnostics, self.tf = [], [], [], []
        # Deep enough that no output is shed here while a flood test spins this node only once
        # per frame it publishes (tests count every skeleton message the node sends).
        self.node.create_subscription(SkeletonArray, 'skeletons', self.skeletons.append,
                                      OUTPUT_QUEUE_DEPTH)
        self.node.create_subscription(MarkerArray, 'markers', self.markers.append,
                                      OUTPUT_QUEUE_DEPTH)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)
        self.node.create_subscription(TFMessage, '/tf', self.tf.append, 100)

    def publish(self, sec: int, nanosec: int = 0, encoding: str = 'rgb8', k=K, width: int = WIDTH,
                send_info: bool = True):
        pixels = np.random.default_rng(sec).integers(0, 255, (HEIGHT, width, 3), dtype=np.uint8)
        if self.compressed:
            image = CompressedImage(format='jpeg',
                                    data=cv2.imencode('.jpg', pixels)[1].tobytes())
        else:
            data = pixels.reshape(HEIGHT, -1)
            if encoding == 'mono16':
                data = np.concatenate([data[:, :width], data[:, :width]], axis=1)
            image = Image(height=HEIGHT, width=width, encoding=encoding, step=data.shape[1],
                          data=data.tobytes())
        info = CameraInfo(width=WIDTH, height=HEIGHT, k=[float(v) for v in k],
                          d=[-0.05, 0.01, 0.0, 0.0, 0.0], distortion_model='plumb_bob')
        for msg in (image, info):
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
            msg.header.frame_id = 'cam_optical'
        self.image_pub.publish(image)
        if send_info:
            self.info_pub.publish(info)

    def spin_until(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition():
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return condition()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def diagnostic_values(self) -> dict:
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}

    def output_for(self, sec: int):
        return next((m for m in self.skeletons if m.header.stamp.sec == sec), None)

    def wait_until_node_ready(self, process, log_path: Path) -> None:
        ready = self.spin_until(lambda: self.diagnostics or process.poll() is not None, 120)
        assert ready and process.poll() is None, log_path.read_text()[-3000:]
