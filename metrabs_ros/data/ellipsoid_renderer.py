"""Exact ray casting of textured, shaded ellipsoids through a pinhole camera (numpy).

Everything is in the camera optical frame (x right, y down, z forward, metres). The ray through
pixel (u, v) is d = K^-1 (u, v, 1), so the ray parameter of a hit is its depth z. Each ellipsoid
is tested only inside the bounding rectangle of its projection, which keeps a 640x480 frame with
three people at a few tens of milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR_M = 0.05


@dataclass(frozen=True)
class Ellipsoid:
    """centre (3,), axes (3, 3) unit axis vectors as columns, radii (3,) semi-axes along them;
    material: index into the materials given to `render`; owner: body index (for the id map)."""

    centre: np.ndarray
    axes: np.ndarray
    radii: np.ndarray
    material: int
    owner: int


@dataclass(frozen=True)
class Material:
    """Surface colour (linear RGB in [0, 1]) and a pattern over the ellipsoid's unit-sphere
    coordinates built from sinusoids (waves: (k, 4) rows of frequency vector (3) and phase):
    'noise' modulates the brightness by `contrast` times their mean, 'stripes' (first wave) and
    'checks' (first two) switch to second_colour where the waves are positive; gloss: specular."""

    colour: np.ndarray
    second_colour: np.ndarray
    pattern: str = 'plain'  # 'plain', 'noise', 'stripes', 'checks'
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    contrast: float = 0.0
    gloss: float = 0.0


@dataclass
class RayHits:
    """Per-pixel results of the visibility pass: depth (inf where nothing), ellipsoid index (-1),
    unit-sphere coordinates and camera-frame normals of the hit."""

    depth: np.ndarray
    index: np.ndarray
    local: np.ndarray
    normal: np.ndarray


def cast_rays(ellipsoids: list[Ellipsoid], K: np.ndarray, width: int, height: int) -> RayHits:
    """Nearest ellipsoid hit for every pixel of a (height, width) pinhole image."""
    hits = RayHits(np.full((height, width), np.inf), np.full((height, width), -1),
                   np.zeros((height, width, 3)), np.zeros((height, width, 3)))
    K_inv = np.linalg.inv(K)
    for i, ellipsoid in enumerate(ellipsoids):
        window = projected_window(ellipsoid, K, width, height)
        if window is None:
            continue
        x0, x1, y0, y1 = window
        us, vs = np.meshgrid(np.arange(x0, x1, dtype=np.float64),
                             np.arange(y0, y1, dtype=np.float64))
        rays = np.stack([us, vs, np.ones_like(us)], -1) @ K_inv.T  # (h, w, 3), z = 1
        to_local = ellipsoid.axes.T / ellipsoid.radii[:, None]  # camera -> unit sphere
        origin = to_local @ -ellipsoid.centre
        direction = rays @ to_local.T
        a = np.einsum('hwc,hwc->hw', direction, direction)
        b = direction @ origin
        c = origin @ origin - 1.0
        discriminant = b * b - a * c
        hit = discriminant > 0
        t = np.where(hit, (-b - np.sqrt(np.where(hit, discriminant, 0))) / a, np.inf)
        if c < 0:  # camera inside the ellipsoid: take the exit point
            t = np.where(hit, (-b + np.sqrt(np.where(hit, discriminant, 0))) / a, np.inf)
        region = (slice(y0, y1), slice(x0, x1))
        closer = (t > NEAR_M) & (t < hits.depth[region])
        if not closer.any():
            continue
        t = t[closer]
        local = origin + t[:, None] * direction[closer]
        normal = (local / ellipsoid.radii) @ ellipsoid.axes.T
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        hits.depth[region][closer] = t
        hits.index[region][closer] = i
        hits.local[region][closer] = local
        hits.normal[region][closer] = normal
    return hits


def projected_window(ellipsoid: Ellipsoid, K: np.ndarray, width: int, height: int):
    """(x0, x1, y0, y1) pixel rectangle containing the ellipsoid's image, None if off-screen."""
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    corners = ellipsoid.centre + (signs * ellipsoid.radii) @ ellipsoid.axes.T
    if (corners[:, 2] <= NEAR_M).all():
        return None
    if (corners[:, 2] <= NEAR_M).any():
        return 0, width, 0, height
    projected = corners[:, :2] / corners[:, 2:] @ K[:2, :2].T + K[:2, 2]
    x0, y0 = np.floor(projected.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(projected.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, x1, y0, y1


def shade(hits: RayHits, ellipsoids: list[Ellipsoid], materials: list[Material],
          light_direction: np.ndarray, ambient: float, light_colour: np.ndarray) -> np.ndarray:
    """Linear RGB (H, W, 3) of the hit pixels (zeros elsewhere): pattern x (ambient + Lambert)
    plus a little specular gloss. light_direction points from the scene towards the light."""
    image = np.zeros(hits.depth.shape + (3,))
    rows, cols = np.nonzero(hits.index >= 0)
    hit_index = hits.index[rows, cols]
    local, normal = hits.local[rows, cols], hits.normal[rows, cols]
    light = np.asarray(light_direction, float) / np.linalg.norm(light_direction)
    lambert = np.clip(normal @ light, 0, None)
    half = light + np.array([0.0, 0.0, -1.0])  # Blinn half vector; the view direction is about -z
    half /= np.linalg.norm(half)
    highlight = np.clip(normal @ half, 0, None) ** 20
    pixel_material = np.array([e.material for e in ellipsoids])[hit_index]
    values = np.zeros((len(rows), 3))
    for m in np.unique(pixel_material):
        selected = pixel_material == m
        material = materials[m]
        colour = surface_colour(material, local[selected])
        values[selected] = (colour * (ambient + (1 - ambient) * lambert[selected])[:, None] +
                            material.gloss * highlight[selected][:, None])
    image[rows, cols] = values * light_colour
    return image


def surface_colour(material: Material, local: np.ndarray) -> np.ndarray:
    """(N, 3) colours of a material at unit-sphere points `local` (N, 3)."""
    n = len(local)
    if material.pattern == 'plain' or len(material.waves) == 0:
        return np.broadcast_to(material.colour, (n, 3))
    values = np.sin(local @ material.waves[:, :3].T + material.waves[:, 3])
    if material.pattern == 'noise':
        return np.clip(material.colour * (1 + material.contrast * values.mean(axis=1))[:, None],
                       0, 1)
    if material.pattern == 'stripes':
        second = values[:, 0] > 0
    elif material.pattern == 'checks':
        second = values[:, 0] * values[:, 1] > 0
    else:
        raise ValueError(f'unknown pattern {material.pattern!r}')
    return np.where(second[:, None], material.second_colour, material.colour)
