"""A small centre-point person detector (CenterNet-style) that loads from a project directory.

The network sees the image resized so that its longer side is `input_side` pixels (zero-padded
to a multiple of 32) and predicts on a stride-16 grid, per cell: a person-centre logit, the
box centre's offset inside the cell, and the box width and height (log, in cells). Decoding keeps
the local maxima of the centre heatmap (3x3), then the detector interface applies its threshold
and NMS. Files: ``detector.json`` (CentreNetConfig) and ``detector.safetensors``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from metrabs_ros.detection import DetectorError, PersonDetector

CONFIG_FILE = 'detector.json'
WEIGHTS_FILE = 'detector.safetensors'
OUTPUT_STRIDE = 16
PAD_MULTIPLE = 32


@dataclass(frozen=True)
class CentreNetConfig:
    """widths: channels of the stem and of the stride 4, 8, 16 and 32 stages."""

    widths: tuple[int, ...] = (16, 32, 64, 96, 160)
    input_side: int = 320
    max_candidates: int = 50

    def __post_init__(self):
        object.__setattr__(self, 'widths', tuple(int(w) for w in self.widths))
        if len(self.widths) != 5 or min(self.widths) < 1:
            raise ValueError(f'widths must be 5 positive channel counts, got {self.widths}')
        if self.input_side < PAD_MULTIPLE:
            raise ValueError(f'input_side must be at least {PAD_MULTIPLE}, got {self.input_side}')


class CentreNet(nn.Module):
    """(N, 3, H, W) normalized RGB, H and W multiples of 32 -> (N, 5, H/16, W/16):
    centre logit, offset x, offset y (cells), log width, log height (cells)."""

    def __init__(self, config: CentreNetConfig):
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]),
                                  nn.ReLU(inplace=True))
        self.stage4 = _block(w[0], w[1])
        self.stage8 = _block(w[1], w[2])
        self.stage16 = nn.Sequential(_block(w[2], w[3]), BasicBlock(w[3], w[3]))
        self.stage32 = _block(w[3], w[4])
        self.lateral = nn.Conv2d(w[4], w[3], 1)
        self.fuse = nn.Sequential(nn.Conv2d(w[3], w[3], 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(w[3], 5, 1)
        nn.init.constant_(self.head.bias, 0.0)
        with torch.no_grad():
            self.head.bias[0] = -4.0  # start with few confident centres (focal-loss prior)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features16 = self.stage16(self.stage8(self.stage4(self.stem(x))))
        top = F.interpolate(self.lateral(self.stage32(features16)), scale_factor=2.0,
                            mode='nearest')
        return self.head(self.fuse(features16 + top))


def _block(inputs: int, outputs: int) -> BasicBlock:
    downsample = nn.Sequential(nn.Conv2d(inputs, outputs, 1, 2, bias=False),
                               nn.BatchNorm2d(outputs))
    return BasicBlock(inputs, outputs, stride=2, downsample=downsample)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> network input."""
    return (images - 0.45) / 0.25


def input_scale(config: CentreNetConfig, height: int, width: int) -> float:
    """Factor from image pixels to network-input pixels."""
    return config.input_side / max(height, width)


def decode(output: torch.Tensor, max_candidates: int) -> torch.Tensor:
    """(5, h, w) network output -> (D, 5) [x1, y1, x2, y2, score] in network-input pixels."""
    heat = torch.sigmoid(output[0])
    peaks = heat == F.max_pool2d(heat[None], 3, stride=1, padding=1)[0]
    scores = (heat * peaks).flatten()
    scores, index = scores.topk(min(max_candidates, scores.numel()))
    width = output.shape[-1]
    cells = torch.stack([index // width, index % width], dim=1)
    encoding = output[1:5].flatten(1)[:, index].T  # (D, 4): offset x, y, log width, height
    boxes = cell_boxes(cells, encoding[:, :2], encoding[:, 2:]) * OUTPUT_STRIDE
    return torch.cat([boxes, scores[:, None]], dim=1)


def cell_boxes(cells: torch.Tensor, offsets: torch.Tensor, log_sizes: torch.Tensor) -> torch.Tensor:
    """The box encoding decoded: centre cells (P, 2) row, col, offsets (P, 2) x, y and log sizes
    (P, 2) width, height, in grid cells -> (P, 4) x0, y0, x1, y1 in grid cells."""
    centres = cells.flip(-1).to(offsets.dtype) + offsets
    half = log_sizes.clamp(max=8).exp() / 2
    return torch.cat([centres - half, centres + half], dim=-1)


class CentreNetDetector(PersonDetector):
    """The centre-point detector behind the PersonDetector interface."""

    def __init__(self, network: CentreNet, device: str | torch.device = 'cpu'):
        self.module = network.eval()
        self.config = network.config
        self.to(device)

    def _detect_xyxy(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        scale = input_scale(self.config, height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        resized = F.interpolate(image[None], size=size, mode='bilinear', antialias=True,
                                align_corners=False)
        padded = F.pad(normalize(resized), (0, -size[1] % PAD_MULTIPLE, 0, -size[0] % PAD_MULTIPLE))
        boxes = decode(self.module(padded)[0].float(), self.config.max_candidates)
        boxes[:, :4] /= scale
        return boxes


def save_centre_net(network: CentreNet, directory: str | Path,
                    dtype: torch.dtype | None = None) -> Path:
    """Write detector.json and detector.safetensors (optionally cast, e.g. to float16)."""
    import safetensors.torch
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(network.config), indent=2))
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
             .contiguous() for k, v in network.state_dict().items()}
    safetensors.torch.save_file(state, str(directory / WEIGHTS_FILE))
    return directory


def load_centre_net(directory: str | Path) -> CentreNet:
    """The network saved by save_centre_net, in float32; DetectorError on any problem."""
    import safetensors.torch
    directory = Path(directory)
    try:
        config = CentreNetConfig(**json.loads((directory / CONFIG_FILE).read_text()))
        state = safetensors.torch.load_file(str(directory / WEIGHTS_FILE))
        network = CentreNet(config)
        network.load_state_dict({k: v.float() if v.is_floating_point() else v
                                 for k, v in state.items()})
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, json.JSONDecodeError) as e:
        raise DetectorError(f'cannot load centre-point detector from {directory}: {e}') from e
    return network


def is_centre_net_directory(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()

