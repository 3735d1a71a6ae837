"""Atomic writes: the destination appears whole or not at all, with ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from BrainMetSegLib.atomic import atomic_path, atomic_write_json, atomic_write_text


def test_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_temporary_keeps_compound_suffix_so_writers_pick_the_format(tmp_path):
    with atomic_path(tmp_path / "bravo.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "lesions.seg.nrrd") as tmp:
        assert tmp.name.endswith(".seg.nrrd")
        tmp.write_bytes(b"x")


def test_written_files_follow_the_umask_not_mkstemp_private_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "dataset.json", {"format": 1})
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "dataset.json").stat().st_mode)
    assert mode == 0o644
