"""The segmentation network: torchvision DeepLabv3 taking 2.5D frames (paper §3.3).

Built from random initialisation only (weights=None, weights_backbone=None): ImageNet
weights expect 3 RGB channels and a download, while the input here is 20 MRI channels and
the network must build offline (hospitals, CI, Slicer without internet).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
)

from .errors import BrainMetSegError
from .model_card import BACKBONES, OUTPUT_STRIDES, default_output_stride

__all__ = ["BACKBONES", "SegmentationNetwork", "build_network"]

_BUILDERS = {
    "resnet50": deeplabv3_resnet50,
    "resnet101": deeplabv3_resnet101,
    "mobilenet_v3_large": deeplabv3_mobilenet_v3_large,
}


class SegmentationNetwork(nn.Module):
    """DeepLabv3 whose forward returns the logits tensor N×classes×H×W.

    torchvision's model returns a dict ({"out": ...}); a plain tensor is what losses,
    DistributedDataParallel, autocast and tracing handle without special cases.
    """

    def __init__(self, deeplab: nn.Module, backbone: str, in_channels: int, num_classes: int,
                 output_stride: int) -> None:
        super().__init__()
        self.deeplab = deeplab
        self.backbone = backbone
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = "x".join(str(size) for size in x.shape)
            raise BrainMetSegError(f"network input: expected Nx{self.in_channels}xHxW frames, got {shape}")
        return self.deeplab(x)["out"]

    def extra_repr(self) -> str:
        return (f"backbone={self.backbone!r}, in_channels={self.in_channels}, num_classes={self.num_classes}, "
                f"output_stride={self.output_stride}")


def _replace_first_conv(module: nn.Module, in_channels: int) -> None:
    """Swap the backbone's RGB stem convolution for one taking `in_channels`, same geometry."""
    name, conv = next((name, m) for name, m in module.named_modules() if isinstance(m, nn.Conv2d))
    parent_name, _, child_name = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    stem = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")  # as torchvision initialises convs
    if stem.bias is not None:
        nn.init.zeros_(stem.bias)
    setattr(parent, child_name, stem)


def build_network(backbone: str = "resnet50", in_channels: int = 20, num_classes: int = 2,
                  output_stride: Optional[int] = None) -> SegmentationNetwork:
    """A randomly initialised DeepLabv3 (no auxiliary head) for `in_channels`-channel frames,
    computing its logits at 1/`output_stride` of the frame (model_card.OUTPUT_STRIDES; None =
    torchvision's default for the backbone). The stride changes no parameter shape.

    Train with batches of at least 2 frames: the ASPP pooling branch has a BatchNorm over a
    1×1 map, which PyTorch refuses to train on a single sample.
    """
    if backbone not in _BUILDERS:
        raise BrainMetSegError(f"backbone: unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    for parameter, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BrainMetSegError(f"{parameter}: expected a positive integer, got {value!r}")
    stride = default_output_stride(backbone) if output_stride is None else output_stride
    if isinstance(stride, bool) or stride not in OUTPUT_STRIDES[backbone]:
        raise BrainMetSegError(f"output stride: {output_stride!r}; a {backbone} is built with output stride "
                               f"{', '.join(map(str, OUTPUT_STRIDES[backbone]))}")
    deeplab = _BUILDERS[backbone](weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    _replace_first_conv(deeplab.backbone, in_channels)
    _set_batch_norm_momentum(deeplab, BATCH_NORM_MOMENTUM)
    if stride != default_output_stride(backbone):
        _dilate_to_output_stride(deeplab.backbone, stride)
    return SegmentationNetwork(deeplab, backbone, in_channels, num_classes, stride)


def _dilate_to_output_stride(features: nn.Module, output_stride: int) -> None:
    """Replace every stride-2 convolution that would take the resolution below 1/`output_stride`
    by a stride-1 one, and dilate every later spatial convolution by the factor lost, so that
    each keeps its receptive field (DeepLabv3's atrous trick). Only for backbones whose
    downsampling is all in spatial convolutions (MobileNetV3; ResNets also stride in 1×1
    shortcuts and a max-pool, which torchvision dilates itself)."""
    stride, factor = 1, 1
    for conv in features.modules():
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size == (1, 1):
            continue
        dilation = conv.dilation[0] * factor
        if conv.stride[0] == 2:
            if stride * 2 > output_stride:
                conv.stride = (1, 1)
                factor *= 2
            else:
                stride *= 2
        conv.dilation = (dilation, dilation)
        conv.padding = tuple(dilation * (k - 1) // 2 for k in conv.kernel_size)


BATCH_NORM_MOMENTUM = 0.1
"""torchvision's MobileNetV3 uses 0.01, tuned for ImageNet-length training; over the few hundred
steps of a CPU run its running statistics lag so far behind the weights that evaluation mode
predicted nothing (lesion voxels: mean probability 0.25 in training mode, 0.004 in evaluation
mode after 600 steps). 0.1 is PyTorch's default and what the ResNet backbones use already."""


def _set_batch_norm_momentum(module: nn.Module, momentum: float) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = momentum
