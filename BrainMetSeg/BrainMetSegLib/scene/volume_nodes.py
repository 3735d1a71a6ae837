"""Volume nodes <-> Volume: arrays in [i, j, k] order with the node's IJK-to-RAS matrix.

Slicer's arrayFromVolume returns voxels as [k, j, i] (VTK's x varies fastest); the library
indexes [i, j, k] with an affine over (i, j, k, 1), which is then exactly the node's
IJK-to-RAS matrix. A linear parent transform is folded into the affine (world coordinates,
what the user sees), so a sequence registered with a transform in Slicer is used where it is
displayed; a non-linear one would need resampling that the user should see, so it is refused.
Arrays are copied out of VTK memory: a computation in another thread must never read memory
the scene may free or change.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import slicer
import slicer.util
import vtk

from ..errors import BrainMetSegError
from ..lesions import check_probability
from ..volumes import Volume

PROBABILITY_COLOR_NODE_ID = "vtkMRMLColorTableNodeIron"
"""A default Slicer colour table (black through red to white) for the probability overlay."""


def node_label(node) -> str:
    """How messages name a node: its name in quotes, as the user sees it in the selectors."""
    return f"volume '{node.GetName()}'"


def world_affine(node) -> np.ndarray:
    """IJK-to-RAS of the node's voxels in world coordinates (parent transform applied)."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    affine = slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64)
    transform = node.GetParentTransformNode()
    if transform is None:
        return affine
    if not transform.IsTransformToWorldLinear():
        raise BrainMetSegError(
            f"{node_label(node)}: is under the non-linear transform '{transform.GetName()}'; "
            "harden the transform (Data module, right-click, Harden transform) before segmenting")
    to_world = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(to_world)
    return slicer.util.arrayFromVTKMatrix(to_world) @ affine


def volume_from_node(node) -> Volume:
    """A Volume holding a copy of a scalar volume node's voxels, in world RAS."""
    if node is None:
        raise BrainMetSegError("input: no volume node given")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise BrainMetSegError(f"'{node.GetName()}': a {node.GetClassName()}, not a scalar volume")
    image = node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise BrainMetSegError(f"{node_label(node)}: holds no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise BrainMetSegError(f"{node_label(node)}: has {image.GetNumberOfScalarComponents()} components per "
                               "voxel (a colour or vector image); expected a scalar MRI volume")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True).transpose(2, 1, 0)
    return Volume(np.ascontiguousarray(array), world_affine(node))


def add_volume_node(volume: Volume, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in slicer.mrmlScene holding `volume` (arrays are deep-copied)."""
    array = np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0))
    node = slicer.util.addVolumeFromArray(array, np.asarray(volume.affine, dtype=np.float64), name, class_name)
    return node


def add_probability_node(probability: np.ndarray, affine: np.ndarray, name: str,
                         threshold: Optional[float] = None):
    """The lesion probability map as a scalar volume with a heat colour table, window 0..1, and
    voxels below `threshold` transparent, ready to show as a slice-view overlay."""
    probability = check_probability(probability, name)
    node = add_volume_node(Volume(np.asarray(probability, dtype=np.float32), affine), name)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(PROBABILITY_COLOR_NODE_ID)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    if threshold is not None:
        display.SetThreshold(float(threshold), 1.0)
        display.ApplyThresholdOn()
    return node


def show_as_overlay(node, opacity: float = 0.4) -> None:
    """Show `node` as the foreground of every slice view (the background is left as it is)."""
    slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=float(opacity))
