"""Training the centre-point person detector on synthetic images (metrabs-train-detector).

Images from the synthetic generator (training clips only) are resized to the network input with
area averaging, flipped and colour-jittered. Targets per stride-16 cell: a Gaussian centre
heatmap (penalty-reduced focal loss), and at each person's centre cell the sub-cell offset and
log box size (L1) plus the generalized IoU of the decoded box with the true one, which rewards
overlap directly (a box can be close in L1 and still miss IoU 0.5). Resumable like
metrabs-train: out_dir/detector (project format) + out_dir/train_state.pt; --init-from starts
from another detector's weights (e.g. 'bundled'). --precision auto runs the network in bfloat16
where the CPU has AMX (2.2x faster here at 416 px, batch 16), the loss in float32.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from metrabs_ros.centre_detector import (OUTPUT_STRIDE, PAD_MULTIPLE, CentreNet, CentreNetConfig,
                                         cell_boxes, input_scale, is_centre_net_directory,
                                         load_centre_net, normalize, save_centre_net)
from metrabs_ros.estimator import resolve_device
from metrabs_ros.train.loop import (batch_iterator, config_from_command_line, optimizer_step,
                                     rendered_samples, restore_training_state, run_training,
                                     save_training_state, scheduled_lr_factor, uses_bfloat16)

SIZE_LOSS_FACTOR = 0.5
GIOU_LOSS_FACTOR = 1.0


@dataclass(frozen=True)
class DetectorTrainConfig:
    out_dir: str
    batch_size: int = 8
    steps: int = 3000
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    checkpoint_every: int = 250
    input_side: int = 320
    seed: int = 0
    device: str = 'auto'
    data_workers: int = 1
    init_from: str = ''  # a detector directory (or 'bundled') whose weights start a new run
    pose_mixing: float = 0.0  # probability of limbs spliced from other clip frames
    time_budget_s: float = 0.0  # > 0: stop after this many seconds, decaying over that time
    # crop caches rendered with metrabs-render-crops --detector-images (comma-separated): their
    # images are held in memory on the training device (~245 KB each at 320 px) and batches
    # are drawn there (detector_pool); '': render live in data_workers processes
    data_dir: str = ''
    # with data_dir: also zoom (x 0.85-1.2) and shift every drawn image afresh, boxes with it
    zoom_on_device: bool = False
    precision: str = 'auto'  # 'fp32', 'bf16' (network under autocast) or 'auto' (metrabs-train's)


@dataclass(frozen=True)
class DetectorBatch:
    """images (N, 3, H, W) float32 RGB in [0, 1] at network-input size (numpy, or a tensor on
    the training device); boxes: per image (P, 4) x, y, w, h in network-input pixels."""

    images: np.ndarray | torch.Tensor
    boxes: tuple[np.ndarray, ...]


def detector_example(image: np.ndarray, boxes: np.ndarray, config: CentreNetConfig,
                     rng: np.random.Generator | None = None):
    """Resize (and with rng, augment) an image and its x, y, w, h boxes to network input."""
    height, width = image.shape[:2]
    scale = input_scale(config, height, width)
    size = (round(width * scale), round(height * scale))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
    if rng is not None:
        if rng.random() < 0.5:
            resized = resized[:, ::-1]
            boxes = boxes.copy()
            boxes[:, 0] = size[0] - boxes[:, 0] - boxes[:, 2]
        resized = np.clip((resized - 0.5) * rng.uniform(0.7, 1.3) + 0.5 +
                          rng.uniform(-0.15, 0.15), 0, 1)
    padded = np.zeros((-(-size[1] // PAD_MULTIPLE) * PAD_MULTIPLE,
                       -(-size[0] // PAD_MULTIPLE) * PAD_MULTIPLE, 3), np.float32)
    padded[:size[1], :size[0]] = resized
    return padded.transpose(2, 0, 1), boxes


def centre_targets(boxes: np.ndarray, grid_height: int, grid_width: int):
    """Heatmap (h, w), and per box its centre cell (row, col), offset (2) and log size (2)."""
    heat = np.zeros((grid_height, grid_width), np.float32)
    rows, cols = np.mgrid[:grid_height, :grid_width]
    cells, offsets, sizes = [], [], []
    for x, y, w, h in boxes / OUTPUT_STRIDE:
        cx, cy = x + w / 2, y + h / 2
        col, row = min(int(cx), grid_width - 1), min(int(cy), grid_height - 1)
        sigma_x, sigma_y = max(w / 6, 0.5), max(h / 6, 0.5)
        gaussian = np.exp(-((cols - col) ** 2 / (2 * sigma_x ** 2) +
                            (rows - row) ** 2 / (2 * sigma_y ** 2)))
        heat = np.maximum(heat, gaussian)
        cells.append((row, col))
        offsets.append((cx - col, cy - row))
        sizes.append(np.log(np.maximum([w, h], 1e-3)))
    return (heat, np.array(cells, int).reshape(-1, 2),
            np.array(offsets, np.float32).reshape(-1, 2),
            np.array(sizes, np.float32).reshape(-1, 2))


def detector_losses(output: torch.Tensor, boxes: tuple[np.ndarray, ...]) -> dict[str, torch.Tensor]:
    """Focal centre loss (per person) and L1 offset + size losses at the centre cells."""
    grid_height, grid_width = output.shape[-2:]
    heats, batch_index, cells, offsets, sizes = [], [], [], [], []
    for i, image_boxes in enumerate(boxes):
        heat, cell, offset, size = centre_targets(image_boxes, grid_height, grid_width)
        heats.append(heat)
        batch_index += [i] * len(cell)
        cells.append(cell)
        offsets.append(offset)
        sizes.append(size)
    target = torch.from_numpy(np.stack(heats)).to(output.device)
    logits = output[:, 0]
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target == 1
    n_people = max(1, int(positive.sum()))
    focal = torch.where(
        positive, -((1 - probability) ** 2) * torch.log(probability),
        -((1 - target) ** 4) * probability ** 2 * torch.log(1 - probability))
    losses = dict(centre=focal.sum() / n_people)
    if batch_index:
        cells = torch.from_numpy(np.concatenate(cells)).to(output.device)
        at_centres = output[torch.tensor(batch_index, device=output.device), :, cells[:, 0],
                            cells[:, 1]]
        offsets = torch.from_numpy(np.concatenate(offsets)).to(output.device)
        sizes = torch.from_numpy(np.concatenate(sizes)).to(output.device)
        losses['offset'] = F.l1_loss(at_centres[:, 1:3], offsets)
        losses['size'] = F.l1_loss(at_centres[:, 3:5], sizes)
        predicted = cell_boxes(cells, at_centres[:, 1:3], at_centres[:, 3:5])
        losses['giou'] = (1 - generalized_iou(predicted, cell_boxes(cells, offsets, sizes))).mean()
    else:
        losses['offset'] = losses['size'] = losses['giou'] = output.sum() * 0
    losses['total'] = (losses['centre'] + losses['offset'] + SIZE_LOSS_FACTOR * losses['size'] +
                       GIOU_LOSS_FACTOR * losses['giou'])
    return losses


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalized IoU of paired x0, y0, x1, y1 boxes (P, 4) -> (P,) in [-1, 1]."""
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    intersection = inter.prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a + area_b - intersection
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(-1)
    return intersection / union - (hull - union) / hull


class DetectorTrainer:
    def __init__(self, config: DetectorTrainConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.out_dir = Path(config.out_dir)
        if is_centre_net_directory(self.out_dir / 'detector'):
            self.network = load_centre_net(self.out_dir / 'detector')
        else:
            torch.manual_seed(config.seed)
            self.network = CentreNet(CentreNetConfig(input_side=config.input_side))
            if config.init_from:
                self._load_initial_weights(config.init_from)
        self.network.to(self.device).train()
        self.bfloat16 = uses_bfloat16(config.precision, self.device)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.started = time.monotonic()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: scheduled_lr_factor(step, config, self.started))
        self.skipped_steps = 0
        self.step_count = restore_training_state(self.out_dir / 'train_state.pt',
                                                 self.optimizer, self.scheduler)

    def _load_initial_weights(self, source: str) -> None:
        from metrabs_ros.bundled import DEFAULT_DETECTOR
        initial = load_centre_net(DEFAULT_DETECTOR if source == 'bundled' else source)
        if initial.config.widths != self.network.config.widths:  # the input side is free:
            # the network is fully convolutional (a bundle may run it larger than it trained)
            raise ValueError(f'--init-from {source}: detector widths {initial.config.widths} '
                             f'differ from {self.network.config.widths}')
        self.network.load_state_dict({k: v.float() for k, v in initial.state_dict().items()})
        print(f'metrabs-train-detector: weights initialized from {source}')

    def train_step(self, batch: DetectorBatch) -> dict[str, float]:
        images = normalize(torch.as_tensor(batch.images).to(self.device))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            output = self.network(images)
        losses = detector_losses(output.float(), batch.boxes)  # the loss in float32
        if optimizer_step(losses['total'], self.network.parameters(), self.optimizer,
                          self.scheduler) is None:
            self.skipped_steps += 1
        self.step_count += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def save(self) -> None:
        save_centre_net(self.network, self.out_dir / 'detector')
        save_training_state(self.out_dir / 'train_state.pt', self.step_count, self.optimizer,
                            self.scheduler, self.config)

    def batches(self):
        """Endless augmented batches of freshly rendered images (in data_workers processes), or
        of the cached images in data_dir, drawn on the training device."""
        if self.config.data_dir:
            from metrabs_ros.train.detector_pool import DeviceImagePool
            return iter(DeviceImagePool(self.config.data_dir, self.config.batch_size,
                                        self.device, self.config.seed + self.step_count,
                                        zoom=(0.85, 1.2) if self.config.zoom_on_device else None))
        dataset = RenderedDetectorBatches(self.config, self.network.config,
                                          self.step_count * self.config.batch_size)
        return batch_iterator(dataset, self.config.data_workers)

    def run(self) -> None:
        run_training(self, 'metrabs-train-detector')


class RenderedDetectorBatches(torch.utils.data.IterableDataset):
    def __init__(self, config: DetectorTrainConfig, network_config: CentreNetConfig,
                 first_sample: int):
        self.config, self.network_config, self.first_sample = config, network_config, first_sample

    def __iter__(self):
        # Not metrabs-train's generator seed, so the two never render the same scenes.
        samples = rendered_samples(1000 + self.config.seed, self.config.seed, self.first_sample,
                                   self.config.pose_mixing)
        while True:
            images, boxes = [], []
            for sample, rng in itertools.islice(samples, self.config.batch_size):
                image, image_boxes = detector_example(sample.image, sample.boxes,
                                                      self.network_config, rng)
                images.append(image)
                boxes.append(image_boxes)
            yield DetectorBatch(np.stack(images), tuple(boxes))


def main(argv=None) -> int:
    config = config_from_command_line(DetectorTrainConfig, 'metrabs-train-detector', __doc__, argv)
    DetectorTrainer(config).run()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
