"""Known negatives: voxels around candidate lesions an annotator reviewed and rejected.

dataset.json stores only the RAS centroid of each rejected candidate, so the candidate is
stood for by a ball around it (4 mm radius by default: most metastases missed by annotators
are small). The losses treat these voxels as certain background (plain CE instead of the
bootstrap term), which is what stops the model from re-learning a rejected mimic. Voxels
labelled as lesion are excluded: a label always wins over a rejection nearby.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import BrainMetSegError

DEFAULT_RADIUS_MM = 4.0


def known_negative_mask(rejected_ras: Sequence[Sequence[float]], affine: np.ndarray, shape: Tuple[int, int, int],
                        radius_mm: float = DEFAULT_RADIUS_MM, exclude: Optional[np.ndarray] = None) -> np.ndarray:
    """Bool mask of `shape`: voxel centres within `radius_mm` of any rejected centroid.

    Distances are computed only on the index box that bounds each ball, so the cost is per
    rejected point, not per voxel of the volume; points outside the grid mark nothing.
    """
    points = _points(rejected_ras)
    if not (isinstance(radius_mm, (int, float)) and math.isfinite(radius_mm) and radius_mm > 0):
        raise BrainMetSegError(f"known-negative radius: {radius_mm!r}; expected a positive number of mm")
    affine = np.asarray(affine, dtype=float)
    shape = tuple(int(n) for n in shape)
    if exclude is not None and np.shape(exclude) != shape:
        raise BrainMetSegError(f"exclude: shape {np.shape(exclude)} differs from the grid's {shape}")
    mask = np.zeros(shape, dtype=bool)
    linear = affine[:3, :3]
    inverse = np.linalg.inv(affine)
    # a ball of radius r spans r * |row a of the inverse linear map| index units along axis a
    half_width = radius_mm * np.linalg.norm(inverse[:3, :3], axis=1)
    centres = points @ inverse[:3, :3].T + inverse[:3, 3]
    upper = np.asarray(shape) - 1
    for centre in centres:
        low = np.maximum(np.ceil(centre - half_width - 1e-9), 0).astype(int)
        high = np.minimum(np.floor(centre + half_width + 1e-9), upper).astype(int)
        if np.any(high < low):
            continue
        axes = [np.arange(lo, hi + 1) for lo, hi in zip(low, high)]
        offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1) - centre
        distance = np.linalg.norm(offsets @ linear.T, axis=-1)
        box = tuple(slice(lo, hi + 1) for lo, hi in zip(low, high))
        mask[box] |= distance <= radius_mm
    if exclude is not None:
        mask &= ~np.asarray(exclude, dtype=bool)
    return mask


def _points(rejected_ras: Sequence[Sequence[float]]) -> np.ndarray:
    try:
        points = np.asarray(rejected_ras, dtype=float)
    except (TypeError, ValueError):
        points = None
    if points is not None and points.size == 0:
        return np.zeros((0, 3))
    if points is None or points.ndim != 2 or points.shape[1] != 3 or not np.all(np.isfinite(points)):
        raise BrainMetSegError(f"rejected: {rejected_ras!r}; expected a list of [R, A, S] points, "
                               "three finite numbers in mm each")
    return points
