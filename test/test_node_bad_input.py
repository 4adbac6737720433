"""Bad input over real DDS (issue 14): every case sends something broken to the pose node
running in a process of its own, then checks the node's log line for it, that the process is
still alive, and that the next good frame is served.

One node process per fixture serves all the per-frame, parameter and lifecycle cases (raw
images; a second one for compressed input); the node logs each cause at most once per 5 s
(``_warn(..., throttle=True)`` keyed by the first 30 characters of the reason), so cases that
share a cause are spaced out by `Node.wait_out_throttle`. Start-up failures each get a short-
lived node of their own, all started at once.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

pytest.importorskip('metrabs_ros.msg', reason='messages not built: run scripts/setup_env.sh')
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest  # noqa: E402

from metrabs_ros.ros.node_process import pose_node_process  # noqa: E402
from node_harness import (HEIGHT, K, REPO, SKELETON, WIDTH, CameraPeer,  # noqa: E402
                          private_ros_domain, write_model_and_detector)

WARN_PERIOD_S = 5.0  # pose_node.WARN_PERIOD_S: one log line per cause and period
FRAME_TIMEOUT_S = 30.0
DEFAULT_D = [-0.05, 0.01, 0.0, 0.0, 0.0]


# Environment ---------------------------------------------------------------------------------
def bad_input_domain():
    """rclpy on a DDS domain of this test file's own (60..89, apart from node_harness's
    100..199), discovery limited to loopback."""
    return private_ros_domain(60 + os.getpid() % 30)


@contextmanager
def start_node(log_path: Path, namespace: str, model: Path, detector: Path, *parameters: str):
    """The pose node as pose.launch.py starts it (params.yaml, then 'name:=value' overrides),
    with an already written model."""
    overrides = dict(model_path=model, detector=detector, reliability='reliable',
                     diagnostics_period_s=0.2)
    overrides.update(p.split(':=', 1) for p in parameters)
    with pose_node_process(namespace, overrides, log_path,
                           REPO / 'config' / 'params.yaml') as process:
        yield process


def model_copy(model: Path, target: Path) -> Path:
    """A model directory of its own: config.json copied (to be edited), weights linked."""
    target.mkdir(parents=True)
    for item in model.iterdir():
        if item.name == 'config.json':
            shutil.copy(item, target / item.name)
        else:
            (target / item.name).symlink_to(item)
    return target


@pytest.fixture(scope='module')
def domain():
    with bad_input_domain():
        yield


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    """(model directory, detector file) written once for every node of this file."""
    return write_model_and_detector(tmp_path_factory.mktemp('bad_input_model'))


# Messages --------------------------------------------------------------------------------------
def pixels(seed: int, width: int = WIDTH, height: int = HEIGHT, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def image(encoding: str = 'rgb8', width: int = WIDTH, height: int = HEIGHT,
          step: int | None = None, data: bytes | None = None, seed: int = 0) -> Image:
    """An Image; by default `data` is random pixels of the encoding, rows padded to `step`."""
    channels = {'mono8': 1, 'mono16': 2, 'yuv422': 2, 'rgba8': 4, 'bgra8': 4}.get(encoding, 3)
    row = width * channels
    step = row if step is None else step
    if data is None:
        rows = np.zeros((height, max(step, row)), np.uint8)
        rows[:, :row] = pixels(seed, width, height, channels).reshape(height, row)
        data = rows[:, :step].tobytes()
    return Image(height=height, width=width, encoding=encoding, step=step, data=data)


def camera_info(k=K, d=DEFAULT_D, model: str = 'plumb_bob', width: int = WIDTH,
                height: int = HEIGHT, **fields) -> CameraInfo:
    return CameraInfo(width=width, height=height, k=[float(v) for v in k],
                      d=[float(v) for v in d], distortion_model=model, **fields)


def with_k(**entries) -> list[float]:
    """K with some entries replaced: fx, fy, cx, cy."""
    index = dict(fx=0, cx=2, fy=4, cy=5)
    k = list(K)
    for name, value in entries.items():
        k[index[name]] = value
    return k


def jpeg(seed: int = 0) -> bytes:
    return cv2.imencode('.jpg', pixels(seed))[1].tobytes()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height RGB but whose data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2,
                                                                0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(b'\0' * 1000)) + chunk(b'IEND', b''))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is patched to claim width x height."""
    data = bytearray(jpeg(3))
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def reprojection_error_px(msg, k) -> float:
    """Largest distance between joints2d and joints3d projected with intrinsics k (no
    distortion): small when the node used k."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    worst = 0.0
    for skeleton in msg.skeletons:
        p3 = np.array([[p.x, p.y, p.z] for p in skeleton.joints3d])
        p2 = np.array([[p.x, p.y] for p in skeleton.joints2d])
        projected = (p3 / p3[:, 2:3]) @ k.T
        worst = max(worst, float(np.max(np.linalg.norm(projected[:, :2] - p2, axis=1))))
    return worst


# The node under test ------------------------------------------------------------------------
LOG_LINE = re.compile(r'^\[(WARN|ERROR|FATAL)\]', re.MULTILINE)


@dataclass
class Node:
    """A running pose node and the test-side peer that talks to it."""
    namespace: str
    process: object
    log_path: Path
    model: Path
    compressed: bool = False
    camera: CameraPeer = None
    warned_at: dict = field(default_factory=dict)  # throttle key -> when its line was seen
    last_good: tuple[int, int] | None = None
    seed: int = 1

    def __post_init__(self):
        self.camera = CameraPeer(self.namespace, compressed=self.compressed)
        self.name = f'{self.namespace}/metrabs_pose'
        self.params = AsyncParameterClient(self.camera.node, self.name)
        self.change = self.camera.node.create_client(ChangeState, f'{self.name}/change_state')
        self.get = self.camera.node.create_client(GetState, f'{self.name}/get_state')

    # Time and messages
    def now(self) -> tuple[int, int]:
        return self.camera.node.get_clock().now().seconds_nanoseconds()

    def publish(self, img, info: CameraInfo | None, stamp: tuple[int, int]) -> None:
        for msg in (img, info):
            if msg is not None:
                msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
                msg.header.frame_id = 'cam_optical'
        self.camera.image_pub.publish(img)
        if info is not None:
            self.camera.info_pub.publish(info)

    def good_image(self):
        self.seed += 1
        if self.compressed:
            return CompressedImage(format='jpeg', data=jpeg(self.seed))
        return image(seed=self.seed)

    def outputs(self, stamp: tuple[int, int]) -> list:
        return [m for m in self.camera.skeletons
                if (m.header.stamp.sec, m.header.stamp.nanosec) == tuple(stamp)]

    # Observation
    def spin_until(self, condition: Callable[[], object], timeout_s: float) -> bool:
        return bool(self.camera.spin_until(condition, timeout_s))

    def spin_for(self, seconds: float) -> None:
        self.camera.spin_for(seconds)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def log_mark(self) -> int:
        return len(self.log_path.read_bytes())

    def log_since(self, mark: int) -> str:
        return self.log_path.read_bytes()[mark:].decode(errors='replace')

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def diagnostics(self) -> list:
        """This node's DiagnosticStatus messages, oldest first (several nodes share
        /diagnostics: told apart by the model directory they report)."""
        statuses = [m.status[0] for m in self.camera.diagnostics]
        return [s for s in statuses
                if {kv.key: kv.value for kv in s.values}.get('model') == str(self.model)]

    def diagnostic_values(self) -> dict:
        statuses = self.diagnostics()
        return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}

    def skipped(self) -> int:
        """frames_failed + frames_stale as the latest diagnostics report them."""
        values = self.diagnostic_values()
        return int(values.get('frames_failed', 0)) + int(values.get('frames_stale', 0))

    def wait_out_throttle(self, key: str | None) -> None:
        """Let the node's 5 s log throttle for `key` run out, so its line is logged again."""
        if key in self.warned_at:
            left = self.warned_at[key] + WARN_PERIOD_S + 0.3 - time.monotonic()
            if left > 0:
                self.spin_for(left)

    def wait_for_line(self, mark: int, pattern: str, timeout_s: float = 5.0) -> list[str]:
        """The new log lines since `mark` that match `pattern` (regex), waiting for one."""
        def lines():
            return [line for line in self.log_since(mark).splitlines()
                    if re.search(pattern, line)]
        self.spin_until(lines, timeout_s)
        return lines()

    # Serving
    def serve_good(self, timeout_s: float = FRAME_TIMEOUT_S) -> tuple[int, int]:
        """Publish one good frame stamped now; assert it is served (two skeletons)."""
        stamp = self.now()
        self.publish(self.good_image(), camera_info(), stamp)
        assert self.spin_until(lambda: self.outputs(stamp), timeout_s), \
            f'good frame {stamp} not served\n{self.tail()}'
        assert len(self.outputs(stamp)[0].skeletons) == 2
        self.last_good = stamp
        return stamp

    def serve_good_eventually(self, timeout_s: float = FRAME_TIMEOUT_S) -> tuple[int, int]:
        """After (re)activation, while the new subscription is being discovered: publish a good
        frame every 0.5 s until one is served; return its stamp."""
        deadline = time.monotonic() + timeout_s
        sent = []
        while time.monotonic() < deadline:
            stamp = self.now()
            sent.append(stamp)
            self.publish(self.good_image(), camera_info(), stamp)
            if self.spin_until(lambda: any(self.outputs(s) for s in sent), 0.5):
                served = next(s for s in sent if self.outputs(s))
                self.last_good = served
                return served
        raise AssertionError(f'no good frame served after activation\n{self.tail()}')

    # Services
    def set_parameter(self, name: str, value):
        future = self.params.set_parameters([Parameter(name, value=value)])
        assert self.spin_until(future.done, 10), f'set_parameters {name} timed out'
        return future.result().results[0]

    def get_parameter(self, name: str):
        future = self.params.get_parameters([name])
        assert self.spin_until(future.done, 10), f'get_parameters {name} timed out'
        return parameter_value_to_python(future.result().values[0])

    def transition(self, transition_id: int, flow_period_s: float | None = None,
                   timeout_s: float = 60.0) -> tuple[bool, float]:
        """Call change_state; with flow_period_s, keep publishing good frames meanwhile.
        Returns (success, seconds the call took)."""
        assert self.change.wait_for_service(timeout_sec=10), self.tail()
        start = time.monotonic()
        future = self.change.call_async(ChangeState.Request(
            transition=Transition(id=transition_id)))
        next_frame = start
        while not future.done() and time.monotonic() - start < timeout_s:
            if flow_period_s is not None and time.monotonic() >= next_frame:
                self.publish(self.good_image(), camera_info(), self.now())
                next_frame += flow_period_s
            rclpy.spin_once(self.camera.node, timeout_sec=0.02)
        assert future.done(), f'transition {transition_id} timed out\n{self.tail()}'
        return future.result().success, time.monotonic() - start

    def state(self) -> int:
        assert self.get.wait_for_service(timeout_sec=30), self.tail()
        future = self.get.call_async(GetState.Request())
        assert self.spin_until(future.done, 10)
        return future.result().current_state.id

    def endpoints(self, topic: str, kind: str = 'publishers') -> int:
        """How many publishers (or subscriptions) this node has on `topic`."""
        info = (self.camera.node.get_publishers_info_by_topic if kind == 'publishers'
                else self.camera.node.get_subscriptions_info_by_topic)(topic)
        return sum(1 for e in info if e.node_name == 'metrabs_pose'
                   and e.node_namespace == self.namespace)


@contextmanager
def running_node(tmp: Path, written, namespace: str, *parameters: str, compressed=False):
    model_dir, detector = written
    # A model directory per node: /diagnostics is shared and told apart by the model path.
    model = model_copy(model_dir, tmp / 'model')
    with start_node(tmp / 'node.log', namespace, model, detector, *parameters) as process:
        node = Node(namespace, process, tmp / 'node.log', model, compressed)
        assert node.spin_until(lambda: node.diagnostics() or not node.alive(), 120) and \
            node.alive(), node.tail()
        node.serve_good_eventually(60)
        try:
            yield node
        finally:
            node.camera.node.destroy_node()


@pytest.fixture(scope='module')
def raw(domain, written, tmp_path_factory):
    """The node on raw sensor_msgs/Image input, active (autostart)."""
    with running_node(tmp_path_factory.mktemp('raw_node'), written, '/bad_cam',
                      'suppress_implausible_poses:=false', 'stale_after_s:=5.0') as node:
        yield node


# Per-frame cases ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameCase:
    """Send `build()` = (image, camera_info); expect the log line `log` (a regex; None: no
    warning or error at all) and the frame served (`served`) or skipped."""
    build: Callable[[], tuple]
    log: str | None = None
    served: bool = False
    key: str | None = None  # the node's throttle key when it is not the reason's first 30 chars
    check: Callable | None = None  # check(output message) for served frames


def skipping(reason: str, key: str | None = None, **kwargs) -> dict:
    """Expect 'skipping a frame: <reason>' (reason literal) keyed like the node keys it."""
    return dict(log='skipping a frame: ' + re.escape(reason), key=key or reason[:30], **kwargs)


def run_frame_case(node: Node, case: FrameCase,
                   stamp: Callable[[], tuple[int, int]] | None = None,
                   after_bad: Callable[[], None] | None = None) -> str:
    """Send the case's frame, check its log line and outcome, then (after `after_bad`) that
    the next good frame is served and the node still runs; returns the log line (or '').
    `stamp()` gives the bad frame's stamp (default: now)."""
    node.wait_out_throttle(case.key)
    mark, skipped_before = node.log_mark(), node.skipped()
    stamp = stamp() if stamp is not None else node.now()
    img, info = case.build()
    node.publish(img, info, stamp)
    # Done with it once it is served or counted as skipped (the log line may be throttled).
    assert node.spin_until(lambda: node.outputs(stamp) or node.skipped() > skipped_before,
                           FRAME_TIMEOUT_S), f'no outcome for the bad frame\n{node.tail()}'
    line = ''
    if case.log is not None:
        lines = node.wait_for_line(mark, case.log)
        assert len(lines) == 1, f'expected one line matching {case.log!r}:\n' + \
            node.log_since(mark)
        line = lines[0]
        node.warned_at[case.key] = time.monotonic()
    if after_bad is not None:
        after_bad()
    good = node.serve_good()
    assert node.alive(), node.tail()
    new = node.log_since(mark)
    unexpected = [m.group(0) for m in re.finditer(r'^\[(WARN|ERROR|FATAL)\].*$', new, re.MULTILINE)
                  if case.log is None or not re.search(case.log, m.group(0))]
    assert not unexpected, f'unexpected log lines: {unexpected}'
    if case.served:
        assert node.outputs(stamp), f'bad-but-usable frame not served\n{new}'
        assert len(node.outputs(stamp)[0].skeletons) == 2
        if case.check is not None:
            case.check(node.outputs(stamp)[0])
    else:
        assert not node.outputs(stamp), 'a rejected frame was published'
    assert node.outputs(good)
    print(f'\nLOGLINE {line}')
    return line


def k_checked(k):
    def check(msg):
        assert reprojection_error_px(msg, k) < 2.0, 'intrinsics not used as expected'
    return check


FRAME_CASES = [
    # Encodings
    pytest.param(FrameCase(lambda: (image('32FC1'), camera_info()), **skipping(
        "unsupported image encoding '32FC1'; supported: rgb8, bgr8, rgba8, bgra8, mono8, "
        "rgb16, bgr16, rgba16, bgra16, mono16, yuv422, uyvy, yuv422_yuy2, yuyv, bayer_rggb8, "
        "bayer_bggr8, bayer_gbrg8, bayer_grbg8")),
        id='encoding-32FC1-unsupported'),
    pytest.param(FrameCase(lambda: (image('yuv422'), camera_info()), served=True),
                 id='encoding-yuv422-served'),
    pytest.param(FrameCase(lambda: (image('mono16'), camera_info()), served=True),
                 id='encoding-mono16-served'),
    pytest.param(FrameCase(lambda: (image('mono8'), camera_info()), served=True),
                 id='encoding-mono8-served'),
    pytest.param(FrameCase(lambda: (image('bgr8'), camera_info()), served=True),
                 id='encoding-bgr8-served'),
    pytest.param(FrameCase(lambda: (image('rgba8'), camera_info()), served=True),
                 id='encoding-rgba8-served'),
    pytest.param(FrameCase(lambda: (image('bgra8'), camera_info()), served=True),
                 id='encoding-bgra8-served'),
    # Row layout and sizes
    pytest.param(FrameCase(lambda: (image(step=WIDTH * 3 - 3), camera_info()), **skipping(
        f'image step {WIDTH * 3 - 3} is smaller than a row of {WIDTH} px rgb8 '
        f'({WIDTH * 3} bytes)')), id='step-smaller-than-row'),
    pytest.param(FrameCase(lambda: (image(data=bytes(1000)), camera_info()), **skipping(
        f'image data too short: 1000 bytes for {WIDTH}x{HEIGHT} rgb8 with step {WIDTH * 3}')),
        id='data-shorter-than-height-x-step'),
    pytest.param(FrameCase(lambda: (image(width=0, data=b''), camera_info()),
                           **skipping(f'empty image (0x{HEIGHT})')), id='zero-width'),
    pytest.param(FrameCase(lambda: (image(height=0, data=b''), camera_info()),
                           **skipping(f'empty image ({WIDTH}x0)')), id='zero-height'),
    pytest.param(FrameCase(
        lambda: (image(width=100_000, height=100_000, step=300_000, data=bytes(64)),
                 camera_info()),
        **skipping('image of 100000x100000 exceeds max_image_pixels (50000000)')),
        id='oversized-header-tiny-data'),
    # CameraInfo
    pytest.param(FrameCase(lambda: (image(), camera_info(with_k(fx=float('nan')))),
                           **skipping('CameraInfo K or D contains NaN or inf')), id='K-fx-nan'),
    pytest.param(FrameCase(lambda: (image(), camera_info(with_k(fx=-300.0))), **skipping(
        'invalid CameraInfo: focal lengths must be positive, got fx=-300.0, fy=300.0')),
        id='K-fx-negative'),
    pytest.param(FrameCase(lambda: (image(), camera_info(k=[0.0] * 9)), log=re.escape(
        'CameraInfo has no intrinsics (K all zeros); using a 55 deg field of view'), key='fov',
        served=True), id='K-all-zeros-default-fov'),
    pytest.param(FrameCase(lambda: (image(), camera_info(width=640, height=480)), **skipping(
        f'CameraInfo is for 640x480 but the image is {WIDTH}x{HEIGHT}')),
        id='camera-info-size-mismatch'),
    pytest.param(FrameCase(lambda: (image(), camera_info(model='fisheye62')), **skipping(
        "unsupported distortion model 'fisheye62'; supported: plumb_bob, rational_polynomial")),
        id='distortion-model-unknown'),
    pytest.param(FrameCase(lambda: (image(), camera_info(d=[0.1, 0.01, 0.0])), **skipping(
        'invalid CameraInfo: distortion must have one of (0, 4, 5, 8, 12) coefficients '
        '(k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4]]]), got 3')),
        id='distortion-3-coefficients'),
    pytest.param(FrameCase(lambda: (image(), camera_info(with_k(fy=float('inf')))),
                           **skipping('CameraInfo K or D contains NaN or inf')), id='K-fy-inf'),
    pytest.param(FrameCase(lambda: (image(), camera_info(with_k(fx=0.0))), **skipping(
        'invalid CameraInfo: focal lengths must be positive, got fx=0.0, fy=300.0')),
        id='K-fx-zero'),
    pytest.param(FrameCase(
        lambda: (image(), camera_info(d=[-0.1, 0.02, 0.0, 0.0], model='equidistant')),
        **skipping("unsupported distortion model 'equidistant'; "
                   'supported: plumb_bob, rational_polynomial')), id='distortion-equidistant'),
    pytest.param(FrameCase(lambda: (image(), camera_info(d=[0.0] * 5, model='fisheye62')),
                           served=True, check=k_checked(K)),
                 id='distortion-model-unknown-with-zero-D-served'),
    pytest.param(FrameCase(lambda: (image(), camera_info(
        d=[-0.05, 0.01, 0.0, 0.0, 0.0, 0.001, 0.0, 0.0], model='rational_polynomial')),
        served=True), id='distortion-rational-polynomial-8-served'),
    pytest.param(FrameCase(lambda: (image(), camera_info(d=[0.0] * 5)), served=True,
                           check=k_checked(K)), id='K-used-as-given'),
    # Binning, ROI and plausible intrinsics: commit 8e4593d (issue 14)
    pytest.param(FrameCase(lambda: (image(), camera_info(with_k(fx=1e-3))), **skipping(
        'invalid CameraInfo: focal length fx=0.001 px is below 3.2 px (1% of the 320 px width: '
        'a field of view over 177 degrees)')), id='K-fx-1e-3-implausible'),
    pytest.param(FrameCase(lambda: (image(), camera_info(with_k(cx=1000.0))), **skipping(
        'invalid CameraInfo: principal point cx=1000 px is outside [-320, 640] px (-1 to 2 '
        'times the 320 px width)')), id='K-principal-point-far-outside'),
    pytest.param(FrameCase(lambda: (image(), camera_info([300.0, 400.0, 160.0, 0.0, 300.0, 120.0,
                                                          0.0, 0.0, 1.0])), **skipping(
        'invalid CameraInfo: skew 400 px exceeds fx=300 px (a shear over 45 degrees)')),
        id='K-skew-over-fx'),
    pytest.param(FrameCase(lambda: (image(width=WIDTH // 2), camera_info(
        d=[0.0] * 5, binning_x=2)), served=True,
        check=k_checked(with_k(fx=K[0] / 2, cx=K[2] / 2))),
        id='binning-x2-half-width-served-with-K-scaled'),
    pytest.param(FrameCase(lambda: (image(), camera_info(binning_x=2)), **skipping(
        f'CameraInfo is for {WIDTH}x{HEIGHT} binned 2x1 (an image of {WIDTH // 2}x{HEIGHT}) but '
        f'the image is {WIDTH}x{HEIGHT}')), id='binning-x2-full-width-image'),
    pytest.param(FrameCase(lambda: (image(width=160, height=120), camera_info(
        d=[0.0] * 5, roi=RegionOfInterest(x_offset=80, y_offset=60, width=160, height=120))),
        served=True, check=k_checked(with_k(cx=K[2] - 80, cy=K[5] - 60))),
        id='roi-160x120-served-with-principal-point-shifted'),
    pytest.param(FrameCase(lambda: (image(width=160, height=120), camera_info(
        roi=RegionOfInterest(x_offset=300, y_offset=60, width=160, height=120))), **skipping(
        f'CameraInfo roi 160x120+300+60 is empty or outside the {WIDTH}x{HEIGHT} calibration '
        'resolution')), id='roi-outside-the-calibration'),
]


@pytest.mark.parametrize('case', FRAME_CASES)
def test_bad_frame(raw, case):
    run_frame_case(raw, case)


def test_max_image_pixels_rejects_then_serves_again(raw):
    assert raw.set_parameter('max_image_pixels', 10_000).successful
    try:
        run_frame_case(raw, FrameCase(lambda: (image(), camera_info()), **skipping(
            f'image of {WIDTH}x{HEIGHT} exceeds max_image_pixels (10000)')),
            after_bad=lambda: raw.set_parameter('max_image_pixels', 50_000_000))
    finally:
        assert raw.set_parameter('max_image_pixels', 50_000_000).successful


# Stamps ---------------------------------------------------------------------------------------
def shifted(node: Node, seconds: int):
    def stamp():
        sec, nanosec = node.now()
        return sec + seconds, nanosec
    return stamp


def test_stale_stamp(raw):
    run_frame_case(raw, FrameCase(lambda: (image(), camera_info()), key='stale',
                                  log=r'skipping a frame stamped (29|30|31)\.\d\d s old '
                                      r'\(stale_after_s 5\.0\); is the clock or the camera off\?'),
                   stamp=shifted(raw, -30))


def test_duplicate_stamp_is_skipped_with_a_warning(raw):
    # A second frame with the same stamp would repeat the TF frames (tf2: TF_REPEATED_DATA).
    stamp = raw.serve_good()
    mark = raw.log_mark()
    raw.publish(raw.good_image(), camera_info(), stamp)  # the same stamp once more
    raw.spin_for(1.5)
    assert len(raw.outputs(stamp)) == 1, raw.tail()
    raw.serve_good()
    assert raw.alive()
    lines = LOG_LINE.findall(raw.log_since(mark))
    assert len(lines) == 1 and 'same stamp as the previous frame' in raw.log_since(mark), \
        raw.log_since(mark)


def test_stamp_back_in_time_restarts_tracks(raw):
    raw.serve_good()

    def back():  # half a second before the last frame served
        sec, nanosec = raw.last_good
        return (sec, nanosec - 500_000_000) if nanosec >= 500_000_000 else \
            (sec - 1, nanosec + 500_000_000)
    run_frame_case(raw, FrameCase(lambda: (image(), camera_info()), key='time_jump', served=True,
                                  log=re.escape('image stamps went back in time (bag loop or '
                                                'clock reset?): restarting tracks')),
                   stamp=back)


def test_future_stamp(raw):
    run_frame_case(raw, FrameCase(lambda: (image(), camera_info()), key='stale',
                                  log=r'skipping a frame stamped (28|29|30)\.\d\d s in the future '
                                      r'\(stale_after_s 5\.0\); is the clock or the camera off\?'),
                   stamp=shifted(raw, 30))


def test_missing_camera_info_is_reported_and_nothing_published(raw):
    image_topic = f'{raw.namespace}/image'
    raw.spin_for(0.5)  # diagnostics (every 0.2 s) up to date with the last frame served
    before = raw.diagnostic_values()
    mark, count = raw.log_mark(), len(raw.diagnostics())
    sent = []

    def silent_warning():
        return [s for s in raw.diagnostics()[count:] if s.level == DiagnosticStatus.WARN
                and 'but no synchronized frame for' in s.message]

    deadline = time.monotonic() + 15
    while not silent_warning() and time.monotonic() < deadline:
        sent.append(raw.now())
        raw.publish(raw.good_image(), None, sent[-1])  # image, never its CameraInfo
        raw.spin_for(0.5)
    status = silent_warning()
    assert status, raw.diagnostics()[-1]
    message = status[0].message
    assert message.startswith(f'1 publisher(s) on {image_topic} but no synchronized frame for')
    assert 'check the QoS reliability and that camera_info has the image stamps' in message
    print(f'\nLOGLINE (diagnostics) {message}')
    values = {kv.key: kv.value for kv in status[-1].values}
    assert int(values['images_received']) > int(before['images_received'])
    assert values['camera_infos_received'] == before['camera_infos_received']
    assert not any(raw.outputs(s) for s in sent)
    raw.serve_good()
    assert raw.alive()
    assert not LOG_LINE.search(raw.log_since(mark)), raw.log_since(mark)


# Runtime parameters ---------------------------------------------------------------------------
JOINTS = ', '.join(SKELETON.joint_names)
PARAMETER_CASES = [
    pytest.param('detector_threshold', 1.5, re.escape(
        'Parameter detector_threshold out of range Min: 0.0, Max: 1.0, value: 1.5'),
        id='detector_threshold-out-of-range'),
    # rclpy (kilted) formats the types as their numbers: 2 = INTEGER, 4 = STRING.
    pytest.param('num_aug', 'five',
                 r"Wrong parameter type, expected '(2|Type\.INTEGER)' got '(4|Type\.STRING)'",
                 id='num_aug-wrong-type'),
    # Every parameter with choices is read-only: rclpy refuses before the choices are checked.
    pytest.param('smoothing', 'kalman', re.escape(
        'Trying to set a read-only parameter: smoothing.'), id='smoothing-choices-read-only'),
    pytest.param('tf_frame_prefix', '/bad prefix ', re.escape(
        "tf_frame_prefix '/bad prefix ' is not allowed: letters, digits, _ and single inner /, "
        'no leading /, no spaces'), id='tf_frame_prefix-pattern'),
    pytest.param('tf_root_joint', 'nose', re.escape(
        "tf_root_joint 'nose' is not a joint of skeleton 'smpl_24': use one of "
        f"{JOINTS} or '' for the mean of the joints"), id='tf_root_joint-not-in-skeleton'),
    pytest.param('model_path', '/elsewhere', re.escape(
        'Trying to set a read-only parameter: model_path.'), id='model_path-read-only'),
]


@pytest.mark.parametrize('name, value, reason', PARAMETER_CASES)
def test_bad_parameter_is_refused(raw, name, value, reason):
    before = raw.get_parameter(name)
    mark = raw.log_mark()
    result = raw.set_parameter(name, value)
    assert not result.successful
    assert re.fullmatch(reason, result.reason), result.reason
    print(f'\nLOGLINE (SetParametersResult.reason) {result.reason}')
    assert raw.get_parameter(name) == before
    raw.serve_good()
    assert raw.alive()
    assert not LOG_LINE.search(raw.log_since(mark)), raw.log_since(mark)


# Lifecycle ------------------------------------------------------------------------------------
def test_deactivate_activate_while_frames_flow(raw):
    mark = raw.log_mark()
    assert raw.transition(Transition.TRANSITION_DEACTIVATE, flow_period_s=0.1)[0]
    assert raw.state() == State.PRIMARY_STATE_INACTIVE
    while_inactive = []
    for _ in range(5):
        while_inactive.append(raw.now())
        raw.publish(raw.good_image(), camera_info(), while_inactive[-1])
        raw.spin_for(0.2)
    assert raw.transition(Transition.TRANSITION_ACTIVATE, flow_period_s=0.1)[0]
    raw.serve_good_eventually()
    raw.serve_good()
    assert not any(raw.outputs(s) for s in while_inactive)
    assert raw.alive()
    new = raw.log_since(mark)
    assert new.count('input QoS: ') == 1, new  # logged by every activate
    assert not LOG_LINE.search(new), new


def test_cleanup_configure_cycles_leave_one_tf_publisher(raw):
    mark = raw.log_mark()
    for _ in range(3):
        for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                           Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert raw.transition(transition, flow_period_s=0.1)[0], raw.tail()
        raw.serve_good_eventually()
    assert raw.state() == State.PRIMARY_STATE_ACTIVE
    expected = {('/tf', 'publishers'): 1, ('/tf', 'subscriptions'): 1,
                ('/tf_static', 'subscriptions'): 1, ('/diagnostics', 'publishers'): 1,
                (f'{raw.namespace}/skeletons', 'publishers'): 1,
                (f'{raw.namespace}/image', 'subscriptions'): 1}

    def counts():
        return {key: raw.endpoints(*key) for key in expected}
    raw.spin_until(lambda: counts() == expected, 10)
    assert counts() == expected
    assert raw.camera.node.count_publishers('/tf') == 1
    new = raw.log_since(mark)
    assert new.count('configured: model') == 3 and new.count('input QoS: ') == 3, new
    assert not LOG_LINE.search(new), new
    raw.serve_good()


def test_deactivate_during_a_long_frame(raw):
    mark = raw.log_mark()
    assert raw.set_parameter('num_aug', 20).successful
    assert raw.set_parameter('antialias_factor', 4).successful
    try:
        # How long one slow frame takes here (2 people x 20 augmentations, 4x supersampled).
        start = time.monotonic()
        slow = raw.serve_good(timeout_s=120)
        slow_s = time.monotonic() - start
        assert slow_s > 1.0, f'the slow frame took only {slow_s:.2f} s: make it slower'
        received = int(raw.diagnostic_values()['frames_received'])
        in_flight = raw.now()
        start = time.monotonic()
        raw.publish(raw.good_image(), camera_info(), in_flight)
        # The worker takes a frame as soon as it is synchronized (it is idle).
        assert raw.spin_until(
            lambda: int(raw.diagnostic_values()['frames_received']) > received, 10)
        ok, deactivate_s = raw.transition(Transition.TRANSITION_DEACTIVATE)
        assert ok and deactivate_s < 2.0, f'deactivate took {deactivate_s:.2f} s'
        assert time.monotonic() - start < slow_s, 'the frame was not in flight any more'
        print(f'\nslow frame {slow_s:.2f} s, deactivate {deactivate_s * 1000:.0f} ms')
    finally:
        assert raw.set_parameter('num_aug', 1).successful
        assert raw.set_parameter('antialias_factor', 1).successful
    assert raw.transition(Transition.TRANSITION_ACTIVATE)[0]
    served = [raw.serve_good_eventually()] + [raw.serve_good() for _ in range(4)]
    raw.spin_until(lambda: time.monotonic() - start > 2 * slow_s + 1, 3 * slow_s + 2)
    raw.spin_for(0.5)
    assert not raw.outputs(in_flight), 'the in-flight frame was published after deactivate'
    assert [len(raw.outputs(s)) for s in served] == [1] * len(served), 'served twice'
    assert raw.outputs(slow)
    assert raw.alive()
    assert not LOG_LINE.search(raw.log_since(mark)), raw.log_since(mark)


# Compressed input -----------------------------------------------------------------------------
@pytest.fixture(scope='class')
def compressed(domain, written, tmp_path_factory):
    """The node on sensor_msgs/CompressedImage input, for the tests of one class."""
    with running_node(tmp_path_factory.mktemp('jpeg_node'), written, '/bad_jpeg',
                      'compressed_input:=true', 'suppress_implausible_poses:=false',
                      'stale_after_s:=5.0', compressed=True) as node:
        yield node


class TestCompressed:
    CASES = [
        pytest.param(FrameCase(lambda: (CompressedImage(format='jpeg', data=b'\xff\xd8\xff' + bytes(
            range(256)) * 4), camera_info()), **skipping(
            "cannot decode compressed image (format 'jpeg')")), id='jpeg-garbage'),
        pytest.param(FrameCase(lambda: (CompressedImage(format='jpeg', data=b''), camera_info()),
                               **skipping('empty compressed image')), id='empty-data'),
        pytest.param(FrameCase(lambda: (CompressedImage(
            format='png', data=cv2.imencode('.png', pixels(7))[1].tobytes()), camera_info()),
            served=True), id='png-served'),
        pytest.param(FrameCase(lambda: (CompressedImage(format='png', data=jpeg(8)),
                                        camera_info()), served=True),
                     id='format-field-wrong-still-decoded'),
        pytest.param(FrameCase(lambda: (CompressedImage(format='jpeg', data=jpeg(9)[:3000]),
                                        camera_info()), **skipping(
            "cannot decode compressed image (format 'jpeg')")), id='jpeg-truncated'),
    ]

    @pytest.mark.parametrize('case', CASES)
    def test_bad_compressed_frame(self, compressed, case):
        run_frame_case(compressed, case)

    @pytest.mark.parametrize('format_, header', [
        ('png', lambda: png_header(20_000, 20_000)), ('jpeg', lambda: jpeg_claiming(60_000, 60_000))],
        ids=['png-20000x20000', 'jpeg-60000x60000'])
    def test_huge_header_rejected_before_decoding(self, compressed, format_, header):
        node = compressed
        peak_before = peak_memory_mb(node.process.pid)
        size = '20000x20000' if format_ == 'png' else '60000x60000'
        run_frame_case(node, FrameCase(
            lambda: (CompressedImage(format=format_, data=header()), camera_info()), **skipping(
                f'compressed image exceeds max_image_pixels (50000000): its header says {size}; '
                'not decoded')))
        assert peak_memory_mb(node.process.pid) - peak_before < 300, 'the image was decoded'


def peak_memory_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return float('nan')


# Start-up / configure failures ------------------------------------------------------------------
def break_config(text: str | Callable[[dict], None]):
    def apply(model: Path) -> None:
        path = model / 'config.json'
        if callable(text):
            config = json.loads(path.read_text())
            text(config)
            path.write_text(json.dumps(config))
        else:
            path.write_text(text)
    return apply


STARTUP_CASES = {
    # id: (parameters, model change, regex the 'configure failed:' line must match)
    'config-json-invalid': ((), break_config('{"format": "metrabs_ros", '),
                            r'cannot read \S+/config\.json: JSONDecodeError'),
    'config-json-skeletons-list': ((), break_config(lambda c: c.update(skeletons=[])),
                                   r'config\.json.*skeletons|skeletons.*config\.json'),
    'config-json-skeletons-empty': ((), break_config(lambda c: c.update(skeletons={})),
                                    (r'config\.json: invalid model config: a model needs at '
                                     r'least one output skeleton')),
    'device-gpu': (('device:=gpu',), None,
                   re.escape("device must be one of auto, cpu, cuda; got 'gpu'")),
    'smoothing-kalman': (('smoothing:=kalman',), None,
                         re.escape("smoothing must be one of none, ema, one_euro; got 'kalman'")),
    'reliability-bogus': (('reliability:=bogus',), None,
                          r"reliability must be one of .*; got 'bogus'"),
    'skeleton-bogus': (('skeleton:=bogus',), None,
                       re.escape("skeleton 'bogus' is not one of this model's: smpl_24")),
    'tf_root_joint-bogus': (('tf_root_joint:=bogus',), None, re.escape(
        "tf_root_joint 'bogus' is not a joint of skeleton 'smpl_24': use one of pelv,")),
    'tf_frame_prefix-bad': (("tf_frame_prefix:='/bad prefix '",), None, re.escape(
        "tf_frame_prefix '/bad prefix ' is not allowed: letters, digits, _ and single inner /, "
        'no leading /, no spaces')),
}


@pytest.fixture(scope='module')
def failing_nodes(domain, written, tmp_path_factory):
    """Every start-up case's node, all started at once (autostart): {id: (process, log)}."""
    root = tmp_path_factory.mktemp('failing_nodes')
    model_dir, detector = written
    with ExitStack() as stack:
        nodes = {}
        for i, (case_id, (parameters, change, _)) in enumerate(STARTUP_CASES.items()):
            model = model_copy(model_dir, root / case_id / 'model')
            if change is not None:
                change(model)
            log = root / case_id / 'node.log'
            process = stack.enter_context(start_node(
                log, f'/failing_{i}', model, detector, *parameters))
            nodes[case_id] = (f'/failing_{i}', process, log)
        peer = rclpy.create_node('failure_probe', namespace='/failing_probe')
        stack.callback(peer.destroy_node)
        # Unwound first: stop them all at once (each takes about a second to shut down).
        stack.callback(lambda: [process.terminate() for _, process, _ in nodes.values()])
        yield nodes, peer


@pytest.mark.parametrize('case_id', list(STARTUP_CASES))
def test_configure_failure_at_start_up(failing_nodes, case_id):
    nodes, peer = failing_nodes
    namespace, process, log = nodes[case_id]
    pattern = STARTUP_CASES[case_id][2]

    def failed_lines():
        return [line for line in log.read_text(errors='replace').splitlines()
                if 'configure failed:' in line]
    deadline = time.monotonic() + 120
    while not failed_lines() and process.poll() is None and time.monotonic() < deadline:
        rclpy.spin_once(peer, timeout_sec=0.1)
    # The node stays up, unconfigured, and autostart does not try to activate it.
    get = peer.create_client(GetState, f'{namespace}/metrabs_pose/get_state')
    assert get.wait_for_service(timeout_sec=30), log.read_text()[-3000:]
    for _ in range(3):  # a response can be lost while nine nodes start on two cores: ask again
        future = get.call_async(GetState.Request())
        deadline = time.monotonic() + 10
        while not future.done() and time.monotonic() < deadline:
            rclpy.spin_once(peer, timeout_sec=0.1)
        if future.done():
            break
    text = log.read_text(errors='replace')
    assert process.poll() is None, text[-3000:]
    assert future.done() and future.result().current_state.id == \
        State.PRIMARY_STATE_UNCONFIGURED, text[-3000:]
    lines = failed_lines()
    assert len(lines) == 1, text[-3000:]
    assert lines[0].startswith('[ERROR]') and ': configure failed: ' in lines[0]
    assert 'No transition matching' not in text
    assert 'configured: model' not in text
    print(f'\nLOGLINE {lines[0]}')
    assert re.search(pattern, lines[0]), lines[0]
