"""Missed-lesion review: lesions the model found that the annotator's segmentation lacks.

An annotator labels quickly and may miss lesions; the model trained with the lopsided loss
is sensitive, so its predictions that the annotation does not contain are the candidates
worth a second look. Each is accepted (its voxels join the annotation) or rejected (its
centroid is recorded in dataset.json: it is not offered again, and training treats the
voxels around it as known negatives, see negatives.py).

Rules (kept deliberately simple, so an annotator can predict what is offered):

- *Contained*: a predicted lesion is contained in the annotation when at least one of its
  voxels is annotated. A lesion drawn only in part has been seen, so it is not offered
  again; completing its outline is the annotator's call, not the model's.
- *Rejected*: a predicted lesion is not offered when a rejected centroid lies in one of its
  voxels, or within `reject_radius_mm` (4 mm, the known-negative radius of training) of its
  centroid: the same candidate predicted again by a retrained model moves a little.
- *Order*: most confident first (ties: the larger lesion, then the component label), as the
  radiologist's lesion table is ordered.

Everything here is numpy on arrays on one grid (the bravo grid); dataset.json is the only
file touched, by `reject`, atomically.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np

from .dataset import CaseEntry, read_dataset, write_dataset_json
from .errors import BrainMetSegError
from .lesions import Lesion, check_affine
from .negatives import DEFAULT_RADIUS_MM

PathLike = Union[str, "os.PathLike[str]"]

SAME_POINT_MM = 1e-3
"""Two rejected centroids closer than this are one rejection (a double click records it once)."""


def _check_grid(components: np.ndarray, annotation: np.ndarray) -> None:
    components, annotation = np.asarray(components), np.asarray(annotation)
    if components.ndim != 3 or components.dtype.kind not in "iu":
        raise BrainMetSegError(f"prediction components: {components.ndim}D {components.dtype} array; "
                               "expected a 3D integer component map")
    if annotation.shape != components.shape:
        raise BrainMetSegError(f"annotation: shape {annotation.shape} differs from the prediction's "
                               f"{components.shape}; both must be on the bravo grid")


def _rejected_points(rejected_ras: Sequence[Sequence[float]]) -> np.ndarray:
    points = np.asarray(rejected_ras, dtype=float) if len(rejected_ras) else np.zeros((0, 3))
    if points.ndim != 2 or points.shape[1] != 3 or not np.all(np.isfinite(points)):
        raise BrainMetSegError(f"rejected: {rejected_ras!r}; expected a list of [R, A, S] points in mm")
    return points


def _labels_at(points_ras: np.ndarray, components: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Component label of the voxel holding each point (0 outside the grid or on background)."""
    if not len(points_ras):
        return np.zeros(0, dtype=np.int64)
    inverse = np.linalg.inv(affine)
    indices = np.rint(points_ras @ inverse[:3, :3].T + inverse[:3, 3]).astype(np.int64)
    inside = np.all((indices >= 0) & (indices < np.asarray(components.shape)), axis=1)
    labels = np.zeros(len(points_ras), dtype=np.int64)
    labels[inside] = components[tuple(indices[inside].T)]
    return labels


def missed_lesions(prediction_components: np.ndarray, lesions: Sequence[Lesion], annotation: np.ndarray,
                   affine: np.ndarray, rejected_ras: Sequence[Sequence[float]] = (),
                   min_confidence: float = 0.0, reject_radius_mm: float = DEFAULT_RADIUS_MM) -> List[Lesion]:
    """Predicted lesions the annotation does not contain and no rejection covers, most confident first.

    `prediction_components` holds label `lesion.index` on each lesion's voxels
    (Prediction.components); `annotation` is the annotator's label on the same grid (non-zero
    = lesion); `affine` maps that grid to RAS; `rejected_ras` are the case's rejected
    centroids (CaseEntry.rejected). See the module docstring for the rules.
    """
    _check_grid(prediction_components, annotation)
    affine = check_affine(affine)
    if not (isinstance(min_confidence, (int, float)) and 0.0 <= float(min_confidence) <= 1.0):
        raise BrainMetSegError(f"minimum confidence: {min_confidence!r}; expected a value from 0 to 1")
    if not (isinstance(reject_radius_mm, (int, float)) and math.isfinite(reject_radius_mm) and reject_radius_mm >= 0):
        raise BrainMetSegError(f"rejection radius: {reject_radius_mm!r}; expected a number of mm >= 0")
    components = np.asarray(prediction_components)
    unscored = [lesion.index for lesion in lesions if lesion.confidence is None]
    if unscored:
        raise BrainMetSegError(f"lesions {unscored}: no confidence; missed-lesion review takes predicted lesions")
    annotated = set(np.unique(components[np.asarray(annotation) != 0]).tolist()) - {0}
    points = _rejected_points(rejected_ras)
    rejected_labels = set(_labels_at(points, components, affine).tolist()) - {0}
    candidates = [lesion for lesion in lesions
                  if lesion.index not in annotated and lesion.index not in rejected_labels
                  and lesion.confidence >= min_confidence]
    if len(points) and candidates:
        centroids = np.array([lesion.centroid_ras for lesion in candidates], dtype=float)
        nearest = np.min(np.linalg.norm(centroids[:, None, :] - points[None, :, :], axis=2), axis=1)
        candidates = [lesion for lesion, distance in zip(candidates, nearest) if distance > reject_radius_mm]
    return sorted(candidates, key=lambda lesion: (-lesion.confidence, -lesion.voxels, lesion.index))


def accept(annotation: np.ndarray, prediction_components: np.ndarray, lesion: Lesion) -> np.ndarray:
    """A copy of the annotation with the lesion's voxels set to 1 (the annotation's dtype kept;
    voxels already annotated keep their value)."""
    _check_grid(prediction_components, annotation)
    voxels = np.asarray(prediction_components) == lesion.index
    if not voxels.any():
        raise BrainMetSegError(f"lesion {lesion.index}: not in the prediction's component map")
    updated = np.array(annotation, copy=True)
    updated[voxels & (updated == 0)] = 1
    return updated


def reject(dataset_root: PathLike, case_id: str, lesion_or_centroid: Union[Lesion, Sequence[float]]) -> CaseEntry:
    """Record a rejected candidate's centroid in dataset.json (atomically) and return the case.

    A dataset without dataset.json gets one, listing the scanned cases as they read, so the
    folder reads the same afterwards. A centroid already recorded is not recorded twice.
    """
    centroid = lesion_or_centroid.centroid_ras if isinstance(lesion_or_centroid, Lesion) else lesion_or_centroid
    point = np.asarray(centroid, dtype=float)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise BrainMetSegError(f"rejected centroid: {centroid!r}; expected [R, A, S], three finite numbers in mm")
    dataset = read_dataset(Path(dataset_root))
    entry = dataset.get(case_id)
    known = _rejected_points(entry.rejected)
    if not len(known) or np.min(np.linalg.norm(known - point, axis=1)) > SAME_POINT_MM:
        entry.rejected.append([float(x) for x in point])
        write_dataset_json(dataset.root, dataset.cases)
    return entry
