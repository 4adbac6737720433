"""The pose node in its own process, driven over real DDS by a test node in this process."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('metrabs_ros.msg', reason='messages not built: run scripts/setup_env.sh')
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from metrabs_ros.model import Metrabs, ModelConfig  # noqa: E402
from metrabs_ros.msg import SkeletonArray  # noqa: E402
from metrabs_ros.skeletons import get_skeleton  # noqa: E402
from metrabs_ros.weights import save_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SKELETON = get_skeleton('smpl_24')
BOXES_XYXY = [[40.0, 30.0, 110.0, 200.0, 0.9], [180.0, 40.0, 240.0, 190.0, 0.8]]
WIDTH, HEIGHT = 320, 240


class FixedBoxes(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('boxes', torch.tensor(BOXES_XYXY))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.boxes


@pytest.fixture(scope='module')
def ros_env(tmp_path_factory):
    """A private DDS domain on loopback for this module's processes."""
    domain = str(100 + os.getpid() % 100)
    saved = {k: os.environ.get(k) for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')}
    os.environ.update(ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    rclpy.init()
    yield
    rclpy.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope='module')
def node_process(ros_env, tmp_path_factory):
    root = tmp_path_factory.mktemp('node')
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='smpl_24', crop_side=128)
    save_checkpoint(Metrabs(cfg), root / 'model')
    torch.jit.script(FixedBoxes()).save(str(root / 'detector.ts'))
    log = open(root / 'node.log', 'w')
    # As pose.launch.py starts it: the installed executable with the package's params.yaml.
    process = subprocess.Popen(
        [sys.executable, str(REPO / 'nodes' / 'pose_node'), '--ros-args',
         '--params-file', str(REPO / 'config' / 'params.yaml'),
         '-r', '__ns:=/cam', '-p', f'model_path:={root / "model"}',
         '-p', f'detector:={root / "detector.ts"}', '-p', 'suppress_implausible_poses:=false',
         '-p', 'reliability:=reliable', '-p', 'stale_after_s:=0.0',
         '-p', 'diagnostics_period_s:=0.2'],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    yield process, root / 'node.log'
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


class Camera:
    """Test-side node publishing Image + CameraInfo and collecting the pose node's outputs."""

    def __init__(self):
        self.node = rclpy.create_node('test_camera', namespace='/cam')
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, 'image', qos)
        self.info_pub = self.node.create_publisher(CameraInfo, 'camera_info', qos)
        self.skeletons, self.markers, self.diagnostics, self.tf = [], [], [], []
        from tf2_msgs.msg import TFMessage
        self.node.create_subscription(TFMessage, '/tf', self.tf.append, 100)
        self.node.create_subscription(SkeletonArray, 'skeletons', self.skeletons.append, 10)
        self.node.create_subscription(MarkerArray, 'markers', self.markers.append, 10)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)

    def publish(self, sec, encoding='rgb8', k=(300.0, 0, 160, 0, 300.0, 120, 0, 0, 1), width=WIDTH):
        channels = 1 if encoding == 'mono16' else 3
        pixels = np.random.default_rng(sec).integers(0, 255, (HEIGHT, width * channels * (
            2 if encoding == 'mono16' else 1)), dtype=np.uint8)
        image = Image(height=HEIGHT, width=width, encoding=encoding, step=pixels.shape[1],
                      data=pixels.tobytes())
        info = CameraInfo(width=WIDTH, height=HEIGHT, k=[float(v) for v in k],
                          d=[-0.05, 0.01, 0.0, 0.0, 0.0], distortion_model='plumb_bob')
        for msg in (image, info):
            msg.header.stamp.sec, msg.header.frame_id = sec, 'cam_optical'
        self.image_pub.publish(image)
        self.info_pub.publish(info)

    def spin_until(self, condition, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition():
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return condition()


def diagnostic_values(camera) -> dict:
    return {kv.key: kv.value for kv in camera.diagnostics[-1].status[0].values}


@pytest.fixture(scope='module')
def camera(node_process):
    cam = Camera()
    process, log = node_process
    ready = cam.spin_until(lambda: len(cam.diagnostics) > 0 or process.poll() is not None, 120)
    assert ready and process.poll() is None, log.read_text()[-3000:]
    yield cam
    cam.node.destroy_node()


def test_skeletons_markers_and_diagnostics_over_dds(camera, node_process):
    for sec in range(100, 104):
        camera.publish(sec)
        assert camera.spin_until(lambda: any(m.header.stamp.sec == sec for m in camera.skeletons),
                                 60), node_process[1].read_text()[-3000:]
    by_stamp = {m.header.stamp.sec: m for m in camera.skeletons}
    assert set(range(100, 104)) <= set(by_stamp)
    ids = None
    for sec in range(100, 104):
        msg = by_stamp[sec]
        assert msg.header.frame_id == 'cam_optical'
        assert len(msg.skeletons) == 2
        for person in msg.skeletons:
            assert person.skeleton == 'smpl_24' and len(person.joints3d) == 24
            assert np.all(np.isfinite([[p.x, p.y, p.z] for p in person.joints3d]))
        frame_ids = sorted(s.id for s in msg.skeletons)
        ids = ids or frame_ids
        assert frame_ids == ids  # same people keep their ids
    camera.spin_until(lambda: len(camera.markers) >= 4, 10)
    marker_msg = camera.markers[-1]
    assert marker_msg.markers[0].action == Marker.DELETEALL
    assert sorted(m.id for m in marker_msg.markers if m.ns == 'bones') == ids
    assert camera.spin_until(lambda: any(t.header.stamp.sec == 103 for m in camera.tf
                                         for t in m.transforms), 10)
    frames = [t for m in camera.tf for t in m.transforms if t.header.stamp.sec == 103]
    assert sorted(t.child_frame_id for t in frames) == [f'body_{i}' for i in ids]
    assert all(t.header.frame_id == 'cam_optical' for t in frames)
    pelvis = by_stamp[103].skeletons[0].joints3d[SKELETON.index('pelv')]
    body = next(t for t in frames if t.child_frame_id == f'body_{by_stamp[103].skeletons[0].id}')
    np.testing.assert_allclose([body.transform.translation.x, body.transform.translation.y,
                                body.transform.translation.z], [pelvis.x, pelvis.y, pelvis.z])
    assert camera.spin_until(lambda: int(diagnostic_values(camera)['frames_processed']) >= 4, 5)
    assert diagnostic_values(camera)['device'] == 'cpu'


def test_bad_frames_are_skipped_and_the_next_good_one_served(camera, node_process):
    bad_frames = [
        (200, dict(encoding='mono16'), 'unsupported image encoding'),
        (201, dict(k=(float('nan'), 0, 160, 0, 300.0, 120, 0, 0, 1)), 'NaN or inf'),
        (202, dict(width=WIDTH + 8), 'image is'),
    ]
    failed_before = int(diagnostic_values(camera)['frames_failed'])
    for count, (sec, kwargs, _) in enumerate(bad_frames, start=1):
        camera.publish(sec, **kwargs)  # one at a time: the node keeps only the newest frame
        assert camera.spin_until(
            lambda: int(diagnostic_values(camera)['frames_failed']) >= failed_before + count, 30)
    camera.publish(203)
    assert camera.spin_until(lambda: any(m.header.stamp.sec == 203 for m in camera.skeletons),
                             60), node_process[1].read_text()[-3000:]
    assert not any(m.header.stamp.sec in (200, 201, 202) for m in camera.skeletons)
    assert camera.spin_until(
        lambda: camera.diagnostics[-1].status[0].level == DiagnosticStatus.WARN, 5)
    log = node_process[1].read_text()
    assert all(message in log for _, _, message in bad_frames)


def test_runtime_parameters_take_effect_and_read_only_are_refused(camera, node_process):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    client = AsyncParameterClient(camera.node, '/cam/metrabs_pose')
    assert client.wait_for_services(timeout_sec=10)

    def set_parameters(*params):
        future = client.set_parameters(list(params))
        assert camera.spin_until(future.done, 10)
        return future.result().results

    # The fixed detector scores its two people 0.9 and 0.8: a 0.85 threshold keeps one.
    [result] = set_parameters(Parameter('detector_threshold', value=0.85))
    assert result.successful
    camera.publish(300)
    assert camera.spin_until(lambda: any(m.header.stamp.sec == 300 for m in camera.skeletons), 60)
    assert len([m for m in camera.skeletons if m.header.stamp.sec == 300][0].skeletons) == 1
    [result] = set_parameters(Parameter('detector_threshold', value=0.3))
    assert result.successful

    refused = set_parameters(Parameter('model_path', value='/elsewhere'),
                             Parameter('num_aug', value=500),
                             Parameter('device', value='cuda'))
    assert not any(r.successful for r in refused)
    assert 'read-only' in refused[0].reason.lower() or 'read only' in refused[0].reason.lower()


def settled_diagnostics(camera, quiet_s: float = 1.0) -> dict:
    """Diagnostics once nothing is in flight: spin quiet_s (several publishing periods)."""
    deadline = time.monotonic() + quiet_s
    while time.monotonic() < deadline:
        rclpy.spin_once(camera.node, timeout_sec=0.05)
    return diagnostic_values(camera)


def rss_kib(pid: int) -> int:
    with open(f'/proc/{pid}/status') as f:
        return int(next(line for line in f if line.startswith('VmRSS')).split()[1])


def test_flood_keeps_only_the_latest_frame(camera, node_process):
    process = node_process[0]
    before = settled_diagnostics(camera)
    rss_before = rss_kib(process.pid)
    published = 0
    start = time.monotonic()
    while time.monotonic() - start < 4.0:  # ~100 Hz for 4 s
        camera.publish(1000 + published)
        published += 1
        rclpy.spin_once(camera.node, timeout_sec=0.0)
        time.sleep(0.01)
    last = 1000 + published - 1
    assert camera.spin_until(lambda: any(m.header.stamp.sec == last for m in camera.skeletons), 60)
    after = settled_diagnostics(camera)
    received = int(after['frames_received']) - int(before['frames_received'])
    processed = int(after['frames_processed']) - int(before['frames_processed'])
    dropped = int(after['frames_dropped']) - int(before['frames_dropped'])
    outputs = len([m for m in camera.skeletons if m.header.stamp.sec >= 1000])
    print(f'flood: published {published}, received {received}, processed {processed}, '
          f'dropped {dropped}, outputs {outputs}, RSS {rss_before} -> {rss_kib(process.pid)} KiB')
    assert 0 < received <= published  # KEEP_LAST queues may shed some of a flood before sync
    assert dropped > 0 and processed < received
    assert processed + dropped == received  # every frame is either served or counted as dropped
    assert outputs == processed
    assert rss_kib(process.pid) - rss_before < 100 * 1024  # no growth with the backlog
