"""A real MRML scene for tests, built from slicer-core the way Slicer builds its own.

Slicer's application creates a vtkMRMLScene, a vtkSlicerApplicationLogic with the default
colour tables, and registers each module's logic; slicer.util's helpers then work on
`slicer.mrmlScene`. Slicer's Qt plugins also give every new node a subject hierarchy item;
slicer-core has no Qt, so `add_study` creates the patient -> study -> volume items that a
DICOM import would have made.
"""
from __future__ import annotations

import collections
import contextlib
from typing import Dict, Iterator, Mapping, Optional

import numpy as np
import slicer
import slicer.util
from vtkmodules.vtkCommonCore import vtkCollection, vtkIdList

from BrainMetSegLib.volumes import Volume


class SlicerScene:
    """A scene with the application, colour, volumes, segmentations and subject hierarchy logics."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtkCollection())
        self.app_logic.SetViewLogics(vtkCollection())
        self.logics = {}
        for name, logic_class in (("Volumes", slicer.vtkSlicerVolumesLogic),
                                  ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                                  ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
            logic = logic_class()
            logic.SetMRMLScene(self.scene)
            logic.SetMRMLApplicationLogic(self.app_logic)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        self.hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)

    def add_study(self, volumes: Mapping[str, Volume], names: Optional[Mapping[str, str]] = None,
                  patient: str = "Patient 1", study: str = "Brain MRI") -> Dict[str, object]:
        """Volume nodes (named `names[role]`, default the role) under patient -> study."""
        study_item = self.hierarchy.CreateStudyItem(
            self.hierarchy.CreateSubjectItem(self.hierarchy.GetSceneItemID(), patient), study)
        nodes = {}
        for role, volume in volumes.items():
            node = self.add_volume(volume, (names or {}).get(role, role))
            self.hierarchy.CreateItem(study_item, node)
            nodes[role] = node
        return nodes

    def add_volume(self, volume: Volume, name: str):
        """A scalar volume node holding `volume` ([i, j, k] array, RAS affine), as a file load would."""
        return slicer.util.addVolumeFromArray(np.ascontiguousarray(volume.array.transpose(2, 1, 0)),
                                              volume.affine, name)

    def add_slice_views(self, names=("Red", "Yellow", "Green")) -> Dict[str, object]:
        """Slice and slice-composite nodes as a three-view layout would create them."""
        views = {}
        for name, orientation in zip(names, ("Axial", "Sagittal", "Coronal")):
            slice_node = slicer.vtkMRMLSliceNode()
            slice_node.SetName(name)
            slice_node.SetLayoutName(name)
            slice_node.SetOrientation(orientation)
            self.scene.AddNode(slice_node)
            composite = slicer.vtkMRMLSliceCompositeNode()
            composite.SetLayoutName(name)
            self.scene.AddNode(composite)
            views[name] = slice_node
        return views

    def segment_mask(self, segmentation_node, segment_id: str, reference_node) -> np.ndarray:
        """A segment as a bool [i, j, k] array on `reference_node`'s grid, exported by the
        Segmentations logic as Slicer's Export to labelmap does (slicer.util's helper needs
        slicer.modules, which only the Qt application provides)."""
        from vtkmodules.vtkCommonCore import vtkStringArray

        ids = vtkStringArray()
        ids.InsertNextValue(segment_id)
        labelmap = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
        try:
            assert self.logics["Segmentations"].ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap,
                                                                            reference_node)
            return slicer.util.arrayFromVolume(labelmap).transpose(2, 1, 0) != 0
        finally:
            self.scene.RemoveNode(labelmap)

    def node_counts(self) -> collections.Counter:
        """Nodes by class: equal before and after means nothing was added or removed."""
        return collections.Counter(self.scene.GetNthNode(i).GetClassName() for i in range(self.scene.GetNumberOfNodes()))

    def item_count(self) -> int:
        """Subject hierarchy items under the scene item."""
        children = vtkIdList()
        self.hierarchy.GetItemChildren(self.hierarchy.GetSceneItemID(), children, True)
        return children.GetNumberOfIds()


@contextlib.contextmanager
def slicer_scene() -> Iterator[SlicerScene]:
    """A fresh SlicerScene installed as slicer.mrmlScene for the duration of a test."""
    previous = getattr(slicer, "mrmlScene", None)
    fixture = SlicerScene()
    slicer.mrmlScene = fixture.scene
    try:
        yield fixture
    finally:
        fixture.scene.Clear(True)
        if previous is None:
            del slicer.mrmlScene
        else:
            slicer.mrmlScene = previous
