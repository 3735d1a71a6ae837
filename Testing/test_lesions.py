"""Lesion components and measurements on shapes whose answers are known by hand."""
from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.lesions import (TABLE_COLUMNS, axial_axis, component_statistics, connected_components,
                                    find_lesions, format_lesion_table, lesion_table, measure_lesions,
                                    occupied_box, rank_components, write_lesion_csv)
from BrainMetSegLib.volumes import Volume, make_affine, write_volume

from helpers_lesions import ball, grid_centre_ras, oblique_affine

# Array axes i -> anterior (2 mm), j -> left (0.5 mm), k -> superior (3 mm); origin (10, -20, 5).
PERMUTED = np.array([[0.0, -0.5, 0.0, 10.0],
                     [2.0, 0.0, 0.0, -20.0],
                     [0.0, 0.0, 3.0, 5.0],
                     [0.0, 0.0, 0.0, 1.0]])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", *args], capture_output=True, text=True,
                          timeout=120)


# ---------------------------------------------------------------------------------- components


def test_diagonal_neighbours_form_one_lesion_26_connectivity():
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True      # touch at a corner only
    mask[4, 4, 4] = True                      # one empty voxel away on every axis
    components, count = connected_components(mask)
    assert count == 2
    assert components.dtype == np.int32
    assert components[1, 1, 1] == components[2, 2, 2] != components[4, 4, 4]


def test_sphere_volume_diameters_and_centroid_on_an_oblique_anisotropic_grid():
    affine = oblique_affine((0.8, 0.9, 1.5))
    shape = (40, 40, 26)
    centre = grid_centre_ras(shape, affine) + np.array([0.3, -0.2, 0.1])
    radius = 8.0
    components, _ = connected_components(ball(shape, affine, centre, radius))
    (lesion,) = measure_lesions(components, affine)
    assert lesion.volume_mm3 == pytest.approx(4 / 3 * math.pi * radius ** 3, rel=0.05)
    assert lesion.volume_mm3 == pytest.approx(lesion.voxels * 0.8 * 0.9 * 1.5)
    assert abs(lesion.equivalent_diameter_mm - 2 * radius) <= 1.5
    assert abs(lesion.max_axial_diameter_mm - 2 * radius) <= 1.5
    assert np.allclose(lesion.centroid_ras, centre, atol=0.2)
    assert lesion.confidence is None


def test_centroid_bbox_and_volume_by_hand_with_a_permuted_anisotropic_affine():
    components = np.zeros((5, 5, 5), dtype=np.int32)
    components[1, 2, 3] = components[2, 2, 3] = 7
    (lesion,) = measure_lesions(components, PERMUTED)
    # mean index (1.5, 2, 3): R = 10 - 0.5*2, A = -20 + 2*1.5, S = 5 + 3*3
    assert lesion.centroid_ras == pytest.approx((9.0, -17.0, 14.0))
    assert lesion.index == 7
    assert lesion.voxels == 2
    assert lesion.volume_mm3 == pytest.approx(2 * 2.0 * 0.5 * 3.0)
    assert lesion.equivalent_diameter_mm == pytest.approx((6 * 6.0 / math.pi) ** (1 / 3))
    assert lesion.bbox == ((1, 3), (2, 3), (3, 4))


def test_axial_diameter_uses_the_axis_closest_to_superior():
    assert axial_axis(PERMUTED) == 2
    # array axis 0 superior (3 mm), axes 1 and 2 in-plane at 0.5 mm
    affine = make_affine((3.0, 0.5, 0.5), np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    assert axial_axis(affine) == 0
    components = np.zeros((8, 10, 10), dtype=np.int32)
    components[1:6, 2, 2] = 1            # a column across 5 slices: one pixel on each
    components[3, 4:7, 5:9] = 2          # a 3 x 4 rectangle on one slice
    column, rectangle = measure_lesions(components, affine)
    assert column.max_axial_diameter_mm == pytest.approx(0.5)
    # farthest centres 2 and 3 pixels apart, plus one pixel
    assert rectangle.max_axial_diameter_mm == pytest.approx(math.hypot(1.0, 1.5) + 0.5)


def test_find_lesions_thresholds_at_or_above_and_orders_by_confidence():
    probability = np.zeros((12, 12, 12), dtype=np.float32)
    probability[1:3, 1:3, 1:3] = 0.25                          # 8 voxels, confidence 0.25
    probability[6, 6, 6:8] = (0.5, 1.0)                        # confidence 0.75
    probability[9:11, 9:11, 9:11] = 0.5                        # confidence 0.5
    probability[1, 10, 10] = np.float32(0.1)                   # exactly at the threshold: a lesion
    probability[10, 1, 1] = 0.0999                             # below: not one
    components, lesions = find_lesions(probability, make_affine((1.0, 1.0, 1.0)))
    assert [round(lesion.confidence, 6) for lesion in lesions] == [0.75, 0.5, 0.25, 0.1]
    assert [lesion.index for lesion in lesions] == [1, 2, 3, 4]
    assert components[6, 6, 7] == 1 and components[10, 10, 10] == 2 and components[1, 1, 1] == 3
    assert components[1, 10, 10] == 4 and components[10, 1, 1] == 0
    assert components.max() == 4


def test_equal_confidence_goes_to_the_larger_lesion_first():
    probability = np.zeros((10, 10, 10), dtype=np.float32)
    probability[1, 1, 1] = 0.5
    probability[6:8, 6:8, 6:8] = 0.5
    components, confidence = rank_components(probability)
    assert list(confidence) == [0.5, 0.5]
    assert components[6, 6, 6] == 1 and components[1, 1, 1] == 2


def test_statistics_from_the_labelled_voxels_agree_with_cc3d_on_the_whole_volume():
    """The sparse computation (only labelled voxels are visited) against cc3d's dense one."""
    import cc3d

    rng = np.random.default_rng(3)
    labels = np.zeros((40, 30, 20), dtype=np.int32)
    for label in (1, 2, 4, 7):  # 3, 5 and 6 absent
        for _ in range(int(rng.integers(1, 30))):
            labels[tuple(rng.integers(0, n) for n in labels.shape)] = label
    voxels, centroids, boxes = component_statistics(labels)
    expected = cc3d.statistics(labels)
    np.testing.assert_array_equal(voxels, expected["voxel_counts"][1:])
    np.testing.assert_allclose(centroids, expected["centroids"][1:], equal_nan=True)
    assert boxes == list(expected["bounding_boxes"][1:])
    assert [box is None for box in boxes] == [False, False, True, False, True, True, False]


def test_occupied_box_is_the_tight_box_and_empty_without_voxels():
    mask = np.zeros((10, 12, 14), dtype=bool)
    mask[2, 5, 7] = mask[6, 3, 13] = True
    assert occupied_box(mask) == (slice(2, 7), slice(3, 6), slice(7, 14))
    assert occupied_box(np.zeros((4, 4, 4))) == (slice(0, 0),) * 3


def test_lesions_near_opposite_corners_keep_their_place_in_the_whole_map():
    probability = np.zeros((30, 30, 30), dtype=np.float32)
    probability[0:2, 0:2, 0:2] = 0.9
    probability[27:30, 28:30, 26:30] = 0.5
    components, lesions = find_lesions(probability, np.eye(4))
    assert components.shape == probability.shape
    assert np.array_equal(components == 1, probability == np.float32(0.9))
    assert np.array_equal(components == 2, probability == np.float32(0.5))
    assert [lesion.bbox for lesion in lesions] == [((0, 2), (0, 2), (0, 2)), ((27, 30), (28, 30), (26, 30))]
    assert lesions[1].centroid_ras == pytest.approx((28.0, 28.5, 27.5))


def test_no_lesion_gives_empty_results():
    components, lesions = find_lesions(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4))
    assert lesions == [] and not components.any()
    assert format_lesion_table(lesions) == "no lesions found"


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5, float("nan")])
def test_bad_threshold_is_refused(threshold):
    with pytest.raises(BrainMetSegError, match=r"threshold: .* expected 0 < threshold <= 1"):
        find_lesions(np.zeros((4, 4, 4)), np.eye(4), threshold)


def test_probability_outside_unit_interval_is_refused():
    with pytest.raises(BrainMetSegError, match=r"probability: values outside \[0, 1\]"):
        find_lesions(np.full((4, 4, 4), 2.0), np.eye(4))


def test_non_integer_components_and_bad_affine_are_refused():
    with pytest.raises(BrainMetSegError, match="components: 3D float64 array; expected a 3D integer label map"):
        measure_lesions(np.zeros((3, 3, 3)), np.eye(4))
    with pytest.raises(BrainMetSegError, match="affine: expected a finite, invertible 4x4"):
        measure_lesions(np.ones((3, 3, 3), dtype=np.int32), np.zeros((4, 4)))
    with pytest.raises(BrainMetSegError, match=r"probability: shape \(2, 2, 2\) differs"):
        measure_lesions(np.ones((3, 3, 3), dtype=np.int32), np.eye(4), np.zeros((2, 2, 2)))


# ---------------------------------------------------------------------------------- tables


def test_csv_has_the_columns_and_an_empty_confidence_for_label_lesions(tmp_path):
    components = np.zeros((5, 5, 5), dtype=np.int32)
    components[1, 2, 3] = components[2, 2, 3] = 1
    path = tmp_path / "out" / "lesions.csv"
    write_lesion_csv(measure_lesions(components, PERMUTED), path)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert rows == [{"id": "1", "confidence": "", "volume_mm3": "6.0", "equivalent_diameter_mm": "2.25",
                     "max_axial_diameter_mm": "3.25", "centroid_r": "9.0", "centroid_a": "-17.0",
                     "centroid_s": "14.0", "voxels": "2"}]
    assert [p.name for p in path.parent.iterdir()] == ["lesions.csv"]  # no temporary left behind


def test_table_rows_carry_confidence_for_predicted_lesions():
    probability = np.zeros((6, 6, 6), dtype=np.float32)
    probability[2:4, 2:4, 2:4] = 0.625
    _, lesions = find_lesions(probability, np.eye(4))
    (row,) = lesion_table(lesions)
    assert row["confidence"] == 0.625 and row["voxels"] == 8
    text = format_lesion_table(lesions)
    assert "confidence" in text.splitlines()[0] and "0.625" in text.splitlines()[1]


# ---------------------------------------------------------------------------------- CLI


def test_cli_label_map_table_and_csv(tmp_path):
    label = np.zeros((10, 10, 10), dtype=np.uint8)
    label[1:3, 1:3, 1:3] = 1
    label[7, 7, 7] = 2                           # any non-zero value is lesion
    write_volume(Volume(label, make_affine((1.0, 1.0, 2.0))), tmp_path / "seg.nii.gz")
    result = run_cli("lesions", str(tmp_path / "seg.nii.gz"), "--csv", str(tmp_path / "t.csv"))
    assert result.returncode == 0, result.stderr
    assert "2 lesion(s) (label map)" in result.stdout
    with open(tmp_path / "t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["voxels"], r["volume_mm3"], r["confidence"]) for r in rows] == [("8", "16.0", ""), ("1", "2.0", "")]


def test_cli_probability_map_is_thresholded(tmp_path):
    probability = np.zeros((10, 10, 10), dtype=np.float32)
    probability[2:4, 2:4, 2:4] = 0.375
    probability[7, 7, 7] = 0.875
    write_volume(Volume(probability, np.eye(4)), tmp_path / "probability.nii.gz")
    result = run_cli("lesions", str(tmp_path / "probability.nii.gz"), "--threshold", "0.5",
                     "--csv", str(tmp_path / "t.csv"))
    assert result.returncode == 0, result.stderr
    assert "1 lesion(s) (probability map, threshold 0.5)" in result.stdout
    with open(tmp_path / "t.csv", newline="") as handle:
        assert [r["confidence"] for r in csv.DictReader(handle)] == ["0.875"]


def test_cli_refuses_a_bad_threshold_and_a_map_that_is_neither(tmp_path):
    values = np.full((4, 4, 4), 1.5, dtype=np.float32)
    write_volume(Volume(values, np.eye(4)), tmp_path / "odd.nii.gz")
    result = run_cli("lesions", str(tmp_path / "odd.nii.gz"))
    assert result.returncode == 2
    assert f"error: {tmp_path / 'odd.nii.gz'}: non-integer values outside [0, 1]" in result.stderr
    result = run_cli("lesions", str(tmp_path / "odd.nii.gz"), "--threshold", "0")
    assert result.returncode == 2
    assert "error: --threshold: 0.0 is not a probability threshold" in result.stderr
