"""A tiny dataset with train/val/test splits and known test lesions, and a micro experiment
preset, so the experiment runner can train, predict and evaluate for real in seconds."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from BrainMetSegLib.dataset import CaseEntry, write_case, write_dataset_json
from BrainMetSegLib.experiment_presets import ExperimentPreset
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.synth import SYNTH_JSON
from BrainMetSegLib.volumes import Volume, make_affine

SHAPE = (24, 24, 16)
SPACING = (3.0, 3.0, 3.0)

CASES: Dict[str, Tuple[str, Sequence[Tuple[int, int, int]]]] = {
    # id: (split, lesion centres in voxels); every lesion a ball of radius 1.6 voxels
    "Mets_001": ("train", ((8, 8, 6), (15, 14, 9))),
    "Mets_002": ("train", ((9, 15, 7),)),
    "Mets_003": ("train", ((14, 8, 8), (8, 14, 10))),
    "Mets_004": ("train", ((12, 12, 7),)),
    "Mets_005": ("val", ((9, 9, 8), (15, 15, 8))),
    "Mets_006": ("test", ((8, 9, 7), (15, 14, 9))),
    "Mets_007": ("test", ((12, 12, 8),)),
}
TEST_LESIONS = 3
LESION_RADIUS = 1.6

MICRO = ExperimentPreset(
    name="micro", backbone="mobilenet_v3_large", output_stride=16, in_plane_size=32, pixel_spacing_mm=3.0,
    slice_spacing_mm=3.0, epochs=1, steps_per_epoch=2, batch_size=2, lr=1e-3, seeds=(0,), cases=len(CASES),
    synthetic_preset="none")
"""Two optimiser steps of two 32x32 frames: real training, in about a second."""


def _ball(centre: Sequence[int], radius: float) -> np.ndarray:
    index = np.indices(SHAPE)
    return sum((i - c) ** 2 for i, c in zip(index, centre)) <= radius ** 2


def write_experiment_dataset(root: Path, cases: Dict[str, Tuple[str, Sequence[Tuple[int, int, int]]]] = CASES,
                             with_json: bool = True) -> Path:
    """Four sequences (an ellipsoid 'brain', noise, bright lesions) and the lesion label per case,
    and a synth.json: the data are synthetic, and the trainer and the report must say so."""
    grid = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) / (n / 2) for n in SHAPE], indexing="ij")
    brain = sum(g ** 2 for g in grid) < 0.85
    affine = make_affine(SPACING)
    entries = []
    for number, (case_id, (split, centres)) in enumerate(cases.items()):
        rng = np.random.default_rng(number)
        label = np.zeros(SHAPE, dtype=np.uint8)
        for centre in centres:
            label[_ball(centre, LESION_RADIUS)] = 1
        label &= brain
        volumes = {role: Volume(np.where(brain, 100 + 5 * rng.standard_normal(SHAPE) + 60 * label * (c > 0), 0)
                                .astype(np.float32), affine.copy()) for c, role in enumerate(ROLES)}
        folder = write_case(root, case_id, volumes, Volume(label, affine.copy()))
        entries.append(CaseEntry(case_id, folder, split))
    if with_json:
        write_dataset_json(root, entries)
    (root / SYNTH_JSON).write_text(json.dumps({"format": 1, "generator": "Testing/helpers_experiment.py"}))
    return root


def write_preset_json(path: Path, preset: ExperimentPreset = MICRO) -> Path:
    path.write_text(json.dumps(preset.to_json()), encoding="utf-8")
    return path


def event_names(run: Path) -> List[str]:
    lines = (run / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["event"] for line in lines if line.strip()]
