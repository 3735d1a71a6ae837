"""Speed options of inference, and the network wrapper that applies them.

Defaults (measured in docs/benchmarks.md; none changes a lesion, see Testing/test_fast_path.py):

- precision "auto": bfloat16 autocast on CUDA (float16 on GPUs older than Ampere), float32 on
  the CPU. bf16 on a CPU without bf16 instructions (AVX512-BF16 / AMX) is emulated and was
  measured 8-18x slower than fp32 on a 2-core AMD EPYC; "bf16" asks for it explicitly (for
  CPUs that have them).
- channels_last: convolutions in NHWC layout, which the tensor cores and oneDNN's CPU kernels
  prefer (measured 1.3-1.5x faster than NCHW for ResNet-50, 1.5-3x for MobileNetV3, on that
  EPYC).
- skip_padding_taps: DeepLabv3's ASPP has 3x3 convolutions dilated by 12, 24 and 36 pixels.
  On a feature map no larger than the dilation (16x16 for MobileNetV3 and 32x32 for ResNet-50
  at 256-pixel frames: dilation 24 and 36, resp. 36) every tap but the centre one reads the
  zero padding, so the convolution equals a 1x1 convolution with the centre weights: the same
  sums without the zero terms. The check is made on each call's input size. oneDNN's CPU
  kernels seem to skip most padding taps themselves (about 10% gained on MobileNetV3 there);
  the gain on a GPU is not measured yet.
- fold_batch_norm: in inference a batch normalisation is a fixed per-channel scale and shift,
  so it is folded into the weights and bias of the convolution before it (MobileNetV3 and
  ResNet-50 have one after almost every convolution): one pass over the activations fewer per
  layer, the same sums up to float rounding (about 1e-6 in probability). The module's
  state_dict loses its BatchNorm entries, so a folded network is for inference only;
  `inference_copy` folds a copy of a network that training goes on with.

Opt-in, because they cost time up front:

- compile: torch.compile. The first prediction compiles the network: about a minute on a
  GPU, minutes on a CPU (170 s for MobileNetV3 on that EPYC, and no faster afterwards).
  Slicer leaves it off unless the user asks, and the first prediction says it is compiling.
- cuda_graphs: the forward pass of a batch is captured once as a CUDA graph and replayed, so
  a batch costs one launch instead of hundreds of kernel launches. CUDA only.
- precision "bf16-weights": the weights themselves in bfloat16 (no per-batch cast of fp32
  weights by autocast); activations in bf16 too.

With compile or CUDA graphs every batch has the same shape (the caller pads the last batch,
see `static_shapes`), so one compilation or one capture serves every study.
"""
from __future__ import annotations

import contextlib
import logging
from copy import deepcopy
from dataclasses import dataclass, replace
from typing import Callable, ContextManager, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .devices import autocast
from .errors import BrainMetSegError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "bf16-weights")
COMPILE_NOTICE = ("compiling the network with torch.compile (first prediction only); "
                  "this may take several minutes")
GRAPH_WARMUP_CALLS = 2
"""Eager calls on a side stream before a CUDA graph capture (cuDNN picks its algorithms then)."""


@dataclass(frozen=True)
class SpeedOptions:
    """How the network runs; see the module docstring for the defaults and why."""

    precision: str = "auto"
    channels_last: bool = True
    skip_padding_taps: bool = True
    fold_batch_norm: bool = True
    compile: bool = False
    cuda_graphs: bool = False

    @property
    def static_shapes(self) -> bool:
        """Whether every batch must have one shape (one compilation, one graph capture)."""
        return self.compile or self.cuda_graphs

    def checked(self, device: torch.device) -> "SpeedOptions":
        """These options for `device`, refused with the parameter and the reason when impossible."""
        device = torch.device(device)
        if self.precision not in PRECISIONS:
            raise BrainMetSegError(f"precision: {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.precision == "fp16" and device.type != "cuda":
            raise BrainMetSegError(f"precision: fp16 runs on CUDA only, not on {device.type}; "
                                   "use fp32 or bf16 there")
        if self.precision in ("bf16", "bf16-weights") and device.type == "cuda" \
                and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise BrainMetSegError(f"precision: {self.precision} needs a GPU with bfloat16 (Ampere or newer); "
                                   "use auto or fp16")
        if self.cuda_graphs and device.type != "cuda":
            raise BrainMetSegError(f"cuda_graphs: CUDA graphs need a CUDA device; got {device.type}")
        for name in ("channels_last", "skip_padding_taps", "fold_batch_norm", "compile", "cuda_graphs"):
            if not isinstance(getattr(self, name), bool):
                raise BrainMetSegError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        return self

    def resolved(self, device: torch.device) -> "SpeedOptions":
        """'auto' precision made concrete for `device` (for logs and benchmark tables)."""
        if self.precision != "auto":
            return self
        device = torch.device(device)
        if device.type != "cuda":
            return replace(self, precision="fp32")
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return replace(self, precision="bf16" if bf16 else "fp16")

    def describe(self, device: torch.device) -> str:
        """e.g. 'bf16 autocast, channels_last, compiled, CUDA graphs'."""
        options = self.resolved(device)
        parts = [{"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast",
                  "bf16-weights": "bf16 weights"}[options.precision]]
        parts += [name for name, used in (("channels_last", options.channels_last),
                                          ("padding taps skipped", options.skip_padding_taps),
                                          ("batch norm folded", options.fold_batch_norm),
                                          ("compiled", options.compile),
                                          ("CUDA graphs", options.cuda_graphs)) if used]
        return ", ".join(parts)


def precision_context(device: torch.device, precision: str) -> ContextManager:
    """Autocast for `precision` on `device` ('auto': the project's default, devices.autocast)."""
    device = torch.device(device)
    if precision == "auto":
        return autocast(device)
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def is_channels_last(network: nn.Module) -> bool:
    """True when the network's first convolution holds NHWC weights: a caller that did not
    convert it must feed frames in the layout its owner chose."""
    conv = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    return conv is not None and not conv.weight.is_contiguous() \
        and conv.weight.is_contiguous(memory_format=torch.channels_last)


class FastNetwork:
    """`network` run as `options` say: frames in, float32 logits out, on `device`.

    The module is converted in place (memory layout, bf16 weights, padding taps), so give it a
    network that only inference uses. `module` stays the plain network, to tell when the caller swapped it.
    """

    def __init__(self, network: nn.Module, device: torch.device, options: SpeedOptions = SpeedOptions()) -> None:
        self.device = torch.device(device)
        self.options = options.checked(self.device)
        self.module = network
        self.calls = 0
        network.eval()
        if options.fold_batch_norm:
            fold_batch_norm(network)
        if options.precision == "bf16-weights":
            network.to(dtype=torch.bfloat16)
        if options.channels_last:
            network.to(memory_format=torch.channels_last)
        if options.skip_padding_taps:
            skip_padding_taps(network)
        self._forward: Callable[[torch.Tensor], torch.Tensor] = network
        if options.compile:
            log.warning("%s", COMPILE_NOTICE)
            self._forward = torch.compile(network, dynamic=False)
        self._graphs: Dict[Tuple[int, ...], _Graph] = {}

    @property
    def static_shapes(self) -> bool:
        return self.options.static_shapes

    @property
    def compiling_next(self) -> bool:
        """True before the first call of a compiled network (that call compiles)."""
        return self.options.compile and self.calls == 0

    def _run(self, frames: torch.Tensor) -> torch.Tensor:
        if self.options.precision == "bf16-weights":
            frames = frames.to(torch.bfloat16)
        with precision_context(self.device, self.options.precision):
            return self._forward(frames).float()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.options.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        if not self.options.cuda_graphs:
            return self._run(frames)
        key = tuple(frames.shape)
        if key not in self._graphs:
            self._graphs[key] = _Graph(self._run, frames)
        return self._graphs[key](frames)


def inference_copy(network: nn.Module, device: torch.device) -> FastNetwork:
    """A FastNetwork of a copy of `network` (batch norm folded, padding taps skipped, the
    default precision, channels_last on CUDA or when the network already is), so that
    validating during training runs the fast network while the training network, its
    state_dict and its mode stay as they are."""
    device = torch.device(device)
    layout = device.type == "cuda" or is_channels_last(network)
    return FastNetwork(deepcopy(network), device, SpeedOptions(channels_last=layout))


def fold_batch_norm(network: nn.Module) -> int:
    """Fold, in place, every BatchNorm2d that directly follows a Conv2d into that convolution,
    and put an nn.Identity in its place. Eval-mode arithmetic: the running statistics are used.
    Where one follows the other is known from the module's structure: consecutive children of a
    container that runs them in order (nn.Sequential: MobileNetV3's blocks, the ASPP, the head,
    ResNet's downsample; torchvision's IntermediateLayerGetter: ResNet's stem), and convN/bnN
    of torchvision's ResNet blocks. Returns how many were folded."""
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.resnet import BasicBlock, Bottleneck

    count = 0
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Sequential, IntermediateLayerGetter)):
                names = list(module._modules)
                pairs = list(zip(names, names[1:]))
            elif isinstance(module, (BasicBlock, Bottleneck)):
                pairs = [(f"conv{n}", f"bn{n}") for n in (1, 2, 3) if f"bn{n}" in module._modules]
            else:
                continue
            for conv_name, norm_name in pairs:
                count += _fold_pair(module, conv_name, norm_name)
    return count


def _fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> int:
    conv, norm = parent._modules[conv_name], parent._modules[norm_name]
    if not (isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d
            and norm.running_mean is not None and conv.out_channels == norm.num_features):
        return 0
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0.0)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    parent._modules[norm_name] = nn.Identity()
    return 1


class _CentreTapConv2d(nn.Conv2d):
    """A 3x3 convolution, stride 1, padding = dilation: on an input no larger than the dilation
    only the centre tap reads data (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] <= self.dilation[0] and x.shape[-1] <= self.dilation[1]:
            return F.conv2d(x, self.weight[:, :, 1:2, 1:2], self.bias, groups=self.groups)
        return super().forward(x)


def skip_padding_taps(network: nn.Module) -> int:
    """Turn, in place, every dilated 3x3 convolution whose padding equals its dilation into one
    that skips the padding taps when they are all padding; parameters and state_dict keys stay.
    Returns how many were turned."""
    count = 0
    for module in network.modules():
        if type(module) is nn.Conv2d and module.kernel_size == (3, 3) and module.stride == (1, 1) \
                and module.padding == module.dilation and module.dilation != (1, 1) \
                and module.padding_mode == "zeros":
            module.__class__ = _CentreTapConv2d
            count += 1
    return count


class _Graph:
    """One CUDA graph of `forward` for inputs shaped like `example`; replay copies the input
    into the captured buffer and returns a copy of the captured output."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor) -> None:
        self.input = example.clone()
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_CALLS):
                forward(self.input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = forward(self.input)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.input.copy_(frames)
        self.graph.replay()
        return self.output.clone()
