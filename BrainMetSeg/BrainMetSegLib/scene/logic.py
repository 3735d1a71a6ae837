"""A segmentation run from the scene: read the inputs, compute, then write the results.

The three steps are separate so the GUI never freezes and a run never half-changes the scene:

1. `read_inputs` (main thread) checks the inputs and copies their voxels out of MRML;
2. `compute` (any thread, no MRML) builds the case - resampling mismatched sequences onto
   BRAVO with a warning, refusing impossible ones - and runs the network; it polls `cancel`;
3. `write_to_scene` (main thread) adds the segmentation, the lesion table and the
   probability map, all or nothing.

Nothing is added before step 3, so a refused, failed or cancelled run leaves the scene
exactly as it was. `run_segmentation` chains the three for scripts and tests. torch is
imported only when a model is loaded, so the module loads without it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, List, Optional, Union

import slicer

from ..case import case_from_volumes
from ..lesions import Lesion
from ..roles import REFERENCE_ROLE
from .hierarchy import place_beside
from .inputs import InputVolumes, SceneInputs, read_inputs
from .segmentation import add_lesion_segmentation, apply_confidence_cutoff
from .table import add_lesion_table
from .volume_nodes import add_probability_node

if TYPE_CHECKING:
    from ..predict import Prediction, Predictor

Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]
PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class SceneOutputs:
    """The nodes a run added, the lesions (most confident first) and the warnings to show."""

    segmentation: object
    table: object
    probability: Optional[object]
    lesions: List[Lesion]
    cutoff: float
    shown: int
    warnings: List[str] = field(default_factory=list)


def load_predictor(model: Union[PathLike, "Predictor"], device: str = "auto",
                   threshold: Optional[float] = None) -> "Predictor":
    """A Predictor for a model folder or name. One already loaded is returned as it is (with
    its own device and threshold), so the GUI can keep it across runs."""
    from ..predict import Predictor

    if isinstance(model, Predictor):
        return model
    return Predictor(model, device=device, threshold=threshold)


def compute(inputs: InputVolumes, predictor: "Predictor", progress: Optional[Progress] = None,
            cancel: Optional[CancelCheck] = None) -> "Prediction":
    """Validate the case and segment it; touches no MRML node, so it may run in a worker thread.

    Raises BrainMetSegError for impossible inputs (no overlap with BRAVO, NaN voxels, empty
    brain, ...) and predict.Cancelled when `cancel()` turns true."""
    from ..predict import Cancelled

    case = case_from_volumes(inputs.volumes, brain_mask=inputs.brain_mask, case_id=inputs.case_id)
    if cancel is not None and cancel():
        raise Cancelled("cancelled before segmenting")
    return predictor.predict(case, progress=progress, cancel=cancel)


def _remove_nodes(nodes: List[object]) -> None:
    """Undo a partial write: the nodes and the display and storage nodes they own."""
    scene = slicer.mrmlScene
    for node in reversed(nodes):
        owned = []
        if node.IsA("vtkMRMLDisplayableNode"):
            owned += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            owned += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        scene.RemoveNode(node)
        for other in owned:
            if other is not None and scene.IsNodePresent(other):
                scene.RemoveNode(other)


def write_to_scene(prediction: "Prediction", reference_node, probability_map: bool = True,
                   cutoff: Optional[float] = None) -> SceneOutputs:
    """Add the run's results to the scene (main thread), all or nothing.

    `reference_node` is the BRAVO volume: its grid is the segmentation's reference geometry and
    the results go under its study and are named after it. Segments below `cutoff` (default:
    show all) start hidden."""
    base = reference_node.GetName()
    created: List[object] = []
    try:
        segmentation = add_lesion_segmentation(prediction.components, prediction.affine, prediction.lesions,
                                               f"{base} lesions", reference_node)
        created.append(segmentation)
        table = add_lesion_table(prediction.lesions, f"{base} lesion table")
        created.append(table)
        probability = None
        if probability_map:
            probability = add_probability_node(prediction.probability, prediction.affine,
                                               f"{base} lesion probability", prediction.threshold)
            created.append(probability)
        for node in created:
            place_beside(node, reference_node)
        cutoff = 0.0 if cutoff is None else float(cutoff)
        shown = apply_confidence_cutoff(segmentation, cutoff)
    except BaseException:
        _remove_nodes(created)
        raise
    return SceneOutputs(segmentation, table, probability, list(prediction.lesions), cutoff, shown,
                        list(prediction.warnings))


def run_segmentation(scene_inputs: SceneInputs, model: Union[PathLike, "Predictor"], device: str = "auto",
                     threshold: Optional[float] = None, progress: Optional[Progress] = None,
                     cancel: Optional[CancelCheck] = None, probability_map: bool = True,
                     cutoff: Optional[float] = None) -> SceneOutputs:
    """Segment the study selected in `scene_inputs` and add the results to the scene.

    The confidence cut-off starts at the model's operating point unless `cutoff` is given.
    A cancel that arrives after the network finished still leaves the scene unchanged."""
    from ..predict import Cancelled

    volumes = read_inputs(scene_inputs)
    predictor = load_predictor(model, device, threshold)
    prediction = compute(volumes, predictor, progress, cancel)
    if cancel is not None and cancel():
        raise Cancelled("cancelled before writing the results")
    start = predictor.config.operating_point if cutoff is None else cutoff
    return write_to_scene(prediction, scene_inputs.nodes()[REFERENCE_ROLE], probability_map, start)
