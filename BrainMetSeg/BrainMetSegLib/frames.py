"""2.5D frames: a case on the model's grid, and the 20-channel stacks the network reads.

The model grid (DESIGN §Method) is axial whatever the acquisition, with the model's voxel
spacing, so that a lesion has the same physical size in every study and in training:

    images[role, d, h, w]   d: slices inferior -> superior, h: rows anterior -> posterior,
                            w: columns patient right -> left (radiological display)

(see reorient.py). The case is brought there by one interpolation per volume: the array
axes are first permuted/flipped to the closest axial orientation (exact, no interpolation,
so an oblique acquisition keeps its obliquity), then a diagonal index map resamples to the
model spacing and crops/pads in-plane to the model size around the brain's bounding box.
Along D the grid covers the whole extent of the volume. Images are linear; the label and
the brain are resampled linearly too and kept where the interpolated value is >= 0.5, which
places their boundary where it was (nearest neighbour can shift it by half a source voxel
when spacings differ). Each sequence is then z-scored over brain voxels and set to 0
outside the brain, so intensity scales of scanners and protocols do not matter.

`stack_frames` builds the network input on the compute device from the 4-channel volume by
indexing, so the host never holds five copies of every slice.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .case import Case
from .errors import BrainMetSegError
from .negatives import DEFAULT_RADIUS_MM, known_negative_mask
from .reorient import Orientation, closest_axial
from .roles import ROLES

log = logging.getLogger(__name__)

DEFAULT_PIXEL_SPACING_MM = (0.9375, 0.9375)
DEFAULT_SLICE_SPACING_MM = 1.0
DEFAULT_IN_PLANE_SIZE = (256, 256)
DEFAULT_SLICES = 5
INSIDE_THRESHOLD = 0.5
"""A resampled label or brain voxel is inside where the linear interpolation reaches this."""


@dataclass(eq=False)
class Prepared:
    """One case on the model grid, and the map back to the case's bravo grid."""

    images: np.ndarray  # float32 (4, D, H, W), ROLES order, z-scored over the brain, 0 outside it
    brain: np.ndarray  # bool (D, H, W)
    label: Optional[np.ndarray]  # uint8 (D, H, W) in {0, 1}, or None
    known_negative: Optional[np.ndarray]  # bool (D, H, W), or None when no rejected list was given
    affine: np.ndarray  # (d, h, w, 1) -> RAS mm
    orientation: Orientation  # case axes -> closest axial axes
    scale: np.ndarray  # (3,) oriented index = scale * model index + offset
    offset: np.ndarray  # (3,)
    case_id: str = "case"
    warnings: List[str] = field(default_factory=list)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(int(n) for n in self.images.shape[1:])  # type: ignore[return-value]

    def to_input_grid(self, probability: np.ndarray) -> np.ndarray:
        """A (D, H, W) map on the model grid -> float32 (I, J, K) on the case's bravo grid.

        Linear interpolation; case voxels outside the model grid's extent (cropped away
        in-plane) get 0, which is right for probabilities: no brain was there to segment.
        """
        probability = np.asarray(probability)
        if probability.shape != self.shape:
            raise BrainMetSegError(f"probability: shape {probability.shape} differs from the model grid {self.shape}")
        if probability.dtype.kind not in "biuf" or not np.all(np.isfinite(probability)):
            raise BrainMetSegError("probability: expected finite numbers on the model grid")
        oriented = _sample(probability, 1.0 / self.scale, -self.offset / self.scale, self.orientation.shape)
        return np.ascontiguousarray(self.orientation.invert(oriented))


def prepare_case(case: Case, pixel_spacing_mm: Sequence[float] = DEFAULT_PIXEL_SPACING_MM,
                 slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM,
                 in_plane_size: Sequence[int] = DEFAULT_IN_PLANE_SIZE,
                 rejected_ras: Optional[Sequence[Sequence[float]]] = None,
                 known_negative_radius_mm: float = DEFAULT_RADIUS_MM) -> Prepared:
    """Put `case` on the model grid (see the module docstring); with `rejected_ras` (RAS
    centroids of rejected candidates, possibly empty) also mark known negatives there."""
    spacing = _check_spacing(pixel_spacing_mm, slice_spacing_mm)
    size = _check_size(in_plane_size)
    orientation = closest_axial(case.affine, case.images.shape[1:])
    oriented_affine = orientation.oriented_affine(case.affine)
    oriented_spacing = np.linalg.norm(oriented_affine[:3, :3], axis=0)
    brain = orientation.apply(case.brain)
    if not brain.any():
        raise BrainMetSegError(f"{case.case_id}: the brain mask is empty; nothing to segment")

    scale = spacing / oriented_spacing
    depth, offset, warnings = _grid_placement(brain, orientation.shape, oriented_spacing, spacing, scale, size,
                                              case.case_id)
    for message in warnings:
        log.warning("%s", message)
    shape = (depth,) + size
    affine = oriented_affine.copy()
    affine[:, :3] = oriented_affine[:, :3] * scale[None, :]
    affine[:3, 3] = oriented_affine[:3, :3] @ offset + oriented_affine[:3, 3]

    images = _sample(orientation.apply(case.images), scale, offset, shape)
    model_brain = _sample(brain, scale, offset, shape) >= INSIDE_THRESHOLD
    if not model_brain.any():
        raise BrainMetSegError(f"{case.case_id}: no brain voxel left on the model grid "
                               f"({_mm(spacing)} mm voxels); the brain mask is too small")
    label = None
    if case.label is not None:
        label = (_sample(orientation.apply(case.label), scale, offset, shape) >= INSIDE_THRESHOLD).astype(np.uint8)
    _zscore(images, model_brain, case.case_id)
    known_negative = None
    if rejected_ras is not None:
        known_negative = known_negative_mask(rejected_ras, affine, shape, known_negative_radius_mm,
                                             exclude=None if label is None else label.astype(bool))
    return Prepared(images, model_brain, label, known_negative, affine, orientation, scale, offset,
                    case.case_id, warnings)


def stack_frames(volume: torch.Tensor, centres: torch.Tensor, slices: int = DEFAULT_SLICES) -> torch.Tensor:
    """(D, C, H, W) volume + (N,) slice indices -> (N, C * slices, H, W) 2.5D frames.

    Channel c * slices + k holds sequence c at slice centre + k - slices // 2; slices beyond
    either end repeat the edge slice. Everything happens on the volume's device by one
    gather. Indices are range-checked when the volume is on the CPU; on an accelerator the
    check would stall the stream once per batch, so callers there pass indices in [0, D).
    """
    if not isinstance(volume, torch.Tensor) or volume.dim() != 4:
        raise BrainMetSegError(f"volume: expected a (D, C, H, W) tensor, got shape {tuple(getattr(volume, 'shape', ()))}")
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1 or slices % 2 == 0:
        raise BrainMetSegError(f"slices: {slices!r}; expected a positive odd number of slices per frame")
    if not isinstance(centres, torch.Tensor) or centres.dim() != 1 or centres.dtype.is_floating_point \
            or centres.dtype == torch.bool:
        raise BrainMetSegError("centres: expected a 1D integer tensor of slice indices")
    depth, channels, height, width = volume.shape
    centres = centres.to(device=volume.device, dtype=torch.long)
    if volume.device.type == "cpu" and centres.numel() and (int(centres.min()) < 0 or int(centres.max()) >= depth):
        raise BrainMetSegError(f"centres: slice indices must lie in [0, {depth}), got "
                               f"{int(centres.min())}..{int(centres.max())}")
    half = slices // 2
    offsets = torch.arange(-half, half + 1, device=volume.device)
    index = (centres[:, None] + offsets[None, :]).clamp_(0, depth - 1)
    frames = volume[index]  # (N, slices, C, H, W)
    return frames.transpose(1, 2).reshape(centres.shape[0], channels * slices, height, width)


# ---------------------------------------------------------------------------------- grid


def _check_spacing(pixel_spacing_mm: Sequence[float], slice_spacing_mm: float) -> np.ndarray:
    values = list(pixel_spacing_mm) if isinstance(pixel_spacing_mm, (list, tuple, np.ndarray)) else []
    if len(values) != 2 or not all(_positive(v) for v in values):
        raise BrainMetSegError(f"pixel spacing: {pixel_spacing_mm!r}; expected [row, column], two positive numbers of mm")
    if not _positive(slice_spacing_mm):
        raise BrainMetSegError(f"slice spacing: {slice_spacing_mm!r}; expected a positive number of mm")
    return np.array([slice_spacing_mm, values[0], values[1]], dtype=float)


def _check_size(in_plane_size: Sequence[int]) -> Tuple[int, int]:
    values = list(in_plane_size) if isinstance(in_plane_size, (list, tuple, np.ndarray)) else []
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                                   for v in values):
        raise BrainMetSegError(f"in-plane size: {in_plane_size!r}; expected [rows, columns], two positive integers")
    return int(values[0]), int(values[1])


def _positive(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value) \
        and value > 0


def _mm(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.3g}" for v in values)


def _grid_placement(brain: np.ndarray, oriented_shape: Tuple[int, int, int], oriented_spacing: np.ndarray,
                    spacing: np.ndarray, scale: np.ndarray, size: Tuple[int, int],
                    case_id: str) -> Tuple[int, np.ndarray, List[str]]:
    """Number of slices and the oriented index of model voxel (0, 0, 0).

    D: enough slices to cover the volume's whole extent, centred on it (at equal spacing the
    slices are the case's own). H, W: `size` pixels centred on the brain's bounding box, the
    start snapped to a case voxel centre so that at equal spacing no interpolation blurs
    anything (the centring is then off by less than half a voxel).
    """
    extent = oriented_shape[0] * oriented_spacing[0]
    depth = max(1, int(math.ceil(extent / spacing[0] - 1e-3)))
    offset = np.empty(3)
    offset[0] = (oriented_shape[0] - 1) / 2.0 - scale[0] * (depth - 1) / 2.0
    warnings = []
    for axis, name in ((1, "rows (anterior-posterior)"), (2, "columns (right-left)")):
        occupied = np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != axis)))
        low, high = int(occupied[0]), int(occupied[-1])
        centre = (low + high) / 2.0
        offset[axis] = round(centre - scale[axis] * (size[axis - 1] - 1) / 2.0)
        brain_mm = (high - low + 1) * oriented_spacing[axis]
        frame_mm = size[axis - 1] * spacing[axis]
        if brain_mm > frame_mm + 1e-6:
            warnings.append(f"{case_id}: the brain spans {brain_mm:.0f} mm along the {name} but model frames "
                            f"cover {frame_mm:.0f} mm; its edges are cropped")
    return depth, offset, warnings


def _sample(source: np.ndarray, scale: np.ndarray, offset: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
    """Linear interpolation of the last three axes of `source` at index scale * n + offset,
    for every output index n; leading axes (channels) are kept. float32.

    The index map is diagonal, so trilinear interpolation is three 1D passes (gather two
    neighbours along one axis, blend), done in the order that shrinks the data fastest. Inside
    the source's extent (its voxel boxes) values near the border repeat the edge voxel rather
    than fading to 0; outside it they are 0 (padding). At equal spacing and integer offset the
    weights are 0 and values are copied exactly.
    """
    out = np.asarray(source, dtype=np.float32)
    lead = out.ndim - 3
    order = sorted(range(3), key=lambda a: out_shape[a] / source.shape[lead + a])
    for axis in order:
        out = _sample_axis(out, lead + axis, scale[axis] * np.arange(out_shape[axis]) + offset[axis])
    return out.copy() if np.may_share_memory(out, source) else out


def _sample_axis(data: np.ndarray, axis: int, coordinate: np.ndarray) -> np.ndarray:
    """One pass of `_sample` along `axis`; a plain slice when the grids coincide on it."""
    n = data.shape[axis]
    inside = (coordinate >= -0.5 - 1e-4) & (coordinate <= n - 0.5 + 1e-4)
    clamped = np.clip(coordinate, 0, n - 1)
    low = np.floor(clamped).astype(np.intp)
    weight = (clamped - low).astype(np.float32)
    shape = [1] * data.ndim
    shape[axis] = -1
    if not weight.any():
        kept = np.flatnonzero(inside)  # one run: the coordinate is increasing
        source = low[kept]
        if kept.size and np.array_equal(source, np.arange(source[0], source[0] + source.size)):
            copied = data[(slice(None),) * axis + (slice(source[0], source[0] + source.size),)]
            if kept.size == low.size:
                return copied
            out_shape = list(data.shape)
            out_shape[axis] = low.size
            out = np.zeros(out_shape, dtype=np.float32)
            out[(slice(None),) * axis + (slice(kept[0], kept[0] + kept.size),)] = copied
            return out
        out = np.take(data, low, axis=axis)
    else:
        out = np.take(data, np.minimum(low + 1, n - 1), axis=axis)
        below = np.take(data, low, axis=axis)
        out -= below
        out *= weight.reshape(shape)
        out += below
    if not inside.all():
        out *= inside.reshape(shape)
    return out


# ---------------------------------------------------------------------------------- intensities


def _zscore(images: np.ndarray, brain: np.ndarray, case_id: str) -> None:
    """In place: each sequence to mean 0, std 1 over brain voxels; 0 outside the brain.

    Statistics accumulate in float64 (a study has millions of brain voxels); the volume itself
    is rescaled in place, without float64 or masked copies of it."""
    for channel, role in enumerate(ROLES):
        values = images[channel][brain]
        mean, std = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
        if not std > 1e-6 * max(1.0, abs(mean)):
            raise BrainMetSegError(
                f"{case_id}: {role} is constant over the brain (value {mean:g} on {values.size} voxels); "
                "it cannot be normalised (z-score needs a non-zero standard deviation)")
        volume = images[channel]
        volume -= np.float32(mean)
        volume *= np.float32(1.0 / std)
        np.multiply(volume, brain, out=volume)
