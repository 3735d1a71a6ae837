"""Label maps made of separated cubes (each cube one 26-connected lesion) and a small
dataset with train, val and test cases for the censoring tests."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from BrainMetSegLib.dataset import CaseEntry, write_case, write_dataset_json
from BrainMetSegLib.volumes import Volume, make_affine
from helpers_volumes import blob_case

Cube = Tuple[Tuple[int, int, int], int]
"""(corner index, edge length in voxels)."""


def cube_label(shape: Sequence[int], cubes: Sequence[Cube], dtype=np.uint8) -> np.ndarray:
    label = np.zeros(tuple(shape), dtype=dtype)
    for corner, size in cubes:
        label[tuple(slice(c, c + size) for c in corner)] = 1
    return label


def many_lesions(count: int, shape: Tuple[int, int, int] = (20, 20, 20)) -> np.ndarray:
    """`count` one-voxel lesions on a lattice of pitch 2 (no two 26-connected)."""
    lattice = np.argwhere(np.ones(tuple(n // 2 for n in shape), dtype=bool)) * 2
    label = np.zeros(shape, dtype=np.uint8)
    label[tuple(lattice[:count].T)] = 1
    return label


SHAPE = (16, 16, 16)

DATASET_CASES: Dict[str, Tuple[str, str, List[Cube]]] = {
    # id: (split, label status, lesions); volumes in mm3 on 1 mm voxels are size ** 3
    "Mets_001": ("train", "complete", [((2, 2, 2), 1), ((8, 8, 8), 3)]),
    "Mets_002": ("train", "partial", [((2, 2, 2), 2), ((8, 8, 8), 4)]),
    "Mets_003": ("val", "complete", [((2, 2, 2), 1), ((8, 8, 8), 2)]),
    "Mets_004": ("test", "complete", [((5, 5, 5), 1)]),
    "Mets_005": ("train", "none", []),
}
"""Size-based censoring at rate 0.5 over train + val (6 lesions) removes 3: the two 1-voxel
lesions (Mets_001, Mets_003) and one of the two 8-voxel lesions, Mets_002's by the case id
tie rule. Mets_004 (test) holds the smallest lesion overall and must stay untouched."""

REJECTED = [[1.5, -2.0, 3.0]]


def write_censor_dataset(root: Path) -> Path:
    entries = []
    for number, (case_id, (split, status, cubes)) in enumerate(DATASET_CASES.items()):
        volumes, _ = blob_case(shape=SHAPE, seed=number)
        label = None if status == "none" else Volume(cube_label(SHAPE, cubes), make_affine((1.0, 1.0, 1.0)))
        folder = write_case(root, case_id, volumes, label)
        entries.append(CaseEntry(case_id, folder, split, status, REJECTED if case_id == "Mets_002" else []))
    write_dataset_json(root, entries)
    return root
