"""A case: the four sequences on the bravo grid, an optional binary label and the brain mask.

Validation follows DESIGN §Data. BRAVO is the reference geometry; a sequence, label or mask
on another grid that overlaps it is resampled onto it (linear for images, nearest for label
and mask) and the case records a warning, because silent resampling hides registration
problems. Everything that would make training or inference meaningless is refused with the
file and the reason: a missing sequence, no physical overlap, a label that is not a
non-negative integer map, an empty brain.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Union

import numpy as np

from .errors import BrainMetSegError
from .roles import REFERENCE_ROLE, ROLES
from .volumes import Volume, check_voxels, format_shape, overlaps, read_volume, resample_like, same_grid

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Case:
    case_id: str
    images: np.ndarray  # float32 (4, I, J, K) in ROLES order, on the bravo grid
    affine: np.ndarray  # bravo's affine: (i, j, k, 1) -> RAS mm
    label: Optional[np.ndarray]  # uint8 (I, J, K) in {0, 1}, or None
    brain: np.ndarray  # bool (I, J, K)
    warnings: List[str] = field(default_factory=list)

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def shape(self):
        return tuple(int(n) for n in self.images.shape[1:])


def load_case(paths: Mapping[str, PathLike], label: Optional[PathLike] = None,
              brain_mask: Optional[PathLike] = None, case_id: Optional[str] = None) -> Case:
    """Read and validate a case from files; the id defaults to the folder holding bravo."""
    _check_roles(paths)
    volumes = {role: read_volume(paths[role]) for role in ROLES}
    label_volume = read_volume(label) if label is not None else None
    mask_volume = read_volume(brain_mask) if brain_mask is not None else None
    if case_id is None:
        case_id = Path(paths[REFERENCE_ROLE]).resolve().parent.name or "case"
    return case_from_volumes(volumes, label_volume, mask_volume, case_id)


def case_from_volumes(volumes: Mapping[str, Volume], label: Optional[Volume] = None,
                      brain_mask: Optional[Volume] = None, case_id: str = "case") -> Case:
    """Validate in-memory volumes as a case (see the module docstring for the rules)."""
    _check_roles(volumes)
    reference = volumes[REFERENCE_ROLE]
    warnings: List[str] = []
    images = np.empty((len(ROLES),) + reference.array.shape, dtype=np.float32)
    for channel, role in enumerate(ROLES):
        volume = _checked(volumes[role], role)
        images[channel] = _on_reference(volume, reference, role, 1, warnings).array

    label_array = None
    if label is not None:
        label_array = _binary_label(_on_reference(_checked_label(label), reference, "label", 0, warnings),
                                    warnings)

    if brain_mask is not None:
        mask = _on_reference(_checked(brain_mask, "brain mask"), reference, "brain mask", 0, warnings)
        brain = mask.array != 0
        if not brain.any():
            raise BrainMetSegError(f"{_name(brain_mask, 'brain mask')}: the brain mask is empty (no non-zero voxel on the bravo grid)")
    else:
        brain = reference.array != 0
        if not brain.any():
            raise BrainMetSegError(
                f"{_name(reference, REFERENCE_ROLE)}: bravo has no non-zero voxel, so the case has no brain "
                "voxels; inputs must be skull-stripped images, or supply a brain mask")

    for message in warnings:
        log.warning("%s: %s", case_id, message)
    return Case(case_id, images, reference.affine.copy(), label_array, brain, warnings)


def _check_roles(mapping: Mapping[str, object]) -> None:
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        raise BrainMetSegError(f"unknown sequence role(s) {', '.join(unknown)}; expected {', '.join(ROLES)}")
    missing = [role for role in ROLES if mapping.get(role) is None]
    if missing:
        raise BrainMetSegError(f"missing sequence(s) {', '.join(missing)}; a case needs {', '.join(ROLES)}")


def _name(volume: Volume, role: str) -> str:
    return str(volume.path) if volume.path is not None else f"{role} volume"


def _checked(volume: Volume, role: str) -> Volume:
    """Volumes built in memory skip read_volume's checks; apply the same ones here."""
    shape = volume.array.shape
    if volume.array.ndim != 3 or min(shape) < 2:
        raise BrainMetSegError(f"{_name(volume, role)}: shape {format_shape(shape)}; expected a 3D volume")
    check_voxels(volume.array, _name(volume, role))
    return volume


def _checked_label(label: Volume) -> Volume:
    """Refuse labels that cannot mean 'lesion or not': negative or fractional values."""
    name = _name(_checked(label, "label"), "label")
    values = label.array
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise BrainMetSegError(f"{name}: non-integer label values; expected 0 (background) and 1 (lesion)")
    if values.dtype.kind in "if" and values.size and values.min() < 0:
        raise BrainMetSegError(f"{name}: negative label value {values.min():g}; expected 0 (background) and 1 (lesion)")
    return label


def _on_reference(volume: Volume, reference: Volume, role: str, order: int, warnings: List[str]) -> Volume:
    if same_grid(volume, reference):
        return volume
    name = _name(volume, role)
    if not overlaps(volume, reference):
        raise BrainMetSegError(
            f"{name}: does not overlap bravo ({_name(reference, REFERENCE_ROLE)}) in physical space; "
            "the sequences must be co-registered")
    method = "linear" if order == 1 else "nearest"
    warnings.append(
        f"{name}: grid differs from bravo (shape {format_shape(volume.array.shape)}, spacing "
        f"{_format_spacing(volume.spacing)} mm vs {format_shape(reference.array.shape)}, "
        f"{_format_spacing(reference.spacing)} mm); resampled onto the bravo grid ({method})")
    return resample_like(volume, reference, order)


def _format_spacing(spacing: np.ndarray) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)


def _binary_label(label: Volume, warnings: List[str]) -> np.ndarray:
    """Every non-zero label is lesion: multi-label maps (e.g. core/enhancing) collapse to 1."""
    above = np.unique(label.array[label.array > 1])
    if above.size:
        shown = ", ".join(f"{v:g}" for v in above[:5]) + (", ..." if above.size > 5 else "")
        warnings.append(f"{_name(label, 'label')}: label values above 1 ({shown}) mapped to 1 "
                        "(every non-zero label is lesion)")
    return (label.array > 0).astype(np.uint8)
