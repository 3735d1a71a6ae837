"""Slicer .seg.nrrd: write, read back (pynrrd and Slicer's own storage node), refusals."""
from __future__ import annotations

import numpy as np
import pytest

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.lesions import Lesion, find_lesions
from BrainMetSegLib.seg_nrrd import (
    PALETTE,
    TERMINOLOGY_ENTRY,
    confidence_colour,
    read_segmentation_nrrd,
    write_segmentation_nrrd,
)
from helpers_predict import spheres_probability

AFFINE = np.array([
    [-2.0, 0.0, 0.0, 50.0],
    [0.0, 0.0, 1.5, -30.0],
    [0.0, 3.0, 0.0, 10.0],
    [0.0, 0.0, 0.0, 1.0],
])
SHAPE = (20, 16, 24)
SPHERES = [((5, 5, 6), 2.5, 0.6), ((13, 10, 16), 3.5, 0.95), ((15, 3, 4), 1.5, 0.3)]


@pytest.fixture()
def lesions_map():
    probability = spheres_probability(SHAPE, SPHERES)
    components, lesions = find_lesions(probability, AFFINE)
    return components, lesions


def test_round_trip_keeps_labels_geometry_names_tags_and_colours(tmp_path, lesions_map):
    components, lesions = lesions_map
    assert [round(lesion.confidence, 2) for lesion in lesions] == [0.95, 0.6, 0.3]
    path = tmp_path / "lesions.seg.nrrd"
    write_segmentation_nrrd(components, AFFINE, lesions, path)

    labelmap, affine, segments = read_segmentation_nrrd(path)
    np.testing.assert_array_equal(labelmap, components)
    np.testing.assert_allclose(affine, AFFINE, atol=1e-9)
    assert [s["name"] for s in segments] == ["Lesion 1", "Lesion 2", "Lesion 3"]
    assert [s["label_value"] for s in segments] == [1, 2, 3]
    assert {s["layer"] for s in segments} == {0}
    for segment, lesion in zip(segments, lesions):
        tags = segment["tags"]
        assert float(tags["Confidence"]) == pytest.approx(lesion.confidence, abs=1e-4)
        assert float(tags["Volume_mm3"]) == pytest.approx(lesion.volume_mm3, abs=0.01)
        assert float(tags["Diameter_mm"]) == pytest.approx(lesion.equivalent_diameter_mm, abs=0.01)
        assert float(tags["MaxAxialDiameter_mm"]) == pytest.approx(lesion.max_axial_diameter_mm, abs=0.01)
        assert int(tags["Voxels"]) == lesion.voxels == int(np.sum(labelmap == lesion.index))
        assert tags["TerminologyEntry"] == TERMINOLOGY_ENTRY
        assert "SCT^14799000^Neoplasm, Secondary" in tags["TerminologyEntry"]
        # extent: inclusive bounding box of the segment's voxels in file indices
        where = np.argwhere(labelmap == lesion.index)
        expected = []
        for axis in range(3):
            expected += [int(where[:, axis].min()), int(where[:, axis].max())]
        assert segment["extent"] == tuple(expected)
        # yellow (low) -> red (high): green falls as confidence rises
        assert segment["color"] == pytest.approx((1.0, 1.0 - lesion.confidence, 0.0), abs=1e-5)
        assert not segment["color_auto_generated"]


def test_file_is_lps_with_slicer_segmentation_fields(tmp_path, lesions_map):
    import nrrd

    components, lesions = lesions_map
    path = tmp_path / "lesions.seg.nrrd"
    write_segmentation_nrrd(components, AFFINE, lesions, path)
    header = nrrd.read_header(str(path))
    assert header["space"] == "left-posterior-superior"
    # LPS flips the first two rows of the RAS matrix; space directions are per-axis rows
    np.testing.assert_allclose(header["space directions"], (np.diag([-1, -1, 1]) @ AFFINE[:3, :3]).T)
    np.testing.assert_allclose(header["space origin"], [-50.0, 30.0, 10.0])
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert header["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    assert header["Segmentation_ContainedRepresentationNames"].startswith("Binary labelmap|")
    assert header["Segment0_ID"] == "Lesion_1"
    assert header["type"] in ("uint8", "unsigned char")


def test_colours_without_confidence_or_when_asked_come_from_the_palette(tmp_path, lesions_map):
    components, lesions = lesions_map
    path = tmp_path / "plain.seg.nrrd"
    write_segmentation_nrrd(components, AFFINE, lesions, path, colour_by_confidence=False)
    _, _, segments = read_segmentation_nrrd(path)
    assert [s["color"] for s in segments] == [pytest.approx(PALETTE[i], abs=1e-5) for i in range(3)]

    for lesion in lesions:
        lesion.confidence = None
    write_segmentation_nrrd(components, AFFINE, lesions, path)
    _, _, segments = read_segmentation_nrrd(path)
    assert [s["color"] for s in segments] == [pytest.approx(PALETTE[i], abs=1e-5) for i in range(3)]
    assert all("Confidence" not in s["tags"] for s in segments)


def test_no_lesions_give_an_empty_segmentation_on_the_same_grid(tmp_path):
    import slicer

    path = tmp_path / "none.seg.nrrd"
    write_segmentation_nrrd(np.zeros(SHAPE, dtype=np.int32), AFFINE, [], path)
    labelmap, affine, segments = read_segmentation_nrrd(path)
    assert labelmap.shape == SHAPE and not labelmap.any() and segments == []
    np.testing.assert_allclose(affine, AFFINE, atol=1e-9)
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1 and node.GetSegmentation().GetNumberOfSegments() == 0


def test_confidence_colour_ends_and_clipping():
    assert confidence_colour(0.0) == (1.0, 1.0, 0.0)
    assert confidence_colour(1.0) == (1.0, 0.0, 0.0)
    assert confidence_colour(0.25) == pytest.approx((1.0, 0.75, 0.0))
    assert confidence_colour(1.7) == (1.0, 0.0, 0.0)


def test_more_than_255_lesions_use_16_bit_labels(tmp_path):
    components = np.zeros((40, 40, 2), dtype=np.int32)
    components[::2, ::2, 0] = np.arange(1, 401).reshape(20, 20)  # 400 isolated voxels
    _, lesions = find_lesions((components > 0).astype(np.float32), np.eye(4))
    # relabelled by find_lesions; rebuild the map from their bounding boxes
    relabelled = np.zeros_like(components)
    for lesion in lesions:
        relabelled[tuple(slice(a, b) for a, b in lesion.bbox)] = lesion.index
    path = tmp_path / "many.seg.nrrd"
    write_segmentation_nrrd(relabelled, np.eye(4), lesions, path)
    labelmap, _, segments = read_segmentation_nrrd(path)
    assert labelmap.dtype == np.uint16 and len(segments) == 400
    np.testing.assert_array_equal(labelmap, relabelled)


def test_refuses_more_lesions_than_16_bit_labels_hold(tmp_path):
    count = 65536
    components = np.arange(1, count + 1, dtype=np.int32).reshape(256, 256, 1)
    lesions = [Lesion(i, 1, 1.0, 1.24, 1.0, (0.0, 0.0, 0.0), ((0, 1), (0, 1), (0, 1)), 0.5)
               for i in range(1, count + 1)]
    path = tmp_path / "huge.seg.nrrd"
    with pytest.raises(BrainMetSegError, match=r"huge\.seg\.nrrd: 65536 lesions; a segmentation file holds at most 65535"):
        write_segmentation_nrrd(components, np.eye(4), lesions, path)
    assert not path.exists()


def test_refuses_lesions_that_do_not_match_the_map(tmp_path, lesions_map):
    components, lesions = lesions_map
    path = tmp_path / "bad.seg.nrrd"
    with pytest.raises(BrainMetSegError, match=r"bad\.seg\.nrrd: lesion indices \[1, 2\] do not match"):
        write_segmentation_nrrd(components, AFFINE, lesions[:2], path)
    assert not path.exists()
    with pytest.raises(BrainMetSegError, match=r"bad\.seg\.nrrd: the lesion label map must be 3D"):
        write_segmentation_nrrd(components[..., None], AFFINE, lesions, path)
    with pytest.raises(BrainMetSegError, match=r"bad\.seg\.nrrd: the affine must be 4x4, got shape \(3, 3\)"):
        write_segmentation_nrrd(components, AFFINE[:3, :3], lesions, path)


def test_reader_refuses_multi_layer_missing_and_non_nrrd_files(tmp_path):
    import nrrd

    layered = tmp_path / "layers.seg.nrrd"
    nrrd.write(str(layered), np.zeros((2, 4, 4, 4), np.uint8),
               {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
                "space directions": [[np.nan] * 3, [1, 0, 0], [0, 1, 0], [0, 0, 1]]})
    with pytest.raises(BrainMetSegError, match=r"layers\.seg\.nrrd: 4D segmentation .*single-layer"):
        read_segmentation_nrrd(layered)
    scanner = tmp_path / "scanner.seg.nrrd"
    nrrd.write(str(scanner), np.zeros((4, 4, 4), np.uint8),
               {"space": "scanner-xyz", "space directions": np.eye(3), "kinds": ["domain"] * 3})
    with pytest.raises(BrainMetSegError, match=r"scanner\.seg\.nrrd: unsupported NRRD space 'scanner-xyz'"):
        read_segmentation_nrrd(scanner)
    bare = tmp_path / "bare.seg.nrrd"
    nrrd.write(str(bare), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(BrainMetSegError, match=r"bare\.seg\.nrrd: no 'space directions' in the header"):
        read_segmentation_nrrd(bare)
    with pytest.raises(BrainMetSegError, match=r"absent\.seg\.nrrd: no such file"):
        read_segmentation_nrrd(tmp_path / "absent.seg.nrrd")
    garbage = tmp_path / "garbage.seg.nrrd"
    garbage.write_text("not a nrrd file\n")
    with pytest.raises(BrainMetSegError, match=r"garbage\.seg\.nrrd: cannot read as NRRD"):
        read_segmentation_nrrd(garbage)


def test_slicer_storage_node_loads_segments_names_tags_and_geometry(tmp_path, lesions_map):
    """The file opens in Slicer's own reader (slicer-core MRML classes, headless)."""
    import slicer
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    components, lesions = lesions_map
    path = tmp_path / "lesions.seg.nrrd"
    write_segmentation_nrrd(components, AFFINE, lesions, path)

    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    assert segmentation.GetSourceRepresentationName() == "Binary labelmap"
    assert segmentation.GetNumberOfSegments() == len(lesions)
    for n, lesion in enumerate(lesions):
        segment = segmentation.GetSegment(f"Lesion_{lesion.index}")
        assert segment.GetName() == f"Lesion {lesion.index}"
        assert segment.GetLabelValue() == lesion.index
        assert segment.GetColor() == pytest.approx(confidence_colour(lesion.confidence), abs=1e-5)
        value = vtk.reference("")
        assert segment.GetTag("Confidence", value) and float(str(value)) == pytest.approx(lesion.confidence, abs=1e-4)
        assert segment.GetTag("TerminologyEntry", value) and str(value) == TERMINOLOGY_ENTRY

        labelmap = segment.GetRepresentation("Binary labelmap")
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        np.testing.assert_allclose(to_world, AFFINE, atol=1e-6)
        extent = labelmap.GetExtent()
        dims = [extent[2 * a + 1] - extent[2 * a] + 1 for a in range(3)]
        voxels = vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
        # the shared layer: this segment's voxels, at the same indices, carry its label value
        window = components[extent[0]:extent[1] + 1, extent[2]:extent[3] + 1, extent[4]:extent[5] + 1]
        np.testing.assert_array_equal(voxels == lesion.index, window == lesion.index)
        assert int(np.sum(voxels == lesion.index)) == lesion.voxels
