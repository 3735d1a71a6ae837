"""Lesion metrics against answers worked out by hand from DESIGN.md §Lesions and metrics.

Confidences are binary fractions (0.875, 0.75, ...) so that float32 maps hold them exactly.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from BrainMetSegLib.dataset import read_dataset, write_case
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.metrics import (SUMMARY_KEYS, CaseEvaluation, evaluate_case, format_summary,
                                    hanley_mcneil_ci95, operating_point, pr_curve, summarise)
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import Volume, make_affine, write_volume

from helpers_lesions import oblique_affine

SHAPE = (24, 24, 24)
UNIT = make_affine((1.0, 1.0, 1.0))


def blank():
    return np.zeros(SHAPE, dtype=np.float32), np.zeros(SHAPE, dtype=np.uint8)


def two_lesions():
    """Lesions L1 = 4x4x4 box at the low corner, L2 = 4x4x4 box at the high corner (cc3d order)."""
    probability, label = blank()
    label[2:6, 2:6, 2:6] = 1
    label[16:20, 16:20, 16:20] = 1
    return probability, label


def test_perfect_prediction():
    probability, label = two_lesions()
    probability[2:6, 2:6, 2:6] = 0.875
    probability[16:20, 16:20, 16:20] = 0.625
    evaluation = evaluate_case(probability, label, UNIT, case_id="c1")
    assert [(p.confidence, p.is_tp, p.lesion) for p in evaluation.predictions] == [(0.875, True, 0), (0.625, True, 1)]
    summary = summarise([evaluation])
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["ap"] == 1.0 and summary["ap_strict"] == 1.0
    assert summary["ap_ci95"] == [1.0, 1.0]          # A = 1: every variance term is 0
    assert summary["max_sensitivity"] == 1.0 and summary["tp_dice"] == 1.0
    assert summary["fp_per_case"] == 0.0
    assert summary["froc"] == {"0.5": 1.0, "1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0}
    # both lesions 64 mm3: equivalent diameter (6*64/pi)^(1/3) = 4.9628 mm
    assert evaluation.lesion_diameters_mm == pytest.approx([4.9628] * 2, abs=1e-4)
    assert summary["sensitivity_by_diameter"] == {"0-3": None, "3-6": 1.0, "6-10": None, "10-20": None, "20+": None}
    # 64 lesion voxels in bin 87 and 64 in bin 62: two equal bins, 1 bit
    assert evaluation.probability_histogram[87] == 64 and evaluation.probability_histogram[62] == 64
    assert summary["lesion_entropy_bits"] == pytest.approx(1.0)
    assert (summary["n_cases"], summary["n_lesions"], summary["n_predictions"]) == (1, 2, 2)
    json.dumps(summary)


def test_missed_lesion():
    probability, label = two_lesions()
    probability[2:6, 2:6, 2:6] = 0.875
    summary = summarise([evaluate_case(probability, label, UNIT)])
    # one threshold: recall 1/2 at precision 1
    assert summary["ap"] == 0.5 and summary["ap_strict"] == 0.5
    assert summary["max_sensitivity"] == 0.5
    assert summary["tp_dice"] == 1.0                  # mean over matched lesions only
    assert summary["froc"]["0.5"] == 0.5
    # Hanley-McNeil with A = 1/2, n1 = 2, n2 = max(1, 0) = 1: Q1 = Q2 = 1/3,
    # SE^2 = (1/4 + (1/3 - 1/4)) / 2 = 1/6, 1.96 SE = 0.8002 -> clipped to [0, 1]
    assert summary["ap_ci95"] == [0.0, 1.0]


def false_positive_case():
    """L1 found at 0.875, an FP at 0.75, L2 found at 0.625, an FP at 0.375."""
    probability, label = two_lesions()
    probability[2:6, 2:6, 2:6] = 0.875
    probability[2:4, 18:20, 10:12] = 0.75
    probability[16:20, 16:20, 16:20] = 0.625
    probability[20:22, 2:4, 10:12] = 0.375
    return evaluate_case(probability, label, UNIT, case_id="fp")


def test_false_positives_ap_froc_and_ci():
    evaluation = false_positive_case()
    assert [(p.confidence, p.lesion) for p in evaluation.predictions] == [(0.875, 0), (0.75, -1), (0.625, 1), (0.375, -1)]
    summary = summarise([evaluation])
    # t=.875: R=1/2 P=1; t=.75: R=1/2; t=.625: R=1 P=2/3; t=.375: R=1 -> AP = 1/2 + 1/2 * 2/3
    assert summary["ap"] == pytest.approx(5 / 6)
    assert summary["fp_per_case"] == 2.0
    # FP per case at .875/.75/.625/.375 = 0/1/1/2
    assert summary["froc"] == {"0.5": 0.5, "1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0}
    # A = 5/6, n1 = 2, n2 = 2: Q1 = 5/7, Q2 = 25/33, A^2 = 25/36,
    # SE^2 = (5/36 + (5/7 - 25/36) + (25/33 - 25/36)) / 4 = 0.0554654, SE = 0.2355109,
    # 1.96 SE = 0.461601 -> [0.371732, 1.2949 -> 1]
    assert summary["ap_ci95"] == pytest.approx([0.371732, 1.0], abs=1e-6)
    thresholds, precision, recall = pr_curve([evaluation])
    assert list(thresholds) == [0.875, 0.75, 0.625, 0.375]
    assert precision == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert recall == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert operating_point([evaluation], 1.0) == 0.625
    assert operating_point([evaluation], 0.5) == 0.875
    assert operating_point([evaluation], 0.0) == 0.875
    assert operating_point([evaluation], 8.0) == 0.375


def test_hanley_mcneil_hand_example():
    # A = 0.8, n1 = 20, n2 = 10: Q1 = 0.8/1.2 = 0.666667, Q2 = 1.28/1.8 = 0.711111,
    # SE^2 = (0.16 + 19 * 0.026667 + 9 * 0.071111) / 200 = 0.0065333, SE = 0.080829
    low, high = hanley_mcneil_ci95(0.8, 20, 10)
    assert low == pytest.approx(0.8 - 1.96 * 0.0808290, abs=1e-6)
    assert high == pytest.approx(0.8 + 1.96 * 0.0808290, abs=1e-6)
    assert hanley_mcneil_ci95(0.1, 1, 1) == (0.0, pytest.approx(0.1 + 1.96 * 0.3))


def test_two_detections_inside_one_lesion_count_once_for_recall_and_twice_for_ap_strict():
    probability, label = blank()
    label[2:12, 2:12, 2:6] = 1                      # A: 400 voxels
    label[16:20, 16:20, 16:20] = 1                  # B: 64 voxels
    probability[3:5, 3:5, 3:5] = 0.875              # two separate blobs inside A
    probability[8:10, 8:10, 3:5] = 0.75
    probability[16:20, 16:20, 16:20] = 0.625        # B exactly
    evaluation = evaluate_case(probability, label, UNIT)
    assert [(p.lesion, p.is_tp) for p in evaluation.predictions] == [(0, True), (0, True), (1, True)]
    summary = summarise([evaluation])
    # all TPs: t=.875 R=1/2 P=1, t=.625 R=1 P=1 -> 1
    assert summary["ap"] == 1.0
    # strict: the 0.75 blob is an FP: t=.625 has P = 2/3 -> 1/2 + 1/2 * 2/3
    assert summary["ap_strict"] == pytest.approx(5 / 6)
    assert summary["fp_per_case"] == 0.0 and summary["max_sensitivity"] == 1.0
    # Dice(A, both blobs) = 2*16/(400+16), Dice(B) = 1
    assert evaluation.tp_overlap_voxels == [16, 64] and evaluation.tp_predicted_voxels == [16, 64]
    assert summary["tp_dice"] == pytest.approx((32 / 416 + 1.0) / 2)


def test_centroid_just_inside_and_just_outside_one_millimetre_on_an_oblique_anisotropic_grid():
    """Spacing 0.5 mm along i: the voxel box reaches 0.25 mm, the 1 mm rule reaches 2 voxels.

    Ground truth is the single voxel (10, 4, 5). A prediction of 9 voxels at i = 12 (j = 0..8)
    plus one voxel at i = 11 has its centroid at i = 11.9 (0.95 mm from the GT centre); with
    the extra voxel at i = 13 instead the centroid is at i = 12.1 (1.05 mm). Physical distances
    do not change under the rotation, so the answer holds on the oblique grid.
    """
    affine = oblique_affine((0.5, 0.8, 3.0))
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[10, 4, 5] = 1
    for extra_i, expected in ((11, True), (13, False)):
        probability = np.zeros(SHAPE, dtype=np.float32)
        probability[12, 0:9, 5] = 0.5
        probability[extra_i, 4, 5] = 0.5
        (prediction,) = evaluate_case(probability, label, affine).predictions
        assert prediction.is_tp is expected
        assert prediction.lesion == (0 if expected else -1)


def test_centroid_on_the_face_of_a_thick_voxel_is_inside_its_closed_box():
    """Slices 3 mm thick: a centroid 1.5 mm along k from the GT voxel centre lies on the box's
    face (a TP although beyond 1 mm); 2 mm along k (and 0.27 mm along j) lies outside (an FP)."""
    affine = oblique_affine((0.5, 0.8, 3.0))
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[10, 4, 5] = 1
    on_face = np.zeros(SHAPE, dtype=np.float32)
    on_face[10, 4, 5:7] = 0.5                       # centroid k = 5.5
    beyond = np.zeros(SHAPE, dtype=np.float32)
    beyond[10, 4, 5] = beyond[10, 4, 6] = beyond[10, 3, 6] = 0.5   # centroid (10, 3.67, 5.67)
    assert evaluate_case(on_face, label, affine).predictions[0].is_tp
    assert not evaluate_case(beyond, label, affine).predictions[0].is_tp


def test_matched_to_the_lesion_of_the_nearest_ground_truth_voxel():
    probability, label = blank()
    label[2:6, 2:6, 2:6] = 1                        # L1
    label[7:11, 2:6, 2:6] = 1                       # L2, one background slice (i = 6) away
    probability[5:9, 3:5, 3:5] = 0.5                # straddles both; centroid i = 6.5, nearer L2's i = 7
    (prediction,) = evaluate_case(probability, label, UNIT).predictions
    assert prediction.is_tp and prediction.lesion == 1


def test_ties_in_confidence_enter_together():
    probability, label = blank()
    label[2:5, 2:5, 2:5] = 1
    label[10:13, 2:5, 2:5] = 1
    label[18:21, 2:5, 2:5] = 1                      # never found
    probability[2:5, 2:5, 2:5] = 0.75               # TP
    probability[2:5, 18:21, 18:21] = 0.75           # FP at the same confidence
    probability[10:13, 2:5, 2:5] = 0.5              # TP
    evaluations = [evaluate_case(probability, label, UNIT)]
    # t=.75: 2 predictions, 1 TP, R=1/3 -> 1/3 * 1/2; t=.5: 3, 2 TPs, R=2/3 -> 1/3 * 2/3
    assert summarise(evaluations)["ap"] == pytest.approx(1 / 6 + 2 / 9)
    thresholds, precision, recall = pr_curve(evaluations)
    assert list(thresholds) == [0.75, 0.5]
    assert precision == pytest.approx([0.5, 2 / 3]) and recall == pytest.approx([1 / 3, 2 / 3])


def test_case_without_lesions_gives_null_ap_and_sensitivities():
    probability, label = blank()
    probability[4:6, 4:6, 4:6] = 0.5
    evaluation = evaluate_case(probability, label, UNIT, case_id="empty")
    summary = summarise([evaluation])
    for key in ("ap", "ap_ci95", "ap_strict", "max_sensitivity", "tp_dice", "lesion_entropy_bits"):
        assert summary[key] is None, key
    assert set(summary["froc"].values()) == {None}
    assert set(summary["sensitivity_by_diameter"].values()) == {None}
    assert summary["fp_per_case"] == 1.0 and summary["n_lesions"] == 0 and summary["n_predictions"] == 1
    assert operating_point([evaluation]) is None
    assert np.isnan(pr_curve([evaluation])[2]).all()
    assert "n/a" in format_summary(summary)


def test_lesion_free_case_adds_its_false_positives_to_the_pooled_curve():
    probability, label = blank()
    probability[4:6, 4:6, 4:6] = 0.75
    empty = evaluate_case(probability, label, UNIT)
    probability, label = two_lesions()
    probability[2:6, 2:6, 2:6] = 0.5
    probability[16:20, 16:20, 16:20] = 0.5
    summary = summarise([empty, evaluate_case(probability, label, UNIT)])
    # t=.75: 1 FP, R=0; t=.5: 3 predictions, 2 TPs, R=1 -> AP = 2/3
    assert summary["ap"] == pytest.approx(2 / 3)
    assert summary["fp_per_case"] == 0.5 and summary["n_cases"] == 2
    assert summary["froc"]["0.5"] == 1.0


def test_sensitivity_by_equivalent_diameter_bins():
    probability, label = np.zeros((40, 40, 40), dtype=np.float32), np.zeros((40, 40, 40), dtype=np.uint8)
    boxes = {"0-3": (slice(1, 2),) * 3,               # 1 mm3 -> 1.24 mm
             "3-6": (slice(4, 7),) * 3,               # 27 mm3 -> 3.72 mm
             "6-10": (slice(9, 14),) * 3,             # 125 mm3 -> 6.20 mm
             "10-20": (slice(16, 26),) * 3,           # 1000 mm3 -> 12.41 mm
             "20+": (slice(1, 39), slice(28, 39), slice(28, 39))}  # 4598 mm3 -> 20.63 mm
    for box in boxes.values():
        label[box] = 1
    probability[boxes["0-3"]] = 0.5
    probability[boxes["10-20"]] = 0.5
    evaluation = evaluate_case(probability, label, UNIT)
    assert sorted(evaluation.lesion_diameters_mm) == pytest.approx(
        [(6 * v / math.pi) ** (1 / 3) for v in (1, 27, 125, 1000, 38 * 11 * 11)])
    assert summarise([evaluation])["sensitivity_by_diameter"] == {
        "0-3": 1.0, "3-6": 0.0, "6-10": 0.0, "10-20": 1.0, "20+": 0.0}


def test_entropy_of_the_probability_histogram_over_lesion_voxels():
    probability, label = blank()
    label[2:6, 2, 2] = 1
    probability[2:6, 2, 2] = (0.05, 0.05, 0.55, 0.95)     # bins 5, 5, 55, 95: p = 1/2, 1/4, 1/4
    probability[10, 10, 10] = 0.95                        # not a lesion voxel: not counted
    summary = summarise([evaluate_case(probability, label, UNIT)])
    assert summary["lesion_entropy_bits"] == pytest.approx(1.5)


def test_case_evaluation_round_trips_through_json():
    evaluation = false_positive_case()
    again = CaseEvaluation.from_dict(json.loads(json.dumps(evaluation.to_dict())))
    assert again == evaluation
    assert summarise([again]) == summarise([evaluation])


def test_refusals_name_the_parameter():
    probability, label = blank()
    with pytest.raises(BrainMetSegError, match=r"label: shape \(2, 2, 2\) differs .* \(case c9\)"):
        evaluate_case(probability, np.zeros((2, 2, 2)), UNIT, case_id="c9")
    with pytest.raises(BrainMetSegError, match="threshold: 0 is not a probability threshold"):
        evaluate_case(probability, label, UNIT, threshold=0)
    with pytest.raises(BrainMetSegError, match=r"probability: values outside \[0, 1\]"):
        evaluate_case(probability - 1, label, UNIT)
    with pytest.raises(BrainMetSegError, match="evaluations: no cases to summarise"):
        summarise([])
    with pytest.raises(BrainMetSegError, match="max_fp_per_case: -1; expected a number >= 0"):
        operating_point([false_positive_case()], -1)


# ---------------------------------------------------------------------------------- CLI


def write_tiny_dataset(root, labels):
    """Cases through the real writer: four constant sequences and the given label per case."""
    affine = make_affine((1.0, 1.0, 2.0), origin=(-5.0, 3.0, 1.0))
    for case_id, label in labels.items():
        volumes = {role: Volume(np.full(label.shape, 100.0 + n, dtype=np.float32), affine)
                   for n, role in enumerate(ROLES)}
        write_case(root, case_id, volumes, Volume(label, affine))
    return affine


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", *args], capture_output=True, text=True,
                          timeout=120)


def test_evaluate_command_on_a_tiny_dataset(tmp_path):
    probability_1, label_1 = two_lesions()
    probability_1[2:6, 2:6, 2:6] = 0.875                 # L1 found, L2 missed
    probability_1[10:12, 10:12, 10:12] = 0.75            # one FP
    probability_2, label_2 = blank()                     # a case without lesions, one FP
    probability_2[4:6, 4:6, 4:6] = 0.25
    affine = write_tiny_dataset(tmp_path / "data", {"Mets_001": label_1, "Mets_002": label_2, "Mets_003": label_2})
    assert read_dataset(tmp_path / "data").ids == ["Mets_001", "Mets_002", "Mets_003"]
    for case_id, probability in (("Mets_001", probability_1), ("Mets_002", probability_2)):
        write_volume(Volume(probability, affine), tmp_path / "pred" / case_id / "probability.nii.gz")
    out = tmp_path / "metrics.json"
    result = run_cli("evaluate", "--predictions", str(tmp_path / "pred"), "--dataset", str(tmp_path / "data"),
                     "--json", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    # pooled: t=.875 R=1/2 P=1; then only FPs -> AP 1/2; 2 FPs over 2 evaluated cases (Mets_003 has no prediction)
    assert metrics["ap"] == 0.5 and metrics["max_sensitivity"] == 0.5 and metrics["fp_per_case"] == 1.0
    assert (metrics["n_cases"], metrics["n_lesions"], metrics["n_predictions"]) == (2, 2, 3)
    assert metrics["froc"]["0.5"] == 0.5 and metrics["threshold"] == 0.1
    assert set(SUMMARY_KEYS) <= set(metrics)
    assert [case["case_id"] for case in metrics["cases"]] == ["Mets_001", "Mets_002"]
    assert "AP (mAP)" in result.stdout and "Mets_002" in result.stdout
    table_row = next(line for line in result.stdout.splitlines() if line.startswith("Mets_001"))
    assert table_row.split() == ["Mets_001", "2", "1", "2", "1", "1"]

    # a higher threshold drops the 0.25 false positive
    result = run_cli("evaluate", "--predictions", str(tmp_path / "pred"), "--dataset", str(tmp_path / "data"),
                     "--json", str(out), "--threshold", "0.5")
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["n_predictions"] == 2


def test_evaluate_command_refusals(tmp_path):
    probability, label = two_lesions()
    affine = write_tiny_dataset(tmp_path / "data", {"Mets_001": label})
    write_volume(Volume(probability, affine), tmp_path / "pred" / "Mets_009" / "probability.nii.gz")
    args = ["evaluate", "--predictions", str(tmp_path / "pred"), "--dataset", str(tmp_path / "data"),
            "--json", str(tmp_path / "m.json")]
    result = run_cli(*args)
    assert result.returncode == 2
    assert f"error: {tmp_path / 'data'}: no case 'Mets_009' in the dataset" in result.stderr
    assert not (tmp_path / "m.json").exists()

    (tmp_path / "pred" / "Mets_009" / "probability.nii.gz").unlink()
    write_volume(Volume(probability + 2, affine), tmp_path / "pred" / "Mets_001" / "probability.nii.gz")
    result = run_cli(*args)
    assert result.returncode == 2
    assert f"{tmp_path / 'pred' / 'Mets_001' / 'probability.nii.gz'}: values 2 to 2; expected probabilities" in result.stderr

    result = run_cli("evaluate", "--predictions", str(tmp_path / "nowhere"), "--dataset", str(tmp_path / "data"),
                     "--json", str(tmp_path / "m.json"))
    assert result.returncode == 2 and f"{tmp_path / 'nowhere'}: predictions folder not found" in result.stderr

    (tmp_path / "pred" / "Mets_001" / "probability.nii.gz").unlink()
    result = run_cli(*args)
    assert result.returncode == 2 and "no <case id>/probability.nii.gz inside" in result.stderr


def test_evaluate_command_label_grids_and_missing_labels(tmp_path):
    probability, label = two_lesions()
    probability[2:6, 2:6, 2:6] = 0.875
    affine = write_tiny_dataset(tmp_path / "data", {"Mets_001": label})
    volumes = {role: Volume(np.ones(SHAPE, dtype=np.float32), affine) for role in ROLES}
    write_case(tmp_path / "data", "Mets_002", volumes)               # no label
    args = ["evaluate", "--predictions", str(tmp_path / "pred"), "--dataset", str(tmp_path / "data"),
            "--json", str(tmp_path / "m.json")]
    prediction = tmp_path / "pred" / "Mets_001" / "probability.nii.gz"

    # a grid shifted by one voxel still overlaps: the label is resampled onto it, with a warning
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, 0]
    write_volume(Volume(np.roll(probability, -1, axis=0), shifted), prediction)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "grid differs" in result.stderr and "label resampled onto it (nearest)" in result.stderr
    assert json.loads((tmp_path / "m.json").read_text())["tp_dice"] == 1.0

    far = affine.copy()
    far[:3, 3] += 1000.0
    write_volume(Volume(probability, far), prediction)
    result = run_cli(*args)
    assert result.returncode == 2
    assert f"error: {prediction}: does not overlap its label" in result.stderr

    prediction.unlink()
    write_volume(Volume(probability, affine), tmp_path / "pred" / "Mets_002" / "probability.nii.gz")
    result = run_cli(*args)
    assert result.returncode == 2
    assert "case Mets_002 has no seg.nii.gz or seg.nii; it cannot be evaluated" in result.stderr
