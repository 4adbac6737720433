"""The optional ultralytics YOLO detector: official preprocessing, box mapping, loading without downloads.

Most tests use a stand-in network with known outputs and need no ultralytics; those marked with the
`yolo_checkpoint` fixture build a randomly initialised YOLOv8n from ultralytics' model YAML.
"""
import sys

import numpy as np
import pytest
import torch

from metrabs_ros.detection import DetectorError, load_detector
from metrabs_ros.yolo_detector import (Letterbox, YoloDetector, import_ultralytics, letterbox,
                                       person_candidates)

NUM_CLASSES = 80


class FixedOutput(torch.nn.Module):
    """Stands in for a YOLO network: records its input and returns fixed predictions, as ultralytics
    does in eval mode ((1, 4 + classes, anchors), extras)."""

    def __init__(self, predictions: torch.Tensor):
        super().__init__()
        self.predictions = predictions
        self.inputs = []

    def forward(self, batch: torch.Tensor):
        self.inputs.append(batch)
        return self.predictions[None].to(batch), {}


def yolo_output(xywh, class_scores) -> torch.Tensor:
    """(4 + classes, D) predictions from centre-size boxes and {class: score} per box."""
    scores = torch.zeros(NUM_CLASSES, len(xywh))
    for i, per_class in enumerate(class_scores):
        for label, score in per_class.items():
            scores[label, i] = score
    return torch.cat([torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4).T, scores])


def expected_boxes(box: Letterbox, xyxy) -> np.ndarray:
    """Input-pixel x1, y1, x2, y2 -> image x, y, w, h: the official mapping, in float64."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    sx, sy = box.width / box.resized_width, box.height / box.resized_height
    x1, x2 = (xyxy[:, 0] - box.pad_left) * sx, (xyxy[:, 2] - box.pad_left) * sx
    y1, y2 = (xyxy[:, 1] - box.pad_top) * sy, (xyxy[:, 3] - box.pad_top) * sy
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def assert_boxes(actual: np.ndarray, expected: np.ndarray):
    # The interface computes in float32: 1e-4 px plus float32 rounding of large coordinates.
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-7)


# (height, width) -> resized (height, width), padded (height, width), padding before (top, left)
SHAPES = {
    (480, 640): ((312, 416), (320, 416), (4, 0)),
    (1080, 1920): ((234, 416), (256, 416), (11, 0)),
    (300, 200): ((416, 277), (416, 288), (0, 5)),
    (720, 1280): ((234, 416), (256, 416), (11, 0)),  # float32 arithmetic (NumPy 2) would give 233
    (720, 720): ((415, 415), (416, 416), (0, 0)),  # 416 / 720 * 720 truncates to 415
    (200, 416): ((200, 416), (224, 416), (12, 0)),
}


@pytest.mark.parametrize('shape', SHAPES)
def test_letterboxed_input_long_side_416_multiples_of_32(shape):
    resized, padded, (top, left) = SHAPES[shape]
    box = Letterbox.for_image(*shape)
    assert (box.resized_height, box.resized_width) == resized
    assert (box.padded_height, box.padded_width) == padded and (box.pad_top, box.pad_left) == (top, left)
    network = FixedOutput(yolo_output([], []))
    value = 100
    assert YoloDetector(network)(np.full((*shape, 3), value, np.uint8)).shape == (0, 5)
    (batch,) = network.inputs
    assert batch.shape == (1, 3, *padded) and max(padded) == 416
    assert padded[0] % 32 == 0 and padded[1] % 32 == 0
    inside = batch[..., top:top + resized[0], left:left + resized[1]]
    torch.testing.assert_close(inside, torch.full_like(inside, value / 255), atol=1e-5, rtol=0)
    padding = batch.clone()
    padding[..., top:top + resized[0], left:left + resized[1]] = 0.5
    assert torch.all(padding == 0.5)


def test_resizing_averages_in_linear_light():
    stripes = np.zeros((832, 832, 3), np.uint8)
    stripes[:, ::2] = 255
    batch, box = letterbox(torch.from_numpy(stripes).permute(2, 0, 1).float() / 255)
    assert batch.shape == (1, 3, 416, 416) and box.resized_width == 416
    # Half the light of white, encoded with gamma 2.2 (not the 0.5 of averaging the encoded values).
    interior = batch[..., 2:-2, 2:-2]
    torch.testing.assert_close(interior, torch.full_like(interior, 0.5 ** (1 / 2.2)), atol=1e-5, rtol=0)


@pytest.mark.parametrize('shape', [(480, 640), (300, 200), (1080, 1920), (720, 720)])
def test_boxes_map_back_to_the_image_exactly(shape):
    box = Letterbox.for_image(*shape)
    # Centre x, centre y, width, height in input pixels, inside the padded input.
    xywh = [[100.25, 150.5, 60.0, 120.75], [200.5, 90.125, 40.5, 80.0], [box.padded_width / 2, 30, 20, 20]]
    detector = YoloDetector(FixedOutput(yolo_output(xywh, [{0: 0.9}, {0: 0.8}, {0: 0.7}])))
    boxes = detector(np.zeros((*shape, 3), np.uint8), threshold=0.3, nms_iou_threshold=0.7)
    xywh = np.array(xywh)
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    assert_boxes(boxes[:, :4], expected_boxes(box, xyxy))
    np.testing.assert_allclose(boxes[:, 4], [0.9, 0.8, 0.7], atol=1e-6)


def test_only_person_class_threshold_and_max_detections():
    xywh = [[50, 50, 20, 40], [150, 50, 20, 40], [250, 50, 20, 40], [50, 150, 20, 40], [150, 150, 20, 40]]
    scores = [{0: 0.9}, {0: 0.6, 2: 0.8}, {2: 0.95}, {0: 0.2}, {0: 0.5, 1: 0.4}]
    detector = YoloDetector(FixedOutput(yolo_output(xywh, scores)))
    image = np.zeros((320, 416, 3), np.uint8)  # no scaling, no padding
    boxes = detector(image, threshold=0.3)
    # The second box's best class is a car (2), though its person score passes the threshold.
    assert_boxes(boxes, [[40, 30, 20, 40, 0.9], [140, 130, 20, 40, 0.5]])
    assert_boxes(detector(image, threshold=0.1), [[40, 30, 20, 40, 0.9], [140, 130, 20, 40, 0.5],
                                                  [40, 130, 20, 40, 0.2]])
    assert_boxes(detector(image, threshold=0.3, max_detections=1), [[40, 30, 20, 40, 0.9]])


def test_end_to_end_head_rows_are_filtered_by_class():
    rows = torch.tensor([[10, 20, 50, 100, 0.9, 0], [60, 20, 90, 100, 0.8, 2], [100, 20, 150, 100, 0.7, 0]])
    torch.testing.assert_close(person_candidates(rows), rows[[0, 2], :5])


def test_nms_before_clipping_to_the_padded_input():
    # The second box sticks out of the input on the left: IoU 0.5 with the first before clipping,
    # so NMS keeps both; clipped, it equals the first (ultralytics clips after its NMS).
    xywh = [[50, 100, 100, 100], [0, 100, 200, 100]]
    detector = YoloDetector(FixedOutput(yolo_output(xywh, [{0: 0.9}, {0: 0.8}])))
    boxes = detector(np.zeros((480, 640, 3), np.uint8), threshold=0.3, nms_iou_threshold=0.7)
    box = Letterbox.for_image(480, 640)
    assert_boxes(boxes[:, :4], expected_boxes(box, [[0, 50, 100, 150], [0, 50, 100, 150]]))
    assert box.extent()[0][0] == 0 and boxes[1, 0] == 0


def test_flip_augmentation_adds_mirrored_boxes():
    detector = YoloDetector(FixedOutput(yolo_output([[100, 100, 40, 80]], [{0: 0.9}])))
    boxes = detector(np.zeros((320, 416, 3), np.uint8), nms_iou_threshold=0.99, flip_aug=True)
    assert_boxes(boxes, [[80, 60, 40, 80, 0.9], [416 - 120, 60, 40, 80, 0.9]])


def test_missing_ultralytics_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'ultralytics', None)  # import ultralytics raises ImportError
    (tmp_path / 'yolov8n.pt').write_bytes(b'')
    with pytest.raises(DetectorError, match='pip install ultralytics'):
        load_detector(f'ultralytics:{tmp_path / "yolov8n.pt"}')


@pytest.mark.parametrize('weights, message', [
    ('yolov8m.pt', 'missing ultralytics weights file'), ('missing/yolov8n.pt', 'missing ultralytics weights'),
    ('', 'expected a .pt checkpoint'), ('yolov8m.onnx', 'expected a .pt checkpoint')])
def test_missing_weights_are_refused_before_ultralytics_is_used(weights, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no yolov8m.pt here; ultralytics would download it
    monkeypatch.setitem(sys.modules, 'ultralytics', None)  # any use would fail differently
    with pytest.raises(DetectorError, match=message):
        load_detector(f'ultralytics:{weights}')


@pytest.fixture(scope='module')
def yolo_checkpoint(tmp_path_factory):
    """A randomly initialised YOLOv8n (built from ultralytics' YAML, no download) saved as a .pt."""
    try:
        ultralytics = import_ultralytics()  # offline environment first, as the detector does
    except DetectorError:
        pytest.skip('optional YOLO backend: pip install ultralytics')
    torch.manual_seed(0)
    model = ultralytics.YOLO('yolov8n.yaml')
    network = model.model
    # Random weights give vanishing features: batch-norm statistics from one batch make the outputs
    # vary, and a person bias makes persons the best class of many boxes, as in a trained model.
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        network.train()(torch.rand(4, 3, 256, 256))
        for classify in network.model[-1].cv3:
            classify[-1].bias[0] += 5.0
    network.eval()
    path = tmp_path_factory.mktemp('yolo') / 'yolov8n.pt'
    model.save(path)
    return path


def no_downloads(monkeypatch):
    import ultralytics.utils.downloads

    def refuse(*args, **kwargs):
        raise AssertionError(f'ultralytics tried to download: {args} {kwargs}')
    monkeypatch.setattr(ultralytics.utils.downloads, 'safe_download', refuse)


def test_checkpoint_matches_the_official_ultralytics_pipeline(yolo_checkpoint, monkeypatch):
    no_downloads(monkeypatch)
    import ultralytics
    detector = load_detector(f'ultralytics:{yolo_checkpoint}')
    assert isinstance(detector, YoloDetector)
    image = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    batch, box = letterbox(tensor)
    # A threshold in a wide gap of the person scores keeps 21 to 40 boxes before NMS.
    with torch.no_grad():
        scores = person_candidates(detector.module(batch)[0][0])[:, 4].sort(descending=True).values
    k = 20 + int(torch.argmax(scores[20:40] - scores[21:41]))
    threshold = float(scores[k] + scores[k + 1]) / 2
    boxes = detector(image, threshold=threshold, nms_iou_threshold=0.5)

    # The official metrabs_pytorch PersonDetector: ultralytics predict on the letterboxed batch,
    # then boxes shifted by the leading padding and scaled by image size / resized size.
    results = ultralytics.YOLO(str(yolo_checkpoint)).predict(
        source=batch, conf=threshold, iou=0.5, classes=[0], max_det=300, device='cpu', verbose=False)
    official = results[0].boxes
    sx, sy = box.width / box.resized_width, box.height / box.resized_height
    xyxy, xywh = official.xyxy, official.xywh
    expected = torch.stack([(xyxy[:, 0] - box.pad_left) * sx, (xyxy[:, 1] - box.pad_top) * sy,
                            xywh[:, 2] * sx, xywh[:, 3] * sy, official.conf], dim=1)
    assert len(boxes) >= 3
    np.testing.assert_allclose(boxes, expected.numpy(), atol=2e-3)  # float32 convolutions: ~1e-3 px


def test_checkpoint_runs_on_any_image_and_limits_detections(yolo_checkpoint, monkeypatch):
    no_downloads(monkeypatch)
    detector = load_detector(f'ultralytics:{yolo_checkpoint}')
    assert next(detector.module.parameters()).dtype == torch.float32
    for shape in [(480, 640), (1080, 1920), (300, 200)]:
        image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
        boxes = detector(image, threshold=0.0, max_detections=5)
        assert boxes.shape == (5, 5) and np.all(np.isfinite(boxes))
        assert np.all(np.diff(boxes[:, 4]) <= 1e-6)  # best first
        low, high = Letterbox.for_image(*shape).extent()
        assert np.all(boxes[:, :2] >= low - 1e-3) and np.all(boxes[:, :2] + boxes[:, 2:4] <= high + 1e-3)


def test_legacy_yolov5_name_would_redirect_to_a_download(yolo_checkpoint, tmp_path, monkeypatch):
    no_downloads(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'yolov5s.pt').write_bytes(yolo_checkpoint.read_bytes())
    with pytest.raises(DetectorError, match='YOLOv5u'):
        load_detector('ultralytics:yolov5s.pt')  # ultralytics would fetch yolov5su.pt instead
