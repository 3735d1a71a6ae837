"""Tiny studies with known lesions, a network whose answer is known, and a tiny model folder.

`BrightSpotNetwork` is a real torch module (one 1x1 convolution with fixed weights) whose
lesion logit is a linear function of the centre bravo slice of each frame, so a bright sphere
in bravo must come back as a lesion at the same place, with a confidence that grows with its
brightness. It exercises the whole inference path (frames on the device, batching, mapping
back to the input grid, lesion extraction) with answers computed by hand.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from BrainMetSegLib.case import Case
from BrainMetSegLib.model_card import ModelConfig
from BrainMetSegLib.model_folder import save_model_folder
from BrainMetSegLib.network import build_network
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import Volume, write_volume

BRAVO = ROLES.index("bravo")

CASE_SHAPE = (24, 20, 22)
"""Array axes of the test study: i runs right-to-left, j inferior-to-superior (the axial axis is
the second one, so inference must reorient), k posterior-to-anterior."""

CASE_AFFINE = np.array([
    [-3.0, 0.0, 0.0, 40.0],
    [0.0, 0.0, 3.0, -25.0],
    [0.0, 3.0, 0.0, -20.0],
    [0.0, 0.0, 0.0, 1.0],
])

SPHERES = (
    ((8, 9, 11), 2.6, 4.0),   # (centre index, radius in voxels, bravo intensity)
    ((16, 11, 10), 2.1, 3.0),
)
"""Two lesions: the first larger and brighter (more confident), the second smaller and dimmer."""

BRAIN_SLICES = (3, 17)
"""Axial (j) slices holding brain, start inclusive, stop exclusive: the rest is empty."""


def _ball(shape: Sequence[int], centre: Sequence[float], radius: float) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def sphere_volumes() -> Dict[str, Volume]:
    """Four sequences: a box of brain (value 1, zero elsewhere) over BRAIN_SLICES, bright spheres
    in every sequence, slight per-role differences so the roles are not identical."""
    brain = np.zeros(CASE_SHAPE, dtype=bool)
    brain[2:22, BRAIN_SLICES[0]:BRAIN_SLICES[1], 2:20] = True
    volumes = {}
    for channel, role in enumerate(ROLES):
        array = np.where(brain, 1.0 + 0.05 * channel, 0.0).astype(np.float32)
        for centre, radius, intensity in SPHERES:
            array[_ball(CASE_SHAPE, centre, radius) & brain] = intensity
        volumes[role] = Volume(array, CASE_AFFINE.copy())
    return volumes


def sphere_case(case_id: str = "spheres") -> Case:
    volumes = sphere_volumes()
    images = np.stack([volumes[role].array for role in ROLES])
    return Case(case_id, images, CASE_AFFINE.copy(), None, images[BRAVO] != 0, [])


def write_sphere_case(folder: Path) -> Dict[str, Path]:
    """The sphere study written as folder/<role>.nii.gz (a dataset case folder)."""
    paths = {}
    for role, volume in sphere_volumes().items():
        paths[role] = Path(folder) / f"{role}.nii.gz"
        write_volume(volume, paths[role])
    return paths


def sphere_centres_ras() -> List[np.ndarray]:
    return [(CASE_AFFINE @ np.array([*centre, 1.0]))[:3] for centre, _, _ in SPHERES]


GAIN, OFFSET = 1.0, 3.8
"""With the spheres above, z-scored bravo is about 7.2 in the bright sphere, 4.7 in the dim one and
-0.15 in the rest of the brain: probabilities about 0.97, 0.70 and 0.02."""


def expected_probabilities() -> List[float]:
    """Each sphere's probability under BrightSpotNetwork, computed by hand from the z-score of
    its bravo intensity over the brain (valid when the model spacing equals the case's, 3 mm)."""
    volumes = sphere_volumes()
    bravo = volumes["bravo"].array
    brain = bravo != 0
    mean, std = float(bravo[brain].mean()), float(bravo[brain].std())
    return [1.0 / (1.0 + np.exp(-GAIN * ((intensity - mean) / std - OFFSET))) for _, _, intensity in SPHERES]


def sphere_voxels() -> List[int]:
    """Voxels of each sphere inside the brain."""
    brain = sphere_volumes()["bravo"].array != 0
    return [int(np.sum(_ball(CASE_SHAPE, centre, radius) & brain)) for centre, radius, _ in SPHERES]


class BrightSpotNetwork(nn.Module):
    """Lesion logit = gain * (centre bravo channel - offset); counts frames and calls."""

    def __init__(self, slices: int = 5, gain: float = GAIN, offset: float = OFFSET) -> None:
        super().__init__()
        self.conv = nn.Conv2d(len(ROLES) * slices, 2, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, BRAVO * slices + slices // 2] = gain
            self.conv.bias[1] = -gain * offset
        self.calls = 0
        self.frames = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.frames += x.shape[0]
        return self.conv(x)


def make_model_folder(folder: Path, size: int = 64, spacing_mm: float = 3.0,
                      threshold: float = 0.1, operating_point: float = 0.5) -> Path:
    """A freshly initialised MobileNetV3 DeepLabv3 saved as a real model folder (tiny frames)."""
    torch.manual_seed(0)
    network = build_network("mobilenet_v3_large", in_channels=len(ROLES) * 5, num_classes=2)
    config = ModelConfig(name="tiny-test-model", backbone="mobilenet_v3_large",
                         pixel_spacing_mm=[spacing_mm, spacing_mm], slice_spacing_mm=spacing_mm,
                         in_plane_size=[size, size], probability_threshold=threshold,
                         operating_point=operating_point, synthetic_training_data=True,
                         training={"data": "none (untrained test model)"})
    return save_model_folder(folder, network.state_dict(), config)


def spheres_probability(shape: Tuple[int, int, int], spheres) -> np.ndarray:
    """A probability map holding balls of constant probability: [(centre, radius, p), ...]."""
    probability = np.zeros(shape, dtype=np.float32)
    for centre, radius, value in spheres:
        probability[_ball(shape, centre, radius)] = value
    return probability
