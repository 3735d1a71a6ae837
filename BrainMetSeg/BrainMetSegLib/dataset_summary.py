"""What a dataset holds, per split: cases, labelled lesions, complete vs partial labels.

The export panel shows this after every case added, so an annotator sees the dataset grow
and a researcher sees at a glance whether partial labels are present (which is what makes
the lopsided loss the sensible default). Lesions are the 26-connected components of each
label file on its own grid, as censoring counts them. Reading every label takes a while on
a large dataset, so counts are cached per label file (path, size, modification time): the
panel refreshes after each export and re-reads only the new case.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from .dataset import SPLITS, Dataset, read_dataset
from .lesions import connected_components
from .volumes import read_volume

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[float, str], None]

_lesion_counts: Dict[Tuple[str, int, int], int] = {}


@dataclass
class SplitSummary:
    cases: int = 0
    complete: int = 0
    partial: int = 0
    unlabelled: int = 0
    lesions: Optional[int] = 0
    """Labelled lesions over the split's labelled cases; None when lesions were not counted."""
    rejected: int = 0
    """Candidates reviewed and rejected (known negatives)."""

    def add(self, other: "SplitSummary") -> None:
        self.cases += other.cases
        self.complete += other.complete
        self.partial += other.partial
        self.unlabelled += other.unlabelled
        self.lesions = None if self.lesions is None or other.lesions is None else self.lesions + other.lesions
        self.rejected += other.rejected


@dataclass
class DatasetSummary:
    root: Path
    splits: Dict[str, SplitSummary] = field(default_factory=dict)
    """One entry per split in SPLITS order, empty splits included."""
    total: SplitSummary = field(default_factory=SplitSummary)

    @property
    def has_partial(self) -> bool:
        return self.total.partial > 0


def count_label_lesions(path: PathLike) -> int:
    """Lesions (26-connected components of the non-zero voxels) of a label file, cached."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _lesion_counts:
        _lesion_counts[key] = connected_components(read_volume(path).array != 0)[1]
    return _lesion_counts[key]


def summarize_dataset(dataset: Union[Dataset, PathLike], count_lesions: bool = True,
                      progress: Optional[Progress] = None) -> DatasetSummary:
    """Counts per split and in total; `count_lesions=False` skips reading the label files."""
    if not isinstance(dataset, Dataset):
        dataset = read_dataset(dataset)
    summary = DatasetSummary(dataset.root, {name: SplitSummary() for name in SPLITS})
    for number, case in enumerate(dataset.cases):
        split = SplitSummary(cases=1, rejected=len(case.rejected))
        if case.label_status == "none":
            split.unlabelled = 1
        else:
            setattr(split, case.label_status, 1)
            split.lesions = count_label_lesions(case.label_path()) if count_lesions else None
        summary.splits[case.split].add(split)
        if progress is not None:
            progress((number + 1) / len(dataset.cases), f"counted {case.case_id}")
    if not count_lesions:
        for split in summary.splits.values():
            split.lesions = None
    for split in summary.splits.values():
        summary.total.add(split)
    return summary


def format_summary(summary: DatasetSummary) -> str:
    """A small aligned table: one row per split and a total row."""
    headers = ("split", "cases", "complete", "partial", "unlabelled", "lesions", "rejected")
    rows: List[List[str]] = []
    for name, split in list(summary.splits.items()) + [("total", summary.total)]:
        rows.append([name, str(split.cases), str(split.complete), str(split.partial), str(split.unlabelled),
                     "-" if split.lesions is None else str(split.lesions), str(split.rejected)])
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    return "\n".join(lines)
