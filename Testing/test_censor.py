"""Censoring (DESIGN §Method): stochastic and size-based removal of lesions, and the
`brainmetseg censor` command that writes a censored copy of a dataset."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from BrainMetSegLib.censor import censor_labels, lesion_volumes, plan_censoring
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import make_affine, read_volume
from helpers_censor import DATASET_CASES, REJECTED, SHAPE, cube_label, many_lesions, write_censor_dataset

ROOT = Path(__file__).resolve().parent.parent
EYE = np.eye(4)


def components_left(label: np.ndarray) -> int:
    import cc3d

    return int(cc3d.connected_components(label != 0, connectivity=26, return_N=True)[1])


# ---------------------------------------------------------------------------------- lesions


def test_lesions_are_26_connected_components_measured_in_mm3():
    label = cube_label((10, 10, 10), [((1, 1, 1), 2), ((6, 6, 6), 1)])
    label[3, 3, 3] = 1  # touches the first cube by a corner only: same lesion under 26-connectivity
    components, volumes = lesion_volumes(label, make_affine((0.5, 1.0, 2.0)))
    assert components.max() == 2
    np.testing.assert_allclose(volumes, [9.0, 1.0])


# ---------------------------------------------------------------------------------- stochastic


def stochastic_cases(count: int = 20, lesions: int = 50):
    return {f"case_{n:02d}": (many_lesions(lesions), EYE) for n in range(count)}


def test_stochastic_removes_about_the_rate_and_whole_lesions():
    labels = stochastic_cases()
    censored, report = censor_labels(labels, "stochastic", 0.3, seed=7)
    assert report.lesions == 1000
    assert abs(report.removed / report.lesions - 0.3) < 0.05  # binomial sd 0.0145
    for case in report.cases:
        before, _ = labels[case.case_id]
        after = censored[case.case_id]
        assert components_left(after) == len(case.kept)
        assert np.all(after <= before)  # only removal
        components, _ = lesion_volumes(before, EYE)
        for index in case.removed:
            assert not after[components == index].any()
        for index in case.kept:
            assert after[components == index].all()


def test_stochastic_is_deterministic_and_independent_of_case_order():
    labels = stochastic_cases(count=6)
    first, report = censor_labels(labels, "stochastic", 0.5, seed=3)
    again, _ = censor_labels(labels, "stochastic", 0.5, seed=3)
    backwards, _ = censor_labels(dict(reversed(list(labels.items()))), "stochastic", 0.5, seed=3)
    alone, _ = censor_labels({"case_04": labels["case_04"]}, "stochastic", 0.5, seed=3)
    other_seed, _ = censor_labels(labels, "stochastic", 0.5, seed=4)
    for case_id in labels:
        np.testing.assert_array_equal(first[case_id], again[case_id])
        np.testing.assert_array_equal(first[case_id], backwards[case_id])
    np.testing.assert_array_equal(first["case_04"], alone["case_04"])
    assert any(not np.array_equal(first[c], other_seed[c]) for c in labels)
    # identical labels under different ids are censored differently: the id seeds the stream
    assert len({tuple(case.removed) for case in report.cases}) > 1


@pytest.mark.parametrize("rate, removed", [(0.0, 0), (1.0, 50)])
def test_stochastic_extremes(rate, removed):
    _, report = censor_labels({"a": (many_lesions(50), EYE)}, "stochastic", rate, seed=0)
    assert report.removed == removed


# ---------------------------------------------------------------------------------- size


def size_cases():
    shape = (12, 12, 12)
    return {
        # volumes in mm3: b: 1, 8, 1 (raster order); a: 1, 27; c: 8 (one 2 mm voxel)
        "b": (cube_label(shape, [((0, 0, 0), 1), ((3, 3, 3), 2), ((8, 8, 8), 1)]), EYE),
        "a": (cube_label(shape, [((1, 1, 1), 1), ((5, 5, 5), 3)]), EYE),
        "c": (cube_label(shape, [((4, 4, 4), 1)]), make_affine((2.0, 2.0, 2.0))),
    }


@pytest.mark.parametrize("rate, expected", [
    (0.5, {"a": [1], "b": [1, 3], "c": []}),      # ceil(3.0): the three 1 mm3 lesions, a's first
    (0.6, {"a": [1], "b": [1, 2, 3], "c": []}),   # ceil(3.6) = 4: the 8 mm3 tie goes to b (before c)
    (0.7, {"a": [1], "b": [1, 2, 3], "c": [1]}),  # ceil(4.2) = 5
    (0.0, {"a": [], "b": [], "c": []}),
])
def test_size_removes_the_smallest_with_the_tie_rule(rate, expected):
    labels = size_cases()
    censored, report = censor_labels(labels, "size", rate, seed=0)
    assert {case.case_id: case.removed for case in report.cases} == expected
    assert report.removed == sum(len(v) for v in expected.values())
    # the plan does not depend on the order the cases are given in
    _, backwards = censor_labels(dict(reversed(list(labels.items()))), "size", rate, seed=0)
    assert {case.case_id: case.removed for case in backwards.cases} == expected
    b_components, _ = lesion_volumes(labels["b"][0], EYE)
    for index in (1, 2, 3):
        assert censored["b"][b_components == index].any() == (index not in expected["b"])


def test_size_count_is_exact_for_rates_that_floats_round_up():
    volumes = {"x": [float(v) for v in range(1, 11)]}
    assert plan_censoring(volumes, "size", 0.3, seed=0).case("x").removed == [1, 2, 3]  # 0.3 * 10 > 3 in floats
    assert plan_censoring(volumes, "size", 0.31, seed=0).case("x").removed == [1, 2, 3, 4]


def test_censoring_keeps_label_values_and_type():
    label = cube_label((8, 8, 8), [((0, 0, 0), 1), ((4, 4, 4), 2)], dtype=np.int16)
    label[4:6, 4:6, 4:6] *= 2  # a multi-label annotator's map: values 2 are lesion too
    censored, report = censor_labels({"m": (label, EYE)}, "size", 0.5, seed=0)
    assert censored["m"].dtype == np.int16
    assert not censored["m"][0, 0, 0] and np.all(censored["m"][4:6, 4:6, 4:6] == 2)


def test_report_json_and_text():
    _, report = censor_labels(size_cases(), "size", 0.5, seed=0)
    document = report.to_json()
    assert (document["mode"], document["rate"], document["seed"]) == ("size", 0.5, 0)
    assert (document["lesions"], document["kept"], document["removed"]) == (6, 3, 3)
    b = next(case for case in document["cases"] if case["id"] == "b")
    assert b["lesions"] == 3
    assert b["removed"] == [{"index": 1, "volume_mm3": 1.0}, {"index": 3, "volume_mm3": 1.0}]
    assert b["kept"] == [{"index": 2, "volume_mm3": 8.0}]
    text = report.to_text().splitlines()
    assert text[0] == "censoring: size-based, rate 0.5, seed 0: removed 3 of 6 lesion(s) in 3 case(s)"
    assert text[1].split() == ["case", "lesions", "kept", "removed", "removed", "mm3"]
    assert text[2].split() == ["b", "3", "1", "2", "2.0"]
    assert text[-1].split() == ["all", "6", "3", "3", "3.0"]


@pytest.mark.parametrize("mode, rate, seed, message", [
    ("random", 0.5, 0, "censoring mode: 'random'; expected one of stochastic, size"),
    ("size", 1.5, 0, "censoring rate: 1.5; expected a fraction of lesions between 0 and 1"),
    ("size", -0.1, 0, "censoring rate: -0.1; expected a fraction"),
    ("size", float("nan"), 0, "censoring rate: nan; expected a fraction"),
    ("stochastic", 0.5, -1, "censoring seed: -1; expected a non-negative integer"),
    ("stochastic", 0.5, 1.5, "censoring seed: 1.5; expected a non-negative integer"),
])
def test_bad_options_are_refused(mode, rate, seed, message):
    with pytest.raises(BrainMetSegError) as info:
        censor_labels({"a": (many_lesions(3), EYE)}, mode, rate, seed)
    assert message in str(info.value)


@pytest.mark.parametrize("label, message", [
    (np.full((4, 4, 4), -1, dtype=np.int8), "Mets_3: negative label value -1; expected 0 (background) and 1 (lesion)"),
    (np.full((4, 4, 4), 0.5, dtype=np.float32), "Mets_3: non-integer label values"),
    (np.zeros((4, 4), dtype=np.uint8), "Mets_3: label of shape (4, 4) (uint8); expected a 3D label map"),
])
def test_bad_labels_are_refused_naming_the_case(label, message):
    with pytest.raises(BrainMetSegError) as info:
        censor_labels({"Mets_3": (label, EYE)}, "size", 0.5, 0)
    assert message in str(info.value)


def test_bad_affine_is_refused_naming_the_case():
    with pytest.raises(BrainMetSegError, match="Mets_3: affine: expected a finite, invertible 4x4"):
        censor_labels({"Mets_3": (many_lesions(2), np.zeros((4, 4)))}, "size", 0.5, 0)


# ---------------------------------------------------------------------------------- command


def run_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "BrainMetSeg"))
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", "censor", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def dataset(tmp_path):
    return write_censor_dataset(tmp_path / "data")


def test_cli_writes_censored_copy(tmp_path, dataset):
    out = tmp_path / "censored"
    result = run_cli("--dataset", dataset, "--mode", "size", "--rate", 0.5, "--out", out)
    assert result.returncode == 0, result.stderr

    copy = read_dataset(out)
    assert copy.ids == list(DATASET_CASES)
    statuses = {case.case_id: (case.split, case.label_status) for case in copy.cases}
    assert statuses == {"Mets_001": ("train", "partial"), "Mets_002": ("train", "partial"),
                        "Mets_003": ("val", "partial"), "Mets_004": ("test", "complete"),
                        "Mets_005": ("train", "none")}
    assert copy.get("Mets_002").rejected == REJECTED

    # images carried byte for byte, as hard links; test label untouched
    for case_id in DATASET_CASES:
        for role in ROLES:
            name = f"{role}.nii.gz"
            assert (out / case_id / name).read_bytes() == (dataset / case_id / name).read_bytes()
            assert os.path.samefile(out / case_id / name, dataset / case_id / name)
    assert (out / "Mets_004" / "seg.nii.gz").read_bytes() == (dataset / "Mets_004" / "seg.nii.gz").read_bytes()
    assert not (out / "Mets_005" / "seg.nii.gz").exists()

    # the three smallest train/val lesions are gone (the 8 mm3 tie goes to Mets_002), the rest intact
    kept = {"Mets_001": [((8, 8, 8), 3)], "Mets_002": [((8, 8, 8), 4)], "Mets_003": [((8, 8, 8), 2)]}
    for case_id, cubes in kept.items():
        censored = read_volume(out / case_id / "seg.nii.gz")
        np.testing.assert_array_equal(censored.array, cube_label(SHAPE, cubes))
        np.testing.assert_allclose(censored.affine, read_volume(dataset / case_id / "seg.nii.gz").affine)
    assert copy.get("Mets_003").load().label.sum() == 8

    report = json.loads((out / "censoring.json").read_text())
    assert report["source"] == str(dataset.resolve())
    assert (report["mode"], report["rate"], report["lesions"], report["kept"], report["removed"]) == ("size", 0.5, 6, 3, 3)
    assert [case["id"] for case in report["cases"]] == ["Mets_001", "Mets_002", "Mets_003"]
    assert [len(case["removed"]) for case in report["cases"]] == [1, 1, 1]
    assert report["cases"][1]["removed"] == [{"index": 1, "volume_mm3": 8.0}]

    lines = result.stdout.splitlines()
    assert lines[0] == "censoring: size-based, rate 0.5, seed 0: removed 3 of 6 lesion(s) in 3 case(s)"
    assert ["Mets_002", "2", "1", "1", "8.0"] in [line.split() for line in lines]
    assert ["all", "6", "3", "3", "10.0"] in [line.split() for line in lines]
    assert f"report: {out / 'censoring.json'}" in result.stdout


def test_cli_refuses_existing_output_unless_overwrite(tmp_path, dataset):
    out = tmp_path / "censored"
    assert run_cli("--dataset", dataset, "--mode", "stochastic", "--rate", 0.5, "--seed", 1, "--out", out).returncode == 0
    first = {case_id: (out / case_id / "seg.nii.gz").read_bytes() for case_id in ("Mets_001", "Mets_002", "Mets_003")}
    (out / "Mets_001" / "flair.nii").write_bytes(b"stale twin")

    refused = run_cli("--dataset", dataset, "--mode", "stochastic", "--rate", 0.5, "--seed", 1, "--out", out)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: {out}: already exists and is not empty; pass --overwrite " \
                                     "(overwrite=True) to replace it"

    again = run_cli("--dataset", dataset, "--mode", "stochastic", "--rate", 0.5, "--seed", 1, "--out", out,
                    "--overwrite", "--copy")
    assert again.returncode == 0, again.stderr
    for case_id, data in first.items():  # same seed, same censoring
        assert (out / case_id / "seg.nii.gz").read_bytes() == data
    assert not (out / "Mets_001" / "flair.nii").exists()
    assert not os.path.samefile(out / "Mets_001" / "bravo.nii.gz", dataset / "Mets_001" / "bravo.nii.gz")
    assert (out / "Mets_001" / "bravo.nii.gz").read_bytes() == (dataset / "Mets_001" / "bravo.nii.gz").read_bytes()


@pytest.mark.parametrize("extra, message", [
    (("--rate", "1.5"), "error: censoring rate: 1.5; expected a fraction of lesions between 0 and 1"),
    (("--rate", "0.5", "--seed", "-2"), "error: censoring seed: -2; expected a non-negative integer"),
])
def test_cli_refuses_bad_options(tmp_path, dataset, extra, message):
    result = run_cli("--dataset", dataset, "--mode", "size", "--out", tmp_path / "out", *extra)
    assert result.returncode == 2 and result.stderr.strip() == message
    assert not (tmp_path / "out").exists()


def test_cli_refuses_writing_over_the_source(dataset):
    result = run_cli("--dataset", dataset, "--mode", "size", "--rate", 0.5, "--out", dataset, "--overwrite")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {dataset}: is the source dataset; censoring writes a copy, " \
                                    "choose another --out folder"


def test_cli_refuses_a_dataset_without_training_labels(tmp_path):
    from BrainMetSegLib.dataset import CaseEntry, write_dataset_json

    root = write_censor_dataset(tmp_path / "data")
    cases = read_dataset(root).cases
    write_dataset_json(root, [CaseEntry(c.case_id, c.folder, "test", c.label_status, c.rejected) for c in cases])
    result = run_cli("--dataset", root, "--mode", "size", "--rate", 0.5, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {root}: no labelled train or val case to censor"
