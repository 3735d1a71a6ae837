"""The benchmark's study and models: one synthetic case on disk, untrained model folders.

The study is the synthetic generator's `default` preset (BrainMetShare-like: 0.9375 x 0.9375 x
1 mm, 256 x 256 in-plane) generated directly at `slices` axial slices (no padding), written
as a dataset case (four NIfTI files + label) that both inference and the trainer read.
Models have random weights: speed does not depend on what a network learnt. An untrained
network's map is meaningless (ResNet-50's covers most of the brain with p >= 0.1 as one giant
component), so the lesion logit's bias is lowered until the map is background everywhere, and
lesion extraction is timed separately on a ground-truth-like map of the study's real lesions.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from BrainMetSegLib.dataset import CaseEntry, write_case, write_dataset_json
from BrainMetSegLib.model_card import ModelConfig
from BrainMetSegLib.model_folder import save_model_folder
from BrainMetSegLib.network import build_network
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.synth import synthesize_case
from BrainMetSegLib.synth_params import PRESETS

CASE_ID = "Mets_001"
LESION_BIAS_SHIFT = 30.0
"""Subtracted from the lesion logit's bias of the untrained networks (see the module docstring)."""


def write_study(root: Path, size: int, slices: int, preset: str = "default", seed: int = 0) -> Dict[str, object]:
    """Generate the study into `root` (a one-case dataset, split train) and describe it."""
    params = dataclasses.replace(PRESETS[preset], shape=(size, size, slices))
    volumes, label, meta = synthesize_case(seed, params)
    folder = write_case(root, CASE_ID, volumes, label)
    write_dataset_json(root, [CaseEntry(CASE_ID, folder, "train", "complete")])
    bravo = volumes["bravo"].array
    return {"folder": str(folder), "shape": list(bravo.shape), "spacing_mm": [float(s) for s in params.spacing],
            "preset": preset, "slices_with_brain": int((bravo != 0).any(axis=(0, 1)).sum()),
            "lesions": int(meta["n_lesions"])}


def write_model(folder: Path, backbone: str, size: int, spacing_mm: Tuple[float, float, float]) -> Path:
    """An untrained model folder for frames of `size` pixels on the study's grid."""
    torch.manual_seed(0)
    network = build_network(backbone, in_channels=len(ROLES) * 5, num_classes=2)
    with torch.no_grad():
        network.deeplab.classifier[-1].bias[1] -= LESION_BIAS_SHIFT
    config = ModelConfig(name=f"benchmark-{backbone}", backbone=backbone,
                         pixel_spacing_mm=[spacing_mm[0], spacing_mm[1]], slice_spacing_mm=spacing_mm[2],
                         in_plane_size=[size, size], synthetic_training_data=True,
                         training={"data": "none: random weights, for timing only"})
    return save_model_folder(folder, network.state_dict(), config)


def ground_truth_like_probability(label: np.ndarray) -> np.ndarray:
    """A probability map shaped like a good model's on this study: the label blurred by one
    voxel, 0.95 at lesion cores, a soft rim, 0 elsewhere."""
    from scipy import ndimage

    return np.clip(0.95 * ndimage.gaussian_filter(label.astype(np.float32), 1.0) * 1.5, 0.0, 0.95).astype(np.float32)
