"""Probability outside the brain (widened by a margin) is zeroed, by default, on the model grid."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from BrainMetSegLib.brain_margin import (
    DEFAULT_BRAIN_MARGIN_MM,
    brain_neighbourhood,
    dilate_box,
    margin_voxels,
)
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.predict import Predictor
from helpers_predict import BrightSpotNetwork, make_model_folder, sphere_case


def test_box_dilation_matches_scipy_and_clips_at_the_border():
    rng = np.random.default_rng(3)
    mask = rng.random((17, 13, 11)) > 0.97
    for radius in [(0, 0, 0), (1, 2, 3), (4, 0, 1)]:
        expected = ndimage.binary_dilation(mask, structure=np.ones([2 * r + 1 for r in radius], dtype=bool))
        np.testing.assert_array_equal(dilate_box(torch.from_numpy(mask), radius).numpy(), expected)
    corner = np.zeros((6, 6, 6), dtype=bool)
    corner[0, 0, 5] = True
    grown = dilate_box(torch.from_numpy(corner), (2, 1, 3)).numpy()
    assert grown.sum() == 3 * 2 * 4 and grown[:3, :2, 2:].all()


def test_margin_in_voxels_follows_the_spacing_of_each_axis():
    assert DEFAULT_BRAIN_MARGIN_MM == 5.0
    assert margin_voxels(np.diag([1.0, 0.9375, 0.9375, 1.0]), 5.0) == (5, 5, 5)
    assert margin_voxels(np.diag([3.0, 2.0, 0.5, 1.0]), 5.0) == (1, 2, 10)
    assert margin_voxels(np.diag([3.0, 3.0, 3.0, 1.0]), 6.0) == (2, 2, 2)  # a centre exactly at the margin counts
    assert margin_voxels(np.diag([1.0, 1.0, 1.0, 1.0]), 0.0) == (0, 0, 0)
    rotated = np.array([[0, 2.0, 0, 0], [0, 0, -4.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    assert margin_voxels(rotated, 4.5) == (4, 2, 1)
    brain = np.zeros((5, 5, 5), dtype=bool)
    brain[2, 2, 2] = True
    near = brain_neighbourhood(brain, np.diag([1.0, 2.0, 4.0, 1.0]), 2.0, torch.device("cpu")).numpy()
    np.testing.assert_array_equal(np.argwhere(near).min(axis=0), [0, 1, 2])
    np.testing.assert_array_equal(np.argwhere(near).max(axis=0), [4, 3, 2])


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("margin") / "tiny", threshold=0.2)


def _everything_lesion(folder, **options):
    predictor = Predictor(folder, device="cpu", batch_size=8, **options)
    predictor.network = BrightSpotNetwork(offset=-100.0)  # p ~ 1 in every frame it runs
    return predictor, predictor.predict(sphere_case())


def test_default_margin_zeroes_the_probability_beyond_the_widened_brain(model_folder):
    """The sphere study: 3 mm voxels, brain = box [2:22, 3:17, 2:20], axial axis j. 5 mm is one
    voxel, so p ~ 1 on the brain box grown by one voxel in-plane (slices without brain are never
    run), 0 elsewhere, where the network put ~1 too."""
    predictor, prediction = _everything_lesion(model_folder)
    assert predictor.brain_margin_mm == DEFAULT_BRAIN_MARGIN_MM
    expected = np.zeros(prediction.probability.shape, dtype=bool)
    expected[1:23, 3:17, 1:21] = True
    assert np.all(prediction.probability[expected] > 0.99)
    assert np.all(prediction.probability[~expected] == 0)
    _, kept = _everything_lesion(model_folder, brain_margin_mm=None)
    inside_slices = np.zeros(prediction.probability.shape, dtype=bool)
    inside_slices[:, 3:17, :] = True
    assert np.all(kept.probability[inside_slices] > 0.99)
    _, wider = _everything_lesion(model_folder, brain_margin_mm=6.0)
    two_voxels = np.zeros(prediction.probability.shape, dtype=bool)
    two_voxels[0:24, 3:17, 0:22] = True
    assert np.all(wider.probability[two_voxels] > 0.99) and np.all(wider.probability[~two_voxels] == 0)


@pytest.mark.parametrize("margin", [-1.0, float("nan"), "5", True])
def test_a_bad_margin_is_refused_naming_it(model_folder, margin):
    with pytest.raises(BrainMetSegError, match=r"^brain margin: .* mm; expected a number of mm >= 0"):
        Predictor(model_folder, device="cpu", brain_margin_mm=margin)
