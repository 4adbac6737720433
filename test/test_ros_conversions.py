import numpy as np
import pytest

pytest.importorskip('metrabs_ros.msg', reason='messages not built: run scripts/setup_env.sh')
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from oracle import human_pose  # noqa: E402
from metrabs_ros.estimator import PoseResult  # noqa: E402
from metrabs_ros.ros.conversions import (InputError, camera_from_info, image_to_rgb,  # noqa: E402
                                         marker_array_msg, skeleton_array_msg, transforms)
from metrabs_ros.skeletons import get_skeleton  # noqa: E402

RGB = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)


def image_msg(encoding, pixels, pad=3):
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    return Image(height=height, width=width, encoding=encoding, step=padded.shape[1],
                 data=padded.tobytes())


@pytest.mark.parametrize('encoding, pixels', [
    ('rgb8', RGB), ('bgr8', RGB[..., ::-1]),
    ('rgba8', np.concatenate([RGB, np.full((6, 5, 1), 7, np.uint8)], -1)),
    ('bgra8', np.concatenate([RGB[..., ::-1], np.full((6, 5, 1), 7, np.uint8)], -1)),
])
def test_image_encodings_with_row_padding(encoding, pixels):
    np.testing.assert_array_equal(image_to_rgb(image_msg(encoding, pixels)), RGB)


def test_rgb_image_is_a_copy_not_a_view_of_the_message():
    msg = image_msg('rgb8', RGB, pad=0)
    rgb = image_to_rgb(msg)
    rgb[:] = 0
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_mono_image_becomes_grey_rgb():
    grey = RGB[..., 0]
    rgb = image_to_rgb(image_msg('mono8', grey[..., None]))
    np.testing.assert_array_equal(rgb, np.repeat(grey[..., None], 3, -1))


@pytest.mark.parametrize('msg, message', [
    (Image(height=2, width=2, encoding='16UC1', step=4, data=bytes(8)), 'encoding'),
    (Image(height=0, width=2, encoding='rgb8', step=6, data=b''), 'empty'),
    (Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(7)), 'too short'),
])
def test_bad_images_raise_one_clear_error(msg, message):
    with pytest.raises(InputError, match=message):
        image_to_rgb(msg)


def info(k=(500, 0, 320, 0, 510, 240, 0, 0, 1), d=(-0.1, 0.02, 0, 0, 0), model='plumb_bob',
         size=(640, 480)):
    return CameraInfo(width=size[0], height=size[1], k=[float(v) for v in k],
                      d=[float(v) for v in d], distortion_model=model)


def test_camera_info_with_distortion():
    camera, warning = camera_from_info(info(), 55, (640, 480))
    assert warning is None
    np.testing.assert_allclose(camera.K, [[500, 0, 320], [0, 510, 240], [0, 0, 1]])
    np.testing.assert_allclose(camera.distortion_coeffs[:2], [-0.1, 0.02])
    rational, _ = camera_from_info(info(d=[0.1] * 8, model='rational_polynomial'), 55, (640, 480))
    assert rational.distortion_coeffs[7] == pytest.approx(0.1)


def test_zero_intrinsics_fall_back_to_default_fov_with_warning():
    camera, warning = camera_from_info(info(k=[0] * 9, d=[]), 60, (640, 480))
    assert 'K all zeros' in warning
    assert camera.K[0, 0] == pytest.approx(640 / (2 * np.tan(np.deg2rad(30))))


@pytest.mark.parametrize('msg, message', [
    (info(k=(np.nan, 0, 320, 0, 510, 240, 0, 0, 1)), 'NaN or inf'),
    (info(d=(np.inf, 0, 0, 0, 0)), 'NaN or inf'),
    (info(size=(1280, 720)), 'image is 640x480'),
    (info(model='equidistant', d=(0.1, 0, 0, 0)), 'distortion model'),
    (info(k=(-5, 0, 320, 0, 510, 240, 0, 0, 1)), 'focal'),
])
def test_bad_camera_info_raises(msg, message):
    with pytest.raises(InputError, match=message):
        camera_from_info(msg, 55, (640, 480))


def result_of_two():
    skeleton = get_skeleton('smpl_24')
    poses = np.stack([human_pose(skeleton, (-0.5, 0, 3), 0), human_pose(skeleton, (0.7, 0, 4), 1)])
    return PoseResult(boxes=np.array([[10, 20, 30, 40, 0.9], [50, 60, 70, 80, 0.8]]),
                      poses3d=poses, poses2d=poses[..., :2] * 100,
                      uncertainty=np.full((2, 24), 0.01), skeleton=skeleton, frame='camera')


def test_skeleton_array_carries_the_arrays_in_metres():
    result, header = result_of_two(), Header(frame_id='cam_optical')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = skeleton_array_msg(result, np.array([4, 9]), header)
    assert msg.header.frame_id == 'cam_optical' and msg.header.stamp.nanosec == 345
    assert [s.id for s in msg.skeletons] == [4, 9]
    person = msg.skeletons[1]
    assert person.skeleton == 'smpl_24' and list(person.joint_names) == list(result.skeleton.joint_names)
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in person.joints3d], result.poses3d[1])
    np.testing.assert_allclose(list(person.box_xywh), [50, 60, 70, 80])
    assert person.score == pytest.approx(0.8)
    np.testing.assert_allclose(person.uncertainty, 0.01, rtol=1e-6)


def test_markers_start_with_deleteall_and_use_track_ids():
    result = result_of_two()
    msg = marker_array_msg(result, np.array([4, 9]), Header(frame_id='cam'))
    assert msg.markers[0].action == Marker.DELETEALL
    bones = [m for m in msg.markers if m.ns == 'bones']
    assert [m.id for m in bones] == [4, 9]
    assert len(bones[0].points) == 2 * len(result.skeleton.edges)
    joints = [m for m in msg.markers if m.ns == 'joints']
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in joints[1].points], result.poses3d[1])
    assert bones[0].color != bones[1].color
    assert all(m.header.frame_id == 'cam' for m in msg.markers)


def test_transforms_root_and_joint_frames():
    result = result_of_two()
    frames = transforms(result, np.array([4, 9]), Header(frame_id='cam'), root_joint='pelv',
                        joint_frames=True)
    assert len(frames) == 2 * 25
    body = frames[25]
    assert (body.header.frame_id, body.child_frame_id) == ('cam', 'body_9')
    pelvis = result.poses3d[1][0]
    t = body.transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], pelvis)
    wrist = frames[25 + 1 + result.skeleton.index('lwri')]
    assert (wrist.header.frame_id, wrist.child_frame_id) == ('body_9', 'body_9/lwri')
    t = wrist.transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], result.poses3d[1][result.skeleton.index('lwri')] - pelvis)


def test_compressed_png_decodes_exactly_and_jpeg_approximately():
    import cv2
    from sensor_msgs.msg import CompressedImage
    from metrabs_ros.ros.conversions import compressed_to_rgb
    png = CompressedImage(format='png', data=cv2.imencode('.png', RGB[..., ::-1])[1].tobytes())
    np.testing.assert_array_equal(compressed_to_rgb(png), RGB)
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (32, 1, 3))
    jpeg = CompressedImage(format='jpeg', data=cv2.imencode('.jpg', smooth)[1].tobytes())
    assert np.abs(compressed_to_rgb(jpeg).astype(int) - smooth).mean() < 3
    with pytest.raises(InputError, match='cannot decode'):
        compressed_to_rgb(CompressedImage(format='jpeg', data=b'not an image'))
    with pytest.raises(InputError, match='empty'):
        compressed_to_rgb(CompressedImage(format='jpeg', data=b''))
    with pytest.raises(InputError, match='exceeds max_image_pixels'):
        compressed_to_rgb(png, max_pixels=10)


def test_oversized_raw_image_is_rejected_before_copying():
    msg = Image(height=4000, width=5000, encoding='rgb8', step=15000, data=b'')
    with pytest.raises(InputError, match='exceeds max_image_pixels'):
        image_to_rgb(msg, max_pixels=10_000_000)
