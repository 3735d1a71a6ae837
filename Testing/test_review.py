"""Missed-lesion review: the candidates a model finds beyond the annotation, accept and reject,
on arrays, through a real model folder and dataset.json, and in a real MRML scene."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import slicer

from BrainMetSegLib.dataset import CaseEntry, read_dataset, write_case, write_dataset_json
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.lesions import find_lesions
from BrainMetSegLib.negatives import known_negative_mask
from BrainMetSegLib.predict import Predictor
from BrainMetSegLib.review import accept, missed_lesions, reject
from BrainMetSegLib.scene.export import segmentation_label
from BrainMetSegLib.scene.review import (ACCEPTED_TAG, accept_into_segmentation, add_candidates_node, jump_to,
                                         remove_candidate)
from BrainMetSegLib.scene.temporary import temporary_nodes
from BrainMetSegLib.scene.volume_nodes import add_volume_node, volume_from_node
from BrainMetSegLib.volumes import Volume, apply_affine
from helpers_predict import (CASE_AFFINE, CASE_SHAPE, BrightSpotNetwork, _ball, make_model_folder, sphere_centres_ras,
                             sphere_volumes, spheres_probability)
from helpers_scene import slicer_scene

SPHERES = [((8, 9, 11), 2.6, 0.9), ((16, 11, 10), 2.1, 0.4), ((4, 15, 5), 1.2, 0.2), ((18, 4, 16), 1.5, 0.7)]
"""(centre index, radius in voxels, probability) of four predicted lesions on the 3 mm test grid."""
DRAWN = _ball(CASE_SHAPE, (8, 9, 11), 2.6)
"""The annotator drew the most confident lesion only."""


def prediction():
    components, lesions = find_lesions(spheres_probability(CASE_SHAPE, SPHERES), CASE_AFFINE)
    return components, lesions


def lesion_at(lesions, centre_index):
    centre = apply_affine(CASE_AFFINE, np.array([centre_index], dtype=float))[0]
    return min(lesions, key=lambda lesion: np.linalg.norm(np.subtract(lesion.centroid_ras, centre)))


# ---------------------------------------------------------------------------------- arrays


def test_missed_lesions_are_the_undrawn_ones_most_confident_first():
    components, lesions = prediction()
    missed = missed_lesions(components, lesions, DRAWN, CASE_AFFINE)
    assert [round(lesion.confidence, 3) for lesion in missed] == [0.7, 0.4, 0.2]
    assert lesion_at(lesions, (8, 9, 11)) not in missed
    assert [round(l.confidence, 3) for l in missed_lesions(components, lesions, DRAWN, CASE_AFFINE,
                                                           min_confidence=0.4)] == [0.7, 0.4]


def test_a_lesion_drawn_in_part_counts_as_drawn():
    components, lesions = prediction()
    target = lesion_at(lesions, (16, 11, 10))
    annotation = DRAWN.astype(np.uint8)
    one_voxel = np.argwhere(components == target.index)[0]
    annotation[tuple(one_voxel)] = 1
    missed = missed_lesions(components, lesions, annotation, CASE_AFFINE)
    assert target not in missed and len(missed) == 2


def test_rejected_centroids_hide_a_candidate_inside_it_or_within_the_radius():
    components, lesions = prediction()
    small = lesion_at(lesions, (4, 15, 5))
    near = np.add(small.centroid_ras, [2.4, 2.4, 0.0])  # 3.4 mm away, in a voxel outside the lesion
    assert components[tuple(np.rint(apply_affine(np.linalg.inv(CASE_AFFINE), near[None]))[0].astype(int))] == 0
    inside = apply_affine(CASE_AFFINE, np.array([[16, 13, 10]], dtype=float))[0]  # an edge voxel, 6 mm from the centre
    far = apply_affine(CASE_AFFINE, np.array([[0, 0, 0]], dtype=float))[0]
    missed = missed_lesions(components, lesions, DRAWN, CASE_AFFINE, rejected_ras=[near.tolist(), inside.tolist(),
                                                                                   far.tolist()])
    assert [round(lesion.confidence, 3) for lesion in missed] == [0.7]
    assert len(missed_lesions(components, lesions, DRAWN, CASE_AFFINE, rejected_ras=[near.tolist()],
                              reject_radius_mm=3.0)) == 3


def test_accept_adds_the_lesion_voxels_and_keeps_the_rest():
    components, lesions = prediction()
    target = lesion_at(lesions, (16, 11, 10))
    annotation = DRAWN.astype(np.int16) * 2  # an annotator's own label value is kept
    updated = accept(annotation, components, target)
    assert updated.dtype == np.int16 and annotation.max() == 2 and not annotation[components == target.index].any()
    np.testing.assert_array_equal(updated[components == target.index], 1)
    np.testing.assert_array_equal(updated[DRAWN], 2)
    assert np.count_nonzero(updated) == np.count_nonzero(annotation) + target.voxels
    assert target not in missed_lesions(components, lesions, updated, CASE_AFFINE)


def test_review_refusals_name_the_reason():
    components, lesions = prediction()
    with pytest.raises(BrainMetSegError, match=r"annotation: shape \(3, 3, 3\) differs from the prediction's"):
        missed_lesions(components, lesions, np.zeros((3, 3, 3)), CASE_AFFINE)
    with pytest.raises(BrainMetSegError, match="minimum confidence: 1.5"):
        missed_lesions(components, lesions, DRAWN, CASE_AFFINE, min_confidence=1.5)
    label_lesions = find_lesions(DRAWN.astype(np.float32), CASE_AFFINE)[1]
    for lesion in label_lesions:
        lesion.confidence = None
    with pytest.raises(BrainMetSegError, match=r"lesions \[1\]: no confidence"):
        missed_lesions(components, label_lesions, DRAWN, CASE_AFFINE)
    with pytest.raises(BrainMetSegError, match="rejected: .*expected a list of \\[R, A, S\\]"):
        missed_lesions(components, lesions, DRAWN, CASE_AFFINE, rejected_ras=[[1.0, 2.0]])
    with pytest.raises(BrainMetSegError, match="lesion 9: not in the prediction's component map"):
        accept(DRAWN, components, dataclasses.replace(lesions[0], index=9))


# ---------------------------------------------------------------------------------- dataset.json


def one_case_dataset(root, annotation=DRAWN, with_json=True):
    folder = write_case(root, "Mets_001", sphere_volumes(), Volume(annotation.astype(np.uint8), CASE_AFFINE))
    if with_json:
        write_dataset_json(root, [CaseEntry("Mets_001", folder, "train", "partial")])
    return root


def test_reject_persists_in_dataset_json_and_the_candidate_is_not_offered_again(tmp_path):
    root = one_case_dataset(tmp_path / "data")
    components, lesions = prediction()
    candidate = missed_lesions(components, lesions, DRAWN, CASE_AFFINE)[0]
    entry = reject(root, "Mets_001", candidate)
    assert entry.rejected == [list(candidate.centroid_ras)]
    document = json.loads((root / "dataset.json").read_text())
    assert document["cases"][0]["rejected"] == [pytest.approx(list(candidate.centroid_ras))]
    assert document["cases"][0]["label"] == "partial"
    reject(root, "Mets_001", candidate)  # twice: recorded once
    stored = read_dataset(root).get("Mets_001")
    assert len(stored.rejected) == 1
    again = missed_lesions(components, lesions, DRAWN, CASE_AFFINE, rejected_ras=stored.rejected)
    assert candidate.index not in [lesion.index for lesion in again] and len(again) == 2
    negative = known_negative_mask(stored.rejected, CASE_AFFINE, CASE_SHAPE)  # what training will avoid
    centre = np.rint(apply_affine(np.linalg.inv(CASE_AFFINE), np.array([candidate.centroid_ras])))[0].astype(int)
    assert negative[tuple(centre)] and negative.sum() == 7  # 3 mm voxels: the centre and its 6 faces within 4 mm


def test_reject_writes_dataset_json_for_a_scanned_folder_and_refuses_unknown_cases(tmp_path):
    root = one_case_dataset(tmp_path / "data", with_json=False)
    reject(root, "Mets_001", [1.0, 2.0, 3.0])
    entry = read_dataset(root).get("Mets_001")
    assert (entry.split, entry.label_status, entry.rejected) == ("train", "complete", [[1.0, 2.0, 3.0]])
    with pytest.raises(BrainMetSegError, match="no case 'Mets_404' in the dataset"):
        reject(root, "Mets_404", [1.0, 2.0, 3.0])
    with pytest.raises(BrainMetSegError, match="rejected centroid: \\[1.0, nan, 3.0\\]"):
        reject(root, "Mets_001", [1.0, float("nan"), 3.0])


def test_a_real_model_finds_the_lesion_the_annotator_missed(tmp_path):
    """The saved case (one of its two lesions drawn) through a real model folder and Predictor."""
    root = one_case_dataset(tmp_path / "data")
    predictor = Predictor(make_model_folder(tmp_path / "model"), device="cpu", batch_size=4)
    predictor.network = BrightSpotNetwork()  # lesion logit from bravo brightness: the answer is known
    entry = read_dataset(root).get("Mets_001")
    case = entry.load()
    result = predictor.predict(case)
    assert len(result.lesions) == 2
    missed = missed_lesions(result.components, result.lesions, case.label, result.affine, entry.rejected)
    (candidate,) = missed
    np.testing.assert_allclose(candidate.centroid_ras, sphere_centres_ras()[1], atol=1.5)
    reject(root, "Mets_001", candidate)
    entry = read_dataset(root).get("Mets_001")
    assert missed_lesions(result.components, result.lesions, case.label, result.affine, entry.rejected) == []


# ---------------------------------------------------------------------------------- scene


@pytest.fixture
def scene():
    with slicer_scene() as fixture:
        yield fixture


def annotator_segmentation(bravo_node):
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(bravo_node)
    with temporary_nodes(slicer.mrmlScene):
        labelmap = add_volume_node(Volume(DRAWN.astype(np.uint8), CASE_AFFINE), "drawn", "vtkMRMLLabelMapVolumeNode")
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node, "")
    return node


def test_accept_adds_a_segment_to_the_annotators_segmentation(scene):
    nodes = scene.add_study(sphere_volumes())
    annotation_node = annotator_segmentation(nodes["bravo"])
    (drawn_id,) = annotation_node.GetSegmentation().GetSegmentIDs()
    components, lesions = prediction()
    bravo = volume_from_node(nodes["bravo"])
    annotation = segmentation_label(annotation_node, bravo, allow_empty=True).array
    missed = missed_lesions(components, lesions, annotation, CASE_AFFINE)
    candidate = missed[1]
    before = scene.node_counts()
    segment_id = accept_into_segmentation(annotation_node, components, CASE_AFFINE, candidate)
    assert scene.node_counts() == before  # no scratch node left behind
    segmentation = annotation_node.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == [drawn_id, segment_id]
    segment = segmentation.GetSegment(segment_id)
    assert segment.GetName() == f"Accepted lesion {candidate.index} (0.40)"
    text = __import__("vtk").reference("")
    assert segment.GetTag(ACCEPTED_TAG, text) and float(str(text)) == pytest.approx(0.4)
    np.testing.assert_array_equal(scene.segment_mask(annotation_node, segment_id, nodes["bravo"]),
                                  components == candidate.index)
    np.testing.assert_array_equal(scene.segment_mask(annotation_node, drawn_id, nodes["bravo"]), DRAWN)
    updated = segmentation_label(annotation_node, bravo).array
    assert [l.index for l in missed_lesions(components, lesions, updated, CASE_AFFINE)] == \
        [missed[0].index, missed[2].index]


def test_candidates_node_jump_and_remove(scene):
    nodes = scene.add_study(sphere_volumes())
    views = scene.add_slice_views()
    components, lesions = prediction()
    missed = missed_lesions(components, lesions, DRAWN, CASE_AFFINE)
    candidates = add_candidates_node(components, CASE_AFFINE, missed, nodes["bravo"])
    ids = list(candidates.GetSegmentation().GetSegmentIDs())
    assert ids == [f"Lesion_{lesion.index}" for lesion in sorted(missed, key=lambda l: l.index)]
    for lesion in missed:
        np.testing.assert_array_equal(scene.segment_mask(candidates, f"Lesion_{lesion.index}", nodes["bravo"]),
                                      components == lesion.index)
    assert jump_to(missed[0]) == missed[0].centroid_ras
    for view in views.values():
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(view.GetSliceToRAS())[:3, 3],
                                   missed[0].centroid_ras, atol=0.01)
    remove_candidate(candidates, missed[0])
    assert f"Lesion_{missed[0].index}" not in list(candidates.GetSegmentation().GetSegmentIDs())
    assert candidates.GetSegmentation().GetNumberOfSegments() == len(missed) - 1
