"""Human-like bodies built from ellipsoids around the humanoid's 15 joints, with random builds,
skin tones, clothing, shoes and hair.

A body is made of about 30 ellipsoids sized by human proportions: pelvis, waist, chest and a
shoulder girdle; neck, head, nose and hair; thighs, shins, knees and shoe-shaped feet; upper
arms, forearms, elbows and flat hands. Link frames follow the DeepMimic humanoid: x forward,
y up along the bone, z sideways. Sizes are in metres for the humanoid's own height
(BASE_HEIGHT_M) and scale with the body; `girth` widens limbs and trunk (builds), `hips` and
`shoulders` change the trunk's outline. Colours are linear RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrabs_ros.data.ellipsoid_renderer import Ellipsoid, Material

BASE_HEIGHT_M = 1.62  # the humanoid standing, heel to crown, at URDF scale 0.25
HEIGHT_MEAN_M, HEIGHT_SD_M, HEIGHT_RANGE_M = 1.72, 0.08, (1.5, 2.0)

PELVIS, CHEST, NECK = 0, 1, 2
R_HIP, R_KNEE, R_ANKLE, R_SHOULDER, R_ELBOW, R_WRIST = 3, 4, 5, 6, 7, 8
L_HIP, L_KNEE, L_ANKLE, L_SHOULDER, L_ELBOW, L_WRIST = 9, 10, 11, 12, 13, 14

# sRGB anchors (0-255) sampled between; converted to linear RGB.
SKIN_TONES = np.array([[62, 40, 30], [96, 62, 45], [141, 95, 70], [184, 135, 105],
                       [222, 178, 148], [243, 214, 194]], float)
HAIR_COLOURS = np.array([[22, 18, 16], [55, 38, 28], [98, 68, 44], [150, 110, 70],
                         [205, 175, 115], [135, 65, 35], [165, 162, 158], [225, 222, 215]], float)
NEUTRALS = np.array([[20, 20, 24], [235, 235, 232], [120, 120, 125], [30, 40, 80],
                     [60, 85, 125], [190, 170, 130], [85, 60, 45], [70, 90, 60]], float)
SKIN, TOP, BOTTOM, SHOES, HAIR = range(5)  # material slots of a body


@dataclass(frozen=True)
class BodyStyle:
    """How one person looks: build and the five materials (skin, top, bottom, shoes, hair)."""

    girth: float
    hips: float
    shoulders: float
    sleeves: str  # 'long', 'short' or 'none'
    legs: str  # 'long' or 'shorts'
    hair: str  # 'none', 'short' or 'long'
    materials: tuple[Material, ...]


def random_height(rng: np.random.Generator) -> float:
    """An adult's height in metres: normal around 1.72 m, kept within 1.5-2.0 m."""
    return float(np.clip(rng.normal(HEIGHT_MEAN_M, HEIGHT_SD_M), *HEIGHT_RANGE_M))


def random_style(rng: np.random.Generator) -> BodyStyle:
    """A random person's build, skin tone, clothes and hair."""
    skin = _linear(_between(rng, SKIN_TONES) * rng.uniform(0.95, 1.05, 3))
    hair_colour = _linear(_between(rng, HAIR_COLOURS))
    materials = (
        Material(skin, skin, 'noise', _waves(rng, 6, 6.0), 0.06, gloss=0.12),
        _clothing(rng),
        _clothing(rng, denim=rng.random() < 0.35),
        Material(_linear(NEUTRALS[rng.integers(len(NEUTRALS))] * rng.uniform(0.7, 1.1)),
                 np.zeros(3), gloss=0.25),
        Material(hair_colour, hair_colour, 'noise', _waves(rng, 8, 25.0), 0.25, gloss=0.2))
    return BodyStyle(girth=float(rng.uniform(0.85, 1.3)), hips=float(rng.uniform(0.9, 1.15)),
                     shoulders=float(rng.uniform(0.9, 1.12)),
                     sleeves=str(rng.choice(['long', 'short', 'none'], p=[0.45, 0.4, 0.15])),
                     legs=str(rng.choice(['long', 'shorts'], p=[0.75, 0.25])),
                     hair=str(rng.choice(['none', 'short', 'long'], p=[0.1, 0.6, 0.3])),
                     materials=materials)


def body_ellipsoids(joints: np.ndarray, rotations: np.ndarray, height_m: float,
                    style: BodyStyle, owner: int, first_material: int) -> list[Ellipsoid]:
    """Ellipsoids of one person. joints (15, 3) and link rotations (15, 3, 3) in the render
    frame (metres); the materials of `style` sit at first_material.. in the renderer's list."""
    s = height_m / BASE_HEIGHT_M
    g = style.girth * s
    skin, top, bottom, shoes, hair = (first_material + i for i in range(5))
    j, R = joints, rotations
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []

    def limb(a, b, side, depth, extend, material, lateral_hint):
        parts.append((*_segment(j[a] if isinstance(a, int) else a,
                                j[b] if isinstance(b, int) else b, side, depth, extend,
                                lateral_hint), material))

    def blob(centre, axes, radii, material):
        parts.append((np.asarray(centre, float), axes, np.asarray(radii, float), material))

    forward = R[CHEST][:, 0]
    hip_axis = _unit(j[L_HIP] - j[R_HIP])
    shoulder_axis = _unit(j[L_SHOULDER] - j[R_SHOULDER])
    # trunk
    pelvis_up = R[PELVIS][:, 1]
    blob(0.5 * (j[R_HIP] + j[L_HIP]) - 0.02 * s * pelvis_up,
         _frame(hip_axis, pelvis_up), [0.165 * g * style.hips, 0.12 * s, 0.11 * g], bottom)
    limb(PELVIS, CHEST, 0.145 * g, 0.105 * g, 0.07 * s, top, forward)
    chest_top = j[CHEST] + 1.05 * (j[NECK] - j[CHEST])
    limb(j[CHEST] - 0.02 * s * R[CHEST][:, 1], chest_top, 0.17 * g * style.shoulders,
         0.115 * g, 0.05 * s, top, shoulder_axis)
    girdle_up = _unit(j[NECK] - j[CHEST])
    blob(0.5 * (j[R_SHOULDER] + j[L_SHOULDER]) - 0.02 * s * girdle_up,
         _frame(shoulder_axis, girdle_up),
         [0.5 * np.linalg.norm(j[L_SHOULDER] - j[R_SHOULDER]) + 0.02 * s, 0.06 * g, 0.075 * g],
         top)
    # head
    head_axes = R[NECK]
    head_centre = j[NECK] + head_axes @ np.array([0.0, 0.175, 0.0]) * s
    limb(NECK, head_centre, 0.05 * g, 0.05 * g, 0.0, skin, forward)
    blob(head_centre, head_axes, np.array([0.1, 0.115, 0.08]) * s, skin)
    blob(head_centre + head_axes @ np.array([0.1, -0.01, 0.0]) * s, head_axes,
         np.array([0.022, 0.03, 0.014]) * s, skin)  # nose
    if style.hair != 'none':
        blob(head_centre + head_axes @ np.array([-0.018, 0.022, 0.0]) * s, head_axes,
             np.array([0.108, 0.122, 0.09]) * s, hair)
    if style.hair == 'long':
        blob(head_centre + head_axes @ np.array([-0.05, -0.1, 0.0]) * s, head_axes,
             np.array([0.065, 0.16, 0.09]) * s, hair)
    # arms
    sleeve_upper = top if style.sleeves != 'none' else skin
    sleeve_lower = top if style.sleeves == 'long' else skin
    for shoulder, elbow, wrist in ((R_SHOULDER, R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW, L_WRIST)):
        blob(j[shoulder], np.eye(3), np.full(3, 0.05 * g), sleeve_upper)
        limb(shoulder, elbow, 0.05 * g, 0.05 * g, 0.02 * s, sleeve_upper, forward)
        blob(j[elbow], np.eye(3), np.full(3, 0.042 * g), sleeve_lower)
        limb(elbow, wrist, 0.042 * g, 0.036 * g, 0.01 * s, sleeve_lower, R[wrist][:, 2])
        along = _unit(j[wrist] - j[elbow])
        limb(j[wrist] - 0.01 * s * along, j[wrist] + 0.17 * s * along, 0.045 * s, 0.02 * s,
             0.0, skin, R[wrist][:, 2])
    # legs
    shin_material = bottom if style.legs == 'long' else skin
    for hip, knee, ankle in ((R_HIP, R_KNEE, R_ANKLE), (L_HIP, L_KNEE, L_ANKLE)):
        limb(hip, knee, 0.085 * g, 0.085 * g, 0.05 * s, bottom, forward)
        blob(j[knee], np.eye(3), np.full(3, 0.058 * g), shin_material)
        limb(knee, ankle, 0.06 * g, 0.062 * g, 0.02 * s, shin_material, R[ankle][:, 2])
        blob(j[ankle] + R[ankle] @ np.array([0.05, -0.04, 0.0]) * s, R[ankle],
             np.array([0.13, 0.05, 0.052]) * s, shoes)
    return [Ellipsoid(c, axes, radii, m, owner) for c, axes, radii, m in parts]


def _segment(a: np.ndarray, b: np.ndarray, side: float, depth: float, extend: float,
             lateral_hint: np.ndarray):
    """Centre, axes (lateral, along, depth as columns) and radii of an ellipsoid from a to b."""
    along = _unit(b - a)
    return 0.5 * (a + b), _frame(lateral_hint, along), np.array(
        [side, 0.5 * np.linalg.norm(b - a) + extend, depth])


def _frame(lateral_hint: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Orthonormal columns (lateral, up, depth) with `up` exact and lateral close to the hint."""
    up = _unit(up)
    lateral = lateral_hint - (lateral_hint @ up) * up
    if np.linalg.norm(lateral) < 1e-6:
        lateral = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 0.0, 1.0])
    lateral = _unit(lateral)
    return np.stack([lateral, up, np.cross(lateral, up)], axis=1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-9)


def _between(rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
    """A random sRGB colour on the polyline through `anchors` (0-255)."""
    position = rng.uniform(0, len(anchors) - 1)
    i = min(int(position), len(anchors) - 2)
    return anchors[i] + (position - i) * (anchors[i + 1] - anchors[i])


def _linear(srgb_255: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(srgb_255) / 255.0, 0, 1) ** 2.2


def _waves(rng: np.random.Generator, n: int, frequency: float) -> np.ndarray:
    return np.column_stack([rng.normal(0, frequency, (n, 3)), rng.uniform(0, 2 * np.pi, n)])


def _clothing(rng: np.random.Generator, denim: bool = False) -> Material:
    """A garment: neutral or saturated colour, plain, fabric-textured, striped or checked."""
    if denim:
        colour = _linear(np.array([45, 65, 105]) * rng.uniform(0.6, 1.4))
        return Material(colour, colour, 'noise', _waves(rng, 8, 30.0), 0.25)
    if rng.random() < 0.5:
        colour = _linear(NEUTRALS[rng.integers(len(NEUTRALS))] * rng.uniform(0.8, 1.15))
    else:
        colour = _linear(_hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.3, 0.95),
                                     rng.uniform(0.25, 0.95)) * 255)
    second = _linear(_hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.9),
                                 rng.uniform(0.1, 1.0)) * 255)
    kind = rng.choice(['plain', 'noise', 'stripes', 'checks'], p=[0.35, 0.3, 0.2, 0.15])
    frequency = rng.uniform(8, 30)
    if kind == 'stripes':
        waves = np.array([[0.0, frequency, 0.0, rng.uniform(0, 2 * np.pi)]])
    elif kind == 'checks':
        waves = np.array([[frequency, 0, 0, 0], [0, 0, frequency, 0], [0, frequency, 0, 0]])
        waves = waves[rng.permutation(3)[:2]]
    else:
        waves = _waves(rng, 8, frequency)
    return Material(colour, second, str(kind), waves, float(rng.uniform(0.1, 0.3)))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
