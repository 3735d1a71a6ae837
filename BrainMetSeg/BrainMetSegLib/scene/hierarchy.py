"""Subject hierarchy: results go where the radiologist looks for them, under the study.

In Slicer every node gets a subject hierarchy item when it is added; a study loaded from
DICOM sits under patient -> study. Outputs are moved under the parent of the BRAVO volume's
item (its study, or whatever folder the user keeps it in), so they travel with the images
when the study is saved, closed or exported.
"""
from __future__ import annotations

import slicer


def study_item(reference_node) -> int:
    """The subject hierarchy item holding `reference_node` (0 when it has none or sits at the
    top level)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(reference_node.GetScene())
    item = hierarchy.GetItemByDataNode(reference_node)
    if not item:
        return 0
    parent = hierarchy.GetItemParent(item)
    return 0 if parent == hierarchy.GetSceneItemID() else parent


def place_beside(node, reference_node) -> int:
    """Put `node`'s item under the parent of `reference_node`'s item; returns that parent (0
    when the reference has no parent folder, and then `node` is left where it is)."""
    parent = study_item(reference_node)
    if not parent:
        return 0
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)
    return parent
