"""The synthetic cohort: determinism, lesions and labels, confounders, strata, files, CLI, picture."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from BrainMetSegLib.case import Case
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.figures import radiological_axes, render_case_png
from BrainMetSegLib.lesions import connected_components
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.synth import SYNTH_JSON, make_case, plan_cohort, synthesize_case, write_cohort
from BrainMetSegLib.synth_lesions import draw_diameters
from BrainMetSegLib.synth_params import PRESETS, STRATUM_NAMES, preset, validate
from BrainMetSegLib.volumes import Volume

from helpers_synth import tiny_case, tiny_params


def _index_of(volume: Volume, ras) -> tuple:
    index = np.linalg.solve(volume.affine[:3, :3], np.asarray(ras) - volume.affine[:3, 3])
    return tuple(int(i) for i in np.round(index))


# ---------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_arrays_and_description():
    first = tiny_case(seed=11, n_lesions=5)
    second = tiny_case(seed=11, n_lesions=5)
    for role in ROLES:
        assert first[0][role].array.dtype == np.int16
        np.testing.assert_array_equal(first[0][role].array, second[0][role].array)
        np.testing.assert_array_equal(first[0][role].affine, second[0][role].affine)
    np.testing.assert_array_equal(first[1].array, second[1].array)
    assert first[2] == second[2]


def test_different_seeds_give_different_cases():
    first, second = tiny_case(seed=1, n_lesions=4), tiny_case(seed=2, n_lesions=4)
    assert not np.array_equal(first[0]["bravo"].array, second[0]["bravo"].array)
    assert not np.array_equal(first[1].array, second[1].array)
    assert first[2]["pose"] != second[2]["pose"]


def test_same_seed_writes_the_same_bytes(tmp_path: Path):
    for name in ("a", "b"):
        write_cohort(tmp_path / name, 2, seed=5, params=tiny_params(), preset_name="tiny")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 * 5 + 2
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative


# ---------------------------------------------------------------------------------- lesions and label


def test_every_lesion_is_one_labelled_component_at_its_centre():
    volumes, label, meta = tiny_case(seed=3, n_lesions=12)
    components, count = connected_components(label.array)
    assert count == meta["n_lesions"] == 12
    hit = {int(components[_index_of(label, lesion["centre_ras"])]) for lesion in meta["lesions"]}
    assert hit == set(range(1, 13))  # each centre lies in its own component


def test_skull_stripped_sequences_share_the_brain_and_contain_the_label():
    volumes, label, _ = tiny_case(seed=4, n_lesions=3)
    brain = volumes["bravo"].array != 0
    for role in ROLES:
        np.testing.assert_array_equal(volumes[role].array != 0, brain)
    assert brain.sum() > 0.15 * brain.size
    assert not brain[[0, -1], :, :].any() and not brain[:, [0, -1], :].any()  # the brain fits in-plane
    assert np.all(brain[label.array > 0])
    assert set(np.unique(label.array).tolist()) == {0, 1}


def test_lesions_enhance_on_post_contrast_but_not_on_t1_pre():
    volumes, label, meta = tiny_case(seed=6, n_lesions=6, subtle_probability=0.0)
    components, count = connected_components(label.array)
    brain = volumes["bravo"].array > 0
    for index in range(1, count + 1):
        lesion = components == index
        shell = ndimage.binary_dilation(lesion, iterations=2) & ~ndimage.binary_dilation(label.array > 0) & brain
        ratios = {}
        for role in ("t1_pre", "t1_gd", "bravo"):
            image = volumes[role].array.astype(float)
            ratios[role] = np.percentile(image[lesion], 90) / np.median(image[shell])
        assert ratios["bravo"] > ratios["t1_pre"] + 0.15, (index, ratios)
        assert ratios["t1_gd"] > ratios["t1_pre"] + 0.15, (index, ratios)


def test_oedema_is_bright_on_flair_and_not_labelled():
    large = dict(diameter_offset_mm=14.0, diameter_max_mm=20.0, ring_probability=0.0)
    with_oedema = tiny_case(seed=8, n_lesions=1, oedema_ratio=(1.5, 2.0), **large)
    without = tiny_case(seed=8, n_lesions=1, oedema_ratio=(0.0, 0.0), **large)
    assert with_oedema[2]["lesions"][0]["oedema_mm"] > 10 and without[2]["lesions"][0]["oedema_mm"] == 0
    np.testing.assert_array_equal(with_oedema[1].array, without[1].array)  # the label ignores oedema
    lesion = with_oedema[1].array > 0
    around = ndimage.binary_dilation(lesion, iterations=2) & ~lesion & (with_oedema[0]["bravo"].array > 0)
    bright = with_oedema[0]["flair"].array[around].mean() / without[0]["flair"].array[around].mean()
    assert bright > 1.15


def test_diameters_are_long_tailed():
    params = PRESETS["default"]
    diameters = np.concatenate([draw_diameters(np.random.default_rng(seed), params, 1, 50) for seed in range(40)])
    assert np.mean((diameters >= 2) & (diameters <= 6)) > 0.5  # most lesions are 2-6 mm
    assert 3.0 < np.median(diameters) < 6.0
    assert np.mean(diameters) > np.median(diameters)  # skewed to the right
    assert np.percentile(diameters, 99) > 15.0 and diameters.max() <= params.diameter_max_mm
    few = np.concatenate([draw_diameters(np.random.default_rng(seed), params, 0, 3) for seed in range(300)])
    assert few.max() >= 25.0  # some lesions reach ~30 mm


def test_most_lesions_sit_at_the_grey_white_junction():
    locations = [lesion["location"] for seed in range(3) for lesion in tiny_case(seed=seed, n_lesions=15)[2]["lesions"]]
    assert set(locations) <= {"junction", "parenchyma"}
    assert locations.count("junction") / len(locations) > 0.6


# ---------------------------------------------------------------------------------- confounders


def test_vessels_enhance_on_bravo_more_than_on_spin_echo_and_are_never_labelled():
    volumes, label, _ = tiny_case(seed=9, n_lesions=4)
    plain, plain_label, _ = tiny_case(seed=9, n_lesions=4, cortical_vessels=(0, 0), deep_vessels=(0, 0))
    np.testing.assert_array_equal(label.array, plain_label.array)
    brain = plain["bravo"].array > 0

    def relative_change(role):
        before = plain[role].array.astype(float)
        return (volumes[role].array - before) / np.median(before[brain])

    vessel = relative_change("bravo") > 0.25
    assert vessel.sum() >= 20
    assert label.array[vessel].mean() < 0.02
    assert relative_change("t1_gd")[vessel].mean() < 0.7 * relative_change("bravo")[vessel].mean()
    assert relative_change("flair")[vessel].mean() < 0  # flow voids


# ---------------------------------------------------------------------------------- cohort


def test_plan_of_156_cases_splits_like_the_paper():
    plans = plan_cohort(156, seed=0)
    splits = [plan.split for plan in plans]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (100, 5, 51)
    test_strata = [plan.stratum for plan in plans if plan.split == "test"]
    assert [test_strata.count(s) for s in range(3)] == [17, 17, 17]
    assert [plan.case_id for plan in plans[:2]] == ["Mets_001", "Mets_002"]
    assert len({plan.seed for plan in plans}) == 156


def test_small_cohorts_keep_all_strata_and_a_training_case():
    plans = plan_cohort(24, seed=3)
    assert sorted({plan.stratum for plan in plans if plan.split == "train"}) == [0, 1, 2]
    assert [plan.stratum for plan in plans if plan.split == "test"].count(0) == 2
    assert [plan.split for plan in plan_cohort(1, seed=0)] == ["train"]
    assert plan_cohort(24, seed=3) == plans
    assert plan_cohort(24, seed=4) != plans


def test_val_cases_turn_training_cases_into_validation_cases_of_the_same_cohort():
    default = plan_cohort(40, seed=0, params=PRESETS["small"])
    four = plan_cohort(40, seed=0, params=PRESETS["small"], val_cases=4)
    splits = [plan.split for plan in four]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (24, 4, 12)
    # the same cases (ids, seeds, lesion strata) and test split: only training cases moved
    assert [(p.case_id, p.seed, p.stratum) for p in four] == [(p.case_id, p.seed, p.stratum) for p in default]
    moved = {(a.split, b.split) for a, b in zip(default, four) if a.split != b.split}
    assert moved == {("train", "val")}
    assert plan_cohort(40, seed=0, params=PRESETS["small"], val_cases=1) == default  # the default share is one case
    assert [p.split for p in plan_cohort(40, seed=0, params=PRESETS["small"], val_cases=0)].count("val") == 0
    for wrong in (28, -1, True):
        with pytest.raises(BrainMetSegError, match=rf"--val-cases: {wrong!r}; expected a whole number from 0 to 27, "
                                                   r"which leaves a training case of the 40 \(12 of them test cases\)"):
            plan_cohort(40, seed=0, params=PRESETS["small"], val_cases=wrong)


def test_cohort_reads_back_with_its_description(tmp_path: Path):
    params = tiny_params()
    entries = write_cohort(tmp_path, 4, seed=2, params=params, preset_name="tiny")
    dataset = read_dataset(tmp_path)
    assert [(c.case_id, c.split, c.label_status) for c in dataset.cases] == [
        (e.case_id, e.split, "complete") for e in entries]
    described = json.loads((tmp_path / SYNTH_JSON).read_text())
    assert described["seed"] == 2 and described["params"] == json.loads(json.dumps(params.to_json()))
    for entry, meta in zip(dataset.cases, described["cases"]):
        case = entry.load()
        assert case.images.shape == (4, 64, 76, 60) and case.warnings == []
        np.testing.assert_allclose(case.spacing, params.spacing)
        assert connected_components(case.label)[1] == meta["n_lesions"]
        assert meta["stratum"] in STRATUM_NAMES and meta["id"] == entry.case_id


def test_cohort_from_worker_processes_equals_the_one_process_cohort(tmp_path: Path):
    write_cohort(tmp_path / "one", 4, seed=6, params=tiny_params(), preset_name="tiny")
    progress = []
    write_cohort(tmp_path / "two", 4, seed=6, params=tiny_params(), preset_name="tiny", workers=2,
                 progress=lambda fraction, message: progress.append(fraction))
    assert progress[-1] == 1.0 and len(progress) == 5
    one, two = read_dataset(tmp_path / "one"), read_dataset(tmp_path / "two")
    assert [(c.case_id, c.split) for c in one.cases] == [(c.case_id, c.split) for c in two.cases]
    for first, second in zip(one.cases, two.cases):
        first, second = first.load(), second.load()
        np.testing.assert_array_equal(first.images, second.images)
        np.testing.assert_array_equal(first.label, second.label)
    described = [json.loads((tmp_path / name / SYNTH_JSON).read_text()) for name in ("one", "two")]
    assert described[0] == described[1]


def test_refuses_workers_below_one(tmp_path: Path):
    with pytest.raises(BrainMetSegError, match=r"--workers: 0; expected a whole number of processes >= 1"):
        write_cohort(tmp_path / "cohort", 2, seed=0, params=tiny_params(), workers=0)
    assert not (tmp_path / "cohort").exists()


def test_default_preset_is_brainmetshare_like():
    volumes, label, meta = synthesize_case(21, PRESETS["default"], n_lesions=2)
    bravo = volumes["bravo"]
    assert bravo.shape == (256, 256, 160)
    np.testing.assert_allclose(bravo.spacing, [0.9375, 0.9375, 1.0])
    litres = np.count_nonzero(bravo.array) * np.prod(bravo.spacing) / 1e6
    assert 1.0 < litres < 2.0
    assert connected_components(label.array)[1] == 2


def test_make_case_gives_a_case_for_the_pipeline():
    case = make_case(seed=0, params=tiny_params(), n_lesions=2, case_id="demo")
    assert isinstance(case, Case) and case.case_id == "demo"
    assert case.images.shape[0] == len(ROLES) and case.label.shape == case.images.shape[1:]
    assert np.all(np.isfinite(case.images)) and case.label.sum() > 0
    np.testing.assert_array_equal(case.brain, case.images[ROLES.index("bravo")] > 0)


# ---------------------------------------------------------------------------------- refusals


def test_existing_cohort_is_not_overwritten_unless_asked(tmp_path: Path):
    write_cohort(tmp_path, 1, seed=0, params=tiny_params())
    before = (tmp_path / "Mets_001" / "bravo.nii.gz").read_bytes()
    with pytest.raises(BrainMetSegError, match=r"dataset\.json: already exists; pass --overwrite"):
        write_cohort(tmp_path, 1, seed=1, params=tiny_params())
    assert (tmp_path / "Mets_001" / "bravo.nii.gz").read_bytes() == before
    write_cohort(tmp_path, 1, seed=1, params=tiny_params(), overwrite=True)
    assert (tmp_path / "Mets_001" / "bravo.nii.gz").read_bytes() != before


def test_refuses_a_file_as_output_folder(tmp_path: Path):
    target = tmp_path / "cohort"
    target.write_text("not a folder")
    with pytest.raises(BrainMetSegError, match=r"cohort: exists and is not a folder"):
        write_cohort(target, 1, seed=0, params=tiny_params())


def test_refuses_no_cases_and_no_lesions():
    with pytest.raises(BrainMetSegError, match=r"--cases: 0; expected at least 1"):
        plan_cohort(0, seed=0)
    with pytest.raises(BrainMetSegError, match=r"n_lesions: 0; a synthetic case has at least one lesion"):
        synthesize_case(0, tiny_params(), n_lesions=0)


def test_refuses_an_unknown_preset(tmp_path: Path):
    with pytest.raises(BrainMetSegError, match=r"synthetic preset 'huge': unknown; expected one of default, small"):
        preset("huge")
    with pytest.raises(BrainMetSegError, match=r"synthetic preset 'huge': unknown"):
        write_cohort(tmp_path / "cohort", 1, seed=0, preset_name="huge")
    assert not (tmp_path / "cohort").exists()


@pytest.mark.parametrize("change, message", [
    (dict(shape=(4, 64, 64)), r"parameter shape: \(4, 64, 64\); expected three sizes of at least 8"),
    (dict(spacing=(0.0, 1.0, 1.0)), r"parameter spacing: .*expected three positive sizes"),
    (dict(scale=(1.1, 0.9)), r"parameter scale: range \(1.1, 0.9\) has low > high"),
    (dict(stratum_counts=((1, 3), (4, 10))), r"parameter stratum_counts: expected 3 strata"),
    (dict(stratum_counts=((0, 3), (4, 10), (11, 40))), r"parameter stratum_counts: .*expected 1 <= low <= high"),
    (dict(stratum_weights=(0.0, 0.0, 0.0)), r"parameter stratum_weights: .*not all zero"),
    (dict(val_fraction=0.5, test_fraction=0.5), r"parameter val_fraction: .*leave cases for training"),
    (dict(diameter_max_mm=1.0), r"parameter diameter_max_mm: 1.0 must exceed diameter_offset_mm"),
    (dict(noise={"t1_pre": (0.1, 0.2)}), r"parameter contrast: no contrast or noise entry for t1_gd, bravo, flair"),
])
def test_refuses_impossible_parameters(change, message):
    with pytest.raises(BrainMetSegError, match=message):
        validate(dataclasses.replace(PRESETS["small"], **change))


def test_refuses_a_contrast_table_missing_a_tissue():
    contrast = {role: dict(values) for role, values in PRESETS["small"].contrast.items()}
    del contrast["flair"]["oedema"]
    with pytest.raises(BrainMetSegError, match=r"parameter contrast: flair lacks oedema"):
        validate(dataclasses.replace(PRESETS["small"], contrast=contrast))


# ---------------------------------------------------------------------------------- command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", *args], capture_output=True, text=True, timeout=300)


def test_cli_writes_a_small_cohort_and_refuses_to_overwrite_it(tmp_path: Path):
    out = tmp_path / "cohort"
    done = _cli("synth", "--out", str(out), "--cases", "3", "--seed", "4", "--small")
    assert done.returncode == 0, done.stderr
    assert "wrote 3 synthetic case(s) (small preset, seed 4)" in done.stdout
    dataset = read_dataset(out)
    assert len(dataset.cases) == 3
    assert dataset.cases[0].load().images.shape == (4,) + PRESETS["small"].shape
    again = _cli("synth", "--out", str(out), "--cases", "3", "--seed", "5", "--small")
    assert again.returncode == 2
    assert again.stderr.startswith("error: ") and "already exists; pass --overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    replaced = _cli("synth", "--out", str(out), "--cases", "3", "--seed", "5", "--small", "--overwrite",
                    "--workers", "2")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / SYNTH_JSON).read_text())["seed"] == 5
    refused = _cli("synth", "--out", str(tmp_path / "other"), "--cases", "2", "--small", "--workers", "0")
    assert refused.returncode == 2 and "--workers: 0; expected a whole number of processes >= 1" in refused.stderr
    assert json.loads((out / SYNTH_JSON).read_text())["val_cases"] is None  # the preset's share


def test_cli_val_cases_are_written_and_recorded(tmp_path: Path):
    out = tmp_path / "cohort"
    done = _cli("synth", "--out", str(out), "--cases", "12", "--seed", "1", "--small", "--val-cases", "2",
                "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "wrote 12 synthetic case(s) (small preset, seed 1) to" in done.stdout and "7 train, 2 val, 3 test" in done.stdout
    assert [entry.split for entry in read_dataset(out).cases].count("val") == 2
    assert json.loads((out / SYNTH_JSON).read_text())["val_cases"] == 2
    refused = _cli("synth", "--out", str(tmp_path / "other"), "--cases", "12", "--small", "--val-cases", "9")
    assert refused.returncode == 2
    assert "error: --val-cases: 9; expected a whole number from 0 to 8" in refused.stderr
    assert not (tmp_path / "other").exists()


# ---------------------------------------------------------------------------------- picture


def test_radiological_axes_put_the_patients_right_on_the_left_and_anterior_on_top():
    array = np.zeros((4, 5, 6))
    array[0, 0, 0] = 1.0  # identity affine (RAS): index 0 is the most left, posterior, inferior voxel
    view = radiological_axes(array, np.eye(4))
    assert view.shape == (4, 5, 6) and view[3, 4, 0] == 1.0
    swapped = np.transpose(array, (2, 0, 1))  # slices first: axis 0 runs inferior -> superior
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    assert radiological_axes(swapped, affine)[3, 4, 0] == 1.0


def test_render_case_png_shows_four_sequences_and_outlines_the_label(tmp_path: Path):
    volumes, label, _ = tiny_case(seed=12, n_lesions=3)
    path = render_case_png({**volumes, "seg": label}, tmp_path / "case.png")
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert picture.shape[1] > picture.shape[0] > 300  # four panels side by side, two rows
    red = (picture[..., 0] > 180) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    assert red[picture.shape[0] // 2:].sum() > 10 and red[: picture.shape[0] // 2].sum() == 0
    case = make_case(seed=12, params=tiny_params(), n_lesions=3)
    assert render_case_png(case, tmp_path / "from_case.png", slice_index=30).stat().st_size > 1000


def test_render_case_png_refusals(tmp_path: Path):
    volumes, label, _ = tiny_case(seed=13, n_lesions=1)
    with pytest.raises(BrainMetSegError, match=r"slice_index: 60 is outside the 60 axial slices"):
        render_case_png(volumes, tmp_path / "x.png", slice_index=60)
    with pytest.raises(BrainMetSegError, match=r"missing sequence\(s\) flair"):
        render_case_png({role: volumes[role] for role in ROLES[:3]}, tmp_path / "x.png")
    with pytest.raises(BrainMetSegError, match=r"expected a Case or a mapping of roles to volumes, got list"):
        render_case_png([volumes["bravo"]], tmp_path / "x.png")
    cropped = dict(volumes, flair=Volume(volumes["flair"].array[:-1], volumes["flair"].affine))
    with pytest.raises(BrainMetSegError, match=r"the sequences have different shapes"):
        render_case_png(cropped, tmp_path / "x.png")
    oblique = np.eye(4)
    oblique[:3, :3] = [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    with pytest.raises(BrainMetSegError, match=r"two array axes point the same way"):
        radiological_axes(np.zeros((2, 2, 2)), oblique)
    assert not (tmp_path / "x.png").exists()
