"""Probability outside the brain is zeroed: inputs are skull-stripped, so no lesion lies there.

Applied on the model grid before the probability is mapped back (predict.Predictor does it by
default). The network sees zeros outside the brain, but its receptive field reaches from the
brain edge into the background, where it can still put some probability; a lesion found
there can only be a false positive. The brain mask is widened by a margin first so that a
lesion at the cortical surface, or a brain mask drawn a little tight, keeps its edge.

The margin is a box: a voxel is kept when some brain voxel lies within `margin_mm` of it
along each axis (so up to margin * sqrt(3) diagonally). A box dilation is three 1D passes of a
running sum, cheap on a GPU and a CPU alike; for this purpose a ball would be no better.
The lesion and metric definitions are unchanged: they apply to the map this produces.
torch is imported inside the functions, so the CLI and the Slicer panel can show the default
before torch is loaded.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import numpy as np

from .errors import BrainMetSegError

if TYPE_CHECKING:
    import torch

DEFAULT_BRAIN_MARGIN_MM = 5.0
"""A few voxels of 0.94-1 mm: covers a tight skull-stripping mask and the partial-volume rim."""


def check_brain_margin(margin_mm: Optional[float]) -> Optional[float]:
    """None (keep the network's probability everywhere) or a margin of >= 0 mm."""
    if margin_mm is None:
        return None
    if isinstance(margin_mm, bool) or not isinstance(margin_mm, (int, float, np.number)) \
            or not math.isfinite(margin_mm) or margin_mm < 0:
        raise BrainMetSegError(f"brain margin: {margin_mm!r} mm; expected a number of mm >= 0 "
                               "(or none to keep the probability outside the brain)")
    return float(margin_mm)


def margin_voxels(affine: np.ndarray, margin_mm: float) -> Tuple[int, int, int]:
    """Voxels per array axis whose centres lie within `margin_mm` (the affine's column norms)."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    return tuple(int(math.floor(margin_mm / s + 1e-6)) for s in spacing)  # type: ignore[return-value]


def dilate_box(mask: "torch.Tensor", radius: Sequence[int]) -> "torch.Tensor":
    """Boolean dilation of a 3D mask by a box of half-widths `radius` (voxels per axis)."""
    import torch

    if mask.dim() != 3 or len(radius) != 3:
        raise BrainMetSegError(f"mask: expected a 3D mask and three radii, got shape {tuple(mask.shape)}")
    out = mask.to(torch.int32)
    for axis, k in enumerate(int(r) for r in radius):
        if k == 0:
            continue
        n = out.shape[axis]
        shape = list(out.shape)
        shape[axis] = 1
        running = torch.cat([torch.zeros(shape, dtype=torch.int32, device=out.device), out.cumsum(axis, dtype=torch.int32)],
                            dim=axis)
        index = torch.arange(n, device=out.device)
        high = (index + k + 1).clamp_(max=n)
        low = (index - k).clamp_(min=0)
        out = (running.index_select(axis, high) - running.index_select(axis, low) > 0).to(torch.int32)
    return out > 0


def brain_neighbourhood(brain: np.ndarray, affine: np.ndarray, margin_mm: float,
                        device: "torch.device") -> "torch.Tensor":
    """The brain mask (D, H, W) widened by `margin_mm`, as a bool tensor on `device`."""
    import torch

    mask = torch.from_numpy(np.ascontiguousarray(brain, dtype=bool)).to(device)
    return dilate_box(mask, margin_voxels(affine, margin_mm))
