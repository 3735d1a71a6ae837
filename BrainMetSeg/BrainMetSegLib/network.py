"""The segmentation network: torchvision DeepLabv3 taking 2.5D frames (paper §3.3).

Built from random initialisation only (weights=None, weights_backbone=None): ImageNet
weights expect 3 RGB channels and a download, while the input here is 20 MRI channels and
the network must build offline (hospitals, CI, Slicer without internet).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
)

from .errors import BrainMetSegError
from .model_card import BACKBONES

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

    def __init__(self, deeplab: nn.Module, backbone: str, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.deeplab = deeplab
        self.backbone = backbone
        self.in_channels = in_channels
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = "x".join(str(size) for size in x.shape)
            raise BrainMetSegError(f"network input: expected Nx{self.in_channels}xHxW frames, got {shape}")
        return self.deeplab(x)["out"]

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, in_channels={self.in_channels}, num_classes={self.num_classes}"


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


def build_network(backbone: str = "resnet50", in_channels: int = 20, num_classes: int = 2) -> SegmentationNetwork:
    """A randomly initialised DeepLabv3 (no auxiliary head) for `in_channels`-channel frames.

    Train with batches of at least 2 frames: the ASPP pooling branch has a BatchNorm over a
    1×1 map, which PyTorch refuses to train on a single sample.
    """
    if backbone not in _BUILDERS:
        raise BrainMetSegError(f"backbone: unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    for parameter, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BrainMetSegError(f"{parameter}: expected a positive integer, got {value!r}")
    deeplab = _BUILDERS[backbone](weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    _replace_first_conv(deeplab.backbone, in_channels)
    _set_batch_norm_momentum(deeplab, BATCH_NORM_MOMENTUM)
    return SegmentationNetwork(deeplab, backbone, in_channels, num_classes)


BATCH_NORM_MOMENTUM = 0.1
"""torchvision's MobileNetV3 uses 0.01, tuned for ImageNet-length training; over the few hundred
steps of a CPU run its running statistics lag so far behind the weights that evaluation mode
predicted nothing (lesion voxels: mean probability 0.25 in training mode, 0.004 in evaluation
mode after 600 steps). 0.1 is PyTorch's default and what the ResNet backbones use already."""


def _set_batch_norm_momentum(module: nn.Module, momentum: float) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = momentum
