"""Closest axial orientation: which array axes to permute and flip so that slices are axial.

The model sees every study the way a radiologist reads an axial series, whatever the
acquisition plane (a sagittal 3D BRAVO/MPRAGE, an LPS-stored NRRD, an oblique AC-PC stack):

    axis 0 (D): slices, inferior -> superior     (+S)
    axis 1 (H): rows, anterior -> posterior      (+P, top of the image is anterior)
    axis 2 (W): columns, patient right -> left   (+L, radiological: patient's right on screen left)

Only exact operations are used here (transpose and flip, no interpolation), so an oblique
acquisition keeps its own obliquity: the model grid is the acquired grid with its axes
relabelled to the closest of the three directions above. Resampling to the model's spacing
happens afterwards, in frames.py.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from .errors import BrainMetSegError

AXIAL_DIRECTIONS = np.array([[0.0, 0.0, 1.0],    # D: superior
                             [0.0, -1.0, 0.0],   # H: posterior
                             [-1.0, 0.0, 0.0]])  # W: left
"""RAS unit vector that each model-grid axis (D, H, W) points along, one row per axis."""


@dataclass(frozen=True)
class Orientation:
    """Oriented axis m is case axis `axes[m]`, reversed when `flips[m]`."""

    axes: Tuple[int, int, int]
    flips: Tuple[bool, bool, bool]
    case_shape: Tuple[int, int, int]

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.case_shape[a] for a in self.axes)  # type: ignore[return-value]

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Case array (..., I, J, K) -> oriented view (..., D, H, W); leading axes are kept."""
        lead = array.ndim - 3
        moved = np.transpose(array, tuple(range(lead)) + tuple(lead + a for a in self.axes))
        flipped = tuple(lead + m for m in range(3) if self.flips[m])
        return np.flip(moved, flipped) if flipped else moved

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Oriented array (..., D, H, W) -> case axis order (..., I, J, K) (a view)."""
        lead = array.ndim - 3
        flipped = tuple(lead + m for m in range(3) if self.flips[m])
        unflipped = np.flip(array, flipped) if flipped else array
        inverse = np.argsort(self.axes)
        return np.transpose(unflipped, tuple(range(lead)) + tuple(lead + int(m) for m in inverse))

    def index_map(self) -> np.ndarray:
        """4x4 matrix taking oriented indices (d, h, w, 1) to case indices (i, j, k, 1)."""
        matrix = np.zeros((4, 4))
        matrix[3, 3] = 1.0
        for m, (axis, flip) in enumerate(zip(self.axes, self.flips)):
            matrix[axis, m] = -1.0 if flip else 1.0
            matrix[axis, 3] = self.case_shape[axis] - 1.0 if flip else 0.0
        return matrix

    def oriented_affine(self, case_affine: np.ndarray) -> np.ndarray:
        """(d, h, w, 1) -> RAS for the oriented array: same voxel centres, relabelled axes."""
        return np.asarray(case_affine, dtype=float) @ self.index_map()


def closest_axial(affine: np.ndarray, shape: Sequence[int]) -> Orientation:
    """The axis permutation and flips that bring the array closest to AXIAL_DIRECTIONS.

    Every permutation is scored by the summed |cosine| between each model axis and the case
    axis assigned to it, so the assignment is a true best match (a greedy per-axis choice can
    give one case axis to two model axes on a 45-degree acquisition); ties keep the first
    permutation in lexicographic order, so the choice is deterministic. Each axis is then
    flipped when it points away from its target.
    """
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BrainMetSegError("affine: expected a finite, invertible 4x4 voxel-to-RAS matrix")
    if len(shape) != 3:
        raise BrainMetSegError(f"shape {tuple(shape)}: expected a 3D volume")
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = AXIAL_DIRECTIONS @ direction  # [model axis, case axis]
    best = max(itertools.permutations(range(3)),
               key=lambda perm: sum(abs(cosines[m, perm[m]]) for m in range(3)))
    flips = tuple(bool(cosines[m, best[m]] < 0) for m in range(3))
    return Orientation(tuple(int(a) for a in best), flips, tuple(int(n) for n in shape))  # type: ignore[arg-type]
