"""The model grid: closest axial orientation, physical size kept, crop/pad around the brain,
z-scores, the map back to the case grid, and the 2.5D frame stacks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from BrainMetSegLib.case import case_from_volumes
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.frames import prepare_case, stack_frames
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import Volume, apply_affine
from helpers_frames import LPS, SAGITTAL, dice, intensity, physical_case, voxel_ras
from helpers_volumes import OBLIQUE, blob_case

AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
"""RAS direction of the model axes D (superior), H (posterior), W (patient left), one per row."""
PIXEL = (0.9375, 0.9375)
SIZE = (48, 48)

GEOMETRIES = {
    # name: (spacing, direction); shapes cover about 40 mm on every axis
    "ras": ((1.0, 1.0, 1.0), None),
    "lps": ((0.9, 1.1, 1.0), LPS),
    "sagittal": ((1.2, 0.8, 1.0), SAGITTAL),
    "oblique": ((1.1, 0.9, 1.3), OBLIQUE),
    "anisotropic": ((0.5, 0.7, 3.0), None),
}


def geometry_case(name: str, **kwargs):
    spacing, direction = GEOMETRIES[name]
    shape = tuple(int(round(40 / s)) for s in spacing)
    return physical_case(shape=shape, spacing=spacing, direction=direction, case_id=name, **kwargs)


def zscored(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_model_grid_is_axial_with_model_spacing(name):
    case = geometry_case(name)
    prepared = prepare_case(case, PIXEL, 1.0, SIZE)
    spacing = np.linalg.norm(prepared.affine[:3, :3], axis=0)
    np.testing.assert_allclose(spacing, (1.0, 0.9375, 0.9375), atol=1e-9)
    direction = prepared.affine[:3, :3] / spacing
    cosines = np.einsum("ij,ji->i", AXIAL, direction)  # model axis . its target
    if name == "oblique":
        assert np.all(cosines > math.cos(math.radians(30)))  # the acquisition's obliquity is kept
    else:
        np.testing.assert_allclose(cosines, 1.0, atol=1e-12)
    assert prepared.images.shape == (4,) + prepared.shape and prepared.images.dtype == np.float32
    assert prepared.shape[1:] == SIZE
    # D covers the volume's whole extent along its slice axis, with less than one slice to spare
    case_axis = prepared.orientation.axes[0]
    extent = case.images.shape[1 + case_axis] * case.spacing[case_axis]
    assert extent <= prepared.shape[0] * 1.0 < extent + 1.0


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_images_follow_physical_position(name):
    """Intensities are linear in RAS; on the model grid each voxel holds the value at its own
    RAS position (through the model affine), z-scored over the brain."""
    case = geometry_case(name)
    prepared = prepare_case(case, PIXEL, 1.0, SIZE)
    ras = voxel_ras(prepared.affine, prepared.shape)[prepared.brain]
    for n, role in enumerate(ROLES):
        expected = zscored(intensity(n, ras))
        np.testing.assert_allclose(prepared.images[n][prepared.brain], expected, atol=2e-4, err_msg=role)


@pytest.mark.parametrize("radius", [3.0, 6.0])
@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_lesion_keeps_its_physical_size(name, radius):
    centre = np.array([3.0, -2.0, 1.0])
    case = geometry_case(name, lesion_centre=centre, lesion_radius=radius)
    prepared = prepare_case(case, PIXEL, 1.0, SIZE)
    lesion = prepared.label.astype(bool)
    model_spacing = np.array([1.0, 0.9375, 0.9375])
    volume = lesion.sum() * np.prod(model_spacing)
    assert abs(np.cbrt(6 * volume / math.pi) - 2 * radius) <= 0.5  # equivalent diameter
    centroid = apply_affine(prepared.affine, np.argwhere(lesion).mean(axis=0))
    assert np.linalg.norm(centroid - centre) <= 0.5
    # extent along each model axis (voxel boxes): the diameter within one voxel of each of
    # the two samplings (the case's, then the model's)
    case_spacing = case.spacing[list(prepared.orientation.axes)]
    for axis in range(3):
        occupied = np.flatnonzero(lesion.any(axis=tuple(a for a in range(3) if a != axis)))
        extent = (occupied[-1] - occupied[0] + 1) * model_spacing[axis]
        assert abs(extent - 2 * radius) <= model_spacing[axis] + case_spacing[axis] + 1e-6, (axis, extent)


def test_anisotropic_input_is_resampled_to_model_spacing():
    case = geometry_case("anisotropic")  # 0.5 x 0.7 x 3 mm, i = R, j = A, k = S
    prepared = prepare_case(case, (1.0, 1.0), 1.0, (40, 40))
    assert prepared.orientation.axes == (2, 1, 0) and prepared.orientation.flips == (False, True, True)
    # 13 slices of 3 mm become 39 slices of 1 mm, sharing the volume's centre
    assert case.shape == (80, 57, 13) and prepared.shape[0] == 39
    case_centre = apply_affine(case.affine, (np.array(case.shape) - 1) / 2.0)
    model_centre_s = apply_affine(prepared.affine, [(39 - 1) / 2.0, 0, 0])[2]
    assert model_centre_s == pytest.approx(case_centre[2], abs=1e-9)
    np.testing.assert_allclose(prepared.scale, (1 / 3.0, 1 / 0.7, 1 / 0.5))


def test_crop_and_pad_are_centred_on_the_brain():
    # LPS grid at the model spacing: i runs left (75 mm field), j posterior (28 mm), k superior;
    # the brain sits 20 mm to the right of the field's centre
    case = physical_case(shape=(80, 30, 24), spacing=(0.9375, 0.9375, 1.0), direction=LPS,
                         brain_centre=(20.0, 0.0, 0.0), brain_radii=(12.0, 10.0, 8.0),
                         lesion_centre=(20.0, 0.0, 0.0), lesion_radius=3.0)
    prepared = prepare_case(case, PIXEL, 1.0, (40, 40))
    assert prepared.warnings == []
    assert prepared.brain.sum() == case.brain.sum()  # nothing cropped, nothing interpolated away
    for axis, size in ((1, 40), (2, 40)):
        occupied = np.flatnonzero(prepared.brain.any(axis=tuple(a for a in range(3) if a != axis)))
        assert abs((occupied[0] + occupied[-1]) / 2.0 - (size - 1) / 2.0) <= 0.5
    # rows beyond the case's 30 rows are padding: images 0 and no brain
    case_rows = apply_affine(np.linalg.inv(case.affine), voxel_ras(prepared.affine, prepared.shape))[..., 1]
    padding = (case_rows < -0.5) | (case_rows > 29.5)
    assert padding.any()
    assert not np.any(prepared.images[:, padding]) and not prepared.brain[padding].any()
    # at equal spacing the grids coincide, so no interpolation changed a value
    centres = np.rint(apply_affine(np.linalg.inv(case.affine), voxel_ras(prepared.affine, prepared.shape)))
    inside = prepared.brain
    i, j, k = (centres[inside][:, a].astype(int) for a in range(3))
    np.testing.assert_array_equal(prepared.label[inside], case.label[i, j, k])


def test_brain_larger_than_the_frame_is_cropped_with_a_warning():
    case = geometry_case("ras")
    prepared = prepare_case(case, PIXEL, 1.0, (16, 20))
    assert prepared.shape[1:] == (16, 20)
    assert len(prepared.warnings) == 2
    assert "ras: the brain spans 26 mm along the rows (anterior-posterior) but model frames cover 15 mm" \
        in prepared.warnings[0]
    assert "columns (right-left)" in prepared.warnings[1] and "cropped" in prepared.warnings[1]


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_round_trip_to_the_input_grid(name):
    case = geometry_case(name, lesion_radius=7.0)
    prepared = prepare_case(case, PIXEL, 1.0, SIZE)
    back = prepared.to_input_grid(prepared.label.astype(np.float32))
    assert back.shape == case.shape and back.dtype == np.float32
    assert dice(back >= 0.5, case.label) > 0.95


def test_round_trip_is_exact_when_grids_coincide():
    case = physical_case(shape=(40, 40, 36), spacing=(0.9375, 0.9375, 1.0), direction=LPS)
    prepared = prepare_case(case, PIXEL, 1.0, (40, 40))
    np.testing.assert_array_equal(prepared.to_input_grid(prepared.label), case.label)
    np.testing.assert_array_equal(prepared.to_input_grid(prepared.brain) > 0, case.brain)


def test_to_input_grid_is_zero_outside_the_model_grid():
    case = geometry_case("ras")
    prepared = prepare_case(case, PIXEL, 1.0, (20, 20))  # crops the 40 mm field to 18.75 mm
    back = prepared.to_input_grid(np.ones(prepared.shape, dtype=np.float32))
    model_index = apply_affine(np.linalg.inv(prepared.affine), voxel_ras(case.affine, case.shape))
    within = np.all((model_index >= -0.5) & (model_index <= np.array(prepared.shape) - 0.5), axis=-1)
    assert within.any() and (~within).any()
    np.testing.assert_allclose(back[within], 1.0, atol=1e-6)
    assert not np.any(back[~within])


def test_to_input_grid_refuses_a_map_of_the_wrong_shape():
    prepared = prepare_case(geometry_case("ras"), PIXEL, 1.0, (20, 20))
    with pytest.raises(BrainMetSegError, match=r"probability: shape \(3, 20, 20\) differs from the model grid"):
        prepared.to_input_grid(np.zeros((3, 20, 20)))
    bad = np.zeros(prepared.shape)
    bad[0, 0, 0] = np.nan
    with pytest.raises(BrainMetSegError, match="probability: expected finite numbers"):
        prepared.to_input_grid(bad)


def test_zscore_over_brain_voxels():
    volumes, label = blob_case(shape=(30, 32, 28), seed=3)
    volumes["flair"] = volumes["flair"].with_array(volumes["flair"].array * 40.0 + 1000.0 * (volumes["flair"].array > 0))
    case = case_from_volumes(volumes, label, case_id="Mets_009")
    prepared = prepare_case(case, (1.0, 1.0), 1.0, (32, 32))
    for n in range(4):
        inside = prepared.images[n][prepared.brain].astype(np.float64)
        assert inside.mean() == pytest.approx(0.0, abs=1e-5)
        assert inside.std() == pytest.approx(1.0, abs=1e-5)
        assert not np.any(prepared.images[n][~prepared.brain])


def test_constant_sequence_is_refused_naming_it():
    volumes, label = blob_case(shape=(20, 20, 20))
    brain = volumes["bravo"].array > 0
    volumes["t1_gd"] = volumes["t1_gd"].with_array(np.where(brain, 7.0, 0.0).astype(np.float32))
    case = case_from_volumes(volumes, label, case_id="Mets_004")
    with pytest.raises(BrainMetSegError) as info:
        prepare_case(case, (1.0, 1.0), 1.0, (24, 24))
    message = str(info.value)
    assert message.startswith("Mets_004: t1_gd is constant over the brain (value 7")
    assert "non-zero standard deviation" in message


def test_brain_lost_on_the_model_grid_is_refused():
    volumes = {role: Volume(np.random.default_rng(0).uniform(1, 2, (8, 8, 8)).astype(np.float32),
                            np.diag([0.25, 0.25, 0.25, 1.0])) for role in ROLES}
    mask = np.zeros((8, 8, 8), dtype=np.uint8)
    mask[1, 1, 1] = 1
    case = case_from_volumes(volumes, brain_mask=Volume(mask, np.diag([0.25, 0.25, 0.25, 1.0])), case_id="tiny")
    with pytest.raises(BrainMetSegError, match=r"tiny: no brain voxel left on the model grid \(1 x 1 x 1 mm voxels\)"):
        prepare_case(case, (1.0, 1.0), 1.0, (4, 4))


@pytest.mark.parametrize("kwargs, message", [
    ({"pixel_spacing_mm": (0.0, 1.0)}, "pixel spacing: (0.0, 1.0); expected [row, column], two positive numbers"),
    ({"pixel_spacing_mm": 1.0}, "pixel spacing: 1.0; expected [row, column]"),
    ({"slice_spacing_mm": -1.0}, "slice spacing: -1.0; expected a positive number of mm"),
    ({"in_plane_size": (256,)}, "in-plane size: (256,); expected [rows, columns], two positive integers"),
    ({"in_plane_size": (32.5, 32)}, "in-plane size: (32.5, 32); expected [rows, columns]"),
])
def test_bad_grid_parameters_are_refused(kwargs, message):
    case = geometry_case("ras")
    with pytest.raises(BrainMetSegError) as info:
        prepare_case(case, **kwargs)
    assert message in str(info.value)


def test_known_negatives_on_the_model_grid():
    case = geometry_case("oblique", lesion_centre=(3.0, -2.0, 1.0), lesion_radius=4.0)
    rejected = [[-6.0, 5.0, -3.0], [3.0, -2.0, 6.0]]  # the second ball overlaps the lesion
    prepared = prepare_case(case, PIXEL, 1.0, SIZE, rejected_ras=rejected)
    ras = voxel_ras(prepared.affine, prepared.shape)
    near = np.zeros(prepared.shape, dtype=bool)
    for point in rejected:
        near |= np.linalg.norm(ras - np.asarray(point), axis=-1) <= 4.0
    np.testing.assert_array_equal(prepared.known_negative, near & (prepared.label == 0))
    assert (near & (prepared.label == 1)).any()  # the exclusion was exercised
    assert prepare_case(case, PIXEL, 1.0, SIZE).known_negative is None
    assert not prepare_case(case, PIXEL, 1.0, SIZE, rejected_ras=[]).known_negative.any()


# ---------------------------------------------------------------------------------- frames


def explicit_frames(volume: np.ndarray, centres, slices: int) -> np.ndarray:
    depth, channels = volume.shape[:2]
    out = np.empty((len(centres), channels * slices) + volume.shape[2:], dtype=volume.dtype)
    for n, centre in enumerate(centres):
        for role in range(channels):
            for offset in range(slices):
                z = min(max(centre + offset - slices // 2, 0), depth - 1)
                out[n, role * slices + offset] = volume[z, role]
    return out


@pytest.mark.parametrize("slices", [1, 3, 5])
def test_stack_frames_matches_explicit_construction(slices):
    volume = np.arange(6 * 4 * 2 * 3, dtype=np.float32).reshape(6, 4, 2, 3)
    centres = [0, 1, 3, 5, 5]
    frames = stack_frames(torch.from_numpy(volume), torch.tensor(centres), slices=slices)
    assert frames.shape == (5, 4 * slices, 2, 3)
    np.testing.assert_array_equal(frames.numpy(), explicit_frames(volume, centres, slices))


def test_stack_frames_channel_layout_by_hand():
    volume = torch.arange(4, dtype=torch.float32).repeat_interleave(4).reshape(4, 4, 1, 1) * 10 \
        + torch.arange(4, dtype=torch.float32).reshape(1, 4, 1, 1)  # value = 10 * slice + role
    frame = stack_frames(volume, torch.tensor([0]))[0, :, 0, 0].tolist()
    # role 0: slices -2, -1 replicate slice 0, then 0, 1, 2; role 1 the same + 1; ...
    assert frame == [0, 0, 0, 10, 20, 1, 1, 1, 11, 21, 2, 2, 2, 12, 22, 3, 3, 3, 13, 23]


def test_stack_frames_stays_on_the_device_without_reading_values():
    """On the meta device tensors have no data: any host copy or value-dependent step fails."""
    volume = torch.empty((30, 4, 16, 16), device="meta")
    centres = torch.empty((7,), dtype=torch.long, device="meta")
    frames = stack_frames(volume, centres)
    assert frames.device.type == "meta" and frames.shape == (7, 20, 16, 16)


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(4, 4, 2), torch.tensor([0])), "volume: expected a (D, C, H, W) tensor, got shape (4, 4, 2)"),
    ((torch.zeros(4, 4, 2, 2), torch.tensor([0.0])), "centres: expected a 1D integer tensor"),
    ((torch.zeros(4, 4, 2, 2), torch.tensor([[0]])), "centres: expected a 1D integer tensor"),
    ((torch.zeros(4, 4, 2, 2), torch.tensor([0, 4])), "centres: slice indices must lie in [0, 4), got 0..4"),
    ((torch.zeros(4, 4, 2, 2), torch.tensor([-1])), "centres: slice indices must lie in [0, 4), got -1..-1"),
])
def test_stack_frames_refusals(args, message):
    with pytest.raises(BrainMetSegError) as info:
        stack_frames(*args)
    assert message in str(info.value)


@pytest.mark.parametrize("slices", [0, 4, -3, True])
def test_stack_frames_refuses_bad_slice_counts(slices):
    with pytest.raises(BrainMetSegError, match=r"slices: .*; expected a positive odd number of slices per frame"):
        stack_frames(torch.zeros(4, 4, 2, 2), torch.tensor([0]), slices=slices)
