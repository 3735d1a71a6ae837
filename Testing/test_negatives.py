"""Known negatives: balls around rejected candidate centroids, labelled voxels excluded."""
from __future__ import annotations

import math

import numpy as np
import pytest

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.negatives import known_negative_mask
from helpers_frames import centred_affine, voxel_ras
from helpers_volumes import OBLIQUE


def brute_force(points, affine, shape, radius):
    ras = voxel_ras(affine, shape)
    mask = np.zeros(shape, dtype=bool)
    for point in points:
        mask |= np.linalg.norm(ras - np.asarray(point), axis=-1) <= radius
    return mask


def test_ball_has_the_volume_of_its_radius():
    affine = centred_affine((40, 40, 40), (0.5, 0.5, 0.5), None)
    mask = known_negative_mask([[0.2, -0.1, 0.3]], affine, (40, 40, 40), radius_mm=4.0)
    assert mask.sum() * 0.125 == pytest.approx(4 / 3 * math.pi * 4.0 ** 3, rel=0.03)


def test_matches_distances_on_the_whole_grid_for_an_oblique_grid():
    shape = (30, 26, 12)
    affine = centred_affine(shape, (0.8, 1.1, 2.5), OBLIQUE)
    points = [[0.0, 0.0, 0.0], [5.0, -3.0, 4.0], [11.0, 9.0, -13.0], [200.0, 0.0, 0.0]]  # partly / fully outside
    mask = known_negative_mask(points, affine, shape, radius_mm=5.0)
    np.testing.assert_array_equal(mask, brute_force(points, affine, shape, 5.0))
    assert mask.any()
    assert not known_negative_mask([[200.0, 0.0, 0.0]], affine, shape).any()
    assert not known_negative_mask([], affine, shape).any()


def test_labelled_voxels_are_excluded():
    shape = (20, 20, 20)
    affine = centred_affine(shape, (1.0, 1.0, 1.0), None)
    label = np.zeros(shape, dtype=np.uint8)
    label[9:12, 9:12, 9:12] = 1
    mask = known_negative_mask([[0.0, 0.0, 0.0]], affine, shape, exclude=label)
    np.testing.assert_array_equal(mask, brute_force([[0.0, 0.0, 0.0]], affine, shape, 4.0) & (label == 0))


@pytest.mark.parametrize("points, radius, exclude, message", [
    ([[1.0, 2.0]], 4.0, None, "rejected: [[1.0, 2.0]]; expected a list of [R, A, S] points"),
    ([[1.0, float("nan"), 2.0]], 4.0, None, "rejected: [[1.0, nan, 2.0]]; expected a list of [R, A, S] points"),
    ([[1.0, 2.0, 3.0]], 0.0, None, "known-negative radius: 0.0; expected a positive number of mm"),
    ([[1.0, 2.0, 3.0]], 4.0, np.zeros((3, 3, 3)), "exclude: shape (3, 3, 3) differs from the grid's (5, 5, 5)"),
])
def test_refusals(points, radius, exclude, message):
    with pytest.raises(BrainMetSegError) as info:
        known_negative_mask(points, np.eye(4), (5, 5, 5), radius_mm=radius, exclude=exclude)
    assert message in str(info.value)
