import numpy as np
import pytest
import torch

from metrabs_ros.centre_detector import (CentreNet, CentreNetConfig, CentreNetDetector, decode,
                                         load_centre_net, save_centre_net)
from metrabs_ros.detection import DetectorError, load_detector
from metrabs_ros.train.detector_trainer import (DetectorBatch, DetectorTrainConfig,
                                                DetectorTrainer, centre_targets,
                                                detector_example, detector_losses,
                                                generalized_iou)

BOXES = np.array([[40.0, 30.0, 50.0, 120.0], [200.0, 100.0, 30.0, 60.0]])  # x, y, w, h


def encoded_output(boxes: np.ndarray, grid_height: int, grid_width: int) -> torch.Tensor:
    """The network output that exactly encodes `boxes` (network-input pixels)."""
    heat, cells, offsets, sizes = centre_targets(boxes, grid_height, grid_width)
    output = torch.zeros(5, grid_height, grid_width)
    output[0] = torch.logit(torch.from_numpy(heat).clamp(1e-4, 0.99))
    for (row, col), offset, size in zip(cells, offsets, sizes):
        output[0, row, col] = 5.0
        output[1:3, row, col] = torch.from_numpy(offset)
        output[3:5, row, col] = torch.from_numpy(size)
    return output


def test_decoding_inverts_the_training_targets():
    found = decode(encoded_output(BOXES, 16, 20), max_candidates=10)
    confident = found[found[:, 4] > 0.9].numpy()
    assert len(confident) == 2
    order = np.argsort(confident[:, 0])
    xyxy = np.concatenate([BOXES[:, :2], BOXES[:, :2] + BOXES[:, 2:]], 1)
    np.testing.assert_allclose(confident[order, :4], xyxy, atol=1e-3)


def test_generalized_iou_of_known_boxes():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 1, 1]])
    b = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2], [2, 0, 3, 1]])
    # identical: 1; half-overlapping: IoU 2/6, hull = union; disjoint with a 1x1 gap: 0 - 1/3
    torch.testing.assert_close(generalized_iou(a, b), torch.tensor([1.0, 1 / 3, -1 / 3]))


def test_box_losses_vanish_at_the_exact_encoding_and_grow_with_box_error():
    exact = encoded_output(BOXES, 16, 20)[None]
    losses = detector_losses(exact, (BOXES,))
    assert losses['giou'].item() == pytest.approx(0, abs=1e-5)
    assert losses['size'].item() == pytest.approx(0, abs=1e-6)
    too_wide = exact.clone()
    too_wide[0, 3] += 0.5  # every box e^0.5 = 1.65x too wide
    assert detector_losses(too_wide, (BOXES,))['giou'].item() > 0.2


class EncodedBoxes(torch.nn.Module):
    """Stands in for the network: outputs the encoding of fixed boxes and records its input."""

    def __init__(self, boxes):
        super().__init__()
        self.config = CentreNetConfig(input_side=320)
        self.boxes = boxes

    def forward(self, x):
        self.input_shape = tuple(x.shape)
        return encoded_output(self.boxes, x.shape[2] // 16, x.shape[3] // 16)[None]


def test_detector_maps_boxes_back_to_image_pixels():
    network = EncodedBoxes(BOXES)
    image = np.zeros((480, 640, 3), np.uint8)  # network input: 320 x 240, padded to 320 x 256
    boxes = CentreNetDetector(network)(image, threshold=0.5)
    assert network.input_shape == (1, 3, 256, 320)
    np.testing.assert_allclose(boxes[np.argsort(boxes[:, 0]), :4], BOXES * 2, atol=1e-2)


def test_save_load_round_trip_in_float16(tmp_path):
    torch.manual_seed(0)
    network = CentreNet(CentreNetConfig()).eval()
    save_centre_net(network, tmp_path / 'det', dtype=torch.float16)
    loaded = load_centre_net(tmp_path / 'det').eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), network(x), atol=0.05, rtol=0.05)
    detector = load_detector(tmp_path / 'det')
    assert isinstance(detector, CentreNetDetector)
    assert detector(np.zeros((90, 120, 3), np.uint8)).shape[1] == 5
    (tmp_path / 'det' / 'detector.safetensors').unlink()
    with pytest.raises(DetectorError, match='det'):
        load_centre_net(tmp_path / 'det')


def bright_rectangles_batch() -> DetectorBatch:
    """Four images of bright rectangles ("people") on noise, at input side 128."""
    rng = np.random.default_rng(0)
    config = CentreNetConfig(input_side=128)
    images, boxes = [], []
    for _ in range(4):  # bright rectangles ("people") on noise
        image = rng.integers(0, 80, (96, 128, 3), dtype=np.uint8)
        x, y = rng.integers(5, 80), rng.integers(5, 30)
        image[y:y + 60, x:x + 25] = 230
        example = detector_example(image, [[x, y, 25, 60]], config, rng)
        images.append(example[0])
        boxes.append(example[1])
    return DetectorBatch(np.stack(images), tuple(boxes))


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_training_steps_on_a_fixed_batch_decrease_the_loss(tmp_path, precision):
    batch = bright_rectangles_batch()
    trainer = DetectorTrainer(DetectorTrainConfig(str(tmp_path / 'run'), input_side=128,
                                                  warmup_steps=1, device='cpu',
                                                  precision=precision))
    first = trainer.train_step(batch)
    for _ in range(15):
        last = trainer.train_step(batch)
    assert set(first) == {'centre', 'offset', 'size', 'giou', 'total'}
    assert last['total'] < 0.7 * first['total']
    trainer.save()
    assert DetectorTrainer(trainer.config).step_count == 16


def test_bfloat16_network_gives_the_float32_losses(tmp_path):
    """--precision bf16 (the default on AMX CPUs) runs the network under bfloat16 autocast and
    the loss in float32: from the same weights, the losses match float32's closely."""
    batch = bright_rectangles_batch()
    losses = {}
    for precision in ('fp32', 'bf16'):
        torch.manual_seed(0)
        trainer = DetectorTrainer(DetectorTrainConfig(str(tmp_path / precision), input_side=128,
                                                      device='cpu', precision=precision))
        assert trainer.bfloat16 == (precision == 'bf16')
        losses[precision] = trainer.train_step(batch)
    for name, value in losses['fp32'].items():
        assert losses['bf16'][name] == pytest.approx(value, rel=0.05, abs=0.01), name
    with pytest.raises(ValueError, match='precision'):
        DetectorTrainer(DetectorTrainConfig(str(tmp_path / 'half'), input_side=128,
                                            device='cpu', precision='half'))


def test_detector_time_budget_sets_the_learning_rate_by_the_clock(tmp_path):
    """metrabs-train-detector --time-budget-s: full rate after warm-up at the start, half at
    half the budget, none after it (the same schedule as metrabs-train)."""
    trainer = DetectorTrainer(DetectorTrainConfig(str(tmp_path / 'run'), input_side=128,
                                                  warmup_steps=1, time_budget_s=100.0,
                                                  device='cpu'))
    factor = trainer.scheduler.lr_lambdas[0]
    assert factor(5) == pytest.approx(1.0, abs=0.01)
    trainer.started -= 50.0
    assert factor(5) == pytest.approx(0.5, abs=0.01)
    trainer.started -= 60.0
    assert factor(5) == 0.0


def test_training_may_start_from_a_detector_run_at_another_input_side(tmp_path):
    """A bundle may run the detector larger than it trained (scripts/bundle_defaults.py
    --detector-input-side): the weights do not depend on the side, so --init-from accepts it;
    other widths are refused."""
    torch.manual_seed(0)
    source = CentreNet(CentreNetConfig(input_side=416))
    save_centre_net(source, tmp_path / 'bundle')
    trainer = DetectorTrainer(DetectorTrainConfig(str(tmp_path / 'run'), input_side=128,
                                                  init_from=str(tmp_path / 'bundle'),
                                                  device='cpu'))
    assert trainer.network.config.input_side == 128
    for name, value in source.state_dict().items():
        torch.testing.assert_close(trainer.network.state_dict()[name], value)
    save_centre_net(CentreNet(CentreNetConfig(widths=(8, 16, 32, 48, 80))), tmp_path / 'narrow')
    with pytest.raises(ValueError, match='widths'):
        DetectorTrainer(DetectorTrainConfig(str(tmp_path / 'run2'), input_side=128,
                                            init_from=str(tmp_path / 'narrow'), device='cpu'))
