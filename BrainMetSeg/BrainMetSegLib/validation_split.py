"""Choosing validation cases: the trainer selects its model on the dataset's `val` cases.

A dataset imported or exported without validation cases (BrainMetShare's NIfTI copy is all
`train`) would otherwise keep the last epoch, so the training form offers to move some
labelled training cases to `val`. Cases with complete labels go first: the trainer selects
on complete-label validation cases when there are any, because AP measured against labels
that miss lesions counts true findings as false positives. The choice is seeded, hence
repeatable, and written to dataset.json atomically; existing validation cases stay.
"""
from __future__ import annotations

import os
from typing import List, Union

import numpy as np

from .dataset import natural_key, read_dataset, write_dataset_json
from .errors import BrainMetSegError

PathLike = Union[str, "os.PathLike[str]"]


def assign_validation(dataset_root: PathLike, count: int, seed: int = 0) -> List[str]:
    """Move `count` labelled training cases to the `val` split; returns their ids in order."""
    dataset = read_dataset(dataset_root)
    labelled = [case for case in dataset.split("train") if case.label_status != "none"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count < len(labelled):
        raise BrainMetSegError(f"validation cases: {count!r}; expected 1 to {len(labelled) - 1} (the dataset has "
                               f"{len(labelled)} labelled training case(s), and at least one must stay for training)")
    rng = np.random.default_rng(seed)
    complete = [case for case in labelled if case.label_status == "complete"]
    partial = [case for case in labelled if case.label_status == "partial"]
    ordered = [complete[i] for i in rng.permutation(len(complete))] + [partial[i] for i in rng.permutation(len(partial))]
    chosen = ordered[:count]
    for case in chosen:
        case.split = "val"
    write_dataset_json(dataset.root, dataset.cases)
    return sorted((case.case_id for case in chosen), key=natural_key)
