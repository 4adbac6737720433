import numpy as np
import pytest

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
from metrabs_ros.camera import Camera  # noqa: E402
from metrabs_ros.crops import look_at  # noqa: E402
from metrabs_ros.data.dataset import load_sample, write_dataset  # noqa: E402
from metrabs_ros.data.generator import (TEST_CLIPS, TRAIN_CLIPS, GeneratorConfig,  # noqa: E402
                                        SyntheticGenerator, ideal_pixel_map)
from metrabs_ros.data.humanoid import CLIPS, Humanoid, load_clip  # noqa: E402
from metrabs_ros.skeletons import get_skeleton  # noqa: E402

SMALL = GeneratorConfig(image_size=(320, 240), min_visible_pixels=40)


@pytest.fixture(scope='module')
def generator():
    g = SyntheticGenerator(TRAIN_CLIPS, seed=3, config=SMALL)
    yield g
    g.close()


def test_same_seed_and_index_give_identical_samples(generator):
    other = SyntheticGenerator(TRAIN_CLIPS, seed=3, config=SMALL)
    a, b = generator.sample(7), other.sample(7)
    other.close()
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.joints3d, b.joints3d)
    assert a.clips == b.clips and a.frames == b.frames
    c = generator.sample(8)
    assert not np.array_equal(a.image, c.image)


def test_ground_truth_is_consistent_with_the_camera(generator):
    skeleton = get_skeleton('humanoid_15')
    n_people = 0
    for index in range(6):
        sample = generator.sample(index)
        n_people += len(sample.boxes)
        assert sample.joints3d.shape[1:] == (skeleton.n_joints, 3)
        assert np.all(sample.joints3d[..., 2] > 0)
        projected = sample.camera.project(sample.joints3d)
        assert np.abs(projected - sample.joints2d).max() < 0.5
        # Body-sized: 1.0 to 2.0 m between the extreme joints of a person.
        extent = np.linalg.norm(sample.joints3d.max(1) - sample.joints3d.min(1), axis=-1)
        assert np.all((extent > 0.5) & (extent < 2.5))
        # Joints inside the image lie within their person's box (plus a margin for thin limbs).
        for joints, box, truncated in zip(sample.joints2d, sample.boxes, sample.truncated):
            x, y, w, h = box
            inside = joints[~truncated]
            near = ((inside >= [x - 8, y - 8]) & (inside <= [x + w + 8, y + h + 8])).all(-1)
            assert near.mean() >= 0.8
    assert n_people >= 6


def test_rendering_matches_the_camera_model_to_a_fraction_of_a_pixel():
    humanoid = Humanoid()
    pb = humanoid.pb
    point = np.array([-0.5, 1.6, 0.8])
    shape = pb.createVisualShape(pb.GEOM_SPHERE, radius=0.03, rgbaColor=[1, 0, 0, 1],
                                 physicsClientId=humanoid.client)
    pb.createMultiBody(baseVisualShapeIndex=shape, basePosition=point.tolist(),
                       physicsClientId=humanoid.client)
    position = np.array([2.0, 3.0, 3.0])
    R = look_at((np.array([0, 0.9, 0]) - position)[None], np.array([0, 1.0, 0]))[0]
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = R, -R @ position
    camera = Camera(K=[[900, 0, 330], [0, 900, 200], [0, 0, 1]], extrinsic=extrinsic)
    rgb, _ = humanoid.render(camera, 640, 480)
    humanoid.close()
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    ys, xs = np.nonzero(red)
    expected = camera.project(camera.world_to_camera(point))
    assert len(xs) > 50
    assert np.abs(np.array([xs.mean(), ys.mean()]) - expected).max() < 0.15


def test_distortion_map_on_a_coarse_grid_matches_the_exact_map():
    camera = Camera(K=[[420, 0, 330], [0, 425, 230], [0, 0, 1]],
                    distortion_coeffs=[-0.3, 0.09, 4e-4, -3e-4, 0.0], image_size=(640, 480))
    exact = np.stack(ideal_pixel_map(camera, 640, 480, grid_stride=1), -1)
    coarse = np.stack(ideal_pixel_map(camera, 640, 480, grid_stride=4), -1)
    assert exact.shape == coarse.shape == (480, 640, 2)
    pixel = np.array([[600.0, 30.0]])  # a distorted pixel maps to the pinhole projection of its ray
    pinhole = camera.undistort_pixels(pixel) @ camera.K[:2, :2].T + camera.K[:2, 2]
    assert np.abs(exact[30, 600] - pinhole[0]).max() < 1e-3
    assert np.abs(exact - coarse).max() < 0.05


def test_clips_split_into_train_and_test_and_load():
    assert set(TRAIN_CLIPS).isdisjoint(TEST_CLIPS) and set(TRAIN_CLIPS) | set(TEST_CLIPS) == set(CLIPS)
    for clip in CLIPS:
        assert load_clip(clip).shape[1] == 44


def test_dataset_round_trip(tmp_path):
    write_dataset(tmp_path / 'test', 3, TEST_CLIPS, seed=5, config=SMALL)
    for index in range(3):
        sample = load_sample(tmp_path / 'test', index)
        assert set(sample.clips) <= set(TEST_CLIPS)
        assert sample.image.shape == (240, 320, 3)
        np.testing.assert_allclose(sample.camera.project(sample.joints3d), sample.joints2d,
                                   atol=0.5)
    again = tmp_path / 'again'
    write_dataset(again, 3, TEST_CLIPS, seed=5, config=SMALL)
    for name in ('000002.png', '000002.npz', 'index.json'):
        assert (again / name).read_bytes() == (tmp_path / 'test' / name).read_bytes()
