"""Case validation (DESIGN §Data): reference grid, resampling with warnings, label and brain rules."""
from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest

from BrainMetSegLib.case import case_from_volumes, load_case
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.roles import LABEL_ROLE, ROLES
from BrainMetSegLib.volumes import Volume, make_affine, resample_like, write_volume
from helpers_volumes import OBLIQUE, blob_case, write_case_files


def test_load_case_from_files(tmp_path):
    folder = tmp_path / "Mets_007"
    paths = write_case_files(folder, spacing=(0.9, 1.1, 2.0), origin=(5.0, -3.0, 1.0), direction=OBLIQUE)
    case = load_case({role: paths[role] for role in ROLES}, label=paths[LABEL_ROLE])
    volumes, label = blob_case(spacing=(0.9, 1.1, 2.0), origin=(5.0, -3.0, 1.0), direction=OBLIQUE)
    assert case.case_id == "Mets_007"
    assert case.images.dtype == np.float32 and case.images.shape == (4, 10, 11, 12)
    for channel, role in enumerate(ROLES):
        np.testing.assert_array_equal(case.images[channel], volumes[role].array)
    np.testing.assert_allclose(case.affine, volumes["bravo"].affine, atol=1e-5)
    np.testing.assert_allclose(case.spacing, (0.9, 1.1, 2.0), atol=1e-5)
    assert case.label.dtype == np.uint8 and int(case.label.sum()) == 8
    np.testing.assert_array_equal(case.brain, volumes["bravo"].array != 0)
    assert case.warnings == []


def test_case_id_given_and_no_label(tmp_path):
    paths = write_case_files(tmp_path / "x", suffix=".nii", with_label=False)
    case = load_case(paths, case_id="mine")
    assert case.case_id == "mine" and case.label is None


def test_other_grid_is_resampled_with_a_warning(tmp_path, caplog):
    volumes, label = blob_case()
    coarse = Volume(volumes["flair"].array[::2, ::2, ::2].copy(), make_affine((2.0, 2.0, 2.0)))
    paths = write_case_files(tmp_path / "c")
    write_volume(coarse, paths["flair"])
    with caplog.at_level(logging.WARNING):
        case = load_case({role: paths[role] for role in ROLES})
    assert len(case.warnings) == 1
    warning = case.warnings[0]
    assert str(paths["flair"]) in warning and "resampled onto the bravo grid (linear)" in warning
    assert "5x6x6" in warning and "10x11x12" in warning
    assert warning in caplog.text
    expected = resample_like(coarse, volumes["bravo"], order=1).array
    np.testing.assert_allclose(case.images[ROLES.index("flair")], expected, rtol=1e-6)
    # the other channels are untouched
    np.testing.assert_array_equal(case.images[ROLES.index("t1_pre")], volumes["t1_pre"].array)


def test_no_overlap_is_refused(tmp_path):
    paths = write_case_files(tmp_path / "c")
    volumes, _ = blob_case(origin=(500.0, 0.0, 0.0))
    write_volume(volumes["t1_gd"], paths["t1_gd"])
    with pytest.raises(BrainMetSegError) as info:
        load_case({role: paths[role] for role in ROLES})
    assert str(paths["t1_gd"]) in str(info.value) and "does not overlap bravo" in str(info.value)


def test_missing_and_unknown_roles_are_refused():
    volumes, _ = blob_case()
    del volumes["flair"]
    with pytest.raises(BrainMetSegError, match="missing sequence.*flair"):
        case_from_volumes(volumes)
    volumes, _ = blob_case()
    volumes["t2"] = volumes["bravo"]
    with pytest.raises(BrainMetSegError, match="unknown sequence role.*t2"):
        case_from_volumes(volumes)


def test_unreadable_sequence_names_its_file(tmp_path):
    paths = write_case_files(tmp_path / "c")
    nib.save(nib.Nifti1Image(np.ones((10, 11, 12, 2), np.float32), np.eye(4)), str(paths["flair"]))
    with pytest.raises(BrainMetSegError) as info:
        load_case({role: paths[role] for role in ROLES})
    assert str(paths["flair"]) in str(info.value) and "4D image" in str(info.value)


def test_in_memory_non_finite_is_refused():
    volumes, _ = blob_case()
    volumes["t1_pre"].array[1, 1, 1] = np.nan
    with pytest.raises(BrainMetSegError, match="t1_pre volume: 1 voxel.*NaN"):
        case_from_volumes(volumes)


def test_label_values_above_one_become_lesion_with_a_warning():
    volumes, label = blob_case()
    label.array[0, 0, 0] = 2
    label.array[9, 10, 11] = 7
    case = case_from_volumes(volumes, label)
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1}
    assert int(case.label.sum()) == 10
    assert len(case.warnings) == 1 and "label values above 1 (2, 7) mapped to 1" in case.warnings[0]


@pytest.mark.parametrize("value, reason", [(-1, "negative label value -1"), (0.5, "non-integer label values")])
def test_bad_label_values_are_refused(tmp_path, value, reason):
    volumes, label = blob_case()
    array = label.array.astype(np.float32)
    array[0, 0, 0] = value
    write_volume(label.with_array(array), tmp_path / "seg.nii.gz")
    paths = write_case_files(tmp_path, with_label=False)
    with pytest.raises(BrainMetSegError) as info:
        load_case(paths, label=tmp_path / "seg.nii.gz")
    assert str(tmp_path / "seg.nii.gz") in str(info.value) and reason in str(info.value)


def test_label_on_another_grid_is_resampled_nearest():
    volumes, _ = blob_case()
    # a label at half resolution, one voxel (2 mm) covering bravo voxels 4..5 on each axis
    coarse = np.zeros((5, 6, 6), np.uint8)
    coarse[2, 2, 2] = 1
    label = Volume(coarse, make_affine((2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5)))
    case = case_from_volumes(volumes, label)
    expected = np.zeros((10, 11, 12), np.uint8)
    expected[4:6, 4:6, 4:6] = 1
    np.testing.assert_array_equal(case.label, expected)
    assert len(case.warnings) == 1 and "label" in case.warnings[0] and "(nearest)" in case.warnings[0]


def test_supplied_brain_mask_is_used():
    volumes, _ = blob_case()
    mask = np.zeros((10, 11, 12), np.uint8)
    mask[2:8, 2:9, 2:10] = 1
    case = case_from_volumes(volumes, brain_mask=volumes["bravo"].with_array(mask))
    np.testing.assert_array_equal(case.brain, mask.astype(bool))


def test_empty_brain_is_refused(tmp_path):
    volumes, _ = blob_case()
    empty = volumes["bravo"].with_array(np.zeros((10, 11, 12), np.uint8))
    write_volume(empty, tmp_path / "mask.nii.gz")
    paths = write_case_files(tmp_path / "c", with_label=False)
    with pytest.raises(BrainMetSegError) as info:
        load_case(paths, brain_mask=tmp_path / "mask.nii.gz")
    assert str(tmp_path / "mask.nii.gz") in str(info.value) and "brain mask is empty" in str(info.value)
    write_volume(volumes["bravo"].with_array(np.zeros((10, 11, 12), np.float32)), paths["bravo"])
    with pytest.raises(BrainMetSegError) as info:
        load_case(paths)
    assert str(paths["bravo"]) in str(info.value) and "no brain voxels" in str(info.value)
