"""Tiny volumes with chosen geometry for tests (reusable by every test module).

Everything is small (a few thousand voxels) so that tests through the real readers and
writers take milliseconds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from BrainMetSegLib.roles import LABEL_ROLE, ROLES
from BrainMetSegLib.volumes import Volume, make_affine, write_volume


def rotation(axis: Sequence[float], degrees: float) -> np.ndarray:
    """Rotation matrix about `axis` (Rodrigues), for oblique direction matrices."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


OBLIQUE = rotation((1.0, 2.0, 3.0), 25.0) @ np.diag([-1.0, 1.0, 1.0])
"""A direction matrix that is neither axis-aligned nor a proper rotation of RAS (det -1)."""


def ramp(shape: Sequence[int], dtype=np.float32) -> np.ndarray:
    """Distinct, position-dependent values: 100*i + 10*j + k (+1 so nothing is zero)."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (100 * i + 10 * j + k + 1).astype(dtype)


def make_volume(shape: Sequence[int] = (6, 7, 8), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                origin: Sequence[float] = (0.0, 0.0, 0.0), direction: Optional[np.ndarray] = None,
                array: Optional[np.ndarray] = None, dtype=np.float32) -> Volume:
    """A Volume with the given geometry; values default to `ramp`."""
    data = ramp(shape, dtype) if array is None else np.asarray(array)
    return Volume(data, make_affine(spacing, direction, origin))


def write_test_volume(path: Path, **kwargs) -> Path:
    """make_volume(**kwargs) written to `path` (format by extension)."""
    write_volume(make_volume(**kwargs), path)
    return Path(path)


def blob_case(shape: Tuple[int, int, int] = (10, 11, 12), spacing: Sequence[float] = (1.0, 1.0, 1.0),
              origin: Sequence[float] = (0.0, 0.0, 0.0), direction: Optional[np.ndarray] = None,
              seed: int = 0) -> Tuple[Dict[str, Volume], Volume]:
    """Four sequences on one grid with a central 'brain' ellipsoid (zero outside it) and a label
    holding one 2x2x2 cube lesion inside the brain."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) / (n / 2) for n in shape], indexing="ij")
    brain = sum(g ** 2 for g in grid) < 0.8
    affine = make_affine(spacing, direction, origin)
    volumes = {role: Volume(np.where(brain, rng.uniform(50, 150, shape), 0).astype(np.float32), affine.copy())
               for role in ROLES}
    label = np.zeros(shape, dtype=np.uint8)
    centre = [n // 2 for n in shape]
    label[tuple(slice(c - 1, c + 1) for c in centre)] = 1
    return volumes, Volume(label, affine.copy())


def write_case_files(folder: Path, suffix: str = ".nii.gz", with_label: bool = True, **kwargs) -> Dict[str, Path]:
    """blob_case(**kwargs) written as `folder/<role><suffix>` (+ seg); returns role -> path."""
    volumes, label = blob_case(**kwargs)
    paths = {}
    for role, volume in volumes.items():
        paths[role] = Path(folder) / f"{role}{suffix}"
        write_volume(volume, paths[role])
    if with_label:
        paths[LABEL_ROLE] = Path(folder) / f"{LABEL_ROLE}{suffix}"
        write_volume(label, paths[LABEL_ROLE])
    return paths
