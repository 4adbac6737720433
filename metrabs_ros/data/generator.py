"""Synthetic samples with exact ground truth: posed human-like bodies of varied heights, builds
and clothing, random cameras, lens distortion, photo backgrounds, lighting, occluders, blur,
noise and truncation.

Every sample is a pure function of (seed, index), so a test set can be regenerated exactly.
Frames: camera optical frame (x right, y down, z forward), metres; pixels with distortion.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from metrabs_ros.camera import Camera
from metrabs_ros.crops import look_at
from metrabs_ros.data.backgrounds import random_background
from metrabs_ros.data.ellipsoid_renderer import cast_rays, shade
from metrabs_ros.data.human_body import (BASE_HEIGHT_M, BodyStyle, body_ellipsoids, random_height,
                                         random_style)
from metrabs_ros.data.humanoid import CLIPS, Humanoid, axis_angle_matrix, load_clip
from metrabs_ros.data.pose_mixing import jittered_frame, mixed_frame

TEST_CLIPS = ('dance_b', 'kick', 'getup_faceup')
TRAIN_CLIPS = tuple(c for c in CLIPS if c not in TEST_CLIPS)
WORLD_UP = np.array([0.0, 1.0, 0.0])
TILT_DEGREES = (30.0, 180.0)  # body_tilt's range of turns away from the clip's orientation
TILTED_CLEARANCE_M = 0.1  # a tilted body's lowest joint centre above the ground (before scaling)


@dataclass(frozen=True)
class GeneratorConfig:
    """Ranges the generator samples from (metres, degrees, pixels)."""

    image_size: tuple[int, int] = (640, 480)
    people: tuple[int, int] = (1, 3)
    fov_degrees: tuple[float, float] = (40.0, 85.0)
    camera_distance_m: tuple[float, float] = (3.0, 8.0)
    camera_height_m: tuple[float, float] = (0.3, 2.5)
    principal_point_jitter: float = 0.05
    distortion_k1: tuple[float, float] = (-0.3, 0.1)
    truncation_probability: float = 0.4
    occluder_probability: float = 0.4
    min_visible_pixels: int = 150
    pose_mixing_probability: float = 0.0  # per person: limbs spliced from other clip frames
    joint_jitter_degrees: float = 0.0  # > 0: every joint of every person turned up to this much
    # per person: the whole body turned about a random horizontal axis (lying, leaning, upside
    # down; body_tilt) and rested on the ground, whatever its clip frame's orientation
    body_tilt_probability: float = 0.0


@dataclass(frozen=True)
class Sample:
    """One image with P people. joints3d: (P, 15, 3) camera frame; joints2d: (P, 15, 2)
    distorted pixels; boxes: (P, 4) x, y, w, h of visible pixels; truncated: (P, 15) joint
    outside the image; clips / frames: motion source of each person."""

    image: np.ndarray
    camera: Camera
    joints3d: np.ndarray
    joints2d: np.ndarray
    boxes: np.ndarray
    truncated: np.ndarray
    clips: tuple[str, ...]
    frames: tuple[int, ...]


class SyntheticGenerator:
    """Renders samples of the given motion clips (e.g. TRAIN_CLIPS or TEST_CLIPS)."""

    def __init__(self, clips=TRAIN_CLIPS, seed: int = 0, config: GeneratorConfig | None = None):
        self.clips = tuple(clips)
        self.seed = seed
        self.config = config or GeneratorConfig()
        self.humanoid = Humanoid(n_bodies=self.config.people[1])
        self.styles: dict[int, BodyStyle] = {}
        self.heights: dict[int, float] = {}

    def close(self) -> None:
        self.humanoid.close()

    def sample(self, index: int) -> Sample:
        """The sample number `index` (deterministic for this seed and config)."""
        rng = np.random.default_rng([self.seed, index])
        cfg = self.config
        n_people = int(rng.integers(cfg.people[0], cfg.people[1] + 1))
        roots, clips, frames = self._place_people(rng, n_people)
        camera = self._random_camera(rng, roots)
        return self.render(camera, clips, frames, rng)

    def render(self, camera: Camera, clips, frames, rng: np.random.Generator,
               light_direction: np.ndarray | None = None,
               background: np.ndarray | None = None) -> Sample:
        """Render the first len(clips) posed humanoids (already placed) through `camera`; light
        direction and background are drawn from rng unless given."""
        cfg = self.config
        width, height = cfg.image_size
        n_people = len(clips)
        if light_direction is None:
            light_direction = rng.normal(size=3) + [0, 2, 0]
        bodies = self.humanoid.bodies[:n_people]
        joints3d = np.stack([camera.world_to_camera(self.joints_world(b)) for b in bodies])
        rgb, body_ids = self.render_bodies(camera, bodies, joints3d, light_direction, rng)
        if background is None:
            background = random_background(rng, width, height)
        image = np.where((body_ids >= 0)[..., None], rgb, background)
        if camera.has_distortion:
            image, body_ids = apply_distortion(camera, image, body_ids)
        joints2d = camera.project(joints3d)
        boxes, visible = visible_boxes(body_ids, self.humanoid.bodies[:n_people],
                                       cfg.min_visible_pixels)
        if rng.random() < cfg.occluder_probability:
            draw_occluders(rng, image)
        image = degrade(rng, image)
        inside = ((joints2d >= 0) & (joints2d <= [width - 1, height - 1])).all(-1)
        keep = visible & (joints3d[..., 2] > 0.1).all(-1)
        return Sample(image, camera, joints3d[keep], joints2d[keep], boxes[keep], ~inside[keep],
                      tuple(c for c, k in zip(clips, keep) if k),
                      tuple(f for f, k in zip(frames, keep) if k))

    def joints_world(self, body: int) -> np.ndarray:
        """(15, 3) world joints of a posed body, scaled about its ground point to its height."""
        joints = self.humanoid.joints_world(body)
        ground = np.array([joints[0, 0], 0.0, joints[0, 2]])
        return ground + (joints - ground) * (self.heights.get(body, BASE_HEIGHT_M) / BASE_HEIGHT_M)

    def render_bodies(self, camera: Camera, bodies, joints3d: np.ndarray, light_direction,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pinhole render of the posed bodies: RGB uint8 (H, W, 3) and (H, W) body ids (-1:
        none). light_direction: world frame, towards the light."""
        width, height = self.config.image_size
        rotation = camera.extrinsic[:3, :3]
        ellipsoids, materials = [], []
        for body, joints in zip(bodies, joints3d):
            if body not in self.styles:
                self.styles[body] = random_style(rng)
            style = self.styles[body]
            ellipsoids += body_ellipsoids(
                joints, rotation @ self.humanoid.link_rotations(body),
                self.heights.get(body, BASE_HEIGHT_M), style, body, len(materials))
            materials += style.materials
        hits = cast_rays(ellipsoids, camera.K, width, height)
        tint = rng.uniform(-0.12, 0.12)
        light_colour = rng.uniform(0.85, 1.2) * np.array([1 + tint, 1.0, 1 - tint])
        linear = shade(hits, ellipsoids, materials, rotation @ np.asarray(light_direction),
                       rng.uniform(0.25, 0.6), light_colour)
        owners = np.array([e.owner for e in ellipsoids] + [-1])
        body_ids = owners[hits.index]
        rgb = np.zeros((height, width, 3), np.uint8)
        person = body_ids >= 0
        rgb[person] = (np.clip(linear[person], 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
        return rgb, body_ids

    def _place_people(self, rng, n_people):
        roots, clips, frames = [], [], []
        for body in self.humanoid.bodies[n_people:]:
            self.humanoid.park(body)
        for body in self.humanoid.bodies[:n_people]:
            clip = self.clips[rng.integers(len(self.clips))]
            frame_index = int(rng.integers(len(load_clip(clip))))
            for _ in range(20):  # keep people at least 0.8 m apart
                xz = rng.uniform(-1.5, 1.5, size=2)
                if all(np.hypot(*(xz - r[[0, 2]])) > 0.8 for r in roots):
                    break
            frame = load_clip(clip)[frame_index]
            clip_rows = [load_clip(c) for c in self.clips]
            if self.config.pose_mixing_probability and \
                    rng.random() < self.config.pose_mixing_probability:
                frame = mixed_frame(frame, clip_rows, rng)
            if self.config.joint_jitter_degrees > 0:
                frame = jittered_frame(frame, clip_rows, rng, self.config.joint_jitter_degrees)
            root = np.array([xz[0], frame[2], xz[1]])
            yaw = rng.uniform(-np.pi, np.pi)
            tilt = None
            if self.config.body_tilt_probability > 0 and \
                    rng.random() < self.config.body_tilt_probability:
                tilt = body_tilt(rng)
            self.humanoid.set_pose(frame, root, yaw=yaw, body=body, tilt=tilt)
            if tilt is not None:  # rest the lowest joint at the ground clearance
                lift = TILTED_CLEARANCE_M - self.humanoid.joints_world(body)[:, 1].min()
                root[1] += lift
                self.humanoid.translate(np.array([0.0, lift, 0.0]), body)
            self.styles[body], self.heights[body] = random_style(rng), random_height(rng)
            roots.append(root)
            clips.append(clip)
            frames.append(frame_index)
        return np.array(roots), clips, frames

    def _random_camera(self, rng, roots: np.ndarray) -> Camera:
        cfg = self.config
        width, height = cfg.image_size
        focal = max(width, height) / (2 * np.tan(np.deg2rad(rng.uniform(*cfg.fov_degrees)) / 2))
        centre = roots.mean(axis=0)
        target = centre + [0, rng.uniform(-0.3, 0.1), 0]
        azimuth = rng.uniform(-np.pi, np.pi)
        distance = rng.uniform(*cfg.camera_distance_m)
        position = centre + distance * np.array([np.cos(azimuth), 0, np.sin(azimuth)])
        position[1] = rng.uniform(*cfg.camera_height_m)
        if rng.random() < cfg.truncation_probability:
            target = edge_target(rng, roots[rng.integers(len(roots))], position,
                                 np.array([width, height]) / 2 / focal)
        R = look_at((target - position)[None], WORLD_UP)[0]
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = R, -R @ position
        jitter = cfg.principal_point_jitter * np.array([width, height])
        cx, cy = np.array([width, height]) / 2 + rng.uniform(-1, 1, 2) * jitter
        K = np.array([[focal, 0, cx], [0, focal * rng.uniform(0.98, 1.02), cy], [0, 0, 1]])
        k1 = rng.uniform(*cfg.distortion_k1)
        distortion = [k1, -0.3 * k1 * rng.uniform(0, 1), *rng.normal(0, 5e-4, 2), 0.0]
        return Camera(K=K, distortion_coeffs=distortion, extrinsic=extrinsic, world_up=WORLD_UP,
                      image_size=(width, height))


def body_tilt(rng: np.random.Generator) -> np.ndarray:
    """A (3, 3) world rotation about a random horizontal axis by 30-180 degrees either way: a
    standing clip frame becomes a person lying on the back, side or front, leaning or upside
    down. The training clips have almost no one lying face up (18 of 1,193 frames), the
    held-out getting-up clip half its frames."""
    azimuth = rng.uniform(-np.pi, np.pi)
    axis = np.array([np.cos(azimuth), 0.0, np.sin(azimuth)])
    angle = np.radians(rng.uniform(*TILT_DEGREES)) * rng.choice([-1.0, 1.0])
    return axis_angle_matrix(axis, angle)


def edge_target(rng, person_root: np.ndarray, position: np.ndarray,
                half_fov_tangents: np.ndarray) -> np.ndarray:
    """A point to aim the camera at so that the person lands near (or across) an image edge:
    the person's root shifted sideways / vertically by 0.8-1.3 of the half field of view."""
    forward = person_root - position
    distance = np.linalg.norm(forward)
    right = np.cross(WORLD_UP, forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward / distance, right)
    angle = rng.uniform(-np.pi, np.pi)
    reach = distance * rng.uniform(0.8, 1.3)
    return person_root + reach * (np.cos(angle) * half_fov_tangents[0] * right +
                                  np.sin(angle) * half_fov_tangents[1] * up)


def apply_distortion(camera: Camera, image: np.ndarray, body_ids: np.ndarray,
                     grid_stride: int = 4):
    """Warp a pinhole render into the camera's distorted image (and its body-id map).

    The exact inverse distortion is solved on a grid every `grid_stride` pixels and
    interpolated bilinearly in between (the field is smooth: about 0.01 px off at stride 4)."""
    map_x, map_y = ideal_pixel_map(camera, image.shape[1], image.shape[0], grid_stride)
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    ids = cv2.remap(body_ids.astype(np.float32), map_x, map_y, cv2.INTER_NEAREST,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    return warped, ids.astype(np.int64)


INVALID_PIXEL = -1e4  # where the distortion cannot be inverted: far outside any image


def ideal_pixel_map(camera: Camera, width: int, height: int, grid_stride: int = 1):
    """For every distorted pixel (x, y), where it lies in the undistorted pinhole image, as two
    float32 (H, W) maps for cv2.remap; where distortion cannot be inverted, far outside."""
    xs = np.arange(0, width + grid_stride, grid_stride, dtype=np.float64)
    ys = np.arange(0, height + grid_stride, grid_stride, dtype=np.float64)
    grid = np.stack(np.meshgrid(xs, ys), -1)
    normalized = camera.undistort_pixels(grid)  # NaN: not imaged (no root inside the fold)
    valid = np.isfinite(normalized).all(-1)
    ideal = normalized @ camera.K[:2, :2].T + camera.K[:2, 2]
    ideal = np.where(valid[..., None], ideal, INVALID_PIXEL).astype(np.float32)
    if grid_stride == 1:
        return ideal[:height, :width, 0], ideal[:height, :width, 1]
    fine_x, fine_y = np.meshgrid(np.arange(width, dtype=np.float32) / grid_stride,
                                 np.arange(height, dtype=np.float32) / grid_stride)
    maps = [cv2.remap(np.ascontiguousarray(ideal[..., i]), fine_x, fine_y, cv2.INTER_LINEAR)
            for i in range(2)]
    # A pixel interpolated between a valid and an invalid grid point would land anywhere on the
    # line between them (inside the image, on a person): it is invalid too.
    partly_invalid = cv2.remap(valid.astype(np.float32), fine_x, fine_y, cv2.INTER_LINEAR) < 1
    for map_ in maps:
        map_[partly_invalid] = INVALID_PIXEL
    return tuple(maps)


def visible_boxes(body_ids: np.ndarray, bodies, min_pixels: int):
    """(P, 4) x, y, w, h boxes of each body's visible pixels, and (P,) enough-visible flags."""
    boxes, visible = np.zeros((len(bodies), 4)), np.zeros(len(bodies), bool)
    for i, body in enumerate(bodies):
        ys, xs = np.nonzero(body_ids == body)
        if len(xs) >= min_pixels:
            boxes[i] = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            visible[i] = True
    return boxes, visible


def draw_occluders(rng, image: np.ndarray) -> None:
    """Draw 1-3 random filled rectangles or ellipses over the image, in place."""
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        size = (int(rng.uniform(0.04, 0.15) * width), int(rng.uniform(0.04, 0.2) * height))
        if rng.random() < 0.5:
            cv2.ellipse(image, centre, size, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            cv2.rectangle(image, (centre[0] - size[0], centre[1] - size[1]),
                          (centre[0] + size[0], centre[1] + size[1]), colour, -1)


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera imperfections: sometimes a slight blur, always a little sensor noise."""
    if rng.random() < 0.4:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.2))
    noise = np.empty(image.shape, np.float32)
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(noise, 0.0, float(rng.uniform(0.5, 4.0)))
    return cv2.add(image, noise, dtype=cv2.CV_8U)
