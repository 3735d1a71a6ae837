"""Inference end to end: frames on the device, lesions on the input grid, the four outputs, the CLI."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.frames import prepare_case
from BrainMetSegLib.lesions import find_lesions
from BrainMetSegLib.model_card import SYNTHETIC_WARNING, ModelConfig
from BrainMetSegLib.model_folder import save_model_folder
from BrainMetSegLib.network import build_network
from BrainMetSegLib.predict import (
    Cancelled,
    Prediction,
    Predictor,
    predict_case,
    predict_probability,
    write_prediction,
)
from BrainMetSegLib.seg_nrrd import read_segmentation_nrrd
from BrainMetSegLib.volumes import read_volume
from helpers_predict import (
    BRAIN_SLICES,
    CASE_AFFINE,
    CASE_SHAPE,
    SPHERES,
    BrightSpotNetwork,
    expected_probabilities,
    make_model_folder,
    sphere_case,
    sphere_centres_ras,
    sphere_voxels,
    spheres_probability,
    write_sphere_case,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("model") / "tiny", threshold=0.2, operating_point=0.5)


@pytest.fixture(scope="module")
def bright_prediction(model_folder) -> Prediction:
    predictor = Predictor(model_folder, device="cpu", batch_size=3)
    predictor.network = BrightSpotNetwork()
    return predictor.predict(sphere_case())


def test_bright_spheres_come_back_as_lesions_ordered_by_confidence(bright_prediction):
    prediction = bright_prediction
    assert prediction.probability.shape == CASE_SHAPE and prediction.probability.dtype == np.float32
    np.testing.assert_array_equal(prediction.affine, CASE_AFFINE)
    assert prediction.threshold == 0.2 and prediction.model_name == "tiny-test-model"
    assert SYNTHETIC_WARNING in prediction.warnings
    assert len(prediction.lesions) == 2
    first, second = prediction.lesions
    assert [first.index, second.index] == [1, 2]
    # confidences and sizes computed by hand: the spheres' probabilities and voxel counts
    assert [first.confidence, second.confidence] == pytest.approx(expected_probabilities(), abs=1e-3)
    assert [first.voxels, second.voxels] == sphere_voxels()
    # lesion 1 is the bright sphere, lesion 2 the dim one; at equal spacing the way to the model
    # grid and back is exact, so each centroid is its sphere's centre
    for lesion, centre in zip(prediction.lesions, sphere_centres_ras()):
        np.testing.assert_allclose(lesion.centroid_ras, centre, atol=1e-4)
    # the component map on the input grid covers each sphere's centre with its label
    for label, (centre, _, _) in enumerate(SPHERES, start=1):
        assert prediction.components[centre] == label
    assert set(np.unique(prediction.components)) == {0, 1, 2}


def test_lesions_keep_their_place_when_the_model_grid_differs(tmp_path):
    """A 2 mm model on a 3 mm study: resampled there and back, lesions stay put."""
    folder = make_model_folder(tmp_path / "fine", size=96, spacing_mm=2.0, threshold=0.2)
    predictor = Predictor(folder, device="cpu", batch_size=8)
    predictor.network = BrightSpotNetwork()
    prediction = predictor.predict(sphere_case())
    assert prediction.probability.shape == CASE_SHAPE
    assert len(prediction.lesions) == 2
    for lesion, centre, voxels in zip(prediction.lesions, sphere_centres_ras(), sphere_voxels()):
        assert np.linalg.norm(np.asarray(lesion.centroid_ras) - centre) < 1.0
        assert 0.7 * voxels <= lesion.voxels <= 1.3 * voxels
    assert prediction.lesions[0].confidence > prediction.lesions[1].confidence


def test_slices_without_brain_are_not_run_and_stay_zero(model_folder):
    case = sphere_case()
    predictor = Predictor(model_folder, device="cpu")
    config = predictor.config
    prepared = prepare_case(case, config.pixel_spacing_mm, config.slice_spacing_mm, config.in_plane_size)
    network = BrightSpotNetwork(offset=-100.0)  # would call every frame a lesion
    probability = predict_probability(network, prepared, torch.device("cpu"), batch_size=4)
    brain_slices = np.asarray(prepared.brain).any(axis=(1, 2))
    assert network.frames == int(brain_slices.sum()) < len(brain_slices)
    assert np.all(probability[~brain_slices] == 0)
    assert np.all(probability[brain_slices] > 0.99)
    assert network.calls == -(-int(brain_slices.sum()) // 4)


def test_cancel_stops_within_one_batch(model_folder):
    case = sphere_case()
    predictor = Predictor(model_folder, device="cpu", batch_size=2)
    predictor.network = network = BrightSpotNetwork()
    messages = []
    with pytest.raises(Cancelled, match="cancelled after 1 of"):
        predictor.predict(case, progress=lambda f, m: messages.append((f, m)), cancel=lambda: network.calls >= 1)
    assert network.calls == 1
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] < 0.9


def test_progress_reaches_one_through_every_stage(model_folder):
    predictor = Predictor(model_folder, device="cpu", batch_size=4)
    predictor.network = BrightSpotNetwork()
    messages = []
    predictor.predict(sphere_case("study"), progress=lambda f, m: messages.append((f, m)))
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    text = " ".join(m for _, m in messages)
    for stage in ("resampling", "batch 1 of", "mapping back", "finding lesions", "2 lesion(s)"):
        assert stage in text
    assert all(m.startswith("study: ") for _, m in messages)


def test_threshold_argument_overrides_model_json(model_folder):
    assert Predictor(model_folder, device="cpu").threshold == 0.2
    predictor = Predictor(model_folder, device="cpu", threshold=0.9)
    assert predictor.threshold == 0.9
    predictor.network = BrightSpotNetwork()
    prediction = predictor.predict(sphere_case())
    # the dim sphere (p about 0.70) falls below 0.9; the bright one (about 0.97) stays whole
    assert prediction.threshold == 0.9
    assert len(prediction.lesions) == 1
    assert prediction.lesions[0].voxels == sphere_voxels()[0]
    assert np.linalg.norm(np.asarray(prediction.lesions[0].centroid_ras) - sphere_centres_ras()[0]) < 1e-6
    with pytest.raises(BrainMetSegError, match="threshold: 1.5 is not a probability threshold"):
        Predictor(model_folder, device="cpu", threshold=1.5)
    with pytest.raises(BrainMetSegError, match="batch size: expected a positive integer, got 0"):
        Predictor(model_folder, device="cpu", batch_size=0)


def test_model_without_every_sequence_is_refused(tmp_path):
    network = build_network("mobilenet_v3_large", in_channels=15, num_classes=2)
    config = ModelConfig(name="three-roles", backbone="mobilenet_v3_large", input_roles=["t1_gd", "bravo", "flair"],
                         pixel_spacing_mm=[3.0, 3.0], slice_spacing_mm=3.0, in_plane_size=[64, 64])
    folder = save_model_folder(tmp_path / "three", network.state_dict(), config)
    with pytest.raises(BrainMetSegError, match=r"three: the model takes t1_gd, bravo, flair; inference needs all of "
                                               r"t1_pre, t1_gd, bravo, flair"):
        Predictor(folder, device="cpu")


def test_real_network_predicts_on_the_input_grid(model_folder):
    """The untrained MobileNetV3 model through predict_case: meaningless values, exact geometry."""
    prediction = predict_case(model_folder, sphere_case(), device="cpu")
    assert prediction.probability.shape == CASE_SHAPE
    assert np.all((prediction.probability >= 0) & (prediction.probability <= 1))
    np.testing.assert_array_equal(prediction.affine, CASE_AFFINE)
    # input slices without brain map back from model slices that were never run
    assert np.all(prediction.probability[:, :BRAIN_SLICES[0] - 1, :] == 0)
    components, lesions = find_lesions(prediction.probability, CASE_AFFINE, threshold=0.2)
    np.testing.assert_array_equal(prediction.components, components)
    assert len(prediction.lesions) == len(lesions)


def _known_prediction() -> Prediction:
    probability = spheres_probability(CASE_SHAPE, [((6, 6, 6), 2.5, 0.55), ((17, 12, 15), 3.0, 0.9)])
    components, lesions = find_lesions(probability, CASE_AFFINE, threshold=0.1)
    return Prediction("known", probability, components, lesions, CASE_AFFINE.copy(), 0.1, "test", [])


def test_write_prediction_outputs_share_the_input_geometry(tmp_path):
    prediction = _known_prediction()
    paths = write_prediction(prediction, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"probability.nii.gz", "lesions.nii.gz", "lesions.seg.nrrd",
                                                "lesions.csv"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values())

    probability = read_volume(paths["probability"])
    np.testing.assert_allclose(probability.affine, CASE_AFFINE, atol=1e-5)
    assert nib.load(str(paths["probability"])).get_data_dtype() == np.float32
    np.testing.assert_array_equal(probability.array, prediction.probability)

    labels = read_volume(paths["lesions"])
    np.testing.assert_allclose(labels.affine, CASE_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(labels.array, prediction.components)
    # label 1 is the most confident lesion (the 0.9 sphere)
    assert prediction.probability[labels.array == 1].mean() == pytest.approx(0.9)
    assert prediction.probability[labels.array == 2].mean() == pytest.approx(0.55)

    with open(paths["table"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["id"]) for r in rows] == [1, 2]
    assert [float(r["confidence"]) for r in rows] == pytest.approx([0.9, 0.55], abs=1e-4)
    assert [int(r["voxels"]) for r in rows] == [int(np.sum(labels.array == i)) for i in (1, 2)]

    labelmap, affine, segments = read_segmentation_nrrd(paths["segmentation"])
    np.testing.assert_array_equal(labelmap, prediction.components)
    np.testing.assert_allclose(affine, CASE_AFFINE, atol=1e-9)
    assert [s["name"] for s in segments] == ["Lesion 1", "Lesion 2"]
    assert [float(s["tags"]["Confidence"]) for s in segments] == pytest.approx([0.9, 0.55], abs=1e-4)


def test_write_prediction_refuses_existing_outputs_unless_overwrite(tmp_path):
    prediction = _known_prediction()
    write_prediction(prediction, tmp_path)
    before = (tmp_path / "lesions.csv").read_text()
    prediction.lesions = prediction.lesions[:1]
    prediction.components = np.where(prediction.components == 1, 1, 0).astype(np.int32)
    with pytest.raises(BrainMetSegError, match=r"probability\.nii\.gz: already exists \(and 3 more output file\(s\)\)"
                                               r"; pass --overwrite"):
        write_prediction(prediction, tmp_path)
    assert (tmp_path / "lesions.csv").read_text() == before
    write_prediction(prediction, tmp_path, overwrite=True)
    assert len((tmp_path / "lesions.csv").read_text().splitlines()) == 2


# ---------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "BrainMetSeg"))
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", "predict", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_four_files_write_outputs_on_the_bravo_grid_and_print_the_table(tmp_path, model_folder):
    paths = write_sphere_case(tmp_path)
    bravo = nib.load(str(paths["bravo"]))
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(bravo.dataobj) != 0).astype(np.uint8), bravo.affine), str(mask))
    out = tmp_path / "out"
    result = _cli("--model", str(model_folder), "--t1-pre", str(paths["t1_pre"]), "--t1-gd", str(paths["t1_gd"]),
                  "--bravo", str(paths["bravo"]), "--flair", str(paths["flair"]), "--mask", str(mask),
                  "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "lesion(s) at probability >= 0.2" in result.stdout and "confidence >= 0.5" in result.stdout
    assert "SYNTHETIC DATA" in result.stderr
    for name in ("probability.nii.gz", "lesions.nii.gz"):
        image = nib.load(str(out / name))
        assert image.shape == bravo.shape
        np.testing.assert_allclose(image.affine, bravo.affine, atol=1e-5)
        assert f"wrote {out / name}" in result.stdout
    labels = np.asarray(nib.load(str(out / "lesions.nii.gz")).dataobj)
    with open(out / "lesions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["id"]) for r in rows] == list(range(1, int(labels.max()) + 1))
    assert [int(r["voxels"]) for r in rows] == [int(np.sum(labels == int(r["id"]))) for r in rows]
    for row in rows:  # the printed table lists every lesion with its voxel count
        assert any(line.split()[:1] == [row["id"]] and line.split()[-1] == row["voxels"]
                   for line in result.stdout.splitlines())
    _, affine, segments = read_segmentation_nrrd(out / "lesions.seg.nrrd")
    np.testing.assert_allclose(affine, bravo.affine, atol=1e-5)
    assert len(segments) == len(rows)


def test_cli_case_refuses_existing_outputs_then_overwrites_when_asked(tmp_path, model_folder):
    case = tmp_path / "Mets_007"
    case.mkdir()
    write_sphere_case(case)
    out = tmp_path / "out"
    write_prediction(_known_prediction(), out)
    before = (out / "lesions.csv").read_text()
    refused = _cli("--model", str(model_folder), "--case", str(case), "--out", str(out), "--device", "cpu")
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: {out / 'probability.nii.gz'}: already exists")
    assert "--overwrite" in refused.stderr
    assert (out / "lesions.csv").read_text() == before
    overwritten = _cli("--model", str(model_folder), "--case", str(case), "--out", str(out), "--device", "cpu",
                       "--threshold", "0.5", "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr
    assert "Mets_007: " in overwritten.stdout and "lesion(s) at probability >= 0.5" in overwritten.stdout
    assert (out / "lesions.csv").read_text() != before
    assert nib.load(str(out / "probability.nii.gz")).shape == CASE_SHAPE


def test_cli_dataset_split_writes_one_folder_per_case(tmp_path, model_folder):
    dataset = tmp_path / "data"
    for case_id in ("Mets_001", "Mets_002", "Mets_003"):
        (dataset / case_id).mkdir(parents=True)
        write_sphere_case(dataset / case_id)
    (dataset / "dataset.json").write_text(json.dumps({"format": 1, "cases": [
        {"id": "Mets_001", "split": "train", "label": "none", "rejected": []},
        {"id": "Mets_002", "split": "test", "label": "none", "rejected": []},
        {"id": "Mets_003", "split": "test", "label": "none", "rejected": []},
    ]}))
    out = tmp_path / "out"
    result = _cli("--model", str(model_folder), "--dataset", str(dataset), "--out", str(out),
                  "--device", "cpu", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["Mets_002", "Mets_003"]
    for case_id in ("Mets_002", "Mets_003"):
        assert sorted(p.name for p in (out / case_id).iterdir()) == [
            "lesions.csv", "lesions.nii.gz", "lesions.seg.nrrd", "probability.nii.gz"]
        assert f"{case_id}: " in result.stdout


def test_cli_refuses_incomplete_or_conflicting_inputs(tmp_path, model_folder):
    paths = write_sphere_case(tmp_path)
    out = str(tmp_path / "out")
    partial = _cli("--model", str(model_folder), "--t1-pre", str(paths["t1_pre"]), "--bravo", str(paths["bravo"]),
                   "--out", out)
    assert partial.returncode == 2
    assert partial.stderr.strip() == "error: input: missing --t1-gd, --flair; a study needs all four sequences"
    both = _cli("--model", str(model_folder), "--case", str(tmp_path), "--dataset", str(tmp_path), "--out", out)
    assert both.returncode == 2 and "give exactly one of" in both.stderr and "--case and --dataset" in both.stderr
    absent = _cli("--model", str(model_folder), "--t1-pre", str(paths["t1_pre"]), "--t1-gd", str(paths["t1_gd"]),
                  "--bravo", str(tmp_path / "nope.nii.gz"), "--flair", str(paths["flair"]), "--out", out)
    assert absent.returncode == 2 and f"error: {tmp_path / 'nope.nii.gz'}: --bravo file not found" in absent.stderr
    mask_alone = _cli("--model", str(model_folder), "--case", str(tmp_path), "--mask", str(paths["bravo"]),
                      "--out", out)
    assert mask_alone.returncode == 2
    assert mask_alone.stderr.strip() == "error: --mask: only used with the four sequence files"
    no_case = _cli("--model", str(model_folder), "--case", str(tmp_path / "Mets_404"), "--out", out)
    assert no_case.returncode == 2 and f"error: {tmp_path / 'Mets_404'}: --case folder not found" in no_case.stderr
    (tmp_path / "data" / "Mets_001").mkdir(parents=True)
    write_sphere_case(tmp_path / "data" / "Mets_001")  # scanned without dataset.json: all train
    no_test = _cli("--model", str(model_folder), "--dataset", str(tmp_path / "data"), "--out", out)
    assert no_test.returncode == 2
    assert no_test.stderr.strip() == f"error: {tmp_path / 'data'}: no case in split 'test'"
    no_model = _cli("--model", "no-such-model", "--case", str(tmp_path), "--out", out)
    assert no_model.returncode == 2 and "error: model 'no-such-model': no such folder" in no_model.stderr
    assert not Path(out).exists()
