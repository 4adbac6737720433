import dataclasses

import numpy as np
import pytest

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
from metrabs_ros.data.dataset import load_sample, write_dataset  # noqa: E402
from metrabs_ros.data.generator import (TEST_CLIPS, TRAIN_CLIPS, GeneratorConfig,  # noqa: E402
                                        SyntheticGenerator, ideal_pixel_map)
from metrabs_ros.data.ellipsoid_renderer import Ellipsoid, Material, cast_rays, shade  # noqa: E402
from metrabs_ros.data.human_body import random_height, random_style  # noqa: E402
from metrabs_ros.camera import Camera  # noqa: E402
from metrabs_ros.data.humanoid import CLIPS, load_clip  # noqa: E402
from metrabs_ros.distortion import fold_radius  # noqa: E402
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
    n_people, near_box = 0, []
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
        # Joints inside the image lie within their person's box (plus a margin for thin limbs);
        # boxes hold visible pixels, so a person hidden behind another can have joints outside.
        for joints, box, truncated in zip(sample.joints2d, sample.boxes, sample.truncated):
            x, y, w, h = box
            inside = joints[~truncated]
            near_box.extend(((inside >= [x - 8, y - 8]) &
                             (inside <= [x + w + 8, y + h + 8])).all(-1))
    assert n_people >= 6
    assert np.mean(near_box) >= 0.9


def test_ray_cast_sphere_matches_the_camera_model_to_a_fraction_of_a_pixel():
    K = np.array([[900.0, 0, 330], [0, 900, 200], [0, 0, 1]])
    centre, radius = np.array([-0.2, 0.1, 3.0]), 0.05
    sphere = Ellipsoid(centre, np.eye(3), np.full(3, radius), material=0, owner=7)
    hits = cast_rays([sphere], K, 640, 480)
    ys, xs = np.nonzero(hits.index == 0)
    expected = centre[:2] / centre[2] @ K[:2, :2].T + K[:2, 2]
    assert len(xs) > 200
    assert np.abs(np.array([xs.mean(), ys.mean()]) - expected).max() < 0.15
    # the nearest surface point is radius in front of the centre, and faces the camera
    assert hits.depth[ys, xs].min() == pytest.approx(centre[2] - radius, abs=2e-3)
    rays = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(K).T
    assert (np.einsum('nc,nc->n', hits.normal[ys, xs], rays) < 1e-9).all()
    image = shade(hits, [sphere], [Material(np.full(3, 0.5), np.zeros(3))],
                  light_direction=np.array([0.0, 0.0, -1.0]), ambient=0.2,
                  light_colour=np.ones(3))
    assert image[ys, xs].max() == pytest.approx(0.5, abs=0.01)  # lit head-on at the centre
    assert image[hits.index < 0].max() == 0


def test_nearer_ellipsoid_hides_the_farther_one():
    K = np.array([[500.0, 0, 160], [0, 500, 120], [0, 0, 1]])
    far = Ellipsoid(np.array([0, 0, 4.0]), np.eye(3), np.array([0.5, 0.5, 0.5]), 0, 1)
    near = Ellipsoid(np.array([0, 0, 2.0]), np.eye(3), np.array([0.05, 0.3, 0.05]), 0, 2)
    hits = cast_rays([far, near], K, 320, 240)
    assert hits.index[120, 160] == 1 and hits.index[120, 100] == 0
    assert hits.depth[120, 160] == pytest.approx(1.95, abs=1e-6)


def test_bodies_have_human_heights_and_styles():
    rng = np.random.default_rng(0)
    heights = np.array([random_height(rng) for _ in range(2000)])
    assert heights.min() >= 1.5 and heights.max() <= 2.0
    assert 1.68 < heights.mean() < 1.76 and heights.std() > 0.05
    styles = [random_style(rng) for _ in range(200)]
    assert {s.sleeves for s in styles} == {'long', 'short', 'none'}
    assert {s.hair for s in styles} == {'none', 'short', 'long'}
    skin = np.array([s.materials[0].colour for s in styles])
    assert skin.min(axis=0).max() < 0.1 and skin.max(axis=0).min() > 0.5  # dark to light


def test_generator_people_scale_with_their_height(generator):
    body = generator.humanoid.bodies[0]
    generator.humanoid.set_pose(load_clip('walk')[0], [0, load_clip('walk')[0][2], 0], body=body)
    heights = {}
    for height in (1.5, 2.0):
        generator.heights[body] = height
        joints = generator.joints_world(body)
        heights[height] = joints[:, 1].max() - joints[:, 1].min()
    assert heights[2.0] / heights[1.5] == pytest.approx(2.0 / 1.5, rel=1e-6)


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


def test_numpy_kinematics_matches_pybullet_link_frames():
    """The humanoid's forward kinematics (numpy, from the URDF) gives the link frames pybullet
    reports for the same clip rows, roots and turns, mixed poses and the second body included."""
    pybullet = pytest.importorskip('pybullet')
    from metrabs_ros.data.humanoid import URDF, URDF_SCALE, Humanoid, data_path
    from metrabs_ros.data.pose_mixing import mixed_frame
    client = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setAdditionalSearchPath(str(data_path()), physicsClientId=client)
        reference = [pybullet.loadURDF(URDF, globalScaling=URDF_SCALE, useFixedBase=True,
                                       physicsClientId=client,
                                       flags=pybullet.URDF_MAINTAIN_LINK_ORDER)
                     for _ in range(2)]
        humanoid = Humanoid(n_bodies=2)
        rng = np.random.default_rng(3)
        clips = [load_clip(c) for c in CLIPS]
        checked = 0
        for i in range(60):
            rows = clips[i % len(clips)]
            frame = rows[rng.integers(len(rows))]
            if abs(np.linalg.norm(frame[4:8]) - 1) > 1e-6:
                continue  # pybullet distorts bodies with a non-unit root quaternion
            if i % 3 == 0:
                frame = mixed_frame(frame, clips, rng)
            root, yaw, body = rng.normal(size=3), rng.uniform(-np.pi, np.pi), i % 2
            humanoid.set_pose(frame, root, yaw, body=body)
            _pose_with_pybullet(pybullet, client, reference[body], frame, root, yaw)
            states = pybullet.getLinkStates(reference[body], list(range(humanoid.n_links)),
                                            physicsClientId=client)
            positions = np.array([s[4] for s in states])
            rotations = np.array([np.reshape(pybullet.getMatrixFromQuaternion(s[5]), (3, 3))
                                  for s in states])
            np.testing.assert_allclose(humanoid.joints_world(body), positions, atol=1e-5)
            np.testing.assert_allclose(humanoid.link_rotations(body), rotations, atol=1e-5)
            checked += 1
        assert checked >= 40
    finally:
        pybullet.disconnect(client)


def _pose_with_pybullet(pybullet, client, body, frame, root, yaw):
    from metrabs_ros.data.humanoid import CLIP_JOINTS, quat_multiply
    w, x, y, z = frame[4:8]
    turn = np.array([0.0, np.sin(yaw / 2), 0.0, np.cos(yaw / 2)])
    pybullet.resetBasePositionAndOrientation(
        body, list(root), quat_multiply(turn, np.array([x, y, z, w])).tolist(),
        physicsClientId=client)
    column = 8
    for link, kind in CLIP_JOINTS:
        if kind == 'sphere':
            w, x, y, z = frame[column:column + 4]
            pybullet.resetJointStateMultiDof(body, link, [x, y, z, w], physicsClientId=client)
            column += 4
        else:
            pybullet.resetJointState(body, link, frame[column], physicsClientId=client)
            column += 1


def test_humanoid_data_folder_can_be_given_without_pybullet(tmp_path, monkeypatch):
    """$METRABS_HUMANOID_DATA points the humanoid at a copy of the URDF and clips (a machine
    without pybullet); a folder without them fails with the path in the error."""
    import shutil
    from metrabs_ros.data import humanoid
    source = humanoid.data_path()
    (tmp_path / 'humanoid').mkdir()
    shutil.copy(source / humanoid.URDF, tmp_path / humanoid.URDF)
    shutil.copytree(source / humanoid.MOTIONS_DIR, tmp_path / humanoid.MOTIONS_DIR)
    monkeypatch.setenv('METRABS_HUMANOID_DATA', str(tmp_path))
    assert humanoid.data_path() == tmp_path
    tree = humanoid.kinematic_tree(tmp_path / humanoid.URDF)
    assert len(tree.parents) == 15 and tree.kinds.count('spherical') == 8
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='empty'):
        humanoid.kinematic_tree(empty / humanoid.URDF)


def test_joint_jitter_turns_every_joint_by_at_most_its_limit():
    from metrabs_ros.data.humanoid import CLIP_JOINTS, Humanoid
    from metrabs_ros.data.pose_mixing import jittered_frame
    clips = [load_clip(c) for c in TRAIN_CLIPS]
    rng = np.random.default_rng(0)
    humanoid = Humanoid()
    try:
        moved = []
        for k in range(20):
            frame = clips[k % len(clips)][k]
            jittered = jittered_frame(frame, clips, rng, 20.0)
            np.testing.assert_array_equal(jittered[:8], frame[:8])  # root untouched
            np.testing.assert_allclose(jittered_frame(frame, clips, rng, 0.0), frame, atol=1e-12)
            column = 8
            for _, kind in CLIP_JOINTS:
                if kind == 'sphere':
                    q, p = frame[column:column + 4], jittered[column:column + 4]
                    assert np.linalg.norm(p) == pytest.approx(np.linalg.norm(q))
                    cos_half = abs(q @ p) / (np.linalg.norm(q) * np.linalg.norm(p))
                    assert np.degrees(2 * np.arccos(min(1.0, cos_half))) <= 20.0 + 1e-6
                    column += 4
                else:
                    low = min(c[:, column].min() for c in clips)
                    high = max(c[:, column].max() for c in clips)
                    assert low <= jittered[column] <= high
                    assert abs(jittered[column] - frame[column]) <= np.radians(20) + 1e-9
                    column += 1
            humanoid.set_pose(frame, root_position=(0.0, 1.0, 0.0))
            before = humanoid.joints_world().copy()
            humanoid.set_pose(jittered, root_position=(0.0, 1.0, 0.0))
            moved.append(np.linalg.norm(humanoid.joints_world() - before, axis=-1).mean())
        assert 0.01 < np.mean(moved) < 0.3  # metres: a new pose, not another body
    finally:
        humanoid.close()
    # In the generator: the first person's joints match its clip row's shape without jitter
    # (pairwise joint distances, normalized: camera and body height do not matter), not with it.
    config = GeneratorConfig(image_size=(320, 240), min_visible_pixels=40, joint_jitter_degrees=20)

    def shape(joints):
        distances = np.linalg.norm(joints[:, None] - joints[None], axis=-1)
        return distances / distances.mean()

    humanoid = Humanoid()
    try:
        for cfg, same in ((SMALL, True), (config, False)):
            generator = SyntheticGenerator(TRAIN_CLIPS, seed=3, config=cfg)
            try:
                sample = generator.sample(0)
            finally:
                generator.close()
            humanoid.set_pose(load_clip(sample.clips[0])[sample.frames[0]],
                              root_position=(0.0, 1.0, 0.0))
            difference = np.abs(shape(sample.joints3d[0]) - shape(humanoid.joints_world())).max()
            assert (difference < 1e-3) == same, difference
    finally:
        humanoid.close()


def test_body_tilt_turns_whole_bodies_about_a_horizontal_axis_onto_the_ground():
    """GeneratorConfig.body_tilt_probability: each person's body is turned rigidly (its joint
    distances stay its clip frame's) about a horizontal axis by 30-180 degrees, and lies with its
    lowest joint at the ground clearance."""
    from metrabs_ros.data.generator import TILT_DEGREES, TILTED_CLEARANCE_M, body_tilt
    from metrabs_ros.data.human_body import BASE_HEIGHT_M
    from metrabs_ros.data.humanoid import Humanoid
    rng = np.random.default_rng(0)
    for _ in range(50):
        rotation = body_tilt(rng)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
        assert TILT_DEGREES[0] - 1e-6 <= angle <= TILT_DEGREES[1] + 1e-6
        np.testing.assert_allclose(rotation @ [0, 1, 0] @ [0, 1, 0], np.cos(np.radians(angle)),
                                   atol=1e-9)  # the axis is horizontal: up turns by the angle

    def shape(joints):
        distances = np.linalg.norm(joints[:, None] - joints[None], axis=-1)
        return distances / distances.mean()

    def torso_tilt(joints, up):
        torso = joints[2] - joints[0]
        return np.degrees(np.arccos(torso @ up / np.linalg.norm(torso)))

    turned = SyntheticGenerator(TRAIN_CLIPS, seed=5,
                                config=dataclasses.replace(SMALL, body_tilt_probability=1.0))
    humanoid = Humanoid()
    changes = []
    try:
        for index in range(6):
            sample = turned.sample(index)
            for joints, clip, frame in zip(sample.joints3d, sample.clips, sample.frames):
                humanoid.set_pose(load_clip(clip)[frame], root_position=(0.0, 1.0, 0.0))
                np.testing.assert_allclose(shape(joints), shape(humanoid.joints_world()),
                                           atol=1e-6)
                world = sample.camera.camera_to_world(joints)
                scale_range = np.array([1.5, 2.0]) / BASE_HEIGHT_M
                assert TILTED_CLEARANCE_M * scale_range[0] - 0.01 <= world[:, 1].min() <= \
                    TILTED_CLEARANCE_M * scale_range[1] + 0.01
                changes.append(abs(torso_tilt(world, np.array([0, 1.0, 0])) -
                                   torso_tilt(humanoid.joints_world(), np.array([0, 1.0, 0]))))
    finally:
        humanoid.close()
        turned.close()
    assert len(changes) >= 4 and np.mean(changes) > 30


def test_fold_radius_of_barrel_distortion():
    # r (1 + k1 r^2) stops growing where 1 + 3 k1 r^2 = 0
    assert fold_radius([-0.3, 0, 0, 0, 0]) == pytest.approx(1 / np.sqrt(0.9), abs=1e-3)
    assert fold_radius([0.1, 0.01, 0, 0, 0]) == float('inf')


def test_coarse_distortion_map_never_lands_inside_where_no_ray_is_imaged():
    """A strongly distorted camera (a test set's) whose fold lies inside the image: the coarse
    map used for rendering must not interpolate between the inverse's branches, which put
    corner pixels onto people in the middle of the image (and their boxes out to the corner)."""
    camera = Camera(K=[[390.5, 0, 330.7], [0, 391.7, 222.6], [0, 0, 1]],
                    distortion_coeffs=[-0.2886, 0.01433, -1.812e-4, 2.827e-5, 0.0],
                    image_size=(640, 480))
    exact = np.stack(ideal_pixel_map(camera, 640, 480, grid_stride=1), -1)
    coarse = np.stack(ideal_pixel_map(camera, 640, 480, grid_stride=4), -1)
    not_imaged = (exact < -1000).any(-1)
    assert 0.1 < not_imaged.mean() < 0.4  # the corners
    coarse_inside = ((coarse >= 0) & (coarse <= [640, 480])).all(-1)
    assert not (coarse_inside & not_imaged).any()
    assert np.abs(exact - coarse)[coarse_inside].max() < 10  # steep near the fold, else exact
