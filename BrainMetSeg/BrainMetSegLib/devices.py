"""Compute devices: which one to use, how to name it to the user, and its mixed precision.

torch is imported inside the functions so that the Slicer module can import this file at
start-up (to fill its device menu) before torch is installed.
"""
from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, ContextManager

from .errors import BrainMetSegError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> "torch.device":
    """Turn 'auto', 'cpu', 'cuda' or 'cuda:N' into a usable torch.device.

    'auto' picks the first CUDA GPU when one works, else the CPU. Asking for CUDA where there is
    none fails here, with the reason, rather than deep inside the first forward pass."""
    import torch

    text = (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            reason = ("this torch build has no CUDA support" if torch.version.cuda is None
                      else "no CUDA GPU is visible (driver missing, or CUDA_VISIBLE_DEVICES empty)")
            raise BrainMetSegError(f"device {name!r}: {reason}; use --device cpu or auto")
        index_text = text.partition(":")[2] or "0"
        count = torch.cuda.device_count()
        if not index_text.isdigit() or int(index_text) >= count:
            raise BrainMetSegError(f"device {name!r}: no such GPU; this machine has {count} "
                                   f"(cuda:0..cuda:{count - 1})")
        return torch.device("cuda", int(index_text))
    raise BrainMetSegError(f"device {name!r}: unknown; expected one of auto, cpu, cuda, cuda:N")


def device_description(device: "torch.device") -> str:
    """A short human-readable name for logs and the Slicer panel, e.g.
    'cuda:0 (NVIDIA H100 80GB HBM3, 79 GiB)' or 'cpu (2 threads)'."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({properties.name}, {properties.total_memory / 2 ** 30:.0f} GiB)"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''} of {os.cpu_count()} cores)"
    return str(device)


def autocast(device: "torch.device") -> ContextManager:
    """Mixed precision for inference and training on `device`.

    CUDA runs in bfloat16 where the GPU supports it (Ampere and newer: fp32's range, so no loss
    scaling) and float16 otherwise; the CPU stays in float32, where low precision is slower on
    most processors and would change results."""
    import torch

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()
