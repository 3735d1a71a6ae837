"""The lesion table node: one row per lesion, the columns of the CLI's lesions.csv.

The rows are lesions.lesion_table's, so the table in Slicer, the CSV saved from it and the
CSV the command line writes agree to the digit. Selecting a row centres the slice views on
the lesion's centroid (world RAS, where the segmentation is drawn). The table is locked: its
numbers are measurements, not notes to edit.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import slicer
import vtk
import vtk.util.numpy_support

from ..errors import BrainMetSegError
from ..lesions import TABLE_COLUMNS, Lesion, lesion_table, write_lesion_csv

PathLike = Union[str, "os.PathLike[str]"]

COLUMN_TITLES = {
    "id": ("Lesion", ""),
    "confidence": ("Confidence", ""),
    "volume_mm3": ("Volume", "mm3"),
    "equivalent_diameter_mm": ("Diameter (equivalent sphere)", "mm"),
    "max_axial_diameter_mm": ("Max axial diameter", "mm"),
    "centroid_r": ("R", "mm"),
    "centroid_a": ("A", "mm"),
    "centroid_s": ("S", "mm"),
    "voxels": ("Voxels", ""),
}
"""Column headers and units shown in Slicer's table view; the column names stay the CSV's."""

_INTEGER_COLUMNS = ("id", "voxels")


def add_lesion_table(lesions: Sequence[Lesion], name: str):
    """A new, locked vtkMRMLTableNode in slicer.mrmlScene with one row per lesion."""
    rows = lesion_table(lesions)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    for column in TABLE_COLUMNS:
        if column in _INTEGER_COLUMNS:
            values = np.array([row[column] for row in rows], dtype=np.int32)
        else:
            values = np.array([np.nan if row[column] is None else row[column] for row in rows], dtype=np.float64)
        array = vtk.util.numpy_support.numpy_to_vtk(values, deep=True)
        array.SetName(column)
        table.AddColumn(array)
        title, unit = COLUMN_TITLES[column]
        node.SetColumnTitle(column, title)
        if unit:
            node.SetColumnUnitLabel(column, unit)
    node.SetUseColumnTitleAsColumnHeader(True)
    node.SetLocked(True)
    return node


def _column(table_node, column: str) -> np.ndarray:
    array = table_node.GetTable().GetColumnByName(column)
    if array is None:
        raise BrainMetSegError(f"table '{table_node.GetName()}': no column '{column}'; not a lesion table")
    return vtk.util.numpy_support.vtk_to_numpy(array)


def lesion_ras(table_node, row: int) -> Tuple[float, float, float]:
    """World RAS (mm) of the centroid of the lesion in `row`, to centre the slice views on."""
    rows = table_node.GetNumberOfRows()
    if not 0 <= int(row) < rows:
        raise BrainMetSegError(f"table '{table_node.GetName()}': row {row} does not exist (it has {rows} rows)")
    return tuple(float(_column(table_node, axis)[int(row)])  # type: ignore[return-value]
                 for axis in ("centroid_r", "centroid_a", "centroid_s"))


def centre_slice_views(ras: Sequence[float], scene=None) -> None:
    """Move every slice view so that `ras` is at its centre (as clicking a markup does)."""
    r, a, s = (float(v) for v in ras)
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene or slicer.mrmlScene, r, a, s,
                                          slicer.vtkMRMLSliceNode.CenteredJumpSlice)


def lesions_from_table(table_node) -> List[Lesion]:
    """The lesions a lesion table holds (without bounding boxes, which it does not store)."""
    columns = {column: _column(table_node, column) for column in TABLE_COLUMNS}
    lesions = []
    for row in range(table_node.GetNumberOfRows()):
        confidence = float(columns["confidence"][row])
        lesions.append(Lesion(
            index=int(columns["id"][row]),
            voxels=int(columns["voxels"][row]),
            volume_mm3=float(columns["volume_mm3"][row]),
            equivalent_diameter_mm=float(columns["equivalent_diameter_mm"][row]),
            max_axial_diameter_mm=float(columns["max_axial_diameter_mm"][row]),
            centroid_ras=tuple(float(columns[axis][row])  # type: ignore[arg-type]
                               for axis in ("centroid_r", "centroid_a", "centroid_s")),
            bbox=(),
            confidence=None if np.isnan(confidence) else confidence,
        ))
    return lesions


def save_lesion_table_csv(table_or_lesions, path: PathLike, overwrite: bool = False,
                          cutoff: Optional[float] = None) -> Path:
    """Write the lesion table (a table node or a list of Lesion) as CSV, atomically.

    With `cutoff`, only lesions whose confidence (as the table shows it) is at least the
    cut-off are written: the lesions the user sees. An existing file is refused unless `overwrite` (a save dialog that
    asked the user passes True)."""
    path = Path(path)
    if path.is_dir():
        raise BrainMetSegError(f"{path}: is a folder; expected a .csv file name")
    if path.exists() and not overwrite:
        raise BrainMetSegError(f"{path}: already exists; choose another name or allow overwriting")
    if isinstance(table_or_lesions, slicer.vtkMRMLTableNode):
        lesions = lesions_from_table(table_or_lesions)
    else:
        lesions = list(table_or_lesions)
    if cutoff is not None:  # on the confidence as the table shows it, as apply_confidence_cutoff does
        shown = [row["confidence"] for row in lesion_table(lesions)]
        lesions = [lesion for lesion, value in zip(lesions, shown) if value is not None and value >= cutoff]
    write_lesion_csv(lesions, path)
    return path
