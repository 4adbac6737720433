"""Backgrounds for synthetic images: real photographs shipped with scikit-image (none showing
people), randomly cropped, scaled, mirrored and re-coloured, and smooth procedural gradients.

Photos are used when scikit-image is installed (the `data` extra), otherwise gradients only.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

# scikit-image's bundled photos and textures without people (astronaut and camera show people).
PHOTOS = ('brick.png', 'chelsea.png', 'coffee.png', 'coins.png', 'grass.png', 'gravel.png',
          'hubble_deep_field.jpg', 'motorcycle_left.png', 'motorcycle_right.png', 'rocket.jpg',
          'page.png', 'text.png', 'moon.png', 'ihc.png', 'retina.jpg', 'chessboard_RGB.png',
          'color.png', 'clock_motion.png', 'cell.png', 'horse.png', 'logo.png')
PHOTO_PROBABILITY = 0.7


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The background photos as RGB uint8 arrays (empty without scikit-image)."""
    try:
        import skimage
    except ImportError:
        return ()
    folder = Path(skimage.__file__).parent / 'data'
    images = []
    for name in PHOTOS:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is not None:
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return tuple(images)


def random_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """An RGB uint8 (height, width, 3) background: a photo crop or a procedural gradient."""
    available = photos()
    if available and rng.random() < PHOTO_PROBABILITY:
        return photo_background(rng, available[rng.integers(len(available))], width, height)
    return gradient_background(rng, width, height)


def photo_background(rng: np.random.Generator, photo: np.ndarray, width: int,
                     height: int) -> np.ndarray:
    """A random window of `photo` (zoomed 1-3x, possibly mirrored) resized to the image, with
    random per-channel gain and blur (the generator adds sensor noise)."""
    ph, pw = photo.shape[:2]
    zoom = rng.uniform(1.0, 3.0)
    window_w = min(pw, ph * width / height) / zoom
    window_h = window_w * height / width
    x0, y0 = rng.uniform(0, pw - window_w), rng.uniform(0, ph - window_h)
    scale = width / window_w
    affine = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
    image = cv2.warpAffine(photo, affine, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    gain = rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3)
    image = image * gain + rng.uniform(-20, 20)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 3.0))
    return np.clip(image, 0, 255).astype(np.uint8)


def gradient_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth colour gradient with blotches (uint8 (H, W, 3))."""
    corners = rng.integers(0, 256, (2, 2, 3)).astype(np.float32)
    background = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    blotches = cv2.resize(rng.uniform(-60, 60, (6, 8, 3)).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)
    return np.clip(background + blotches, 0, 255).astype(np.uint8)
