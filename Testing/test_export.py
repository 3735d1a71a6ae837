"""Exporting an annotated study from a real MRML scene (slicer-core) into a dataset folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import slicer

from BrainMetSegLib.dataset import read_dataset, write_dataset_json
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.scene.export import export_case, next_case_id, segmentation_label
from BrainMetSegLib.scene.temporary import temporary_nodes
from BrainMetSegLib.scene.volume_nodes import add_volume_node, volume_from_node
from BrainMetSegLib.volumes import Volume, make_affine, read_volume
from helpers_predict import CASE_AFFINE, CASE_SHAPE, _ball, sphere_volumes
from helpers_scene import slicer_scene

LESION_A = _ball(CASE_SHAPE, (8, 9, 11), 2.6)
LESION_B = _ball(CASE_SHAPE, (16, 11, 10), 2.1)


@pytest.fixture
def scene():
    with slicer_scene() as fixture:
        yield fixture


def draw(segmentation_node, mask: np.ndarray, affine: np.ndarray, name: str) -> str:
    """A segment drawn from a mask, through Slicer's labelmap import (as a paint tool leaves it)."""
    before = set(segmentation_node.GetSegmentation().GetSegmentIDs())
    with temporary_nodes(slicer.mrmlScene):
        labelmap = add_volume_node(Volume(mask.astype(np.uint8), affine), name, "vtkMRMLLabelMapVolumeNode")
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node,
                                                                                         "")
    (added,) = set(segmentation_node.GetSegmentation().GetSegmentIDs()) - before
    return added


def annotated_study(scene, masks=(LESION_A, LESION_B), reference=True):
    nodes = scene.add_study(sphere_volumes())
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Annotation")
    segmentation.CreateDefaultDisplayNodes()
    if reference:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(nodes["bravo"])
    ids = [draw(segmentation, mask, CASE_AFFINE, f"lesion {n}") for n, mask in enumerate(masks)]
    return nodes, segmentation, ids


def test_export_writes_a_case_that_reads_back_through_the_dataset_reader(scene, tmp_path):
    nodes, segmentation, _ = annotated_study(scene)
    root = tmp_path / "dataset"
    exported = export_case(root, "Mets_001", nodes, segmentation, label_status="partial", split="val")
    assert exported.lesions == 2 and exported.warnings == []
    dataset = read_dataset(root)
    assert dataset.ids == ["Mets_001"]
    entry = dataset.get("Mets_001")
    assert (entry.split, entry.label_status, entry.rejected) == ("val", "partial", [])
    case = entry.load()
    np.testing.assert_array_equal(case.label, (LESION_A | LESION_B).astype(np.uint8))
    np.testing.assert_allclose(case.affine, CASE_AFFINE, atol=1e-6)
    for channel, (role, volume) in enumerate(sphere_volumes().items()):
        np.testing.assert_array_equal(case.images[channel], volume.array)
    document = json.loads((root / "dataset.json").read_text())
    assert document == {"format": 1, "cases": [{"id": "Mets_001", "split": "val", "label": "partial",
                                                "rejected": []}]}


def test_selected_segments_only_are_merged(scene, tmp_path):
    nodes, segmentation, ids = annotated_study(scene)
    exported = export_case(tmp_path, "Mets_001", nodes, segmentation, segment_ids=[ids[1]], label_status="complete")
    assert exported.lesions == 1
    np.testing.assert_array_equal(read_volume(tmp_path / "Mets_001" / "seg.nii.gz").array, LESION_B)


def test_overlapping_segments_and_a_finer_segmentation_grid_become_one_binary_label(scene):
    """A segmentation drawn on a grid twice as fine (e.g. FLAIR as source) lands on the bravo grid."""
    nodes = scene.add_study(sphere_volumes())
    fine = make_affine((1.5, 1.5, 1.5))
    fine[:3, :3] = CASE_AFFINE[:3, :3] / 2
    fine[:3, 3] = CASE_AFFINE[:3, 3] - CASE_AFFINE[:3, :3].sum(axis=1) / 4  # voxel centres nested in bravo's
    shape = tuple(2 * n for n in CASE_SHAPE)
    big = np.kron(LESION_A, np.ones((2, 2, 2), bool)).reshape(shape)
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "fine")
    draw(segmentation, big, fine, "a")
    draw(segmentation, big, fine, "a again")
    label = segmentation_label(segmentation, volume_from_node(nodes["bravo"]))
    assert label.array.dtype == np.uint8 and set(np.unique(label.array)) == {0, 1}
    np.testing.assert_array_equal(label.array, LESION_A)


def test_an_existing_case_is_never_overwritten_unless_asked(scene, tmp_path):
    nodes, segmentation, ids = annotated_study(scene)
    export_case(tmp_path, "Mets_001", nodes, segmentation)
    entry = read_dataset(tmp_path).get("Mets_001")
    entry.rejected.append([1.0, 2.0, 3.0])
    write_dataset_json(tmp_path, [entry])
    before = (tmp_path / "Mets_001" / "seg.nii.gz").read_bytes()
    with pytest.raises(BrainMetSegError, match=r"Mets_001: case Mets_001 already exists.*overwrite=True"):
        export_case(tmp_path, "Mets_001", nodes, segmentation, segment_ids=[ids[0]])
    assert (tmp_path / "Mets_001" / "seg.nii.gz").read_bytes() == before
    exported = export_case(tmp_path, "Mets_001", nodes, segmentation, segment_ids=[ids[0]], label_status="complete",
                           overwrite=True)
    assert exported.lesions == 1
    entry = read_dataset(tmp_path).get("Mets_001")
    assert entry.label_status == "complete"
    assert entry.rejected == [[1.0, 2.0, 3.0]]  # reviewed candidates survive a re-export
    np.testing.assert_array_equal(entry.load().label, LESION_A)


def test_a_folder_not_in_dataset_json_is_not_overwritten_either(scene, tmp_path):
    nodes, segmentation, _ = annotated_study(scene)
    export_case(tmp_path, "Mets_001", nodes, segmentation)
    (tmp_path / "dataset.json").unlink()  # the folder is now scanned: still a case
    with pytest.raises(BrainMetSegError, match="Mets_001.*already exists"):
        export_case(tmp_path, "Mets_001", nodes, segmentation)


def test_export_adds_to_a_scanned_dataset_and_keeps_its_cases(scene, tmp_path):
    nodes, segmentation, _ = annotated_study(scene)
    export_case(tmp_path, "Mets_001", nodes, segmentation, label_status="complete")
    (tmp_path / "dataset.json").unlink()
    assert next_case_id(tmp_path) == "Mets_002"
    export_case(tmp_path, "Mets_002", nodes, segmentation, split="test")
    dataset = read_dataset(tmp_path)
    assert [(c.case_id, c.split, c.label_status) for c in dataset.cases] == [
        ("Mets_001", "train", "complete"), ("Mets_002", "test", "partial")]


def test_empty_segmentation_is_refused_and_nothing_is_written(scene, tmp_path):
    nodes = scene.add_study(sphere_volumes())
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Annotation")
    with pytest.raises(BrainMetSegError, match="segmentation 'Annotation': holds no segment"):
        export_case(tmp_path, "Mets_001", nodes, segmentation)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(nodes["bravo"])
    segment_id = segmentation.GetSegmentation().AddEmptySegment("lesion")
    with pytest.raises(BrainMetSegError, match=f"segmentation 'Annotation': the selected segment\\(s\\) {segment_id} "
                                               "are empty"):
        export_case(tmp_path, "Mets_001", nodes, segmentation)
    assert list(tmp_path.iterdir()) == []
    exported = export_case(tmp_path, "Mets_001", nodes, segmentation, label_status="complete", allow_empty=True)
    assert exported.lesions == 0
    assert not read_volume(tmp_path / "Mets_001" / "seg.nii.gz").array.any()


def test_unknown_segment_and_contradictory_label_status_are_refused(scene, tmp_path):
    nodes, segmentation, ids = annotated_study(scene)
    with pytest.raises(BrainMetSegError, match=f"no segment with ID nope; it holds {ids[0]}, {ids[1]}"):
        export_case(tmp_path, "Mets_001", nodes, segmentation, segment_ids=["nope"])
    with pytest.raises(BrainMetSegError, match="label status: 'none' means the case has no segmentation"):
        export_case(tmp_path, "Mets_001", nodes, segmentation, label_status="none")
    with pytest.raises(BrainMetSegError, match="label status: 'maybe'"):
        export_case(tmp_path, "Mets_001", nodes, segmentation, label_status="maybe")
    with pytest.raises(BrainMetSegError, match="split: 'holdout'"):
        export_case(tmp_path, "Mets_001", nodes, segmentation, split="holdout")
    with pytest.raises(BrainMetSegError, match="invalid case id '../x'"):
        export_case(tmp_path, "../x", nodes, segmentation)
    exported = export_case(tmp_path, "Mets_001", nodes, None, label_status="none")
    assert exported.lesions == 0 and read_dataset(tmp_path).get("Mets_001").label_path() is None


def test_missing_or_duplicated_sequences_are_refused(scene, tmp_path):
    nodes, segmentation, _ = annotated_study(scene)
    with pytest.raises(BrainMetSegError, match="missing input: select a volume for FLAIR"):
        export_case(tmp_path, "Mets_001", {role: node for role, node in nodes.items() if role != "flair"},
                    segmentation)
    with pytest.raises(BrainMetSegError, match="volume 't1_gd' is selected as .* and FLAIR"):
        export_case(tmp_path, "Mets_001", dict(nodes, flair=nodes["t1_gd"]), segmentation)
    with pytest.raises(BrainMetSegError, match="unknown role\\(s\\) dwi"):
        export_case(tmp_path, "Mets_001", dict(nodes, dwi=nodes["flair"]), segmentation)
    assert list(tmp_path.iterdir()) == []


def test_mismatched_geometry_is_refused(scene, tmp_path):
    nodes, segmentation, _ = annotated_study(scene)
    far = scene.add_volume(Volume(sphere_volumes()["flair"].array, make_affine((3, 3, 3), origin=(500, 0, 0))),
                           "far flair")
    with pytest.raises(BrainMetSegError, match="flair volume: does not overlap bravo"):
        export_case(tmp_path, "Mets_001", dict(nodes, flair=far), segmentation)
    shifted = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shifted.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(
        np.array([[1, 0, 0, 40.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])))
    segmentation.SetAndObserveTransformNodeID(shifted.GetID())
    with pytest.raises(BrainMetSegError, match=r"segmentation 'Annotation': \d+ of \d+ lesion voxels lie outside the "
                                               "bravo volume"):
        export_case(tmp_path, "Mets_001", nodes, segmentation)
    assert list(tmp_path.iterdir()) == []


def test_export_leaves_no_temporary_nodes(scene, tmp_path):
    nodes, segmentation, _ = annotated_study(scene)
    before = scene.node_counts()
    export_case(tmp_path, "Mets_001", nodes, segmentation)
    assert scene.node_counts() == before


def test_next_case_id_on_a_new_folder(tmp_path):
    assert next_case_id(tmp_path / "new") == "Mets_001"
    (tmp_path / "Mets_009").mkdir()
    (tmp_path / "Mets_x").mkdir()
    assert next_case_id(tmp_path) == "Mets_010"
