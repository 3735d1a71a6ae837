"""Importing a tiny fake BrainMetShare PNG release made of real PNG files."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from nibabel.orientations import aff2axcodes
from PIL import Image

from BrainMetSegLib.brainmetshare import import_brainmetshare
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.volumes import read_volume

ROWS, COLUMNS = 6, 8
SLICE_NUMBERS = (1, 2, 10)  # unpadded names: numeric order differs from text order
CHANNEL_BASE = {"0": 10, "1": 60, "2": 110, "3": 160}  # distinct intensities per channel


def slice_pixels(channel: str, number: int) -> np.ndarray:
    """Position-coded pixels (channel base + 5*row + column), the slice number in one corner."""
    rows, columns = np.meshgrid(np.arange(ROWS), np.arange(COLUMNS), indexing="ij")
    pixels = (CHANNEL_BASE[channel] + 5 * rows + columns).astype(np.uint8)
    pixels[0, 0] = number
    return pixels


def seg_pixels(number: int) -> np.ndarray:
    pixels = np.zeros((ROWS, COLUMNS), np.uint8)
    if number == 10:
        pixels[1, 4] = 255  # a lesion at row 1, column 4 of the top slice
    return pixels


def make_release(root, case_id="Mets_001", labelled=True, numbers=SLICE_NUMBERS, channels=("0", "1", "2", "3")):
    folder = root / case_id
    for channel in channels:
        (folder / channel).mkdir(parents=True)
        for number in numbers:
            Image.fromarray(slice_pixels(channel, number)).save(folder / channel / f"{number}.png")
    if labelled:
        (folder / "seg").mkdir()
        for number in numbers:
            Image.fromarray(seg_pixels(number)).save(folder / "seg" / f"{number}.png")
    return folder


@pytest.fixture
def release(tmp_path):
    source = tmp_path / "release"
    make_release(source / "train", "Mets_001")
    make_release(source / "test", "Mets_200", labelled=False)
    return source


def test_import_writes_the_dataset_layout(tmp_path, release):
    out = tmp_path / "dataset"
    calls = []
    entries = import_brainmetshare(release, out, progress=lambda f, m: calls.append((f, m)))
    assert [e.case_id for e in entries] == ["Mets_001", "Mets_200"]
    assert json.loads((out / "dataset.json").read_text()) == {"format": 1, "cases": [
        {"id": "Mets_001", "split": "train", "label": "complete", "rejected": []},
        {"id": "Mets_200", "split": "train", "label": "none", "rejected": []}]}
    assert calls[0][0] == 0.0 and calls[-1][0] == 1.0

    bravo = read_volume(out / "Mets_001" / "bravo.nii.gz")
    assert bravo.array.shape == (COLUMNS, ROWS, 3) and bravo.array.dtype == np.uint8
    # array [column, row, slice] = PNG[row, column] of the slice at that numeric position
    np.testing.assert_array_equal(bravo.array[:, :, 1], slice_pixels("0", 2).T)
    assert [int(bravo.array[0, 0, k]) for k in range(3)] == list(SLICE_NUMBERS)
    for role, channel in (("t1_pre", "1"), ("t1_gd", "2"), ("flair", "3")):
        volume = read_volume(out / "Mets_001" / f"{role}.nii.gz")
        np.testing.assert_array_equal(volume.array[:, :, 2], slice_pixels(channel, 10).T)
    seg = read_volume(out / "Mets_001" / "seg.nii.gz")
    assert seg.array.dtype == np.uint8 and int(seg.array.sum()) == 1 and seg.array[4, 1, 2] == 1

    # assumed geometry: default spacing, columns R->L, rows A->P, slices I->S, centred on 0
    np.testing.assert_allclose(bravo.spacing, (0.94, 0.94, 1.0), atol=1e-6)
    assert aff2axcodes(bravo.affine) == ("L", "P", "S")
    centre = bravo.affine @ np.array([(COLUMNS - 1) / 2, (ROWS - 1) / 2, 1.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-5)

    assert not (out / "Mets_200" / "seg.nii.gz").exists()
    dataset = read_dataset(out)
    case = dataset.get("Mets_001").load()
    assert int(case.label.sum()) == 1 and case.warnings == []
    assert dataset.get("Mets_200").load().label is None


def test_sixteen_bit_pngs_keep_their_type(tmp_path):
    folder = make_release(tmp_path / "release", labelled=False)
    for number in SLICE_NUMBERS:
        Image.fromarray(np.full((ROWS, COLUMNS), 1000 + number, np.uint16)).save(folder / "3" / f"{number}.png")
    import_brainmetshare(tmp_path / "release", tmp_path / "out")
    flair = read_volume(tmp_path / "out" / "Mets_001" / "flair.nii.gz")
    assert flair.array.dtype == np.uint16 and flair.array[0, 0, 2] == 1010


def test_import_adds_to_an_existing_dataset(tmp_path, release):
    out = tmp_path / "dataset"
    import_brainmetshare(release / "train", out)
    other = tmp_path / "other"
    make_release(other, "Mets_300")
    import_brainmetshare(other, out)
    assert read_dataset(out).ids == ["Mets_001", "Mets_300"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_imports_with_spacing_and_refuses_to_overwrite(tmp_path, release):
    out = tmp_path / "dataset"
    result = run_cli("import-brainmetshare", release, "--out", out, "--spacing", "0.5", "0.6", "2")
    assert result.returncode == 0, result.stderr
    assert "imported 2 case(s) (1 labelled, 1 without label)" in result.stdout
    np.testing.assert_allclose(read_volume(out / "Mets_001" / "flair.nii.gz").spacing, (0.5, 0.6, 2.0), atol=1e-6)

    before = (out / "Mets_001" / "flair.nii.gz").read_bytes()
    result = run_cli("import-brainmetshare", release, "--out", out)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert str(out / "Mets_001") in result.stderr and "already exists" in result.stderr
    assert (out / "Mets_001" / "flair.nii.gz").read_bytes() == before

    result = run_cli("import-brainmetshare", release, "--out", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(read_volume(out / "Mets_001" / "flair.nii.gz").spacing, (0.94, 0.94, 1.0), atol=1e-6)


def test_cli_refuses_bad_spacing(tmp_path, release):
    result = run_cli("import-brainmetshare", release, "--out", tmp_path / "d", "--spacing", "0.9", "0", "1")
    assert result.returncode == 2 and "error: --spacing 0.9 0.0 1.0: expected three positive numbers" in result.stderr
    assert not (tmp_path / "d").exists()


def refused(tmp_path, *reasons):
    with pytest.raises(BrainMetSegError) as info:
        import_brainmetshare(tmp_path / "release", tmp_path / "out")
    for reason in reasons:
        assert reason in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written before the checks pass


def test_refuses_missing_channel_folder(tmp_path):
    folder = make_release(tmp_path / "release", channels=("0", "1", "3"))
    refused(tmp_path, str(folder), "missing channel folder(s) 2 (t1_gd)")


def test_refuses_mismatched_slice_counts(tmp_path):
    folder = make_release(tmp_path / "release")
    (folder / "seg" / "2.png").unlink()
    refused(tmp_path, str(folder), "seg/ holds 2 slices but 0/ holds 3")


def test_refuses_differently_numbered_slices(tmp_path):
    folder = make_release(tmp_path / "release")
    (folder / "1" / "2.png").rename(folder / "1" / "3.png")
    refused(tmp_path, str(folder), "1/ and 0/ hold differently numbered slices")


def test_refuses_mismatched_image_sizes(tmp_path):
    folder = make_release(tmp_path / "release")
    Image.fromarray(np.zeros((ROWS, COLUMNS + 1), np.uint8)).save(folder / "2" / "10.png")
    refused(tmp_path, str(folder / "2" / "10.png"), "image size 9x6 differs from the case's 8x6")


def test_refuses_unnumbered_slices(tmp_path):
    folder = make_release(tmp_path / "release")
    Image.fromarray(slice_pixels("0", 1)).save(folder / "0" / "extra.png")
    refused(tmp_path, str(folder / "0"), "not numbered NNN.png: extra.png")


def test_refuses_colour_slices(tmp_path):
    folder = make_release(tmp_path / "release")
    rgb = np.zeros((ROWS, COLUMNS, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(folder / "3" / "1.png")
    with pytest.raises(BrainMetSegError) as info:
        import_brainmetshare(tmp_path / "release", tmp_path / "out")
    assert str(folder / "3" / "1.png") in str(info.value) and "colour image" in str(info.value)


def test_refuses_corrupt_png_and_missing_source(tmp_path):
    folder = make_release(tmp_path / "release")
    (folder / "1" / "10.png").write_bytes(b"not a png")
    refused(tmp_path, str(folder / "1" / "10.png"), "cannot read the PNG")
    with pytest.raises(BrainMetSegError, match="absent: folder not found"):
        import_brainmetshare(tmp_path / "absent", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BrainMetSegError, match="no BrainMetShare case folders"):
        import_brainmetshare(tmp_path / "empty", tmp_path / "out")
