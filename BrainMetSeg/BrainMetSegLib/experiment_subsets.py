"""Table 3's smaller cohorts: a seeded share of the training cases, as a dataset of its own.

The paper trained on 10, 30 and 100 of its 100 training patients; on another dataset the same
shares (0.1, 0.3, 1.0) of its training cases are used. The subsets of one seed are nested
(the first k cases of one seeded permutation), so a larger cohort only adds cases, as in the
paper's comparison. Validation and test cases are kept whole: model selection and the test
metrics must not change with the cohort size.

The trainer reads a dataset folder, so a subset is written as one: case files and the
source's other top-level files (synth.json, which marks the synthetic cohort and makes the
model card say so) hard-linked, copied where links are impossible, and a dataset.json listing
the kept cases with every top-level field of the source's. Nothing in the source is modified.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from .atomic import atomic_path, atomic_write_json
from .dataset import DATASET_FORMAT, DATASET_JSON, Dataset, read_dataset
from .errors import BrainMetSegError


def subset_size(count: int, fraction: float) -> int:
    """Cases kept of `count`: the fraction rounded half up, at least one."""
    if not 0 < fraction <= 1:
        raise BrainMetSegError(f"training fraction {fraction!r}: expected a number in (0, 1]")
    return max(1, min(count, int(math.floor(fraction * count + 0.5))))


def training_subset(case_ids: Sequence[str], fraction: float, seed: int) -> List[str]:
    """The kept ids, in the given order; nested across fractions for one seed."""
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EB5E7])).permutation(len(case_ids))
    kept = set(order[:subset_size(len(case_ids), fraction)].tolist())
    return [case_id for index, case_id in enumerate(case_ids) if index in kept]


def subset_document(dataset: Dataset, kept_train: Sequence[str]) -> Dict[str, object]:
    """dataset.json of the subset: the source's top-level fields, the kept cases."""
    kept = set(kept_train)
    cases = [entry.to_json() for entry in dataset.cases if entry.split != "train" or entry.case_id in kept]
    document: Dict[str, object] = {}
    source = dataset.root / DATASET_JSON
    if source.is_file():
        document.update(json.loads(source.read_text(encoding="utf-8")))
    document.update({"format": DATASET_FORMAT, "cases": cases,
                     "subset_of": str(dataset.root.resolve()), "kept_train_cases": list(kept_train)})
    return document


def write_subset_dataset(dataset: Dataset, kept_train: Sequence[str], out: Path) -> Path:
    """Write (or reuse) the subset dataset at `out`; returns `out`.

    An existing subset is reused only when its dataset.json is exactly the one this call would
    write: it was made from the same source with the same cases. Anything else there is refused
    rather than overwritten.
    """
    out = Path(out)
    document = subset_document(dataset, kept_train)
    index = out / DATASET_JSON
    if index.is_file():
        try:
            existing = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BrainMetSegError(f"{index}: unreadable ({error}); remove {out} to rebuild the subset") from None
        if existing != document:
            raise BrainMetSegError(f"{index}: a different subset (other source or cases) already lies here; "
                                   f"remove {out} or choose another --out")
        read_dataset(out)  # every case folder still complete
        return out
    if out.exists() and any(out.iterdir()):
        raise BrainMetSegError(f"{out}: exists without {DATASET_JSON} (an interrupted subset?); remove it first")
    by_id = {entry.case_id: entry for entry in dataset.cases}
    for case in document["cases"]:  # type: ignore[union-attr]
        entry = by_id[case["id"]]
        label = entry.label_path()
        for path in list(entry.image_paths().values()) + ([] if label is None else [label]):
            _link(path, out / entry.case_id / path.name)
    for path in sorted(dataset.root.iterdir()):
        if path.is_file() and path.name != DATASET_JSON and not path.name.startswith("."):
            _link(path, out / path.name)
    atomic_write_json(index, document)  # last: an interrupted copy is not a dataset
    return out


def _link(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:  # another file system, or no hard links: copy
            shutil.copy2(path, tmp)
