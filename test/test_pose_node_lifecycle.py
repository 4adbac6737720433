"""Lifecycle transitions driven over the node's lifecycle services (autostart off)."""
import pytest

pytest.importorskip('metrabs_ros.msg', reason='messages not built: run scripts/setup_env.sh')
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from node_harness import CameraPeer, node_process, private_ros_domain  # noqa: E402


def test_configure_activate_deactivate_cleanup(tmp_path):
    with private_ros_domain(), node_process(
            tmp_path, '/lc_cam', 'autostart:=false', 'suppress_implausible_poses:=false',
            'stale_after_s:=0.0', 'publish_debug_image:=true',
            'publish_joint_frames:=true') as (process, log):
        camera = CameraPeer('/lc_cam')
        debug_images = []
        camera.node.create_subscription(Image, 'debug_image', debug_images.append, 10)
        change = camera.node.create_client(ChangeState, '/lc_cam/metrabs_pose/change_state')
        get = camera.node.create_client(GetState, '/lc_cam/metrabs_pose/get_state')
        assert change.wait_for_service(timeout_sec=60), log.read_text()[-2000:]

        def state():
            future = get.call_async(GetState.Request())
            assert camera.spin_until(future.done, 10)
            return future.result().current_state.id

        def transition(transition_id):
            future = change.call_async(ChangeState.Request(
                transition=Transition(id=transition_id)))
            assert camera.spin_until(future.done, 120), log.read_text()[-2000:]
            return future.result().success

        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        camera.publish(10)
        camera.spin_for(1.0)
        assert not camera.skeletons  # not subscribed before activation
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        camera.publish(11)
        assert camera.spin_until(lambda: camera.output_for(11), 60), log.read_text()[-2000:]
        assert camera.spin_until(lambda: any(m.header.stamp.sec == 11 for m in debug_images), 10)
        debug = next(m for m in debug_images if m.header.stamp.sec == 11)
        assert (debug.width, debug.height, debug.encoding) == (320, 240, 'rgb8')
        assert camera.spin_until(lambda: any(t.header.stamp.sec == 11 for m in camera.tf
                                             for t in m.transforms), 10)
        children = {t.child_frame_id for m in camera.tf for t in m.transforms
                    if t.header.stamp.sec == 11}
        person = camera.output_for(11).skeletons[0].id
        assert {f'body_{person}', f'body_{person}/pelv', f'body_{person}/lwri'} <= children
        assert len(children) == 2 * 25
        assert transition(Transition.TRANSITION_DEACTIVATE)
        camera.publish(12)
        camera.spin_for(1.0)
        assert camera.output_for(12) is None  # inactive: no output
        assert transition(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert transition(Transition.TRANSITION_ACTIVATE)
        camera.publish(13)
        assert camera.spin_until(lambda: camera.output_for(13), 60), log.read_text()[-2000:]
        camera.node.destroy_node()
