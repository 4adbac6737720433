"""Input edge cases against a second node process: compressed input, CameraInfo never synced,
stale stamps, oversized images."""
import pytest

pytest.importorskip('metrabs_ros.msg', reason='messages not built: run scripts/setup_env.sh')
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from node_harness import CameraPeer, node_process, private_ros_domain  # noqa: E402


@pytest.fixture(scope='module')
def running(tmp_path_factory):
    with private_ros_domain(), node_process(
            tmp_path_factory.mktemp('node_inputs'), '/jpeg_cam', 'compressed_input:=true',
            'suppress_implausible_poses:=false', 'stale_after_s:=2.0') as (process, log):
        camera = CameraPeer('/jpeg_cam', compressed=True)
        camera.wait_until_node_ready(process, log)
        yield camera, process, log
        camera.node.destroy_node()


def now(camera):
    return camera.node.get_clock().now().seconds_nanoseconds()


def test_never_synced_is_reported_then_compressed_frames_are_served(running):
    camera, _, log = running
    sec, nanosec = now(camera)
    camera.publish(sec, nanosec, send_info=False)  # an image without its CameraInfo
    camera.spin_for(1.0)
    status = camera.diagnostics[-1].status[0]
    assert status.level == DiagnosticStatus.WARN and 'no synchronized' in status.message
    assert not camera.skeletons
    sec, nanosec = now(camera)
    camera.publish(sec, nanosec)
    assert camera.spin_until(lambda: camera.output_for(sec), 60), log.read_text()[-3000:]
    assert len(camera.output_for(sec).skeletons) == 2


def test_stale_frames_are_skipped_with_a_warning(running):
    camera, _, log = running
    stale_before = int(camera.diagnostic_values()['frames_stale'])
    sec, nanosec = now(camera)
    camera.publish(sec - 10, nanosec)  # ten seconds old
    assert camera.spin_until(
        lambda: int(camera.diagnostic_values()['frames_stale']) == stale_before + 1, 30)
    assert camera.output_for(sec - 10) is None
    assert 'old (stale_after_s' in log.read_text()


def test_oversized_images_are_rejected_and_the_node_keeps_serving(running):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    camera, _, log = running
    client = AsyncParameterClient(camera.node, '/jpeg_cam/metrabs_pose')
    assert client.wait_for_services(timeout_sec=10)

    def set_max_pixels(value):
        future = client.set_parameters([Parameter('max_image_pixels', value=value)])
        assert camera.spin_until(future.done, 10) and future.result().results[0].successful

    set_max_pixels(10_000)  # smaller than the 320x240 test images
    failed_before = int(camera.diagnostic_values()['frames_failed'])
    sec, nanosec = now(camera)
    camera.publish(sec, nanosec)
    assert camera.spin_until(
        lambda: int(camera.diagnostic_values()['frames_failed']) == failed_before + 1, 30)
    assert 'exceeds max_image_pixels' in log.read_text()
    set_max_pixels(50_000_000)
    sec, nanosec = now(camera)
    camera.publish(sec, nanosec)
    assert camera.spin_until(lambda: camera.output_for(sec), 60)
