"""Scene logic against real MRML classes (slicer-core): inputs, run, segments, table, cut-off."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import slicer
import slicer.util
import vtk

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.lesions import find_lesions, lesion_table, write_lesion_csv
from BrainMetSegLib.model_card import SYNTHETIC_WARNING
from BrainMetSegLib.model_folder import read_model_config
from BrainMetSegLib.predict import Cancelled, Prediction, Predictor
from BrainMetSegLib.scene.hierarchy import place_beside, study_item
from BrainMetSegLib.scene.inputs import SceneInputs, auto_assign, missing_inputs, read_inputs
from BrainMetSegLib.scene.logic import compute, load_predictor, run_segmentation, write_to_scene
from BrainMetSegLib.scene.models import model_entries
from BrainMetSegLib.scene.segmentation import apply_confidence_cutoff, lesion_segment_id, segment_confidence
from BrainMetSegLib.scene.table import centre_slice_views, lesion_ras, lesions_from_table, save_lesion_table_csv
from BrainMetSegLib.scene.volume_nodes import (
    PROBABILITY_COLOR_NODE_ID,
    add_probability_node,
    add_volume_node,
    show_as_overlay,
    volume_from_node,
)
from BrainMetSegLib.seg_nrrd import TERMINOLOGY_ENTRY, confidence_colour, read_segmentation_nrrd
from BrainMetSegLib.train import train
from BrainMetSegLib.train_options import TrainOptions
from BrainMetSegLib.volumes import Volume, resample_like
from helpers_predict import CASE_AFFINE, CASE_SHAPE, BrightSpotNetwork, expected_probabilities, make_model_folder
from helpers_predict import sphere_centres_ras, sphere_volumes, spheres_probability
from helpers_scene import slicer_scene
from helpers_train import write_tiny_dataset

SERIES_NAMES = {"t1_pre": "3: AX T1 SE pre", "t1_gd": "4: AX T1 SE +C", "bravo": "5: AX BRAVO +C",
                "flair": "2: AX T2 FLAIR"}
"""Series descriptions as a DICOM import names the nodes; auto-assignment must recover the roles."""

KNOWN_SPHERES = [((8, 9, 11), 2.6, 0.9), ((16, 11, 10), 2.1, 0.4), ((4, 15, 5), 1.2, 0.2)]
"""(centre index, radius in voxels, probability): three lesions of known confidence."""

OUTPUT_CLASSES = {"vtkMRMLSegmentationNode": 1, "vtkMRMLSegmentationDisplayNode": 1, "vtkMRMLTableNode": 1,
                  "vtkMRMLScalarVolumeNode": 1, "vtkMRMLScalarVolumeDisplayNode": 1}
"""What one run adds to the scene, by class."""


@pytest.fixture
def scene():
    with slicer_scene() as fixture:
        yield fixture


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A model folder made by the project's own training code: one step on the tiny synthetic
    dataset, MobileNetV3 frames of 32 x 32 pixels of 3 mm (the sphere study is 3 mm)."""
    root = tmp_path_factory.mktemp("train")
    dataset = write_tiny_dataset(root / "data", synthetic=True)
    return train(TrainOptions(dataset=dataset, out=root / "run", epochs=1, max_steps=1, batch_size=2,
                              in_plane_size=32, pixel_spacing=3.0, slice_spacing=3.0,
                              backbone="mobilenet_v3_large", device="cpu", workers=1))


@pytest.fixture(scope="module")
def bright_predictor(model_folder) -> Predictor:
    """The tiny model folder loaded for real, with a network whose answer is known (bright spots)."""
    predictor = Predictor(model_folder, device="cpu", batch_size=4)
    predictor.network = BrightSpotNetwork()
    return predictor


def known_prediction(affine=CASE_AFFINE) -> Prediction:
    probability = spheres_probability(CASE_SHAPE, KNOWN_SPHERES)
    components, lesions = find_lesions(probability, affine, threshold=0.1)
    return Prediction("spheres", probability, components, lesions, np.asarray(affine, dtype=float), 0.1, "test")


def study(scene, volumes=None):
    nodes = scene.add_study(volumes or sphere_volumes(), SERIES_NAMES)
    return nodes, SceneInputs(**nodes)


# ---------------------------------------------------------------------------- volume nodes


def test_volume_round_trip_keeps_array_axes_and_oblique_geometry(scene):
    rotation = np.array([[0.0, -1.0, 0.0], [0.8, 0.0, 0.6], [-0.6, 0.0, 0.8]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    node = add_volume_node(Volume(array, affine), "oblique")
    assert slicer.util.arrayFromVolume(node).shape == (7, 6, 5)  # Slicer's [k, j, i]
    assert slicer.util.arrayFromVolume(node)[3, 2, 1] == array[1, 2, 3]
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ras)
    np.testing.assert_allclose(np.array(ras.MultiplyPoint((1, 2, 3, 1)))[:3], (affine @ [1, 2, 3, 1])[:3], atol=1e-6)


def test_volume_from_node_copies_the_voxels(scene):
    node = add_volume_node(Volume(np.zeros((3, 4, 5), np.float32), np.eye(4)), "v")
    volume = volume_from_node(node)
    slicer.util.arrayFromVolume(node)[:] = 7
    assert volume.array.max() == 0


def test_a_linear_parent_transform_is_applied(scene):
    node = add_volume_node(Volume(np.ones((3, 4, 5), np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), "moved")
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(
        np.array([[1, 0, 0, 10.0], [0, 1, 0, 0], [0, 0, 1, -5.0], [0, 0, 0, 1]])))
    node.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(volume_from_node(node).affine[:3, 3], [10.0, 0.0, -5.0])
    np.testing.assert_allclose(volume_from_node(node).affine[:3, :3], np.diag([2.0, 2.0, 2.0]))


def test_a_non_linear_transform_is_refused_with_its_name(scene):
    node = add_volume_node(Volume(np.ones((3, 4, 5), np.float32), np.eye(4)), "warped")
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTransformNode", "spline warp")
    spline = vtk.vtkThinPlateSplineTransform()
    points = vtk.vtkPoints()
    for p in ((0, 0, 0), (10, 0, 0), (0, 10, 0), (0, 0, 10)):
        points.InsertNextPoint(p)
    spline.SetSourceLandmarks(points)
    spline.SetTargetLandmarks(points)
    transform.SetAndObserveTransformToParent(spline)
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(BrainMetSegError, match="volume 'warped'.*non-linear transform 'spline warp'.*harden"):
        volume_from_node(node)


def test_a_vector_volume_and_an_empty_node_are_refused(scene):
    vector = slicer.util.addVolumeFromArray(np.zeros((3, 4, 5, 3), np.uint8), name="photo",
                                            nodeClassName="vtkMRMLVectorVolumeNode")
    with pytest.raises(BrainMetSegError, match="volume 'photo': has 3 components per voxel"):
        volume_from_node(vector)
    with pytest.raises(BrainMetSegError, match="input: no volume node given"):
        volume_from_node(None)
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "notes")
    with pytest.raises(BrainMetSegError, match="'notes': a vtkMRMLTableNode, not a scalar volume"):
        volume_from_node(table)
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(BrainMetSegError, match="volume 'empty': holds no image data"):
        volume_from_node(empty)


def test_probability_node_is_an_overlay_with_the_map_transposed_into_slicer_order(scene):
    probability = spheres_probability(CASE_SHAPE, KNOWN_SPHERES)
    node = add_probability_node(probability, CASE_AFFINE, "p", threshold=0.1)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), probability.transpose(2, 1, 0))
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == PROBABILITY_COLOR_NODE_ID
    assert slicer.mrmlScene.GetNodeByID(PROBABILITY_COLOR_NODE_ID) is not None
    assert (display.GetWindow(), display.GetLevel()) == (1.0, 0.5)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.1)
    views = scene.add_slice_views()
    show_as_overlay(node, opacity=0.3)
    for index in range(len(views)):
        composite = slicer.mrmlScene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        assert composite.GetForegroundVolumeID() == node.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.3)


# ---------------------------------------------------------------------------- inputs


def test_auto_assign_fills_all_four_roles_from_series_names(scene):
    nodes, _ = study(scene)
    labels = slicer.util.addVolumeFromArray(np.zeros((3, 4, 5), np.uint8), name="t1_gd",
                                            nodeClassName="vtkMRMLLabelMapVolumeNode")
    assert labels is not None
    inputs, assignment = auto_assign()
    assert inputs.nodes() == nodes
    assert assignment.notes == {}
    assert missing_inputs(inputs) == []


def test_missing_inputs_are_named_and_refused_before_reading(scene):
    nodes, _ = study(scene)
    inputs = SceneInputs(t1_pre=nodes["t1_pre"], bravo=nodes["bravo"])
    assert missing_inputs(inputs) == ["T1 post-Gd (spin echo: CUBE/SPACE/VISTA)", "FLAIR"]
    with pytest.raises(BrainMetSegError, match=r"missing input: select a volume for T1 post-Gd .*, FLAIR"):
        read_inputs(inputs)


def test_one_volume_for_two_roles_is_refused(scene):
    nodes, inputs = study(scene)
    inputs.flair = nodes["t1_gd"]
    with pytest.raises(BrainMetSegError, match=r"volume '4: AX T1 SE \+C' is selected as T1 post-Gd .* and FLAIR"):
        read_inputs(inputs)


# ---------------------------------------------------------------------------- writing results


def test_segments_names_colours_tags_and_voxels(scene):
    nodes, _ = study(scene)
    prediction = known_prediction()
    outputs = write_to_scene(prediction, nodes["bravo"])
    segmentation = outputs.segmentation.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == ["Lesion_1", "Lesion_2", "Lesion_3"]
    for lesion, (_, radius, value) in zip(prediction.lesions, KNOWN_SPHERES):
        segment = segmentation.GetSegment(lesion_segment_id(lesion.index))
        assert segment.GetName() == f"Lesion {lesion.index}"
        assert segment_confidence(segment) == pytest.approx(value, abs=1e-4)
        assert segment.GetColor() == pytest.approx(confidence_colour(value))
        assert segment.GetTerminology() == TERMINOLOGY_ENTRY
        tags = {}
        for key in ("Volume_mm3", "Diameter_mm", "MaxAxialDiameter_mm", "Voxels"):
            text = vtk.reference("")
            assert segment.GetTag(key, text)
            tags[key] = float(str(text))
        assert tags["Volume_mm3"] == pytest.approx(lesion.volume_mm3, abs=0.01)
        assert tags["Volume_mm3"] == pytest.approx(tags["Voxels"] * 27.0)  # 3 mm voxels
        assert tags["Diameter_mm"] == pytest.approx(lesion.equivalent_diameter_mm, abs=0.01)
        mask = scene.segment_mask(outputs.segmentation, lesion_segment_id(lesion.index), nodes["bravo"])
        np.testing.assert_array_equal(mask, prediction.components == lesion.index)
    assert [round(lesion.confidence, 4) for lesion in outputs.lesions] == [0.9, 0.4, 0.2]


def test_reference_geometry_is_bravos(scene):
    nodes, _ = study(scene)
    outputs = write_to_scene(known_prediction(), nodes["bravo"])
    scratch = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    scratch.SetReferenceImageGeometryParameterFromVolumeNode(nodes["bravo"])
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    assert outputs.segmentation.GetSegmentation().GetConversionParameter(name) == \
        scratch.GetSegmentation().GetConversionParameter(name)
    assert outputs.segmentation.GetNodeReference(outputs.segmentation.GetReferenceImageGeometryReferenceRole()) \
        is nodes["bravo"]


def test_segments_match_the_seg_nrrd_the_command_line_writes(scene, tmp_path):
    """Slicer's own storage node saves the scene's segmentation; it reads back like the CLI's file."""
    nodes, _ = study(scene)
    prediction = known_prediction()
    outputs = write_to_scene(prediction, nodes["bravo"])
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "slicer.seg.nrrd"))
    assert storage.WriteData(outputs.segmentation)
    from BrainMetSegLib.seg_nrrd import write_segmentation_nrrd
    write_segmentation_nrrd(prediction.components, prediction.affine, prediction.lesions, tmp_path / "cli.seg.nrrd")
    slicer_labels, slicer_affine, slicer_segments = read_segmentation_nrrd(tmp_path / "slicer.seg.nrrd")
    cli_labels, cli_affine, cli_segments = read_segmentation_nrrd(tmp_path / "cli.seg.nrrd")
    np.testing.assert_allclose(slicer_affine, cli_affine, atol=1e-5)
    assert [s["name"] for s in slicer_segments] == [s["name"] for s in cli_segments]
    assert [s["label_value"] for s in slicer_segments] == [s["label_value"] for s in cli_segments]
    for ours, theirs in zip(slicer_segments, cli_segments):
        assert ours["color"] == pytest.approx(theirs["color"], abs=1e-5)
        for key, value in theirs["tags"].items():
            assert ours["tags"][key] == value
    # Slicer crops the saved labelmap to the segments' extent: compare in physical space
    cropped = Volume(slicer_labels, slicer_affine)
    full = Volume(cli_labels, cli_affine)
    np.testing.assert_array_equal(resample_like(cropped, full, order=0).array, cli_labels)


def test_outputs_go_under_the_study_of_bravo(scene):
    nodes, _ = study(scene)
    outputs = write_to_scene(known_prediction(), nodes["bravo"])
    hierarchy = scene.hierarchy
    study_id = study_item(nodes["bravo"])
    assert hierarchy.GetItemLevel(study_id) == "Study"
    for node in (outputs.segmentation, outputs.table, outputs.probability):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study_id


def test_a_node_that_already_has_an_item_is_moved_under_the_study(scene):
    """In Slicer every new node gets an item at the top level at once; it is moved, not duplicated."""
    nodes, _ = study(scene)
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "t")
    item = scene.hierarchy.CreateItem(scene.hierarchy.GetSceneItemID(), table)
    assert place_beside(table, nodes["bravo"]) == study_item(nodes["bravo"])
    assert scene.hierarchy.GetItemByDataNode(table) == item
    assert scene.hierarchy.GetItemParent(item) == study_item(nodes["bravo"])


def test_a_bravo_outside_any_study_leaves_outputs_at_the_top(scene):
    bravo = scene.add_volume(sphere_volumes()["bravo"], "bravo")
    outputs = write_to_scene(known_prediction(), bravo)
    assert study_item(bravo) == 0
    assert scene.hierarchy.GetItemByDataNode(outputs.segmentation) == 0
    assert outputs.segmentation.GetScene() is scene.scene


def test_lesion_table_rows_and_centring_the_views(scene):
    nodes, _ = study(scene)
    prediction = known_prediction()
    outputs = write_to_scene(prediction, nodes["bravo"], probability_map=False)
    assert outputs.probability is None
    table = outputs.table
    assert table.GetNumberOfRows() == 3
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())][:3] == \
        ["id", "confidence", "volume_mm3"]
    assert table.GetColumnUnitLabel("volume_mm3") == "mm3"
    assert table.GetLocked()
    expected = lesion_table(prediction.lesions)
    for row, values in enumerate(expected):
        for column, value in values.items():
            cell = table.GetTable().GetValueByName(row, column).ToDouble()
            assert cell == pytest.approx(value)
    centre = (CASE_AFFINE @ [*KNOWN_SPHERES[1][0], 1.0])[:3]
    np.testing.assert_allclose(lesion_ras(table, 1), centre, atol=0.01)
    views = scene.add_slice_views()
    centre_slice_views(lesion_ras(table, 1))
    for view in views.values():
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(view.GetSliceToRAS())[:3, 3], centre, atol=0.01)
    with pytest.raises(BrainMetSegError, match="row 3 does not exist"):
        lesion_ras(table, 3)


def test_confidence_cutoff_shows_and_hides_segments_live(scene):
    nodes, _ = study(scene)
    outputs = write_to_scene(known_prediction(), nodes["bravo"], cutoff=0.5)
    display = outputs.segmentation.GetDisplayNode()

    def visible():
        return [segment_id for segment_id in outputs.segmentation.GetSegmentation().GetSegmentIDs()
                if display.GetSegmentVisibility(segment_id)]

    assert outputs.shown == 1 and visible() == ["Lesion_1"]
    manual = outputs.segmentation.GetSegmentation().AddEmptySegment("drawn", "drawn by hand")
    assert apply_confidence_cutoff(outputs.segmentation, 0.3) == 2
    assert visible() == ["Lesion_1", "Lesion_2", manual]
    assert apply_confidence_cutoff(outputs.segmentation, 0.4) == 2  # at least the cut-off: shown
    assert apply_confidence_cutoff(outputs.segmentation, 0.0) == 3
    assert apply_confidence_cutoff(outputs.segmentation, 0.95) == 0
    assert visible() == [manual]
    assert outputs.segmentation.GetSegmentation().GetNumberOfSegments() == 4  # hidden, never deleted
    with pytest.raises(BrainMetSegError, match="confidence cut-off: 1.5; expected a value from 0 to 1"):
        apply_confidence_cutoff(outputs.segmentation, 1.5)


def test_save_lesion_table_csv_from_the_table_or_the_lesions(scene, tmp_path):
    nodes, _ = study(scene)
    prediction = known_prediction()
    outputs = write_to_scene(prediction, nodes["bravo"])
    write_lesion_csv(prediction.lesions, tmp_path / "cli.csv")
    save_lesion_table_csv(outputs.table, tmp_path / "table.csv")
    save_lesion_table_csv(outputs.lesions, tmp_path / "lesions.csv")
    expected = (tmp_path / "cli.csv").read_text()
    assert (tmp_path / "table.csv").read_text() == expected
    assert (tmp_path / "lesions.csv").read_text() == expected
    assert [lesion.index for lesion in lesions_from_table(outputs.table)] == [1, 2, 3]
    save_lesion_table_csv(outputs.table, tmp_path / "shown.csv", cutoff=0.3)
    with open(tmp_path / "shown.csv", newline="") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == ["1", "2"]
    with pytest.raises(BrainMetSegError, match="table.csv: already exists"):
        save_lesion_table_csv(outputs.table, tmp_path / "table.csv")
    save_lesion_table_csv(outputs.table, tmp_path / "table.csv", overwrite=True, cutoff=0.5)
    assert len((tmp_path / "table.csv").read_text().splitlines()) == 2
    with pytest.raises(BrainMetSegError, match="is a folder"):
        save_lesion_table_csv(outputs.table, tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.csv", "lesions.csv", "shown.csv", "table.csv"]


def test_a_failed_write_removes_what_it_had_added(scene):
    nodes, _ = study(scene)
    prediction = known_prediction()
    prediction.probability[0, 0, 0] = 2.0  # not a probability: refused after segmentation and table exist
    before, items = scene.node_counts(), scene.item_count()
    with pytest.raises(BrainMetSegError, match="lesion probability.*outside \\[0, 1\\]"):
        write_to_scene(prediction, nodes["bravo"])
    assert scene.node_counts() == before
    assert scene.item_count() == items


# ---------------------------------------------------------------------------- whole runs


def test_run_with_a_model_folder_adds_consistent_nodes_under_the_study(scene, model_folder):
    nodes, inputs = study(scene)
    before, items = scene.node_counts(), scene.item_count()
    messages = []
    outputs = run_segmentation(inputs, model_folder, device="cpu", progress=lambda f, m: messages.append((f, m)))
    added = scene.node_counts() - before
    assert dict(added) == OUTPUT_CLASSES
    assert scene.item_count() == items + 3
    assert messages[-1][0] == 1.0
    # the lesions are the components of the probability volume in the scene, at the model's threshold
    probability = volume_from_node(outputs.probability)
    np.testing.assert_allclose(probability.affine, CASE_AFFINE, atol=1e-6)
    config = read_model_config(model_folder)
    components, lesions = find_lesions(probability.array, probability.affine, threshold=config.probability_threshold)
    assert lesions, "the one-step model finds at least one component"
    assert [(l.voxels, round(l.confidence, 5)) for l in outputs.lesions] == \
        [(l.voxels, round(l.confidence, 5)) for l in lesions]
    for lesion in lesions:
        mask = scene.segment_mask(outputs.segmentation, lesion_segment_id(lesion.index), nodes["bravo"])
        np.testing.assert_array_equal(mask, components == lesion.index)
    assert outputs.table.GetNumberOfRows() == len(lesions)
    assert outputs.cutoff == config.operating_point
    shown = [row["confidence"] >= config.operating_point for row in lesion_table(lesions)]  # as the table shows it
    assert outputs.shown == sum(shown)
    assert SYNTHETIC_WARNING in outputs.warnings
    assert outputs.segmentation.GetName() == "5: AX BRAVO +C lesions"
    again, _ = auto_assign()
    assert again.nodes() == nodes  # the outputs are never taken for inputs


def test_run_finds_the_bright_spheres_where_they_are(scene, bright_predictor):
    _, inputs = study(scene)
    outputs = run_segmentation(inputs, bright_predictor)
    assert [lesion.confidence for lesion in outputs.lesions] == pytest.approx(expected_probabilities(), abs=0.02)
    for lesion, centre in zip(outputs.lesions, sphere_centres_ras()):
        np.testing.assert_allclose(lesion_ras(outputs.table, lesion.index - 1), centre, atol=1.0)
    assert [s for s in outputs.segmentation.GetSegmentation().GetSegmentIDs()] == ["Lesion_1", "Lesion_2"]


def test_a_flair_on_another_grid_is_resampled_with_a_warning(scene, bright_predictor):
    volumes = sphere_volumes()
    finer = volumes["flair"].affine.copy()
    finer[:3, :3] *= 0.5
    target = Volume(np.zeros((40, 36, 40), np.float32), finer)
    volumes["flair"] = resample_like(volumes["flair"], target, order=1)
    _, inputs = study(scene, volumes)
    outputs = run_segmentation(inputs, bright_predictor)
    warnings = [w for w in outputs.warnings if "grid differs from bravo" in w]
    assert len(warnings) == 1 and warnings[0].startswith("flair volume")
    assert "resampled onto the bravo grid" in warnings[0]
    assert len(outputs.lesions) == 2


def test_a_brain_mask_node_is_used(scene, bright_predictor):
    """The mask leaves out the second sphere: only the first is found."""
    nodes, inputs = study(scene)
    mask = sphere_volumes()["bravo"].array != 0
    mask[12:21, 7:16, 6:15] = False  # a box around the second sphere, centre (16, 11, 10)
    inputs.brain_mask = slicer.util.addVolumeFromArray(mask.astype(np.uint8).transpose(2, 1, 0), CASE_AFFINE,
                                                       "brain", "vtkMRMLLabelMapVolumeNode")
    outputs = run_segmentation(inputs, bright_predictor, probability_map=False)
    assert len(outputs.lesions) == 1
    np.testing.assert_allclose(outputs.lesions[0].centroid_ras, sphere_centres_ras()[0], atol=1.0)
    slicer.util.updateVolumeFromArray(inputs.brain_mask, np.zeros(mask.shape[::-1], np.uint8))
    before = scene.node_counts()
    with pytest.raises(BrainMetSegError, match="brain mask volume: the brain mask is empty"):
        run_segmentation(inputs, bright_predictor)
    assert scene.node_counts() == before


def test_load_predictor_applies_a_threshold_and_keeps_a_loaded_predictor(model_folder, bright_predictor):
    assert load_predictor(model_folder, "cpu", threshold=0.3).threshold == 0.3
    assert load_predictor(bright_predictor) is bright_predictor


@pytest.mark.parametrize("problem, message", [
    ("far", "flair volume: does not overlap bravo"),
    ("nan", "t1_gd volume: .*(NaN|not finite)"),
    ("flat", "t1_pre volume: shape 24x20x1; expected a 3D volume"),
])
def test_impossible_inputs_are_refused_and_the_scene_is_unchanged(scene, bright_predictor, problem, message):
    volumes = sphere_volumes()
    if problem == "far":
        far = volumes["flair"].affine.copy()
        far[:3, 3] += 1000.0
        volumes["flair"] = Volume(volumes["flair"].array, far)
    elif problem == "nan":
        volumes["t1_gd"].array[5, 5, 5] = np.nan
    else:
        volumes["t1_pre"] = Volume(volumes["t1_pre"].array[:, :, :1].copy(), volumes["t1_pre"].affine)
    _, inputs = study(scene, volumes)
    before, items = scene.node_counts(), scene.item_count()
    with pytest.raises(BrainMetSegError, match=message):
        run_segmentation(inputs, bright_predictor)
    assert scene.node_counts() == before
    assert scene.item_count() == items


@pytest.mark.parametrize("when", ["during", "after"])
def test_a_cancelled_run_leaves_the_scene_unchanged(scene, bright_predictor, when):
    _, inputs = study(scene)
    before, items = scene.node_counts(), scene.item_count()
    progress = []

    def cancel():
        return bool(progress) if when == "during" else bool(progress) and progress[-1] >= 1.0

    with pytest.raises(Cancelled):
        run_segmentation(inputs, bright_predictor, progress=lambda f, m: progress.append(f), cancel=cancel)
    assert scene.node_counts() == before
    assert scene.item_count() == items
    assert (progress[-1] < 1.0) if when == "during" else (progress[-1] == 1.0)


def test_compute_touches_no_node(scene, bright_predictor):
    """The GUI runs compute in a worker thread: it must work on copies only."""
    nodes, inputs = study(scene)
    volumes = read_inputs(inputs)
    slicer.mrmlScene.Clear(True)  # the nodes are gone; compute still has everything it needs
    prediction = compute(volumes, bright_predictor)
    assert len(prediction.lesions) == 2
    assert volumes.case_id == "5: AX BRAVO +C"


# ---------------------------------------------------------------------------- model selector


def test_model_entries_list_the_models_directory(isolated_models_directory):
    make_model_folder(isolated_models_directory / "tiny", operating_point=0.4)
    (isolated_models_directory / "broken").mkdir()
    entries = model_entries()
    assert [entry.name for entry in entries] == ["tiny-test-model"]
    entry = entries[0]
    assert entry.path == isolated_models_directory / "tiny"
    assert entry.synthetic and entry.label == "tiny-test-model (synthetic data)"
    assert SYNTHETIC_WARNING in entry.card and "MobileNetV3" in entry.card
    assert entry.operating_point == 0.4 and entry.backbone == "mobilenet_v3_large"
