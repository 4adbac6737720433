"""Convolutional backbones (stride 32, or 16 for ResNets) from torchvision, built without downloading.

Module names equal torchvision's ``features`` (EfficientNetV2) and ResNet children, so
torchvision-layout state dicts load directly. The official MeTRAbs EfficientNetV2 differs only in
the padding of the last stride-2 depthwise convolution ("bottom-right stride", TF style), which
``build_backbone(..., shift_last_stride=True)`` reproduces.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

RESNETS = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152')
EFFICIENTNETS = ('efficientnet_v2_s', 'efficientnet_v2_m', 'efficientnet_v2_l')
BACKBONES = RESNETS + EFFICIENTNETS
STRIDE = 32
STRIDES = (16, 32)


class ShiftedStrideConv2d(nn.Conv2d):
    """Conv2d with fixed asymmetric zero padding (left, right, top, bottom), then 'valid' conv."""

    def __init__(self, *args, pads: tuple[int, int, int, int], **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pads))


def build_backbone(name: str, shift_last_stride: bool = False,
                   stride: int = STRIDE) -> tuple[nn.Module, int]:
    """Return (feature extractor mapping (N, 3, S, S) to (N, C, S/stride, S/stride), C).

    Stride 16 (ResNets only) dilates the last stage instead of downsampling, DeepLab style: the
    weights and module names are those of stride 32, so either loads the other's state dict, and
    a 128-pixel crop gets an 8x8 heatmap instead of 4x4.
    """
    check_stride(name, stride)
    if name in RESNETS:
        resnet = getattr(torchvision.models, name)(weights=None)
        if stride == 16:
            _dilate_last_stage(resnet.layer4)
        features = nn.Sequential(*list(resnet.children())[:-2])  # drop avgpool and fc
        return features, resnet.fc.in_features
    if name in EFFICIENTNETS:
        features = getattr(torchvision.models, name)(weights=None).features
        if shift_last_stride:
            _shift_last_stride(features)
        return features, features[-1].out_channels
    raise ValueError(f'unknown backbone {name!r}; known: {list(BACKBONES)}')


def check_stride(name: str, stride: int) -> None:
    """Raise ValueError unless `name` can be built at output stride `stride`."""
    if stride not in STRIDES:
        raise ValueError(f'stride must be one of {STRIDES}, got {stride}')
    if stride != STRIDE and name not in RESNETS:
        raise ValueError(f'stride {stride} is available for ResNet backbones only, not {name!r}')


def _dilate_last_stage(stage: nn.Sequential) -> None:
    """Stride 1 instead of 2 in a ResNet stage; every 3x3 conv after its first dilated by 2."""
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        conv.stride = (1, 1)
    for conv in [c for c in convs if c.kernel_size == (3, 3)][1:]:
        conv.dilation, conv.padding = (2, 2), (2, 2)


def _shift_last_stride(features: nn.Sequential) -> None:
    """Pad the last stride-2 depthwise conv by (0, 2) instead of (1, 1) on each axis."""
    stage = [m for m in features if isinstance(m, nn.Sequential) and _first_stride(m) == 2][-1]
    block = stage[0].block
    conv_act = next(m for m in block if _is_strided_conv(m[0]))
    conv = conv_act[0]
    k = conv.kernel_size[0]
    before, after = (k - 1) // 2 - 1, (k - 1) - (k - 1) // 2 + 1
    conv_act[0] = ShiftedStrideConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        groups=conv.groups, bias=conv.bias is not None, pads=(before, after, before, after))


def _is_strided_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.stride[0] == 2


def _first_stride(stage: nn.Sequential) -> int:
    return next((m.stride[0] for m in stage[0].modules() if isinstance(m, nn.Conv2d) and
                 m.kernel_size[0] > 1), 1)
