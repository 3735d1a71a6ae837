"""Import the official Stanford release of BrainMetShare (PNG slices) into the dataset layout.

The release holds one folder per case, `Mets_XXX/{0,1,2,3,seg}/NNN.png`: 0 = T1 gradient echo
post-contrast (bravo), 1 = T1 spin echo pre-contrast, 2 = T1 spin echo post-contrast, 3 = FLAIR,
seg = lesion mask stored as 0/255 (any non-zero pixel becomes lesion 1). Test cases come
without a seg folder; they are imported with label status `none`.

PNG stores no geometry, so the importer assumes it: every slice is axial and displayed
radiologically, as in the release (image rows run anterior -> posterior, image columns run
from the patient's right to the patient's left), and slices numbered upwards run inferior ->
superior. The volume array is indexed [column, row, slice], which makes its affine
diag(-dx, -dy, dz) in RAS (orientation LPS), centred on the RAS origin; `spacing` is
(in-plane column spacing, in-plane row spacing, slice spacing) in mm, about 0.94 x 0.94 x 1
for BrainMetShare. If a copy numbers its slices the other way, its brains appear upside down
in Slicer: the import is self-consistent, but check before mixing it with other data.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .dataset import (DATASET_JSON, CaseEntry, check_case_id, find_case_file, natural_key, read_dataset,
                      scan_cases, write_case, write_dataset_json)
from .errors import BrainMetSegError
from .roles import LABEL_ROLE, ROLES
from .volumes import Volume, make_affine

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[float, str], None]

CHANNELS = {"0": "bravo", "1": "t1_pre", "2": "t1_gd", "3": "flair"}
"""Release channel folder -> role."""
SEG_FOLDER = "seg"
DEFAULT_SPACING = (0.94, 0.94, 1.0)


@dataclass(eq=False)
class ReleaseCase:
    """A case folder of the release, checked for structure: slice files per channel folder."""

    case_id: str
    folder: Path
    slices: Dict[str, List[Path]]  # channel folder name -> PNG files in slice order
    size: Tuple[int, int]  # (rows, columns)

    @property
    def labelled(self) -> bool:
        return SEG_FOLDER in self.slices


def axial_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """The assumed geometry (see module docstring): [column, row, slice] -> RAS, centred on 0."""
    affine = make_affine(spacing, np.diag([-1.0, -1.0, 1.0]))
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape, dtype=float) - 1) / 2)
    return affine


def find_release_cases(source: PathLike) -> List[ReleaseCase]:
    """Every case folder under `source` (at any depth): Mets_* folders and folders holding a
    channel folder. Checks structure and PNG sizes (headers only) before anything is written."""
    source = Path(source)
    if not source.is_dir():
        raise BrainMetSegError(f"{source}: folder not found")
    channel_names = set(CHANNELS) | {SEG_FOLDER}
    folders = []
    for parent, children, _ in os.walk(source):
        here = Path(parent)
        if here.name.startswith("Mets_") or channel_names & set(children):
            folders.append(here)
            children[:] = []  # a case folder holds slices, not further cases
        else:
            children[:] = sorted(c for c in children if not c.startswith("."))
    folders.sort(key=lambda p: natural_key(p.name))
    if not folders:
        raise BrainMetSegError(f"{source}: no BrainMetShare case folders (Mets_XXX/0,1,2,3,seg/NNN.png) found")
    cases = [_release_case(folder) for folder in folders]
    seen: Dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            raise BrainMetSegError(f"{case.folder}: case id {case.case_id} also found at {seen[case.case_id]}")
        seen[case.case_id] = case.folder
    return cases


def _release_case(folder: Path) -> ReleaseCase:
    case_id = check_case_id(folder.name, folder)
    missing = [name for name in CHANNELS if not (folder / name).is_dir()]
    if missing:
        raise BrainMetSegError(f"{folder}: missing channel folder(s) "
                               + ", ".join(f"{name} ({CHANNELS[name]})" for name in missing))
    names = list(CHANNELS) + ([SEG_FOLDER] if (folder / SEG_FOLDER).is_dir() else [])
    slices = {name: _slice_files(folder / name) for name in names}
    numbers = {name: [int(p.stem) for p in files] for name, files in slices.items()}
    first = names[0]
    for name in names[1:]:
        if len(numbers[name]) != len(numbers[first]):
            raise BrainMetSegError(f"{folder}: {name}/ holds {len(numbers[name])} slices but {first}/ "
                                   f"holds {len(numbers[first])}; every channel needs the same slices")
        if numbers[name] != numbers[first]:
            raise BrainMetSegError(f"{folder}: {name}/ and {first}/ hold differently numbered slices")
    size = _png_size(slices[first][0])
    for name, files in slices.items():
        for path in files:
            rows, columns = _png_size(path)
            if (rows, columns) != size:
                raise BrainMetSegError(f"{path}: image size {columns}x{rows} differs from the case's "
                                       f"{size[1]}x{size[0]} (width x height); every slice needs the same size")
    return ReleaseCase(case_id, folder, slices, size)


def _slice_files(folder: Path) -> List[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"]
    if not files:
        raise BrainMetSegError(f"{folder}: no PNG slices")
    bad = [p.name for p in files if not p.stem.isdigit()]
    if bad:
        raise BrainMetSegError(f"{folder}: slice file(s) not numbered NNN.png: {', '.join(sorted(bad)[:3])}")
    files.sort(key=lambda p: int(p.stem))
    return files


def _png_size(path: Path) -> Tuple[int, int]:
    """(rows, columns) from the PNG header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, UnidentifiedImageError) as error:
        raise BrainMetSegError(f"{path}: cannot read the PNG ({error})") from error


def _read_png(path: Path) -> np.ndarray:
    """One grey-level slice as (rows, columns); colour PNGs are accepted only when grey."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("1", "P"):
                image = image.convert("L")
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise BrainMetSegError(f"{path}: cannot read the PNG ({error})") from error
    if pixels.ndim == 3:
        colour = pixels[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise BrainMetSegError(f"{path}: colour image; expected a grey-level slice")
        pixels = colour[..., 0]
    return pixels


def read_release_volume(files: Sequence[Path], affine: np.ndarray) -> Volume:
    """Stack slices into a [column, row, slice] volume, keeping the PNG's integer type."""
    stack = np.stack([_read_png(path) for path in files], axis=-1)  # (rows, columns, slices)
    return Volume(np.ascontiguousarray(stack.transpose(1, 0, 2)), affine, files[0].parent)


def import_case(case: ReleaseCase, out: PathLike, spacing: Sequence[float], overwrite: bool = False) -> CaseEntry:
    """Convert one release case and write it to `out/<case_id>/`."""
    shape = (case.size[1], case.size[0], len(case.slices["0"]))
    affine = axial_affine(shape, spacing)
    volumes = {CHANNELS[name]: read_release_volume(case.slices[name], affine) for name in CHANNELS}
    label = None
    if case.labelled:
        seg = read_release_volume(case.slices[SEG_FOLDER], affine)
        label = seg.with_array((seg.array > 0).astype(np.uint8))
    folder = write_case(out, case.case_id, volumes, label, overwrite=overwrite)
    return CaseEntry(case.case_id, folder, "train", "complete" if case.labelled else "none")


def import_brainmetshare(source: PathLike, out: PathLike, spacing: Sequence[float] = DEFAULT_SPACING,
                         overwrite: bool = False, progress: Optional[Progress] = None) -> List[CaseEntry]:
    """Import every case under `source` into the dataset folder `out`, then write dataset.json.

    Structure (channel folders, slice numbers, image sizes) and existing cases are checked
    before the first file is written, so such refusals leave `out` untouched; dataset.json is
    written last. Cases already in `out` stay listed in it.
    """
    spacing = _check_spacing(spacing)
    out = Path(out)
    cases = find_release_cases(source)
    if not overwrite:
        for case in cases:
            if any(find_case_file(out / case.case_id, stem) for stem in ROLES + (LABEL_ROLE,)):
                raise BrainMetSegError(f"{out / case.case_id}: case {case.case_id} already exists; "
                                       "pass --overwrite (overwrite=True) to replace it")
    previous = _existing_entries(out)
    from tqdm import tqdm

    imported = []
    bar = tqdm(cases, desc="import", unit="case", disable=not sys.stderr.isatty())
    for index, case in enumerate(bar):
        bar.set_postfix_str(case.case_id)
        if progress is not None:
            progress(index / len(cases), f"importing {case.case_id}")
        imported.append(import_case(case, out, spacing, overwrite))
    new_ids = {entry.case_id for entry in imported}
    write_dataset_json(out, [entry for entry in previous if entry.case_id not in new_ids] + imported)
    if progress is not None:
        progress(1.0, f"imported {len(imported)} cases")
    return imported


def _existing_entries(out: Path) -> List[CaseEntry]:
    """Cases already in `out`, so that an import adds to a dataset instead of hiding it."""
    if (out / DATASET_JSON).is_file():
        return read_dataset(out).cases
    return scan_cases(out) if out.is_dir() else []


def _check_spacing(spacing: Sequence[float]) -> Tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) <= 0:
        raise BrainMetSegError(f"--spacing {' '.join(str(s) for s in spacing)}: expected three positive "
                               "numbers in mm (column, row, slice)")
    return values  # type: ignore[return-value]
