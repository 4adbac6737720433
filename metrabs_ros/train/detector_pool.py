"""Detector training images held on the training device (metrabs-train-detector --data-dir).

The crop renderers can store every rendered image at the detector's input size beside the pose
crops (metrabs-render-crops --detector-images), so one set of renders trains both networks.
The images (uint8) are read into one tensor on the device; each batch is drawn there, mirrored
and colour-jittered as `detector_trainer.detector_example` does on the CPU, with no loader
processes, and optionally zoomed and shifted (`zoom`: a reused image becomes a new view, as
crop_warp does for the pose crops; boxes are scaled, shifted and clipped to the image, which
keeps them boxes of the visible pixels). The boxes stay on the host (the loss builds its
targets from them there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metrabs_ros.train.detector_trainer import DetectorBatch
from metrabs_ros.train.device_storage import DevicePool, uniform

CONTRAST = (0.7, 1.3)
BRIGHTNESS_SHIFT = 0.15
MIN_BOX_SIDE = 4.0  # pixels: boxes clipped below this by a zoom are dropped


class DeviceImagePool(DevicePool):
    """Endless DetectorBatches (images float32 in [0, 1] on `device`, boxes x, y, w, h numpy
    per image) drawn uniformly from the detector images of the caches in `directories`."""

    render_options = ' --detector-images INPUT_SIDE'

    def __init__(self, directories, batch_size: int, device: torch.device | str, seed: int,
                 refresh_every: int = 200, flip_probability: float = 0.5,
                 colour_jitter: bool = True, zoom: tuple[float, float] | None = None,
                 shift: float = 0.08):
        super().__init__(directories, batch_size, device, seed, refresh_every)
        self.flip_probability = flip_probability
        self.colour_jitter, self.zoom, self.shift = colour_jitter, zoom, shift
        self.boxes: list[np.ndarray] = []  # per image

    def load_chunk(self, path: Path) -> None:
        if not (path / 'detector_images.npy').exists():
            raise FileNotFoundError(f'{path} has no detector images: render the cache with '
                                    f'metrabs-render-crops{self.render_options}')
        boxes = np.load(path / 'detector_boxes.npy')
        owners = np.load(path / 'detector_box_image.npy')
        images = np.load(path / 'detector_images.npy')
        self.storage.append({'images': images,
                             'sizes': np.load(path / 'detector_image_sizes.npy')})
        self.boxes += [boxes[owners == i] for i in range(len(images))]

    def sample(self) -> DetectorBatch:
        """One batch from the images loaded so far."""
        n = self.batch_size
        index = torch.randint(self.size, (n,), device=self.device,
                              generator=self.generator)
        images = self.storage['images'][index].float() / 255
        widths, heights = self.storage['sizes'][index].T
        flips = torch.rand(n, device=self.device, generator=self.generator) < self.flip_probability
        images = mirror_within(images, torch.where(flips, widths, 0))
        scales, offsets = self._random_zooms(widths, heights)
        if self.zoom is not None:
            images = zoom_images(images, scales, offsets)
        if self.colour_jitter:
            contrast = uniform(n, *CONTRAST, self.generator)[:, None, None, None]
            shift = uniform(n, -BRIGHTNESS_SHIFT, BRIGHTNESS_SHIFT,
                            self.generator)[:, None, None, None]
            images = ((images - 0.5) * contrast + 0.5 + shift).clamp(0, 1)
        if self.colour_jitter or self.zoom is not None:
            images = images * inside(images.shape, widths, heights)  # the padding stays black
        boxes = []
        for i, flip, size, scale, offset in zip(index.tolist(), flips.tolist(),
                                                torch.stack([widths, heights], 1).tolist(),
                                                scales.tolist(), offsets.tolist()):
            image_boxes = self.boxes[i].copy()
            if flip:
                image_boxes[:, 0] = size[0] - image_boxes[:, 0] - image_boxes[:, 2]
            if self.zoom is not None:
                image_boxes = zoomed_boxes(image_boxes, scale, np.array(offset), np.array(size))
            boxes.append(image_boxes)
        return DetectorBatch(images, tuple(boxes))

    def _random_zooms(self, widths: torch.Tensor, heights: torch.Tensor):
        """Per image a scale and the (x, y) offset of the map image -> scale * image + offset
        (a zoom about the image centre plus a shift of up to `shift` of the image width)."""
        n = len(widths)
        if self.zoom is None:
            return torch.ones(n), torch.zeros(n, 2)
        scales = uniform(n, *self.zoom, self.generator)
        centres = torch.stack([widths, heights], 1).float() / 2
        shifts = uniform(2 * n, -self.shift, self.shift, self.generator).reshape(n, 2)
        offsets = centres * (1 - scales[:, None]) + shifts * widths[:, None].float()
        return scales.cpu(), offsets.cpu()


def mirror_within(images: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W), each mirrored within its first widths[i] columns (0: unchanged);
    the padding beyond stays where it is."""
    columns = torch.arange(images.shape[-1], device=images.device)
    source = torch.where(columns < widths[:, None], widths[:, None] - 1 - columns, columns)
    return images.gather(-1, source[:, None, None, :].expand_as(images))


def zoom_images(images: torch.Tensor, scales: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) mapped by pixel -> scale * pixel + offset (continuous pixel
    coordinates, x right, y down); what comes from outside is black."""
    height, width = images.shape[-2:]
    scales, offsets = scales.to(images.device), offsets.to(images.device)
    theta = torch.zeros(len(images), 2, 3, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scales
    theta[:, 0, 2] = 1 / scales - 2 * offsets[:, 0] / (scales * width) - 1
    theta[:, 1, 2] = 1 / scales - 2 * offsets[:, 1] / (scales * height) - 1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode='bilinear', padding_mode='zeros',
                         align_corners=False)


def zoomed_boxes(boxes: np.ndarray, scale: float, offset: np.ndarray,
                 size: np.ndarray) -> np.ndarray:
    """x, y, w, h boxes (P, 4) mapped like zoom_images and clipped to the image (`size`: width,
    height); boxes left narrower or lower than MIN_BOX_SIDE are dropped."""
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1) * scale
    corners = np.clip(corners + np.tile(offset, 2), 0, np.tile(size, 2))
    clipped = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], 1)
    return clipped[(clipped[:, 2:] >= MIN_BOX_SIDE).all(1)].astype(np.float32)


def inside(shape: torch.Size, widths: torch.Tensor, heights: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) mask of each image's pixels before the padding."""
    rows = torch.arange(shape[-2], device=widths.device)
    columns = torch.arange(shape[-1], device=widths.device)
    return ((rows[None, :, None] < heights[:, None, None]) &
            (columns[None, None, :] < widths[:, None, None]))[:, None].float()
