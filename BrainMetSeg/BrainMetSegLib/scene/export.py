"""Export an annotated study from the scene to a dataset folder (BrainMetShare layout).

The annotator's segmentation may hold several segments (one per lesion, or "lesion" and
"unsure"); the selected ones are merged into one binary label, because the dataset's label
is lesion or not. The segmentation is first exported on its own grid (Slicer converts any
representation to a labelmap there), then put on the BRAVO grid in world coordinates by the
library's nearest-neighbour resampling, the same rule the dataset reader applies to every
label: so what is written is what training will read. Lesion voxels that fall outside the
BRAVO volume would be lost silently; they are refused instead, as are an empty label, a
missing or duplicated sequence and anything the case validation refuses (non-overlapping
volumes, NaN voxels, an empty brain). The case folder is written first, dataset.json last
(atomically), and an existing case is replaced only with `overwrite=True`, keeping the
rejected candidates already recorded for it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np
import slicer
import vtk

from ..case import case_from_volumes
from ..dataset import (DATASET_JSON, LABEL_STATUSES, SPLITS, CaseEntry, check_case_id, read_dataset,
                       scan_cases, write_case, write_dataset_json)
from ..errors import BrainMetSegError
from ..lesions import connected_components
from ..roles import REFERENCE_ROLE, ROLES
from ..volumes import Volume, apply_affine, resample_like, same_grid
from .inputs import SceneInputs, check_inputs
from .temporary import temporary_nodes
from .volume_nodes import volume_from_node

PathLike = Union[str, "os.PathLike[str]"]

CASE_PREFIX = "Mets_"


@dataclass
class ExportedCase:
    entry: CaseEntry
    lesions: int
    """Lesions (26-connected components) of the written label; 0 without a label."""
    warnings: List[str] = field(default_factory=list)
    """What the case validation said, e.g. a sequence resampled onto the bravo grid."""


def segmentation_label(segmentation_node, reference: Volume, segment_ids: Optional[Sequence[str]] = None,
                       allow_empty: bool = False) -> Volume:
    """The selected segments (default: all) merged into a uint8 0/1 label on `reference`'s grid.

    Refuses a segmentation without the selected segments, lesion voxels outside the reference
    volume, and (unless `allow_empty`) a label without any lesion voxel.
    """
    name = f"segmentation '{segmentation_node.GetName()}'"
    ids = _selected_segments(segmentation_node, segment_ids, name)
    own = _export_own_grid(segmentation_node, ids, name)
    if own is None or not own.array.any():
        if not allow_empty:
            raise BrainMetSegError(f"{name}: the selected segment(s) {', '.join(ids)} are empty; draw the lesions "
                                   "first (or export the case with label status 'none')")
        return Volume(np.zeros(reference.array.shape, dtype=np.uint8), reference.affine.copy())
    inside_reference = np.linalg.inv(reference.affine) @ own.affine
    centres = apply_affine(inside_reference, np.argwhere(own.array))
    outside = np.any((centres < -0.5) | (centres > np.asarray(reference.array.shape) - 0.5), axis=1)
    if outside.any():
        raise BrainMetSegError(f"{name}: {int(outside.sum())} of {len(centres)} lesion voxels lie outside the bravo "
                               "volume; the segmentation must be drawn on the four co-registered sequences")
    label = own if same_grid(own, reference) else resample_like(own, reference, order=0)
    return Volume((label.array != 0).astype(np.uint8), reference.affine.copy())


def _selected_segments(segmentation_node, segment_ids: Optional[Sequence[str]], name: str) -> List[str]:
    segmentation = segmentation_node.GetSegmentation()
    available = list(segmentation.GetSegmentIDs())
    if not available:
        raise BrainMetSegError(f"{name}: holds no segment; draw the lesions first")
    if segment_ids is None:
        return available
    ids = list(segment_ids)
    if not ids:
        raise BrainMetSegError(f"{name}: no segment selected; select the segments that hold lesions")
    unknown = [segment_id for segment_id in ids if segment_id not in available]
    if unknown:
        raise BrainMetSegError(f"{name}: no segment with ID {', '.join(unknown)}; it holds {', '.join(available)}")
    return ids


def _export_own_grid(segmentation_node, segment_ids: Sequence[str], name: str) -> Optional[Volume]:
    """The segments as one labelmap on the segmentation's own grid, cropped to their content,
    with its world geometry (a linear parent transform of the segmentation applied)."""
    transform = segmentation_node.GetParentTransformNode()
    if transform is not None and not transform.IsTransformToWorldLinear():
        raise BrainMetSegError(f"{name}: is under the non-linear transform '{transform.GetName()}'; harden the "
                               "transform (Data module, right-click, Harden transform) before exporting")
    ids = vtk.vtkStringArray()
    for segment_id in segment_ids:
        ids.InsertNextValue(segment_id)
    with temporary_nodes(segmentation_node.GetScene()):
        node = segmentation_node.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "BrainMetSeg export")
        exported = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, node, None, slicer.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS)
        image = node.GetImageData()
        if not exported or image is None or image.GetPointData().GetScalars() is None:
            return None
        if transform is not None:
            node.SetAndObserveTransformNodeID(transform.GetID())
        return volume_from_node(node)


def next_case_id(dataset_root: PathLike, prefix: str = CASE_PREFIX) -> str:
    """The first unused `Mets_NNN` id (three digits, as BrainMetShare numbers its cases)."""
    root = Path(dataset_root)
    used = [path.name for path in root.iterdir()] if root.is_dir() else []
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    numbers = [int(match.group(1)) for match in map(pattern.fullmatch, used) if match]
    number = max(numbers, default=0) + 1
    return f"{prefix}{number:03d}"


def _dataset_entries(root: Path) -> List[CaseEntry]:
    """The dataset's cases as it reads now: dataset.json, else the scanned folders, else none."""
    if (root / DATASET_JSON).is_file():
        return read_dataset(root).cases
    return scan_cases(root) if root.is_dir() else []


def export_case(dataset_root: PathLike, case_id: str, volume_nodes: Mapping[str, object],
                segmentation_node=None, segment_ids: Optional[Sequence[str]] = None, label_status: str = "partial",
                split: str = "train", overwrite: bool = False, allow_empty: bool = False) -> ExportedCase:
    """Write one case (four sequences + the merged label on the bravo grid) and list it in dataset.json.

    `label_status` is 'complete' when every lesion was drawn, 'partial' when some may be
    missing, 'none' for a case exported without a segmentation. `allow_empty` accepts a
    label without lesions (a case known to have none, labelled 'complete').
    """
    root = Path(dataset_root)
    check_case_id(case_id, "case id")
    if label_status not in LABEL_STATUSES:
        raise BrainMetSegError(f"label status: {label_status!r}; expected one of {', '.join(LABEL_STATUSES)}")
    if split not in SPLITS:
        raise BrainMetSegError(f"split: {split!r}; expected one of {', '.join(SPLITS)}")
    if (label_status == "none") != (segmentation_node is None):
        raise BrainMetSegError("label status: 'none' means the case has no segmentation; "
                               + ("choose 'complete' or 'partial' for a segmented case" if segmentation_node is not None
                                  else "select the annotator's segmentation, or export with label status 'none'"))
    entries = _dataset_entries(root)
    previous = next((entry for entry in entries if entry.case_id == case_id), None)
    if previous is not None and not overwrite:
        raise BrainMetSegError(f"{root / case_id}: case {case_id} already exists in the dataset; confirm to replace "
                               "it (overwrite=True)")
    unknown = sorted(set(volume_nodes) - set(ROLES))
    if unknown:
        raise BrainMetSegError(f"volume nodes: unknown role(s) {', '.join(unknown)}; expected {', '.join(ROLES)}")
    inputs = SceneInputs(**{role: volume_nodes.get(role) for role in ROLES})
    check_inputs(inputs)
    volumes = {role: volume_from_node(node) for role, node in inputs.nodes().items()}
    label = None
    if segmentation_node is not None:
        label = segmentation_label(segmentation_node, volumes[REFERENCE_ROLE], segment_ids, allow_empty)
    case = case_from_volumes(volumes, label, case_id=case_id)
    folder = write_case(root, case_id, volumes, label, overwrite=overwrite)
    entry = CaseEntry(case_id, folder, split, label_status, list(previous.rejected) if previous else [])
    if previous is None:
        entries.append(entry)
    else:
        entries[entries.index(previous)] = entry
    write_dataset_json(root, entries)
    lesions = connected_components(case.label)[1] if case.label is not None else 0
    return ExportedCase(entry, lesions, list(case.warnings))
