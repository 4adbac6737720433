"""Optional person detector: an ultralytics YOLO checkpoint with the official MeTRAbs preprocessing.

Spec ``ultralytics:PATH.pt`` in load_detector, e.g. ``ultralytics:yolov8m.pt`` (the official detector).
Needs the optional ``ultralytics`` package (``pip install ultralytics``), which is licensed under
AGPL-3.0: using this backend brings that licence into play; nothing else in metrabs_ros imports it.
Weights are never downloaded: the file must exist locally (a ``.pt`` checkpoint is a pickle; load
trusted files only).

As metrabs_pytorch/multiperson/person_detector.py: the image is resized so that its longer side is
416 pixels (sizes truncated, in float64 as the official code ran under NumPy 1.x), in linear light
(values ** 2.2, bilinear, antialiased when shrinking, ** (1 / 2.2)), padded with 0.5 to multiples of
32 (half the padding, rounded down, before), and run under float16 autocast on CUDA. Boxes whose best
class is 0 (person) are kept, scored by that class. Then the PersonDetector threshold (score >=
threshold; ultralytics: >), NMS and max_detections: the official ultralytics NMS, as IoU does not
change under the per-axis scaling back to image pixels (float64 here); the boxes are clipped to the
padded input afterwards, as ultralytics does. Beyond the official detector: flip_aug, and end-to-end
(NMS-free) heads, whose boxes get this NMS too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional

from metrabs_ros.detection import DEFAULT_THRESHOLD, DetectorError, PersonDetector

INPUT_SIZE = 416
PAD_MULTIPLE = 32
PAD_VALUE = 0.5
GAMMA = 2.2
PERSON_CLASS = 0
# Set before ultralytics is first imported: no DNS look-ups for its online check and no pip installs
# of modules a checkpoint names. A value the user set wins.
ULTRALYTICS_ENVIRONMENT = {'YOLO_OFFLINE': 'true', 'YOLO_AUTOINSTALL': 'false'}


@dataclass(frozen=True)
class Letterbox:
    """Where an image of height x width pixels lies in the network input (all in pixels)."""

    height: int
    width: int
    resized_height: int
    resized_width: int
    pad_top: int
    pad_left: int
    padded_height: int
    padded_width: int

    @classmethod
    def for_image(cls, height: int, width: int, input_size: int = INPUT_SIZE) -> Letterbox:
        """The official resize-and-pad geometry for an image of height x width pixels."""
        factor = input_size / max(height, width)
        resized_height, resized_width = int(factor * height), int(factor * width)
        pad_height, pad_width = -resized_height % PAD_MULTIPLE, -resized_width % PAD_MULTIPLE
        return cls(height, width, resized_height, resized_width, pad_height // 2, pad_width // 2,
                   resized_height + pad_height, resized_width + pad_width)

    @property
    def scale(self) -> tuple[float, float]:
        """Image pixels per input pixel, (x, y)."""
        return self.width / self.resized_width, self.height / self.resized_height

    def to_image(self, xyxy: torch.Tensor) -> torch.Tensor:
        """(D, 4) input-pixel boxes x1, y1, x2, y2 -> image pixels, float64."""
        scale = xyxy.new_tensor(self.scale, dtype=torch.float64).repeat(2)
        offset = xyxy.new_tensor([self.pad_left, self.pad_top], dtype=torch.float64).repeat(2)
        return (xyxy.double() - offset) * scale

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """The padded input's corners in image pixels: (x, y) low and high."""
        scale = np.array(self.scale)
        low = -np.array([self.pad_left, self.pad_top]) * scale
        return low, low + np.array([self.padded_width, self.padded_height]) * scale


def letterbox(image: torch.Tensor, input_size: int = INPUT_SIZE) -> tuple[torch.Tensor, Letterbox]:
    """(3, H, W) RGB in [0, 1] -> (1, 3, H', W') network input and its geometry."""
    box = Letterbox.for_image(*image.shape[-2:], input_size=input_size)
    linear = torchvision.transforms.functional.resize(
        image[None] ** GAMMA, [box.resized_height, box.resized_width],
        antialias=max(box.height, box.width) > input_size)
    pad_bottom = box.padded_height - box.resized_height - box.pad_top
    pad_right = box.padded_width - box.resized_width - box.pad_left
    return F.pad(linear ** (1 / GAMMA), (box.pad_left, pad_right, box.pad_top, pad_bottom),
                 value=PAD_VALUE), box


def person_candidates(output: torch.Tensor) -> torch.Tensor:
    """One image's YOLO output -> (D, 5) [x1, y1, x2, y2, score] input-pixel boxes whose class is person.

    output: (4 + classes, anchors) centre x, centre y, width, height and class scores, or an
    end-to-end head's (D, 6) rows x1, y1, x2, y2, score, class.
    """
    if output.shape[-1] == 6:
        return output[output[:, 5] == PERSON_CLASS, :5]
    score, label = output[4:].max(0)
    is_person = label == PERSON_CLASS
    centre, size = output[:2, is_person].T, output[2:4, is_person].T
    return torch.cat([centre - size / 2, centre + size / 2, score[is_person, None]], dim=1)


class YoloDetector(PersonDetector):
    """A YOLO network (an ultralytics DetectionModel, or any module with its outputs) as a PersonDetector."""

    def __init__(self, network: torch.nn.Module, device: str | torch.device = 'cpu'):
        self.module = network.eval()
        self.to(device)

    def __call__(self, image: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                 nms_iou_threshold: float = 0.7, max_detections: int = -1,
                 flip_aug: bool = False) -> np.ndarray:
        """As PersonDetector; boxes clipped after NMS to the padded input (of the unflipped image)."""
        boxes = super().__call__(image, threshold, nms_iou_threshold, max_detections, flip_aug)
        low, high = Letterbox.for_image(*image.shape[:2]).extent()
        start = np.clip(boxes[:, :2], low, high)
        boxes[:, 2:4] = np.clip(boxes[:, :2] + boxes[:, 2:4], low, high) - start
        boxes[:, :2] = start
        return boxes

    def _detect_xyxy(self, image: torch.Tensor) -> torch.Tensor:
        batch, box = letterbox(image)
        with torch.autocast('cuda', torch.float16, enabled=self.device.type == 'cuda'):
            output = self.module(batch)
        if isinstance(output, (tuple, list)):
            output = output[0]
        boxes = person_candidates(output[0].float())
        return torch.cat([box.to_image(boxes[:, :4]), boxes[:, 4:].double()], dim=1)


def import_ultralytics() -> ModuleType:
    """The ultralytics package, imported offline; DetectorError naming the install when it is missing."""
    for name, value in ULTRALYTICS_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import ultralytics
    except ImportError as e:
        raise DetectorError(
            'the ultralytics detector needs the optional ultralytics package (AGPL-3.0): '
            'pip install ultralytics  (or: pip install metrabs_ros[yolo])') from e
    return ultralytics


def load_yolo(path: str | Path) -> torch.nn.Module:
    """The fused, float32 detection network of a local ultralytics .pt checkpoint; never downloads."""
    path = str(path)
    if not path.endswith('.pt'):
        raise DetectorError(f'ultralytics detector: expected a .pt checkpoint, got {path!r}')
    if not Path(path).is_file():
        raise DetectorError(f'missing ultralytics weights file: {path!r} (weights are never downloaded)')
    ultralytics = import_ultralytics()
    from ultralytics.utils.checks import check_yolov5u_filename
    if check_yolov5u_filename(path, verbose=False) != path:
        raise DetectorError(f'{path}: ultralytics would load (and download) a YOLOv5u file instead; '
                            'rename the file')
    try:
        model = ultralytics.YOLO(path)
    except Exception as e:
        raise DetectorError(f'cannot load ultralytics detector {path}: {e}') from e
    if model.task != 'detect':
        raise DetectorError(f'{path}: an ultralytics {model.task!r} model, expected a detection model')
    return model.model.fuse(verbose=False).eval()
