"""Cases built in physical space, for checking geometry on the model grid.

Brain, lesion and intensities are defined as functions of RAS position, then sampled on a
grid of any orientation and spacing, so the expected values on the model grid are known
exactly wherever the model voxel's RAS position is.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from BrainMetSegLib.case import Case, case_from_volumes
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import Volume, apply_affine, make_affine

SAGITTAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
"""Direction columns of a sagittal 3D acquisition: i runs inferior, j anterior, k right."""

LPS = np.diag([-1.0, -1.0, 1.0])
"""Direction of an array stored as ITK/DICOM do: i runs left, j posterior, k superior."""

GRADIENTS = np.array([[1.0, 2.0, 3.0], [-2.0, 1.0, 0.5], [3.0, -1.0, 2.0], [0.5, 0.5, -3.0]])
"""Per role, the RAS gradient of a linear intensity (linear interpolation reproduces it)."""


def intensity(role_index: int, ras: np.ndarray) -> np.ndarray:
    return 500.0 + ras @ GRADIENTS[role_index]


def centred_affine(shape: Sequence[int], spacing: Sequence[float], direction: Optional[np.ndarray],
                   centre_ras: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Affine whose grid centre lies at `centre_ras`."""
    affine = make_affine(spacing, direction)
    middle = apply_affine(affine, (np.asarray(shape, dtype=float) - 1) / 2.0)
    affine[:3, 3] = np.asarray(centre_ras, dtype=float) - middle
    return affine


def voxel_ras(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """RAS of every voxel centre, shape (*shape, 3)."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return apply_affine(affine, index)


def physical_case(shape: Tuple[int, int, int] = (40, 40, 40), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                  direction: Optional[np.ndarray] = None, grid_centre: Sequence[float] = (0.0, 0.0, 0.0),
                  brain_centre: Sequence[float] = (0.0, 0.0, 0.0), brain_radii: Sequence[float] = (15.0, 13.0, 12.0),
                  lesion_centre: Sequence[float] = (3.0, -2.0, 1.0), lesion_radius: float = 5.0,
                  case_id: str = "physical") -> Case:
    """A case with linear intensities (everywhere), an ellipsoid brain mask (axes along R, A, S)
    and a spherical lesion, sampled on the given grid; built through the real case_from_volumes."""
    affine = centred_affine(shape, spacing, direction, grid_centre)
    ras = voxel_ras(affine, shape)
    brain = (((ras - np.asarray(brain_centre)) / np.asarray(brain_radii)) ** 2).sum(axis=-1) <= 1.0
    lesion = np.linalg.norm(ras - np.asarray(lesion_centre), axis=-1) <= lesion_radius
    volumes = {role: Volume(intensity(n, ras).astype(np.float32), affine.copy()) for n, role in enumerate(ROLES)}
    return case_from_volumes(volumes, label=Volume(lesion.astype(np.uint8), affine.copy()),
                             brain_mask=Volume(brain.astype(np.uint8), affine.copy()), case_id=case_id)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
