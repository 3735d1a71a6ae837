"""A missed-lesion review as the training panel runs it, against real MRML classes (slicer-core):
the case exported to a real dataset folder, the annotation lacking three of the four lesions a
model found, the candidates listed most confident first, one accepted into the annotation, one
rejected into dataset.json, and a second search offering only the one left."""
from __future__ import annotations

import numpy as np
import pytest
import slicer

from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.lesions import find_lesions
from BrainMetSegLib.predict import Prediction
from BrainMetSegLib.scene.export import export_case, segmentation_label
from BrainMetSegLib.scene.inputs import SceneInputs
from BrainMetSegLib.scene.review_session import (accept_candidate, candidate_lines, nodes_present,
                                                 read_review_request, reject_candidate, rejected_candidates,
                                                 start_review)
from BrainMetSegLib.scene.temporary import temporary_nodes
from BrainMetSegLib.scene.volume_nodes import add_volume_node, volume_from_node
from BrainMetSegLib.volumes import Volume
from helpers_predict import CASE_AFFINE, CASE_SHAPE, _ball, sphere_volumes, spheres_probability
from helpers_scene import slicer_scene

SPHERES = [((8, 9, 11), 2.6, 0.9), ((16, 11, 10), 2.1, 0.4), ((4, 15, 5), 1.2, 0.2), ((18, 4, 16), 1.5, 0.7)]
"""(centre index, radius in voxels, probability) of the four lesions the model finds."""
DRAWN = _ball(CASE_SHAPE, (8, 9, 11), 2.6)
"""The annotator drew the most confident lesion only."""


@pytest.fixture
def scene():
    with slicer_scene() as fixture:
        fixture.add_slice_views()
        yield fixture


def model_prediction() -> Prediction:
    """What a model returns for the study (Prediction as Predictor.predict makes it)."""
    probability = spheres_probability(CASE_SHAPE, SPHERES)
    components, lesions = find_lesions(probability, CASE_AFFINE)
    return Prediction("study", probability, components, lesions, CASE_AFFINE.copy(), 0.1, "model")


def annotation_node(mask: np.ndarray, name: str = "Annotation"):
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if mask.any():
        with temporary_nodes(slicer.mrmlScene):
            labelmap = add_volume_node(Volume(mask.astype(np.uint8), CASE_AFFINE), "drawn", "vtkMRMLLabelMapVolumeNode")
            assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node, "")
    else:
        node.GetSegmentation().AddEmptySegment("lesion")
    return node


def study(scene):
    nodes = scene.add_study(sphere_volumes(), names={"bravo": "5: AX BRAVO +C"})
    return nodes, SceneInputs(**nodes)


def test_review_accept_reject_and_search_again(scene, tmp_path):
    nodes, inputs = study(scene)
    annotation = annotation_node(DRAWN)
    root = tmp_path / "dataset"
    export_case(root, "Mets_001", nodes, annotation, label_status="partial")

    request = read_review_request(inputs, annotation, root, "Mets_001")
    assert request.rejected == []
    np.testing.assert_array_equal(request.annotation.array, DRAWN)
    assert set(request.inputs.volumes) == set(nodes) and nodes_present(request)
    prediction = model_prediction()
    session = start_review(prediction, request)
    # three lesions missing from the annotation, most confident first: 0.7, 0.4, 0.2
    assert [round(lesion.confidence, 2) for lesion in session.candidates] == [0.7, 0.4, 0.2]
    assert session.candidates_node.GetName() == "5: AX BRAVO +C missed lesion candidates"
    assert session.candidates_node.GetSegmentation().GetNumberOfSegments() == 3
    lines = candidate_lines(session.candidates)
    assert lines[0].startswith("1. confidence 0.70, ") and lines[2].startswith("3. confidence 0.20, ")
    first, second, third = session.candidates

    segment_id = accept_candidate(session, first)
    assert session.candidates == [second, third]
    assert session.candidates_node.GetSegmentation().GetNumberOfSegments() == 2
    assert annotation.GetSegmentation().GetNumberOfSegments() == 2
    assert annotation.GetSegmentation().GetSegment(segment_id).GetName().startswith("Accepted lesion")
    bravo = volume_from_node(nodes["bravo"])
    np.testing.assert_array_equal(segmentation_label(annotation, bravo).array,
                                  DRAWN | (prediction.components == first.index))

    entry = reject_candidate(session, second)
    assert session.candidates == [third]
    np.testing.assert_allclose(entry.rejected, [second.centroid_ras])
    np.testing.assert_allclose(read_dataset(root).get("Mets_001").rejected, [second.centroid_ras])

    again = start_review(prediction, read_review_request(inputs, annotation, root, "Mets_001"))
    assert again.candidates == [third]  # the accepted one is drawn now, the rejected one is not offered
    with pytest.raises(BrainMetSegError, match=f"lesion {first.index}: not a candidate"):
        accept_candidate(again, first)


def test_an_empty_annotation_offers_every_lesion_and_nothing_means_no_node(scene, tmp_path):
    nodes, inputs = study(scene)
    empty = annotation_node(np.zeros(CASE_SHAPE, dtype=bool), "Quick annotation")
    session = start_review(model_prediction(), read_review_request(inputs, empty))
    assert [round(lesion.confidence, 2) for lesion in session.candidates] == [0.9, 0.7, 0.4, 0.2]
    everything = annotation_node(spheres_probability(CASE_SHAPE, SPHERES) > 0, "Complete annotation")
    before = scene.node_counts()
    session = start_review(model_prediction(), read_review_request(inputs, everything))
    assert session.candidates == [] and session.candidates_node is None
    assert scene.node_counts() == before


def test_rejecting_needs_the_case_in_a_dataset(scene, tmp_path):
    nodes, inputs = study(scene)
    annotation = annotation_node(DRAWN)
    session = start_review(model_prediction(), read_review_request(inputs, annotation))
    with pytest.raises(BrainMetSegError, match="no dataset folder or case id"):
        reject_candidate(session, session.candidates[0])
    export_case(tmp_path, "Mets_001", nodes, annotation)
    session = start_review(model_prediction(), read_review_request(inputs, annotation, tmp_path, "Mets_007"))
    with pytest.raises(BrainMetSegError, match="no case 'Mets_007'"):
        reject_candidate(session, session.candidates[0])
    assert len(session.candidates) == 3  # a refused rejection leaves the candidate in the list
    assert rejected_candidates(tmp_path, "Mets_007") == [] and rejected_candidates(None, "Mets_001") == []


def test_review_refusals_name_the_input(scene):
    nodes, inputs = study(scene)
    with pytest.raises(BrainMetSegError, match="annotation: select the segmentation"):
        read_review_request(inputs, None)
    with pytest.raises(BrainMetSegError, match="missing input: select a volume for FLAIR"):
        read_review_request(SceneInputs(t1_pre=nodes["t1_pre"], t1_gd=nodes["t1_gd"], bravo=nodes["bravo"]),
                            annotation_node(DRAWN))
    annotation = annotation_node(DRAWN)
    request = read_review_request(inputs, annotation)
    slicer.mrmlScene.RemoveNode(annotation)
    assert not nodes_present(request)
    with pytest.raises(BrainMetSegError, match="removed from the scene during the search"):
        start_review(model_prediction(), request)
