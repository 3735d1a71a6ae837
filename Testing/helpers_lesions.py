"""Tiny synthetic shapes with known geometry for the lesion and metric tests."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from BrainMetSegLib.volumes import apply_affine, make_affine


def rotation_about(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about the R, A or S axis (RAS columns)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    plane = {"R": (1, 2), "A": (2, 0), "S": (0, 1)}[axis]
    rotation = np.eye(3)
    a, b = plane
    rotation[a, a], rotation[a, b], rotation[b, a], rotation[b, b] = c, -s, s, c
    return rotation


def oblique_affine(spacing: Sequence[float], origin: Sequence[float] = (12.0, -30.0, 7.5)) -> np.ndarray:
    """An anisotropic affine rotated 30 degrees about S then 10 about R: no axis is along RAS."""
    return make_affine(spacing, rotation_about("R", 10.0) @ rotation_about("S", 30.0), origin)


def ball(shape: Sequence[int], affine: np.ndarray, centre_ras: Sequence[float], radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within `radius_mm` of `centre_ras` (physical space)."""
    ras = apply_affine(affine, np.indices(shape).reshape(3, -1).T)
    return (np.linalg.norm(ras - np.asarray(centre_ras), axis=1) <= radius_mm).reshape(tuple(shape))


def grid_centre_ras(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    return apply_affine(affine, (np.asarray(shape) - 1) / 2.0)
