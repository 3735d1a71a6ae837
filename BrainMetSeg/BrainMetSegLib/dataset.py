"""The dataset folder: `Mets_XXX/{t1_pre,t1_gd,bravo,flair,seg}.nii.gz` plus `dataset.json`.

The layout is the one of the NIfTI redistribution of BrainMetShare, so such a copy reads as is.
`dataset.json` adds what files cannot say: the split of each case, whether its label is
complete or may miss lesions (`partial`, the case the lopsided loss is built for), and the
RAS centroids of candidates an annotator reviewed and rejected (known negatives). Without it
the folder is scanned and every case is `train`. Schema errors name the file, the case and
the field, because dataset.json is edited by hand.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from .atomic import atomic_write_json
from .case import Case, load_case
from .errors import BrainMetSegError
from .roles import LABEL_ROLE, ROLES
from .volumes import Volume, write_volume

PathLike = Union[str, "os.PathLike[str]"]

SPLITS = ("train", "val", "test")
LABEL_STATUSES = ("complete", "partial", "none")
DATASET_JSON = "dataset.json"
DATASET_FORMAT = 1
CASE_SUFFIXES = (".nii.gz", ".nii")
"""Suffixes of case files, in order of preference; new cases are written as .nii.gz."""
ENTRY_KEYS = ("id", "split", "label", "rejected")


@dataclass(eq=False)
class CaseEntry:
    case_id: str
    folder: Path
    split: str = "train"
    label_status: str = "complete"
    rejected: List[List[float]] = field(default_factory=list)

    def image_paths(self) -> Dict[str, Path]:
        """The four sequence files; a missing one is refused naming the folder and the role."""
        paths = {}
        for role in ROLES:
            found = find_case_file(self.folder, role)
            if found is None:
                raise BrainMetSegError(f"{self.folder}: no {role}.nii.gz or {role}.nii (case {self.case_id})")
            paths[role] = found
        return paths

    def label_path(self) -> Optional[Path]:
        return find_case_file(self.folder, LABEL_ROLE)

    def load(self, with_label: bool = True) -> Case:
        """Read and validate the case; the label is read only when its status is not `none`."""
        label = None
        if with_label and self.label_status != "none":
            label = self.label_path()
            if label is None:
                raise BrainMetSegError(f"{self.folder}: label '{self.label_status}' but no "
                                       f"{LABEL_ROLE}.nii.gz or {LABEL_ROLE}.nii (case {self.case_id})")
        return load_case(self.image_paths(), label=label, case_id=self.case_id)

    def to_json(self) -> Dict[str, object]:
        return {"id": self.case_id, "split": self.split, "label": self.label_status,
                "rejected": [[float(x) for x in point] for point in self.rejected]}


@dataclass(eq=False)
class Dataset:
    root: Path
    cases: List[CaseEntry]

    def split(self, name: str) -> List[CaseEntry]:
        if name not in SPLITS:
            raise BrainMetSegError(f"unknown split '{name}'; expected one of {', '.join(SPLITS)}")
        return [case for case in self.cases if case.split == name]

    def get(self, case_id: str) -> CaseEntry:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise BrainMetSegError(f"{self.root}: no case '{case_id}' in the dataset")

    @property
    def ids(self) -> List[str]:
        return [case.case_id for case in self.cases]


def find_case_file(folder: Path, stem: str) -> Optional[Path]:
    """`folder/<stem>.nii.gz`, else `folder/<stem>.nii`, else None."""
    for suffix in CASE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def natural_key(name: str):
    """Mets_2 before Mets_10, whatever the zero padding."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def check_case_id(case_id: object, source: object) -> str:
    """A case id is a plain folder name: no path separators, nothing hidden or relative."""
    if (not isinstance(case_id, str) or not case_id or case_id in (".", "..") or case_id.startswith(".")
            or "/" in case_id or "\\" in case_id):
        raise BrainMetSegError(f"{source}: invalid case id {case_id!r}; expected a plain folder name such as Mets_001")
    return case_id


# ---------------------------------------------------------------------------------- reading


def read_dataset(root: PathLike) -> Dataset:
    """Read a dataset folder, from dataset.json when present, else by scanning it."""
    root = Path(root)
    if not root.is_dir():
        raise BrainMetSegError(f"{root}: dataset folder not found")
    if (root / DATASET_JSON).is_file():
        return Dataset(root, _read_dataset_json(root))
    cases = scan_cases(root)
    if not cases:
        raise BrainMetSegError(
            f"{root}: no cases found; expected {DATASET_JSON} or folders such as Mets_001/ holding "
            f"{', '.join(r + '.nii.gz' for r in ROLES)} (or .nii)")
    return Dataset(root, cases)


def scan_cases(root: PathLike) -> List[CaseEntry]:
    """Case folders without dataset.json: every Mets_* folder (which must be complete) and any
    other subfolder that holds the four sequence files. All `train`; label `complete` when a
    seg file exists, else `none`."""
    root = Path(root)
    cases = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: natural_key(p.name)):
        has_all = all(find_case_file(folder, role) is not None for role in ROLES)
        if not has_all and not folder.name.startswith("Mets_"):
            continue
        entry = CaseEntry(folder.name, folder)
        entry.image_paths()  # a Mets_* folder missing a sequence is refused here
        entry.label_status = "complete" if entry.label_path() is not None else "none"
        cases.append(entry)
    return cases


def _read_dataset_json(root: Path) -> List[CaseEntry]:
    path = root / DATASET_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BrainMetSegError(f"{path}: not valid JSON ({error})") from error
    except (OSError, UnicodeDecodeError) as error:
        raise BrainMetSegError(f"{path}: cannot read the file ({error})") from error
    if not isinstance(document, dict):
        raise BrainMetSegError(f"{path}: expected a JSON object with 'format' and 'cases'")
    if document.get("format") != DATASET_FORMAT:
        raise BrainMetSegError(f"{path}: unsupported format {document.get('format')!r}; expected {DATASET_FORMAT}")
    entries = document.get("cases")
    if not isinstance(entries, list):
        raise BrainMetSegError(f"{path}: 'cases' must be a list of case objects")
    cases = [_parse_entry(entry, index, root, path) for index, entry in enumerate(entries)]
    _check_unique(cases, path)
    for case in cases:
        where = f"{path}: case {case.case_id}"
        if not case.folder.is_dir():
            raise BrainMetSegError(f"{where}: folder {case.folder} not found")
        case.image_paths()
        if case.label_status != "none" and case.label_path() is None:
            raise BrainMetSegError(f"{where}: label '{case.label_status}' but no {LABEL_ROLE}.nii.gz or "
                                   f"{LABEL_ROLE}.nii in {case.folder}")
    return cases


def _parse_entry(entry: object, index: int, root: Path, path: Path) -> CaseEntry:
    where = f"{path}: cases[{index}]"
    if not isinstance(entry, dict):
        raise BrainMetSegError(f"{where}: expected an object with {', '.join(ENTRY_KEYS)}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise BrainMetSegError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(ENTRY_KEYS)}")
    if "id" not in entry:
        raise BrainMetSegError(f"{where}: missing 'id'")
    case_id = check_case_id(entry["id"], where)
    where = f"{path}: case {case_id}"
    folder = root / case_id
    split = entry.get("split", "train")
    default_label = "complete" if find_case_file(folder, LABEL_ROLE) is not None else "none"
    label_status = entry.get("label", default_label)
    entry_obj = CaseEntry(case_id, folder, split, label_status, entry.get("rejected", []))
    return _validated(entry_obj, where)


def _validated(entry: CaseEntry, where: str) -> CaseEntry:
    if entry.split not in SPLITS:
        raise BrainMetSegError(f"{where}: unknown split {entry.split!r}; expected one of {', '.join(SPLITS)}")
    if entry.label_status not in LABEL_STATUSES:
        raise BrainMetSegError(
            f"{where}: unknown label status {entry.label_status!r}; expected one of {', '.join(LABEL_STATUSES)}")
    entry.rejected = _parse_rejected(entry.rejected, where)
    return entry


def _parse_rejected(rejected: object, where: str) -> List[List[float]]:
    if not isinstance(rejected, (list, tuple)):
        raise BrainMetSegError(f"{where}: 'rejected' must be a list of [R, A, S] points in mm")
    points = []
    for index, point in enumerate(rejected):
        if (not isinstance(point, (list, tuple)) or len(point) != 3
                or not all(_is_finite_number(x) for x in point)):
            raise BrainMetSegError(f"{where}: rejected[{index}] is {point!r}; expected [R, A, S], three finite numbers in mm")
        points.append([float(x) for x in point])
    return points


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_unique(cases: Sequence[CaseEntry], source: object) -> None:
    seen = set()
    for case in cases:
        if case.case_id in seen:
            raise BrainMetSegError(f"{source}: case {case.case_id} is listed twice")
        seen.add(case.case_id)


# ---------------------------------------------------------------------------------- writing


def write_dataset_json(root: PathLike, cases: Sequence[CaseEntry]) -> None:
    """Write dataset.json atomically after checking every entry against the schema."""
    root = Path(root)
    path = root / DATASET_JSON
    for case in cases:
        check_case_id(case.case_id, path)
        _validated(case, f"{path}: case {case.case_id}")
    _check_unique(cases, path)
    atomic_write_json(path, {"format": DATASET_FORMAT, "cases": [case.to_json() for case in cases]})


def write_case(root: PathLike, case_id: str, volumes: Mapping[str, Volume], label: Optional[Volume] = None,
               overwrite: bool = False) -> Path:
    """Write `root/case_id/<role>.nii.gz` (and seg.nii.gz), each file atomically.

    An existing case is refused unless `overwrite`; when overwriting, files of the old case
    that the new one does not replace (a .nii twin, a label the new case lacks) are removed
    so that the folder holds exactly the new case.
    """
    root = Path(root)
    folder = root / check_case_id(case_id, root)
    missing = [role for role in ROLES if role not in volumes]
    if missing:
        raise BrainMetSegError(f"{folder}: missing sequence(s) {', '.join(missing)}; a case needs {', '.join(ROLES)}")
    unknown = sorted(set(volumes) - set(ROLES))
    if unknown:
        raise BrainMetSegError(f"{folder}: unknown sequence role(s) {', '.join(unknown)}")
    existing = [folder / f"{stem}{suffix}" for stem in ROLES + (LABEL_ROLE,) for suffix in CASE_SUFFIXES
                if (folder / f"{stem}{suffix}").exists()]
    if existing and not overwrite:
        raise BrainMetSegError(f"{folder}: case {case_id} already exists; pass overwrite=True (--overwrite) to replace it")
    written = {}
    for role in ROLES:
        written[role] = folder / f"{role}{CASE_SUFFIXES[0]}"
        write_volume(volumes[role], written[role])
    if label is not None:
        written[LABEL_ROLE] = folder / f"{LABEL_ROLE}{CASE_SUFFIXES[0]}"
        write_volume(label, written[LABEL_ROLE])
    for stale in existing:
        if stale not in written.values():
            stale.unlink()
    return folder
