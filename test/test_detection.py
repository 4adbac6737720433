import numpy as np
import pytest
import torch
import torchvision

from metrabs_ros.detection import (DetectorError, TorchScriptDetector, TorchvisionDetector,
                                   load_detector)

IMAGE = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)


class FixedBoxes(torch.nn.Module):
    """TorchScript-able detector returning the same [x1, y1, x2, y2, score] boxes for any image."""

    def __init__(self, boxes):
        super().__init__()
        self.register_buffer('boxes', torch.tensor(boxes, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.boxes


@pytest.fixture
def scripted(tmp_path):
    boxes = [[10, 10, 50, 90, 0.9], [12, 11, 52, 88, 0.8], [100, 20, 140, 100, 0.5],
             [60, 60, 70, 70, 0.1]]
    path = tmp_path / 'detector.ts'
    torch.jit.script(FixedBoxes(boxes)).save(str(path))
    return path


def test_torchscript_detector_threshold_nms_and_limit(scripted):
    detector = load_detector(scripted)
    boxes = detector(IMAGE, threshold=0.3, nms_iou_threshold=0.7)
    # The 0.8 box overlaps the 0.9 box (IoU > 0.7); the 0.1 box is under the threshold.
    np.testing.assert_allclose(boxes, [[10, 10, 40, 80, 0.9], [100, 20, 40, 80, 0.5]], atol=1e-5)
    assert len(detector(IMAGE, threshold=0.05, nms_iou_threshold=0.99)) == 4
    assert len(detector(IMAGE, threshold=0.05, nms_iou_threshold=0.99, max_detections=2)) == 2
    assert detector(IMAGE, threshold=0.95).shape == (0, 5)


def test_flip_augmentation_adds_mirrored_boxes(scripted):
    detector = TorchScriptDetector(scripted)
    boxes = detector(IMAGE, threshold=0.3, nms_iou_threshold=0.99, flip_aug=True)
    # Fixed boxes "found" in the mirrored image map back to x -> 160 - x.
    mirrored = [[160 - 50, 10, 40, 80, 0.9]]
    assert any(np.allclose(b, mirrored[0], atol=1e-4) for b in boxes)


def test_torchscript_contract_violation_is_reported(tmp_path):
    path = tmp_path / 'bad.ts'
    torch.jit.script(FixedBoxes([[1.0, 2.0, 3.0]])).save(str(path))
    with pytest.raises(DetectorError, match='expected'):
        TorchScriptDetector(path)(IMAGE)


def test_torchvision_detector_from_local_weights(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=91)
    torch.save(model.state_dict(), tmp_path / 'ssdlite.pt')
    detector = load_detector(f'ssdlite320_mobilenet_v3_large:{tmp_path / "ssdlite.pt"}')
    boxes = detector(IMAGE, threshold=0.0, max_detections=5)
    assert boxes.shape[1] == 5 and len(boxes) <= 5
    assert np.all(boxes[:, 2:4] >= 0)
    assert np.all(np.diff(boxes[:, 4]) <= 1e-6)  # best first


def test_detector_load_errors_are_clear(tmp_path):
    with pytest.raises(DetectorError, match='missing detector file'):
        load_detector(tmp_path / 'nothing.ts')
    (tmp_path / 'junk.ts').write_bytes(b'junk')
    with pytest.raises(DetectorError, match='junk.ts'):
        load_detector(tmp_path / 'junk.ts')
    with pytest.raises(DetectorError, match='weights_path'):
        TorchvisionDetector('ssdlite320_mobilenet_v3_large')
    with pytest.raises(DetectorError, match='unknown detector'):
        TorchvisionDetector('yolo_v99', tmp_path / 'w.pt')
    torch.save({'wrong': torch.zeros(1)}, tmp_path / 'wrong.pt')
    with pytest.raises(DetectorError, match='do not fit'):
        load_detector(f'ssdlite320_mobilenet_v3_large:{tmp_path / "wrong.pt"}')
