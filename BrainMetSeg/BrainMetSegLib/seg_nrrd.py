"""Slicer segmentation files (`.seg.nrrd`): one named, coloured, tagged segment per lesion.

A `.seg.nrrd` is a plain NRRD label map whose header carries Slicer's segment metadata as
`Segment{i}_*` and `Segmentation_*` key/value fields (the format of Slicer's
vtkMRMLSegmentationStorageNode). Writing it here, with pynrrd, lets the command line produce a
file that Slicer opens with every lesion as its own segment, its confidence, volume and
diameter in the segment's tags, and a standard terminology entry, without Slicer installed.

Lesions never overlap, so one layer holds them all: label value i is lesion i. The file is
written in LPS, as Slicer writes it; the affine this module takes and returns is RAS in array
axis order, like everywhere else in the library.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .atomic import atomic_path
from .errors import BrainMetSegError

PathLike = Union[str, Path]

TERMINOLOGY_ENTRY = (
    "Segmentation category and type - DICOM master list"
    "~SCT^49755003^Morphologically Altered Structure"
    "~SCT^14799000^Neoplasm, Secondary"
    "~^^"
    "~Anatomic codes - DICOM master list"
    "~SCT^12738006^Brain"
    "~^^"
)
"""Slicer terminology string for a brain metastasis: category Morphologically Altered Structure,
type Neoplasm, Secondary (SNOMED CT 14799000, DICOM CID 7159 Lesion Segmentation Types), in the
anatomic region Brain (SNOMED CT 12738006). Fields are separated by `~`, codes written
`scheme^value^meaning`, as Slicer's terminology module serialises them."""

LOW_CONFIDENCE_COLOUR = (1.0, 1.0, 0.0)
HIGH_CONFIDENCE_COLOUR = (1.0, 0.0, 0.0)

PALETTE = (
    (0.90, 0.10, 0.29), (0.24, 0.71, 0.29), (1.00, 0.88, 0.10), (0.26, 0.39, 0.85),
    (0.96, 0.51, 0.19), (0.57, 0.12, 0.71), (0.27, 0.94, 0.94), (0.94, 0.20, 0.90),
    (0.74, 0.96, 0.05), (0.98, 0.75, 0.83),
)
"""Distinct colours for lesions that carry no confidence (or when colouring by confidence is
off), cycled in lesion order so that neighbouring indices differ."""

_SPACES = {
    "left-posterior-superior": np.diag([-1.0, -1.0, 1.0]),
    "lps": np.diag([-1.0, -1.0, 1.0]),
    "right-anterior-superior": np.eye(3),
    "ras": np.eye(3),
}


def confidence_colour(confidence: float) -> Tuple[float, float, float]:
    """Colour of a lesion of this confidence: yellow at 0 through orange to red at 1.

    The linear ramp (1, 1 - c, 0) makes the most trustworthy findings the most alarming colour,
    so a reader sees at a glance which segments to check first."""
    c = float(np.clip(confidence, 0.0, 1.0))
    low, high = np.asarray(LOW_CONFIDENCE_COLOUR), np.asarray(HIGH_CONFIDENCE_COLOUR)
    return tuple(float(v) for v in (1.0 - c) * low + c * high)


CONFIDENCE_TAG = "Confidence"
"""Segment tag holding a lesion's confidence; the Slicer cut-off slider filters on it."""


def lesion_tags(lesion) -> Dict[str, str]:
    """Segment tags of a lesion, shared by the .seg.nrrd writer and the Slicer scene code."""
    tags = {"TerminologyEntry": TERMINOLOGY_ENTRY}
    if lesion.confidence is not None:
        tags[CONFIDENCE_TAG] = f"{lesion.confidence:.4f}"
    tags["Volume_mm3"] = f"{lesion.volume_mm3:.2f}"
    tags["Diameter_mm"] = f"{lesion.equivalent_diameter_mm:.2f}"
    tags["MaxAxialDiameter_mm"] = f"{lesion.max_axial_diameter_mm:.2f}"
    tags["Voxels"] = str(int(lesion.voxels))
    return tags


def _format_tags(tags: Dict[str, str]) -> str:
    return "".join(f"{key}:{value}|" for key, value in tags.items())


def _parse_tags(text: str) -> Dict[str, str]:
    tags = {}
    for item in text.split("|"):
        key, colon, value = item.partition(":")
        if colon:
            tags[key] = value
    return tags


def _label_dtype(count: int, path: Path) -> np.dtype:
    if count <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if count <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    raise BrainMetSegError(f"{path}: {count} lesions; a segmentation file holds at most 65535")


def write_segmentation_nrrd(components: np.ndarray, affine: np.ndarray, lesions: Sequence,
                            path: PathLike, colour_by_confidence: bool = True) -> None:
    """Write `components` (label i = lesions[i-1]) as a Slicer segmentation, atomically.

    Each lesion becomes segment "Lesion N" whose label value is its index in `components`; its
    tags carry confidence, volume, equivalent and maximal axial diameters and the terminology
    entry. Colours follow `confidence_colour` when `colour_by_confidence` (and the lesion has a
    confidence), else `PALETTE`."""
    import nrrd

    path = Path(path)
    components = np.asarray(components)
    affine = np.asarray(affine, dtype=np.float64)
    if components.ndim != 3:
        raise BrainMetSegError(f"{path}: the lesion label map must be 3D, got shape {components.shape}")
    if affine.shape != (4, 4):
        raise BrainMetSegError(f"{path}: the affine must be 4x4, got shape {affine.shape}")
    indices = [int(lesion.index) for lesion in lesions]
    present = np.unique(components)
    present = present[present != 0]
    if sorted(indices) != [int(v) for v in present]:
        raise BrainMetSegError(
            f"{path}: lesion indices {sorted(indices)} do not match the labels in the map {present.tolist()}")
    dtype = _label_dtype(len(indices), path)

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    header = {
        "space": "left-posterior-superior",
        "space directions": lps[:3, :3].T.copy(),
        "space origin": lps[:3, 3].copy(),
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|Closed surface|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for i, lesion in enumerate(lesions):
        if colour_by_confidence and lesion.confidence is not None:
            colour = confidence_colour(lesion.confidence)
        else:
            colour = PALETTE[i % len(PALETTE)]
        extent = " ".join(f"{start} {stop - 1}" for start, stop in lesion.bbox)
        header.update({
            f"Segment{i}_ID": f"Lesion_{lesion.index}",
            f"Segment{i}_Name": f"Lesion {lesion.index}",
            f"Segment{i}_NameAutoGenerated": "0",
            f"Segment{i}_Color": " ".join(f"{v:.6g}" for v in colour),
            f"Segment{i}_ColorAutoGenerated": "0",
            f"Segment{i}_Extent": extent,
            f"Segment{i}_LabelValue": str(lesion.index),
            f"Segment{i}_Layer": "0",
            f"Segment{i}_Tags": _format_tags(lesion_tags(lesion)),
        })
    data = components.astype(dtype, copy=False)
    with atomic_path(path) as tmp:
        nrrd.write(str(tmp), data, header, compression_level=1)


def _affine_from_header(header: dict, path: Path) -> np.ndarray:
    space = str(header.get("space", "")).lower()
    if space not in _SPACES:
        raise BrainMetSegError(f"{path}: unsupported NRRD space {header.get('space')!r}; "
                               "expected left-posterior-superior or right-anterior-superior")
    to_ras = _SPACES[space]
    directions = np.asarray(header["space directions"], dtype=np.float64)
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = to_ras @ directions.T
    affine[:3, 3] = to_ras @ origin
    return affine


def _segment(header: dict, i: int) -> dict:
    def field(name: str, default: Optional[str] = None) -> Optional[str]:
        return header.get(f"Segment{i}_{name}", default)

    colour = field("Color")
    extent = field("Extent")
    return {
        "id": field("ID"),
        "name": field("Name", field("ID")),
        "color": tuple(float(v) for v in colour.split()) if colour else None,
        "color_auto_generated": field("ColorAutoGenerated") == "1",
        "label_value": int(field("LabelValue", str(i + 1))),
        "layer": int(field("Layer", "0")),
        "extent": tuple(int(v) for v in extent.split()) if extent else None,
        "tags": _parse_tags(field("Tags", "")),
    }


def read_segmentation_nrrd(path: PathLike) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Read a single-layer `.seg.nrrd` into (label map, RAS affine, segment dicts).

    Each segment dict holds id, name, color (r, g, b in 0..1), color_auto_generated,
    label_value, layer, extent (i0 i1 j0 j1 k0 k1, inclusive, in file indices) and tags
    (a dict). Files whose segments overlap (several layers) are refused, since one label map
    cannot represent them."""
    import nrrd

    path = Path(path)
    if not path.is_file():
        raise BrainMetSegError(f"{path}: no such file")
    try:
        data, header = nrrd.read(str(path))
    except (nrrd.NRRDError, OSError, ValueError) as error:
        raise BrainMetSegError(f"{path}: cannot read as NRRD ({error})") from error
    if data.ndim != 3:
        raise BrainMetSegError(f"{path}: {data.ndim}D segmentation (shape {'x'.join(map(str, data.shape))}); "
                               "only single-layer (3D) segmentations are supported")
    if "space directions" not in header:
        raise BrainMetSegError(f"{path}: no 'space directions' in the header; the geometry is unknown")
    segments = []
    while f"Segment{len(segments)}_ID" in header:
        segments.append(_segment(header, len(segments)))
    return data, _affine_from_header(header, path), segments
