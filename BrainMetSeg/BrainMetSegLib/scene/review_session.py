"""One missed-lesion review in the scene, from the selected nodes to accepted and rejected lesions.

The training panel runs the model in a worker thread, so a review has three steps, like a
segmentation run (scene/logic.py): `read_review_request` copies what the search needs out of the
scene on the main thread (the four sequences, the annotation on the BRAVO grid, the candidates
rejected earlier for the case); the prediction is computed without MRML (scene.logic.compute);
`start_review` turns it into the candidates (review.missed_lesions) and shows them in a
segmentation node of their own. Each candidate is then accepted (a new segment of the
annotation, scene/review.py) or rejected (its centroid recorded for the case in dataset.json,
review.reject), and leaves the list and the candidates node either way.

The case in the dataset is named by its id; a case not exported yet can be reviewed and its
lesions accepted, but a rejection needs the case in the dataset, where it is recorded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional, Sequence, Union

import slicer

from ..dataset import CaseEntry, read_dataset
from ..errors import BrainMetSegError
from ..lesions import Lesion
from ..review import missed_lesions, reject
from ..roles import REFERENCE_ROLE
from ..volumes import Volume
from .export import segmentation_label
from .inputs import InputVolumes, SceneInputs, read_inputs
from .review import accept_into_segmentation, add_candidates_node, remove_candidate

if TYPE_CHECKING:
    from ..predict import Prediction

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class ReviewRequest:
    """What a search reads from the scene before the model runs (main thread)."""

    inputs: InputVolumes
    annotation: Volume
    """The annotation as a 0/1 label on the BRAVO grid (all zero when nothing is drawn yet)."""
    reference_node: object
    annotation_node: object
    dataset_root: Optional[str]
    case_id: Optional[str]
    rejected: List[List[float]] = field(default_factory=list)


@dataclass
class ReviewSession:
    """A finished search: the candidates not reviewed yet, most confident first."""

    prediction: "Prediction"
    candidates: List[Lesion]
    candidates_node: Optional[object]
    annotation_node: object
    dataset_root: Optional[str]
    case_id: Optional[str]


def rejected_candidates(dataset_root: Optional[PathLike], case_id: Optional[str]) -> List[List[float]]:
    """Centroids rejected earlier for the case; none when there is no dataset or it lacks the case."""
    if not dataset_root or not case_id:
        return []
    try:
        return [list(point) for point in read_dataset(dataset_root).get(case_id).rejected]
    except BrainMetSegError:
        return []


def read_review_request(scene_inputs: SceneInputs, annotation_node, dataset_root: Optional[PathLike] = None,
                        case_id: Optional[str] = None) -> ReviewRequest:
    """Check the inputs and copy them out of the scene (call on the main thread)."""
    if annotation_node is None:
        raise BrainMetSegError("annotation: select the segmentation drawn on the case (it may be empty)")
    inputs = read_inputs(scene_inputs)
    annotation = segmentation_label(annotation_node, inputs.volumes[REFERENCE_ROLE], allow_empty=True)
    root = os.fspath(dataset_root) if dataset_root else None
    return ReviewRequest(inputs, annotation, scene_inputs.nodes()[REFERENCE_ROLE], annotation_node, root, case_id,
                         rejected_candidates(root, case_id))


def nodes_present(request: ReviewRequest, scene=None) -> bool:
    """Whether the BRAVO volume and the annotation are still in the scene (a search takes a while)."""
    scene = scene or slicer.mrmlScene
    return all(node is not None and scene.IsNodePresent(node)
               for node in (request.reference_node, request.annotation_node))


def start_review(prediction: "Prediction", request: ReviewRequest) -> ReviewSession:
    """The candidates of a prediction of the request's case, shown in a new segmentation node
    (none when there is no candidate)."""
    if not nodes_present(request):
        raise BrainMetSegError("the BRAVO volume or the annotation was removed from the scene during the search; "
                               "search again")
    candidates = missed_lesions(prediction.components, prediction.lesions, request.annotation.array,
                                prediction.affine, rejected_ras=request.rejected)
    node = None
    if candidates:
        node = add_candidates_node(prediction.components, prediction.affine, candidates, request.reference_node,
                                   name=f"{request.reference_node.GetName()} missed lesion candidates")
    return ReviewSession(prediction, candidates, node, request.annotation_node, request.dataset_root,
                         request.case_id)


def _reviewed(session: ReviewSession, lesion: Lesion) -> None:
    """Take a reviewed candidate out of the session and its node."""
    session.candidates.remove(lesion)
    if session.candidates_node is not None and slicer.mrmlScene.IsNodePresent(session.candidates_node):
        remove_candidate(session.candidates_node, lesion)


def _check_candidate(session: ReviewSession, lesion: Lesion) -> None:
    if lesion not in session.candidates:
        raise BrainMetSegError(f"lesion {lesion.index}: not a candidate of this review (already reviewed?)")


def accept_candidate(session: ReviewSession, lesion: Lesion) -> str:
    """Add the candidate to the annotation as a new segment; returns the segment's ID."""
    _check_candidate(session, lesion)
    if not slicer.mrmlScene.IsNodePresent(session.annotation_node):
        raise BrainMetSegError("annotation: the segmentation reviewed was removed from the scene")
    segment_id = accept_into_segmentation(session.annotation_node, session.prediction.components,
                                          session.prediction.affine, lesion)
    _reviewed(session, lesion)
    return segment_id


def reject_candidate(session: ReviewSession, lesion: Lesion) -> CaseEntry:
    """Record the candidate's centroid as rejected for the case in dataset.json; returns the case."""
    _check_candidate(session, lesion)
    if not session.dataset_root or not session.case_id:
        raise BrainMetSegError("rejected lesion: no dataset folder or case id to record it for; add the case to a "
                               "dataset first")
    entry = reject(session.dataset_root, session.case_id, lesion)
    _reviewed(session, lesion)
    return entry


def describe_candidate(rank: int, lesion: Lesion) -> str:
    """One line of the candidate list: rank, confidence, size and where it is."""
    r, a, s = lesion.centroid_ras
    confidence = "?" if lesion.confidence is None else f"{lesion.confidence:.2f}"
    return (f"{rank}. confidence {confidence}, {lesion.equivalent_diameter_mm:.1f} mm "
            f"({lesion.volume_mm3:.0f} mm³), at R {r:.0f} A {a:.0f} S {s:.0f}")


def candidate_lines(candidates: Sequence[Lesion]) -> List[str]:
    return [describe_candidate(rank, lesion) for rank, lesion in enumerate(candidates, start=1)]
