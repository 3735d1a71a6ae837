"""A censored copy of a dataset: what `brainmetseg censor` writes.

Training and validation labels are censored (censor.py) and marked `partial`; test cases and
images are carried over byte for byte, as hard links where the file system allows (a dataset
of 100 studies is gigabytes of images and censoring changes none of them), else as copies.
Every file of this project is written by replacing it, never in place, so a hard-linked
image cannot be changed through the copy by these tools.

Labels are read twice (once to measure lesions, once to censor them) so that a large
dataset never has every label in memory at once. dataset.json is written last: a copy
interrupted half-way is not a dataset yet.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from .atomic import atomic_path, atomic_write_json
from .censor import CensorReport, apply_censoring, check_options, lesion_volumes, plan_censoring
from .dataset import CASE_SUFFIXES, CaseEntry, read_dataset, write_dataset_json
from .errors import BrainMetSegError
from .roles import LABEL_ROLE, ROLES
from .volumes import Volume, read_volume, write_volume

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[float, str], None]

CENSORED_SPLITS = ("train", "val")
REPORT_FILE = "censoring.json"


def write_censored_copy(dataset: PathLike, out: PathLike, mode: str, rate: float, seed: int,
                        overwrite: bool = False, link: bool = True,
                        progress: Optional[Progress] = None) -> CensorReport:
    """Write the censored copy of `dataset` to `out` with `out/censoring.json`; returns the report.

    `link=False` copies images instead of hard-linking them. An existing, non-empty `out` is
    refused unless `overwrite`; `out` may never be the source dataset itself.
    """
    mode, rate, seed = check_options(mode, rate, seed)
    source = read_dataset(dataset)
    out = Path(out)
    _check_destination(source.root, out, overwrite)
    censored = [e for e in source.cases if e.split in CENSORED_SPLITS and e.label_status != "none"]
    if not censored:
        raise BrainMetSegError(f"{source.root}: no labelled train or val case to censor")

    volumes = {}
    for number, entry in enumerate(censored):
        _report(progress, 0.4 * number / len(censored), f"measuring lesions of {entry.case_id}")
        label = read_volume(_label_path(entry))
        volumes[entry.case_id] = lesion_volumes(label.array, label.affine, str(label.path))[1]
    report = plan_censoring(volumes, mode, rate, seed)

    entries: List[CaseEntry] = []
    for number, entry in enumerate(source.cases):
        _report(progress, 0.4 + 0.6 * number / len(source.cases), f"writing {entry.case_id}")
        folder = out / entry.case_id
        written = [_carry(path, folder, link) for path in entry.image_paths().values()]
        label_path = entry.label_path()
        status = entry.label_status
        if entry.case_id in volumes:
            label = read_volume(label_path)
            components, _ = lesion_volumes(label.array, label.affine, str(label_path))
            kept = apply_censoring(label.array, components, report.case(entry.case_id).removed)
            written.append(folder / label_path.name)
            write_volume(Volume(kept, label.affine), written[-1])
            status = "partial"
        elif label_path is not None:
            written.append(_carry(label_path, folder, link))
        _remove_stale(folder, written)
        entries.append(CaseEntry(entry.case_id, folder, entry.split, status, list(entry.rejected)))

    document: Dict[str, object] = {"source": str(source.root.resolve())}
    document.update(report.to_json())
    atomic_write_json(out / REPORT_FILE, document)
    write_dataset_json(out, entries)
    _report(progress, 1.0, f"removed {report.removed} of {report.lesions} lesion(s)")
    return report


def _report(progress: Optional[Progress], fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _check_destination(source: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and out.resolve() == source.resolve():
        raise BrainMetSegError(f"{out}: is the source dataset; censoring writes a copy, choose another --out folder")
    if out.exists() and not out.is_dir():
        raise BrainMetSegError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BrainMetSegError(f"{out}: already exists and is not empty; pass --overwrite (overwrite=True) to replace it")


def _label_path(entry: CaseEntry) -> Path:
    path = entry.label_path()
    if path is None:  # read_dataset checks this; the folder may have changed since
        raise BrainMetSegError(f"{entry.folder}: label '{entry.label_status}' but no {LABEL_ROLE}.nii.gz or "
                               f"{LABEL_ROLE}.nii (case {entry.case_id})")
    return path


def _carry(path: Path, folder: Path, link: bool) -> Path:
    """Hard-link (else copy) `path` into `folder` under its own name, replacing atomically."""
    target = folder / path.name
    with atomic_path(target) as tmp:
        tmp.unlink()
        if link:
            try:
                os.link(path, tmp)
                return target
            except OSError:  # another file system, or links not supported: copy instead
                pass
        shutil.copy2(path, tmp)
    return target


def _remove_stale(folder: Path, written: List[Path]) -> None:
    """On --overwrite, drop case files of an earlier copy that this one did not write (a .nii twin,
    a label the case no longer has), so the folder holds exactly this copy."""
    for stem in ROLES + (LABEL_ROLE,):
        for suffix in CASE_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.exists() and candidate not in written:
                candidate.unlink()
