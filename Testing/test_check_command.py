"""`brainmetseg check` through a real subprocess: what a user sees first about their data."""
from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np

from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import Volume, make_affine, write_volume
from helpers_volumes import blob_case, write_case_files


def run_check(*args):
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", "check", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def file_options(paths):
    return [arg for role in ROLES for arg in (f"--{role.replace('_', '-')}", paths[role])]


def test_check_case_folder(tmp_path):
    folder = tmp_path / "Mets_004"
    write_case_files(folder, spacing=(0.5, 0.5, 2.0))
    result = run_check("--case", folder)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "case Mets_004: valid" in out
    for name in ROLES + ("seg",):
        assert f"  {name:<7} 10x11x12      0.5 x 0.5 x 2 mm" in out
    brain = int(np.count_nonzero(blob_case()[0]["bravo"].array))
    assert f"brain voxels: {brain} ({brain * 0.5 / 1000:.1f} mL, non-zero bravo voxels)" in out
    assert "lesion voxels: 8 (4.0 mm3)" in out
    assert "warnings: 0" in out


def test_check_files_reports_resampling_and_label_values(tmp_path):
    paths = write_case_files(tmp_path, with_label=False)
    volumes, label = blob_case()
    write_volume(Volume(volumes["t1_pre"].array[::2, ::2, ::2].copy(), make_affine((2.0, 2.0, 2.0))), paths["t1_pre"])
    label.array[0, 0, 0] = 3
    write_volume(label, tmp_path / "multi.nii.gz")
    result = run_check(*file_options(paths), "--seg", tmp_path / "multi.nii.gz")
    assert result.returncode == 0, result.stderr
    assert "warnings: 2" in result.stdout
    assert f"{paths['t1_pre']}: grid differs from bravo" in result.stdout
    assert "label values above 1 (3) mapped to 1" in result.stdout
    assert "lesion voxels: 9" in result.stdout


def test_check_with_mask_and_unstripped_note(tmp_path):
    paths = write_case_files(tmp_path, with_label=False)
    volumes, _ = blob_case()
    write_volume(volumes["bravo"].with_array(volumes["bravo"].array + 1), paths["bravo"])  # no zero voxel
    result = run_check(*file_options(paths))
    assert result.returncode == 0, result.stderr
    assert "brain voxels: 1320" in result.stdout and "is it skull-stripped?" in result.stdout
    mask = np.zeros((10, 11, 12), np.uint8)
    mask[3:6, 3:6, 3:6] = 1
    write_volume(volumes["bravo"].with_array(mask), tmp_path / "mask.nii.gz")
    result = run_check(*file_options(paths), "--mask", tmp_path / "mask.nii.gz")
    assert "brain voxels: 27 (0.0 mL, brain mask)" in result.stdout and "skull-stripped" not in result.stdout


def test_check_refusals(tmp_path):
    paths = write_case_files(tmp_path, with_label=False)
    result = run_check("--t1-pre", paths["t1_pre"], "--bravo", paths["bravo"])
    assert result.returncode == 2 and "error: missing --t1-gd, --flair" in result.stderr
    result = run_check("--case", tmp_path, "--flair", paths["flair"])
    assert result.returncode == 2 and "error: --case: give either a case folder or the four" in result.stderr
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.float32), np.eye(4)), str(paths["flair"]))
    result = run_check(*file_options(paths))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {paths['flair']}: 4D image (shape 4x4x4x2)" in result.stderr
