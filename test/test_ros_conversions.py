import struct
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip('metrabs_ros.msg', reason='messages not built: run scripts/setup_env.sh')
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from oracle import human_pose  # noqa: E402
from metrabs_ros.estimator import PoseResult  # noqa: E402
from metrabs_ros.ros.conversions import (InputError, camera_from_info, compressed_image_size,  # noqa: E402
                                         compressed_to_rgb, image_to_rgb, marker_array_msg,
                                         skeleton_array_msg, transforms)
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


@pytest.mark.parametrize('encoding, order', [('rgb16', slice(None)), ('bgr16', slice(None, None, -1)),
                                             ('mono16', slice(0, 1))])
@pytest.mark.parametrize('big_endian', [False, True])
def test_16_bit_images_keep_their_high_byte(encoding, order, big_endian):
    """16-bit encodings become 8-bit by / 256 (cv_bridge's scaling), in either byte order."""
    high = RGB[..., order]
    words = high.astype(np.uint16) * 256 + 77  # the low byte must not matter
    raw = words.astype('>u2' if big_endian else '<u2').view(np.uint8).reshape(6, 5, -1)
    msg = image_msg(encoding, raw)
    msg.is_bigendian = big_endian
    expected = RGB if encoding != 'mono16' else np.repeat(RGB[..., :1], 3, -1)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


@pytest.mark.parametrize('encoding, layout', [('yuv422', 'UYVY'), ('uyvy', 'UYVY'),
                                              ('yuv422_yuy2', 'YUYV'), ('yuyv', 'YUYV')])
def test_yuv422_images_decode_luma_in_pixel_order(encoding, layout):
    """A grey ramp in 4:2:2 (neutral chroma 128): grey RGB, brightness rising left to right,
    so the two luma samples of each pair are read from the right bytes."""
    luma = np.tile(np.linspace(30, 220, 8).astype(np.uint8), (4, 1))
    pairs = luma.reshape(4, 4, 2)
    neutral = np.full((4, 4), 128, np.uint8)
    if layout == 'UYVY':
        raw = np.stack([neutral, pairs[..., 0], neutral, pairs[..., 1]], -1)
    else:
        raw = np.stack([pairs[..., 0], neutral, pairs[..., 1], neutral], -1)
    rgb = image_to_rgb(image_msg(encoding, raw.reshape(4, 8, 2))).astype(int)
    assert rgb.shape == (4, 8, 3)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() <= 2  # grey
    assert np.all(np.diff(rgb[..., 1], axis=1) > 0)  # every pixel brighter than its left one


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_mosaics_demosaic_to_their_colour(pattern):
    """A uniform colour sampled in each ROS Bayer pattern (first row: its first two letters)
    demosaics back to that colour."""
    colour = {'r': 200, 'g': 110, 'b': 30}
    mosaic = np.zeros((8, 8), np.uint8)
    for i, letter in enumerate(pattern):
        mosaic[i // 2::2, i % 2::2] = colour[letter]
    rgb = image_to_rgb(image_msg(f'bayer_{pattern}8', mosaic[..., None]))
    np.testing.assert_allclose(rgb[2:-2, 2:-2].reshape(-1, 3).mean(0), [200, 110, 30], atol=3)


@pytest.mark.parametrize('msg, message', [
    (Image(height=2, width=2, encoding='16UC1', step=4, data=bytes(8)), 'encoding'),
    (Image(height=2, width=3, encoding='yuv422', step=6, data=bytes(12)), 'even width'),
    (Image(height=2, width=2, encoding='mono16', step=2, data=bytes(4)), 'smaller than a row'),
    (Image(height=0, width=2, encoding='rgb8', step=6, data=b''), 'empty'),
    (Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(7)), 'too short'),
])
def test_bad_images_raise_one_clear_error(msg, message):
    with pytest.raises(InputError, match=message):
        image_to_rgb(msg)


def info(k=(500, 0, 320, 0, 510, 240, 0, 0, 1), d=(-0.1, 0.02, 0, 0, 0), model='plumb_bob',
         size=(640, 480), binning=(0, 0), roi=(0, 0, 0, 0)):
    """roi: (x_offset, y_offset, width, height)."""
    x, y, width, height = roi
    return CameraInfo(width=size[0], height=size[1], k=[float(v) for v in k],
                      d=[float(v) for v in d], distortion_model=model, binning_x=binning[0],
                      binning_y=binning[1],
                      roi=RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height))


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


@pytest.mark.parametrize('binning, roi, image_size, K', [
    ((2, 2), (0, 0, 0, 0), (320, 240), [[250, 0, 160], [0, 255, 120]]),
    ((0, 0), (100, 50, 320, 240), (320, 240), [[500, 0, 220], [0, 510, 190]]),
    ((2, 2), (100, 50, 320, 240), (160, 120), [[250, 0, 110], [0, 255, 95]]),
    ((2, 1), (100, 50, 320, 240), (160, 240), [[250, 0, 110], [0, 510, 190]]),
    ((0, 0), (500, 0, 100, 100), (100, 100), [[500, 0, -180], [0, 510, 240]]),  # centre off the ROI
])
def test_binning_and_roi_adjust_intrinsics_and_expected_size(binning, roi, image_size, K):
    camera, warning = camera_from_info(info(binning=binning, roi=roi), 55, image_size)
    assert warning is None and camera.image_size == image_size
    np.testing.assert_allclose(camera.K, K + [[0, 0, 1]])
    np.testing.assert_allclose(camera.distortion_coeffs[:2], [-0.1, 0.02])


def test_binned_roi_camera_projects_and_undistorts_like_the_full_camera():
    full, _ = camera_from_info(info(d=(-0.3, 0.1, 0.001, -0.002, 0)), 55, (640, 480))
    binned, _ = camera_from_info(info(d=(-0.3, 0.1, 0.001, -0.002, 0), binning=(2, 2),
                                      roi=(100, 50, 320, 240)), 55, (160, 120))
    points = np.random.default_rng(1).uniform([-0.5, -0.4, 2], [0.5, 0.4, 4], (20, 3))
    full_pixels = full.project(points)
    binned_pixels = (full_pixels - [100, 50]) / 2
    np.testing.assert_allclose(binned.project(points), binned_pixels, atol=1e-9)
    np.testing.assert_allclose(binned.unproject(binned_pixels), full.unproject(full_pixels), atol=1e-9)


@pytest.mark.parametrize('msg, image_size, message', [
    (info(binning=(2, 2)), (640, 480),
     r'CameraInfo is for 640x480 binned 2x2 \(an image of 320x240\) but the image is 640x480'),
    (info(roi=(100, 50, 320, 240)), (640, 480),
     r'CameraInfo is for 640x480 roi 320x240\+100\+50 \(an image of 320x240\) but the image is 640x480'),
    (info(roi=(400, 0, 320, 240)), (320, 240),
     r'CameraInfo roi 320x240\+400\+0 is empty or outside the 640x480 calibration resolution'),
    (info(roi=(10, 10, 0, 0)), (640, 480), r'roi 0x0\+10\+10 is empty'),
])
def test_binning_or_roi_that_does_not_fit_the_image_is_rejected(msg, image_size, message):
    with pytest.raises(InputError, match=message):
        camera_from_info(msg, 55, image_size)


@pytest.mark.parametrize('k, message', [
    ((1e-3, 0, 320, 0, 510, 240, 0, 0, 1),
     r'invalid CameraInfo: focal length fx=0.001 px is below 6.4 px \(1% of the 640 px width: '
     r'a field of view over 177 degrees\)'),
    ((500, 0, 320, 0, 4, 240, 0, 0, 1), r'focal length fy=4 px is below 4.8 px \(1% of the 480 px height'),
    ((500, 0, 1300, 0, 510, 240, 0, 0, 1),
     r'invalid CameraInfo: principal point cx=1300 px is outside \[-640, 1280\] px \(-1 to 2 times the '
     r'640 px width\)'),
    ((500, 0, 320, 0, 510, -500, 0, 0, 1), r'principal point cy=-500 px is outside \[-480, 960\] px'),
    ((500, 600, 320, 0, 510, 240, 0, 0, 1),
     r'invalid CameraInfo: skew 600 px exceeds fx=500 px \(a shear over 45 degrees\)'),
    ((500, 0, 320, 0, 510, 240, 0.1, 0, 1), r'invalid CameraInfo: intrinsic matrix must be'),
])
def test_intrinsics_that_cannot_be_a_camera_are_rejected(k, message):
    with pytest.raises(InputError, match=message):
        camera_from_info(info(k=k), 55, (640, 480))
    with pytest.raises(InputError, match=message.split(' px ')[0]):  # checked at full resolution
        camera_from_info(info(k=k, binning=(2, 2)), 55, (320, 240))


def test_unusual_but_possible_intrinsics_are_accepted():
    for k in [(7, 0, -600, 0, 5, 900, 0, 0, 1), (500, -400, 320, 0, 510, 240, 0, 0, 1)]:
        camera, _ = camera_from_info(info(k=k), 55, (640, 480))
        np.testing.assert_allclose(camera.K.ravel(), k)


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


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG, built row by row: no width x height array in memory."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the packed bits
    idat = b''.join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', idat) + chunk(b'IEND', b'')


def fail_if_decoded(*args, **kwargs):
    raise AssertionError('cv2.imdecode called for an image rejected by its header')


def test_png_builder_makes_real_pngs():
    data = png_of_zeros(13, 7)
    assert compressed_image_size(data) == (13, 7)
    np.testing.assert_array_equal(compressed_to_rgb(CompressedImage(format='png', data=data)),
                                  np.zeros((7, 13, 3), np.uint8))


def test_huge_png_is_rejected_from_its_header_without_decoding(monkeypatch):
    data = png_of_zeros(20000, 20000)
    assert len(data) < 100_000  # a 1-bit PNG of 20000x20000 zeros is about 50 kB
    monkeypatch.setattr(cv2, 'imdecode', fail_if_decoded)
    with pytest.raises(InputError, match=r'compressed image exceeds max_image_pixels \(50000000\): '
                                         r'its header says 20000x20000; not decoded'):
        compressed_to_rgb(CompressedImage(format='png', data=data), max_pixels=50_000_000)


def jpeg_with_size(width: int, height: int, progressive: bool = False) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim width x height."""
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    data = bytearray(cv2.imencode('.jpg', RGB, flags)[1].tobytes())
    sof = data.index(b'\xff\xc2' if progressive else b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def test_huge_jpeg_is_rejected_from_its_frame_header_without_decoding(monkeypatch):
    data = jpeg_with_size(60000, 50000)
    monkeypatch.setattr(cv2, 'imdecode', fail_if_decoded)
    with pytest.raises(InputError, match='its header says 60000x50000; not decoded'):
        compressed_to_rgb(CompressedImage(format='jpeg', data=data))


def test_jpeg_padded_with_thousands_of_markers_is_rejected_quickly(monkeypatch):
    padded = b'\xff\xd8' + b'\xff\xfe\x00\x02' * 1_000_000 + jpeg_with_size(30000, 30000)[2:]
    monkeypatch.setattr(cv2, 'imdecode', fail_if_decoded)
    with pytest.raises(InputError, match='compressed JPEG has over 1024 markers before its frame header'):
        compressed_to_rgb(CompressedImage(format='jpeg', data=padded))
    assert compressed_image_size(b'\xff\xd8' + b'\xff' * 100 + jpeg_with_size(7, 9)[2:]) == (7, 9)


@pytest.mark.parametrize('data, size', [
    (cv2.imencode('.png', RGB)[1].tobytes(), (5, 6)),
    (cv2.imencode('.jpg', RGB)[1].tobytes(), (5, 6)),
    (jpeg_with_size(5, 6, progressive=True), (5, 6)),
    (cv2.imencode('.bmp', RGB)[1].tobytes(), None),  # other formats: decoded, then checked
    (b'\xff\xd8\xff\xe0\x00', None), (b'\x89PNG\r\n\x1a\n', None), (b'x', None),
])
def test_compressed_image_size_reads_png_and_jpeg_headers(data, size):
    assert compressed_image_size(data) == size


def test_other_formats_are_still_checked_after_decoding():
    bmp = CompressedImage(format='bmp', data=cv2.imencode('.bmp', RGB[..., ::-1])[1].tobytes())
    np.testing.assert_array_equal(compressed_to_rgb(bmp), RGB)
    with pytest.raises(InputError, match=r'image of 5x6 exceeds max_image_pixels \(10\)'):
        compressed_to_rgb(bmp, max_pixels=10)
