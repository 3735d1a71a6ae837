"""A tiny training dataset and the options that train on it in seconds on a CPU.

Four cases of 32 x 32 x 24 voxels of 2 mm (k is the axial axis): an ellipsoid of brain with
mild texture, two or three bright spheres per case as lesions (bright on the contrast-enhanced
sequences and FLAIR, as metastases are), labels exactly the spheres. Three cases train, one
validates. Frames of 32 x 32 pixels of 2 mm hold the whole brain.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from BrainMetSegLib.dataset import CaseEntry, write_case, write_dataset_json
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.synth import SYNTH_JSON
from BrainMetSegLib.volumes import Volume, make_affine

SHAPE = (32, 32, 24)
SPACING_MM = 2.0
CASE_IDS = ("Mets_001", "Mets_002", "Mets_003", "Mets_004")
SPLITS = ("train", "train", "train", "val")
LESION_BRIGHTNESS = {"t1_pre": 1.0, "t1_gd": 3.0, "bravo": 3.0, "flair": 2.0}
"""Lesion value per sequence where the brain is about 1."""

TRAIN_ARGS = ["--in-plane-size", "32", "--pixel-spacing", "2", "--slice-spacing", "2",
              "--backbone", "mobilenet_v3_large", "--output-stride", "8", "--batch-size", "4", "--device", "cpu",
              "--workers", "1"]
"""Command-line options of every test run: tiny frames, the CPU backbone at the CPU recipes'
output stride, batches of 4."""


def _grid() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")


def brain_mask() -> np.ndarray:
    i, j, k = _grid()
    centre = [(n - 1) / 2 for n in SHAPE]
    radii = (13.0, 13.5, 10.0)
    return sum(((g - c) / r) ** 2 for g, c, r in zip((i, j, k), centre, radii)) <= 1.0


def lesion_spheres(seed: int) -> List[Tuple[Tuple[float, float, float], float]]:
    """2 or 3 (centre, radius in voxels) inside the brain, apart from each other."""
    rng = np.random.default_rng(seed)
    count = 2 + seed % 2
    spheres: List[Tuple[Tuple[float, float, float], float]] = []
    while len(spheres) < count:
        centre = (rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(7, 17))
        radius = float(rng.uniform(1.6, 2.8))
        if all(np.linalg.norm(np.subtract(centre, c)) > r + radius + 3 for c, r in spheres):
            spheres.append((centre, radius))
    return spheres


def case_volumes(seed: int) -> Tuple[Dict[str, Volume], Volume]:
    """The four sequences and the label of one case."""
    rng = np.random.default_rng(1000 + seed)
    brain = brain_mask()
    i, j, k = _grid()
    label = np.zeros(SHAPE, dtype=np.uint8)
    for centre, radius in lesion_spheres(seed):
        label[((i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2) <= radius ** 2] = 1
    label &= brain
    affine = make_affine((SPACING_MM,) * 3, origin=[-(n - 1) * SPACING_MM / 2 for n in SHAPE])
    volumes = {}
    for channel, role in enumerate(ROLES):
        texture = 1.0 + 0.05 * channel + 0.08 * rng.standard_normal(SHAPE)
        array = np.where(label > 0, LESION_BRIGHTNESS[role] + 0.05 * rng.standard_normal(SHAPE), texture)
        volumes[role] = Volume(np.where(brain, np.maximum(array, 0.05), 0.0).astype(np.float32), affine.copy())
    return volumes, Volume(label, affine.copy())


def write_tiny_dataset(root: Path, statuses: Optional[Sequence[str]] = None,
                       rejected: Optional[Dict[str, List[List[float]]]] = None, synthetic: bool = False) -> Path:
    """The four cases as a dataset folder with dataset.json (splits SPLITS)."""
    root = Path(root)
    statuses = list(statuses or ["complete"] * len(CASE_IDS))
    entries = []
    for number, case_id in enumerate(CASE_IDS):
        volumes, label = case_volumes(number)
        folder = write_case(root, case_id, volumes, label)
        entries.append(CaseEntry(case_id, folder, SPLITS[number], statuses[number], (rejected or {}).get(case_id, [])))
    write_dataset_json(root, entries)
    if synthetic:  # the marker `brainmetseg synth` leaves next to dataset.json
        (root / SYNTH_JSON).write_text(json.dumps({"format": 1, "generator": "Testing/helpers_train.py"}))
    return root
