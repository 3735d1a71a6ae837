"""Volumes through the real readers and writers: geometry kept, LPS/RAS right, bad files refused."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.volumes import (Volume, apply_affine, make_affine, overlaps, read_volume, resample_like,
                                    same_grid, write_volume)
from helpers_volumes import OBLIQUE, make_volume, ramp, rotation, write_test_volume

ANISO = (0.7, 1.3, 2.5)
ORIGIN = (-12.25, 33.5, 7.125)


def test_properties_of_an_oblique_affine():
    volume = make_volume(spacing=ANISO, origin=ORIGIN, direction=OBLIQUE)
    np.testing.assert_allclose(volume.spacing, ANISO)
    np.testing.assert_allclose(volume.direction, OBLIQUE, atol=1e-12)
    np.testing.assert_allclose(volume.origin, ORIGIN)
    index = np.array([[2.0, 3.0, 4.0]])
    np.testing.assert_allclose(apply_affine(volume.affine, index)[0], OBLIQUE @ (index[0] * ANISO) + ORIGIN)


def test_nifti_nrrd_nifti_round_trip_keeps_geometry_and_values(tmp_path):
    original = make_volume(shape=(5, 6, 7), spacing=ANISO, origin=ORIGIN, direction=OBLIQUE)
    write_volume(original, tmp_path / "a.nii.gz")
    nrrd = read_volume(tmp_path / "a.nii.gz")
    write_volume(nrrd, tmp_path / "b.nrrd")
    back = read_volume(tmp_path / "b.nrrd")
    write_volume(back, tmp_path / "c.nii")
    final = read_volume(tmp_path / "c.nii")
    for volume in (nrrd, back, final):
        np.testing.assert_array_equal(volume.array, original.array)
        assert volume.array.dtype == np.float32
        np.testing.assert_allclose(volume.spacing, ANISO, atol=1e-5)
        np.testing.assert_allclose(volume.origin, ORIGIN, atol=1e-4)
        np.testing.assert_allclose(volume.direction, OBLIQUE, atol=1e-5)


def test_nrrd_is_stored_in_lps(tmp_path):
    """ITK reads our NRRD with x and y negated: RAS (10, 20, 30) is LPS (-10, -20, 30)."""
    write_volume(make_volume(spacing=(0.5, 0.6, 0.7), origin=(10.0, 20.0, 30.0)), tmp_path / "v.nrrd")
    image = sitk.ReadImage(str(tmp_path / "v.nrrd"))
    np.testing.assert_allclose(image.GetOrigin(), (-10.0, -20.0, 30.0))
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_allclose(image.GetSpacing(), (0.5, 0.6, 0.7))
    # ITK's index (x fastest) is our (i, j, k)
    assert image.GetPixel(1, 2, 3) == ramp((6, 7, 8))[1, 2, 3]


def test_reads_nrrd_written_by_itk_in_ras(tmp_path):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(6, 5, 4)  # ITK order (k, j, i)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 2.0, 3.0))
    image.SetOrigin((4.0, -5.0, 6.0))
    sitk.WriteImage(image, str(tmp_path / "itk.nrrd"))
    volume = read_volume(tmp_path / "itk.nrrd")
    assert volume.array.shape == (4, 5, 6) and volume.array.dtype == np.int16
    assert volume.array[3, 1, 2] == array[2, 1, 3]
    expected = np.array([[-1.5, 0, 0, -4.0], [0, -2.0, 0, 5.0], [0, 0, 3.0, 6.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(volume.affine, expected)


def test_nhdr_writes_header_and_data_file_without_leftovers(tmp_path):
    original = make_volume(spacing=ANISO, origin=ORIGIN, direction=OBLIQUE)
    write_volume(original, tmp_path / "v.nhdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.nhdr", "v.raw.gz"]
    back = read_volume(tmp_path / "v.nhdr")
    np.testing.assert_array_equal(back.array, original.array)
    np.testing.assert_allclose(back.affine, original.affine, atol=1e-5)


def test_written_nifti_has_matching_sform_and_qform(tmp_path):
    original = make_volume(spacing=ANISO, origin=ORIGIN, direction=rotation((0, 0, 1), 30))
    write_volume(original, tmp_path / "v.nii.gz")
    header = nib.load(str(tmp_path / "v.nii.gz")).header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    np.testing.assert_allclose(header.get_qform(), original.affine, atol=1e-4)
    np.testing.assert_allclose(header.get_sform(), original.affine, atol=1e-4)
    assert header.get_xyzt_units()[0] == "mm"


@pytest.mark.parametrize("dtype, stored", [(np.float64, np.float32), (np.float32, np.float32),
                                           (np.uint8, np.uint8), (np.int16, np.int16),
                                           (bool, np.uint8), (np.int64, np.int32)])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_storage_types(tmp_path, dtype, stored, suffix):
    array = (ramp((4, 5, 6)) % 2 == 0) if dtype is bool else ramp((4, 5, 6), dtype)
    write_volume(make_volume(shape=(4, 5, 6), array=array), tmp_path / f"v{suffix}")
    back = read_volume(tmp_path / f"v{suffix}")
    assert back.array.dtype == stored
    np.testing.assert_array_equal(back.array, array.astype(stored))


def test_singleton_fourth_dimension_is_dropped(tmp_path):
    array = ramp((4, 5, 6))[..., None]
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / "v.nii.gz"))
    volume = read_volume(tmp_path / "v.nii.gz")
    assert volume.array.shape == (4, 5, 6)
    np.testing.assert_array_equal(volume.array, array[..., 0])


# ------------------------------------------------------------------------------ refusals


def refused(path, *reasons):
    with pytest.raises(BrainMetSegError) as info:
        read_volume(path)
    message = str(info.value)
    assert str(path) in message
    for reason in reasons:
        assert reason in message
    return message


def test_refuses_missing_file(tmp_path):
    refused(tmp_path / "nothere.nii.gz", "file not found")


def test_refuses_unsupported_extension(tmp_path):
    path = write_test_volume(tmp_path / "v.nii.gz")
    other = path.rename(tmp_path / "v.mha")
    refused(other, "unsupported file type", ".nii.gz", ".nrrd")
    with pytest.raises(BrainMetSegError, match="unsupported file type"):
        write_volume(make_volume(), tmp_path / "out.png")


@pytest.mark.parametrize("name", ["bad.nii.gz", "bad.nii", "bad.nrrd"])
def test_refuses_garbage(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image" * 20)
    refused(tmp_path / name, "cannot read")


def test_refuses_truncated_nifti(tmp_path):
    path = write_test_volume(tmp_path / "v.nii.gz", shape=(20, 20, 20))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    refused(path, "cannot read")


def test_refuses_2d(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((5, 6), np.float32), np.eye(4)), str(tmp_path / "flat.nii.gz"))
    refused(tmp_path / "flat.nii.gz", "2D image", "5x6", "expected a 3D volume")
    nib.save(nib.Nifti1Image(np.ones((5, 6, 1), np.float32), np.eye(4)), str(tmp_path / "slice.nii"))
    refused(tmp_path / "slice.nii", "2D image", "5x6x1")
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((6, 5), np.float32)), str(tmp_path / "flat.nrrd"))
    refused(tmp_path / "flat.nrrd", "2D image", "5x6")
    colour = sitk.GetImageFromArray(np.ones((6, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(colour, str(tmp_path / "colour.nrrd"))
    refused(tmp_path / "colour.nrrd", "2D image", "5x6x3")


def test_refuses_4d(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7, 3), np.float32), np.eye(4)), str(tmp_path / "dwi.nii.gz"))
    refused(tmp_path / "dwi.nii.gz", "4D image", "5x6x7x3", "expected a 3D volume")
    vector = sitk.GetImageFromArray(np.ones((7, 6, 5, 2), np.float32), isVector=True)
    sitk.WriteImage(vector, str(tmp_path / "vector.nrrd"))
    refused(tmp_path / "vector.nrrd", "4D image", "5x6x7x2")


@pytest.mark.parametrize("bad, count", [(np.nan, 2), (np.inf, 2), (-np.inf, 1)])
def test_refuses_non_finite(tmp_path, bad, count):
    array = ramp((4, 5, 6))
    array.flat[:count] = bad
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / "v.nii.gz"))
    refused(tmp_path / "v.nii.gz", f"{count} voxel(s) are NaN or infinite")


def test_write_refuses_non_3d(tmp_path):
    with pytest.raises(BrainMetSegError, match=r"v\.nii\.gz: cannot write a 2D array"):
        write_volume(Volume(np.ones((3, 3)), np.eye(4)), tmp_path / "v.nii.gz")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ grids


def test_same_grid():
    a = make_volume(spacing=ANISO, origin=ORIGIN, direction=OBLIQUE)
    assert same_grid(a, make_volume(spacing=ANISO, origin=ORIGIN, direction=OBLIQUE))
    assert not same_grid(a, make_volume(spacing=ANISO, origin=np.add(ORIGIN, 0.01), direction=OBLIQUE))
    assert not same_grid(a, make_volume(shape=(6, 7, 9), spacing=ANISO, origin=ORIGIN, direction=OBLIQUE))


def test_overlaps_axis_aligned():
    a = make_volume(shape=(10, 10, 10))  # extent -0.5 .. 9.5 on each axis
    assert overlaps(a, make_volume(shape=(10, 10, 10), origin=(9.0, 0, 0)))
    assert not overlaps(a, make_volume(shape=(10, 10, 10), origin=(10.0, 0, 0)))  # faces touch only
    assert not overlaps(a, make_volume(shape=(4, 4, 4), origin=(0, 0, -20.0)))


def test_overlaps_is_exact_for_oblique_boxes():
    """A thin bar along the x=y diagonal: a box inside its bounding box but off the bar is apart."""
    bar = make_volume(shape=(20, 2, 2), direction=rotation((0, 0, 1), 45))
    near_corner = make_volume(shape=(2, 2, 2), origin=(11.0, 2.0, 0.0))
    on_bar = make_volume(shape=(2, 2, 2), origin=(7.0, 7.0, 0.0))
    assert not overlaps(bar, near_corner) and not overlaps(near_corner, bar)
    assert overlaps(bar, on_bar) and overlaps(on_bar, bar)


def test_resample_onto_own_grid_is_identity():
    volume = make_volume(spacing=ANISO, origin=ORIGIN, direction=OBLIQUE)
    out = resample_like(volume, make_volume(spacing=ANISO, origin=ORIGIN, direction=OBLIQUE), order=1)
    np.testing.assert_allclose(out.array, volume.array, rtol=1e-6)


def test_linear_resampling_of_a_linear_field_is_exact_and_zero_outside():
    """On a finer, oblique, shifted grid: inside the source the ramp is reproduced exactly; beyond
    its extent (half a voxel past the edge centres) values are 0."""
    source = make_volume(shape=(8, 9, 10), spacing=(2.0, 2.0, 3.0), origin=(1.0, -2.0, 0.5))
    reference = make_volume(shape=(16, 20, 14), spacing=(1.1, 0.9, 1.7), origin=(-3.0, -4.0, -2.0),
                            direction=rotation((1, 1, 0), 10), array=np.zeros((16, 20, 14)))
    out = resample_like(source, reference, order=1)
    assert out.array.dtype == np.float32 and out.array.shape == (16, 20, 14)
    np.testing.assert_allclose(out.affine, reference.affine)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in out.array.shape], indexing="ij"), axis=-1)
    coords = apply_affine(np.linalg.inv(source.affine) @ reference.affine, index)
    analytic = 100 * coords[..., 0] + 10 * coords[..., 1] + coords[..., 2] + 1
    interior = np.all((coords >= 0) & (coords <= np.array(source.array.shape) - 1), axis=-1)
    margin = 1e-3  # on the boundary itself float rounding decides; test clearly beyond it
    outside = np.any((coords < -0.5 - margin) | (coords > np.array(source.array.shape) - 0.5 + margin), axis=-1)
    assert interior.sum() > 100 and outside.sum() > 100
    np.testing.assert_allclose(out.array[interior], analytic[interior], rtol=1e-5)
    assert np.all(out.array[outside] == 0)


def test_nearest_resampling_keeps_labels_and_type():
    label = np.zeros((6, 6, 6), np.uint8)
    label[2:4, 2:4, 2:4] = 3
    source = make_volume(shape=(6, 6, 6), spacing=(2.0, 2.0, 2.0), array=label)
    reference = make_volume(shape=(12, 12, 12), spacing=(1.0, 1.0, 1.0), origin=(-0.5, -0.5, -0.5),
                            array=np.zeros((12, 12, 12)))
    out = resample_like(source, reference, order=0)
    assert out.array.dtype == np.uint8
    assert set(np.unique(out.array)) == {0, 3}
    # the source voxels 2..3 (centres 4..6 mm, boxes 3..7 mm) are reference voxels 4..7
    expected = np.zeros((12, 12, 12), np.uint8)
    expected[4:8, 4:8, 4:8] = 3
    np.testing.assert_array_equal(out.array, expected)


def test_make_affine_matches_components():
    affine = make_affine((2.0, 3.0, 4.0), OBLIQUE, (1.0, 2.0, 3.0))
    np.testing.assert_allclose(affine[:3, :3], OBLIQUE @ np.diag([2.0, 3.0, 4.0]))
    np.testing.assert_allclose(affine[:3, 3], (1.0, 2.0, 3.0))
