"""The module's inputs: four volume nodes by role (and an optional brain mask).

Everything the GUI needs before Apply lives here: filling the selectors from the scene by
name (sequence_names), saying what is still missing, refusing inputs that cannot work, and
copying the voxels out of the nodes (`read_inputs`, main thread) so that the computation can
run in another thread without touching MRML.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import slicer

from ..errors import BrainMetSegError
from ..roles import REFERENCE_ROLE, ROLE_TITLES, ROLES
from ..sequence_names import Assignment, assign_roles
from ..volumes import Volume
from .volume_nodes import volume_from_node


@dataclass
class SceneInputs:
    """Volume nodes chosen for each role (None: not chosen yet)."""

    t1_pre: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    t1_gd: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    bravo: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    flair: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    brain_mask: Optional[slicer.vtkMRMLScalarVolumeNode] = None

    def nodes(self) -> Dict[str, Optional[slicer.vtkMRMLScalarVolumeNode]]:
        """The four sequence nodes by role, in ROLES order."""
        return {role: getattr(self, role) for role in ROLES}


@dataclass
class InputVolumes:
    """Copies of the input voxels and geometry: what the computation needs, free of MRML."""

    volumes: Dict[str, Volume]
    brain_mask: Optional[Volume]
    case_id: str


def candidate_volume_nodes(scene=None) -> List[slicer.vtkMRMLScalarVolumeNode]:
    """Scalar volumes a user could pick as a sequence: not label maps, not hidden nodes."""
    scene = scene or slicer.mrmlScene
    nodes = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetHideFromEditors():
            continue
        nodes.append(node)
    return nodes


def auto_assign(scene=None) -> Tuple[SceneInputs, Assignment]:
    """Inputs guessed from the names of the scene's volumes (see sequence_names for the
    rules), with the assignment's notes saying why a role was left empty."""
    nodes = candidate_volume_nodes(scene)
    assignment = assign_roles([node.GetName() for node in nodes])
    inputs = SceneInputs(**{role: (None if index is None else nodes[index])
                            for role, index in assignment.roles.items()})
    return inputs, assignment


def missing_inputs(inputs: SceneInputs) -> List[str]:
    """Titles of the sequences not chosen yet, in ROLES order (empty: Apply can be enabled)."""
    return [ROLE_TITLES[role] for role, node in inputs.nodes().items() if node is None]


def check_inputs(inputs: SceneInputs) -> None:
    """Refuse inputs that cannot be segmented, before any work: a missing sequence, or one
    volume chosen for two roles (a mix-up that would make the network's answer meaningless)."""
    missing = missing_inputs(inputs)
    if missing:
        raise BrainMetSegError(f"missing input: select a volume for {', '.join(missing)}")
    roles_of: Dict[str, List[str]] = {}
    for role, node in inputs.nodes().items():
        roles_of.setdefault(node.GetID(), []).append(role)
    for roles in roles_of.values():
        if len(roles) > 1:
            name = inputs.nodes()[roles[0]].GetName()
            raise BrainMetSegError(f"volume '{name}' is selected as {' and '.join(ROLE_TITLES[r] for r in roles)}; "
                                   "each sequence needs its own volume")


def read_inputs(inputs: SceneInputs) -> InputVolumes:
    """Check the inputs and copy their voxels and world geometry (call on the main thread)."""
    check_inputs(inputs)
    nodes = inputs.nodes()
    volumes = {role: volume_from_node(node) for role, node in nodes.items()}
    mask = volume_from_node(inputs.brain_mask) if inputs.brain_mask is not None else None
    return InputVolumes(volumes, mask, nodes[REFERENCE_ROLE].GetName())
