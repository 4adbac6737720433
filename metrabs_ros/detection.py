"""Person detectors: a torchvision detection model or a TorchScript file, behind one interface.

A detector maps an RGB uint8 image (H, W, 3) to boxes (D, 5): x, y, w, h in pixels and a score
in [0, 1], after the score threshold, NMS and max_detections. Boxes supplied by the caller need no
detector: pass them to PoseEstimator.estimate_poses.

TorchScript contract: ``module(image)`` with image (3, H, W) float32 RGB in [0, 1] returns
(D, 5) ``[x1, y1, x2, y2, score]`` person boxes in pixels (or (D, 6) with a class id last, where
class 0 is person).
"""
from __future__ import annotations

import abc
from pathlib import Path

import numpy as np
import torch
import torchvision

# torchvision detection models trained on COCO label persons as 1.
COCO_PERSON_LABEL = 1
TORCHVISION_DETECTORS = (
    'fasterrcnn_resnet50_fpn', 'fasterrcnn_resnet50_fpn_v2', 'fasterrcnn_mobilenet_v3_large_fpn',
    'fasterrcnn_mobilenet_v3_large_320_fpn', 'retinanet_resnet50_fpn',
    'retinanet_resnet50_fpn_v2', 'ssdlite320_mobilenet_v3_large', 'ssd300_vgg16', 'fcos_resnet50_fpn')


DEFAULT_THRESHOLD = 0.3  # detector score threshold of the CLI, the node and metrabs-eval


class DetectorError(RuntimeError):
    """A detector could not be loaded."""


class PersonDetector(abc.ABC):
    """Base: subclasses set self.module and implement _detect_xyxy."""

    module: torch.nn.Module
    device: torch.device = torch.device('cpu')

    def __call__(self, image: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                 nms_iou_threshold: float = 0.7, max_detections: int = -1,
                 flip_aug: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (D, 5) boxes [x, y, w, h, score], best first."""
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        tensor = tensor.permute(2, 0, 1).float() / 255
        with torch.inference_mode():
            boxes = self._detect_xyxy(tensor).float()
            if flip_aug:
                flipped = self._detect_xyxy(tensor.flip(-1)).float()
                width = tensor.shape[-1]
                flipped[:, [0, 2]] = width - flipped[:, [2, 0]]  # box edges, not pixel centres
                boxes = torch.cat([boxes, flipped])
        boxes = boxes[boxes[:, 4] >= threshold]
        keep = torchvision.ops.nms(boxes[:, :4], boxes[:, 4], nms_iou_threshold)
        if max_detections is not None and max_detections >= 0:
            keep = keep[:max_detections]
        boxes = boxes[keep].cpu().numpy().astype(np.float64)
        boxes[:, 2:4] -= boxes[:, :2]
        return boxes.reshape(-1, 5)

    @abc.abstractmethod
    def _detect_xyxy(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) float RGB in [0, 1] -> (D, 5) [x1, y1, x2, y2, score] person boxes."""

    def to(self, device) -> 'PersonDetector':
        """Move the detector to `device`; returns self."""
        self.device = torch.device(device)
        self.module.to(self.device)
        return self


class TorchvisionDetector(PersonDetector):
    """A torchvision detection model with weights from a local file (or, if allowed, downloaded).

    allow_download=True uses torchvision's default pretrained COCO weights, which it downloads
    to its cache on first use; never used by the tests.
    """

    def __init__(self, architecture: str, weights_path: str | Path | None = None,
                 allow_download: bool = False, device: str | torch.device = 'cpu'):
        if architecture not in TORCHVISION_DETECTORS:
            raise DetectorError(
                f'unknown detector {architecture!r}; known: {list(TORCHVISION_DETECTORS)}')
        builder = getattr(torchvision.models.detection, architecture)
        if weights_path is not None:
            model = builder(weights=None, weights_backbone=None, num_classes=91)
            state = _load_state_dict(Path(weights_path))
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise DetectorError(f'{weights_path}: weights do not fit {architecture}: {e}') from e
        elif allow_download:
            model = builder(weights='DEFAULT')
        else:
            raise DetectorError(
                f'{architecture}: give weights_path (a local state dict file) or allow_download')
        self.module = model.eval()
        self.to(device)

    def _detect_xyxy(self, image: torch.Tensor) -> torch.Tensor:
        output = self.module([image])[0]
        is_person = output['labels'] == COCO_PERSON_LABEL
        return torch.cat([output['boxes'][is_person], output['scores'][is_person, None]], dim=1)


class TorchScriptDetector(PersonDetector):
    """A TorchScript person detector following the contract in this module's docstring."""

    def __init__(self, path: str | Path, device: str | torch.device = 'cpu'):
        path = Path(path)
        if not path.is_file():
            raise DetectorError(f'missing detector file: {path}')
        try:
            self.module = torch.jit.load(str(path), map_location='cpu').eval()
        except Exception as e:
            raise DetectorError(f'cannot load TorchScript detector {path}: {e}') from e
        self.path = path
        self.to(device)

    def _detect_xyxy(self, image: torch.Tensor) -> torch.Tensor:
        boxes = self.module(image)
        if boxes.ndim != 2 or boxes.shape[1] not in (5, 6):
            raise DetectorError(
                f'{self.path}: detector returned shape {tuple(boxes.shape)}, expected (D, 5|6)')
        if boxes.shape[1] == 6:
            boxes = boxes[boxes[:, 5] == 0, :5]
        return boxes


def load_detector(spec: str | Path, device: str | torch.device = 'cpu',
                  allow_download: bool = False) -> PersonDetector:
    """Detector from a spec: a centre-point detector directory, 'file.pt' / 'file.ts'
    (TorchScript), 'architecture[:weights_file]' (torchvision) or 'ultralytics:weights.pt' (the
    optional YOLO backend in metrabs_ros.yolo_detector; never downloads)."""
    from metrabs_ros.centre_detector import (CentreNetDetector, is_centre_net_directory,
                                             load_centre_net)
    if is_centre_net_directory(spec):
        return CentreNetDetector(load_centre_net(spec), device)
    spec = str(spec)
    architecture, _, weights = spec.partition(':')
    if architecture in TORCHVISION_DETECTORS:
        return TorchvisionDetector(architecture, weights or None, allow_download, device)
    if architecture == 'ultralytics':
        from metrabs_ros.yolo_detector import YoloDetector, load_yolo
        return YoloDetector(load_yolo(weights), device)
    return TorchScriptDetector(spec, device)


def _load_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise DetectorError(f'missing detector weights file: {path}')
    try:
        if path.suffix == '.safetensors':
            import safetensors.torch
            return safetensors.torch.load_file(str(path))
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise DetectorError(f'cannot read detector weights {path}: {e}') from e
