"""The main job (`brainmetseg demo`, README's first quick-start command) end to end, shortened.

Runs the real command in a subprocess with a tiny cohort and two training steps: the model is
useless, but every stage — cohort, censored training, prediction, outputs — must work, and a
second run must reuse what the first one made instead of redoing it.
"""
from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np

from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.model_folder import read_model_config


def _demo(workdir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "BrainMetSegLib", "demo", "--workdir", str(workdir), "--cases", "8",
         "--steps", "2", "--device", "cpu", *extra],
        capture_output=True, text=True, timeout=900)


def test_demo_makes_cohort_trains_on_censored_labels_and_segments_a_test_study(tmp_path):
    first = _demo(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]

    dataset = read_dataset(tmp_path / "synthetic")
    test_case = dataset.split("test")[0]
    assert "Lesions found in " + test_case.case_id in first.stdout
    outputs = tmp_path / "output" / test_case.case_id
    for name in ("probability.nii.gz", "lesions.nii.gz", "lesions.seg.nrrd", "lesions.csv"):
        assert (outputs / name).is_file(), name
        assert str(outputs / name) in first.stdout
    bravo = nib.load(str(test_case.image_paths()["bravo"]))
    probability = nib.load(str(outputs / "probability.nii.gz"))
    assert probability.shape == bravo.shape
    np.testing.assert_allclose(probability.affine, bravo.affine, atol=1e-4)

    config = read_model_config(tmp_path / "run" / "model")
    assert config.synthetic_training_data
    assert config.training["censoring"]["mode"] == "stochastic"
    assert config.training["censoring"]["rate"] == 0.5
    assert config.training["loss"] == "lopsided"

    second = _demo(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[1/3] synthetic cohort: reusing" in second.stderr
    assert "[2/3] model: reusing" in second.stderr
