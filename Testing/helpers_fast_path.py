"""A small fixed network that finds real lesions, and a study for it, to compare fast paths.

`SpotNetwork` is a real three-layer convolutional network (3x3 convolutions, batch norm,
ReLU) with fixed weights: its lesion logit is a steep function of the bravo centre slice
blurred over 3x3 pixels, plus small pseudo-random contributions of all 20 channels, so every
multiply-add of every layer feeds the result and low precision rounds every one of them.
On `spot_case` it finds the three spheres as lesions of different confidences.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from BrainMetSegLib.case import Case
from BrainMetSegLib.lesions import Lesion
from BrainMetSegLib.model_card import ModelConfig
from BrainMetSegLib.model_folder import save_model_folder
from BrainMetSegLib.network import build_network
from BrainMetSegLib.roles import ROLES

BRAVO = ROLES.index("bravo")
SLICES = 5
SPACING_MM = 2.0
SPOT_SHAPE = (36, 32, 34)
"""i: right-to-left, j: posterior-to-anterior, k: inferior-to-superior (already axial)."""
SPOT_AFFINE = np.diag([-SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
SPOT_AFFINE[:3, 3] = (30.0, -30.0, -20.0)
BRAIN_BOX = (slice(3, 33), slice(3, 29), slice(4, 30))
SPOTS = (
    ((12, 12, 12), 4.6, 5.0),  # (centre index, radius in voxels, intensity of every sequence)
    ((24, 20, 20), 4.2, 4.0),
    ((12, 21, 23), 4.2, 3.5),
)


def _ball(centre, radius: float) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in SPOT_SHAPE], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def spot_case(case_id: str = "spots") -> Case:
    """A box of brain with mild texture and three bright spheres, in every sequence."""
    rng = np.random.default_rng(7)
    brain = np.zeros(SPOT_SHAPE, dtype=bool)
    brain[BRAIN_BOX] = True
    images = []
    for channel in range(len(ROLES)):
        array = 1.0 + 0.05 * channel + 0.03 * rng.standard_normal(SPOT_SHAPE)
        for centre, radius, intensity in SPOTS:
            array[_ball(centre, radius)] = intensity + 0.1 * channel
        images.append(np.where(brain, array, 0.0).astype(np.float32))
    stacked = np.stack(images)
    return Case(case_id, stacked, SPOT_AFFINE.copy(), None, brain, [])


class SpotNetwork(nn.Module):
    """Fixed weights; see the module docstring."""

    def __init__(self, gain: float = 10.0, offset: float = 2.0, seed: int = 0) -> None:
        super().__init__()
        channels = len(ROLES) * SLICES
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 2, 1)
        with torch.no_grad():
            self.conv1.weight.copy_(0.01 * torch.randn(self.conv1.weight.shape, generator=g))
            self.conv1.weight[0, BRAVO * SLICES + SLICES // 2] += 1.0 / 9.0  # 3x3 mean of bravo
            self.bn1.running_mean.copy_(0.05 * torch.randn(8, generator=g))
            self.bn1.running_var.copy_(1.0 + 0.1 * torch.rand(8, generator=g))
            self.bn1.weight.fill_(1.0)
            self.bn1.bias.fill_(0.0)
            self.bn1.bias[0] = 3.0  # keeps the blurred bravo above 0 through the ReLU
            self.conv2.weight.copy_(0.01 * torch.randn(self.conv2.weight.shape, generator=g))
            self.conv2.weight[0, 0, 1, 1] += 1.0
            self.conv2.bias.zero_()
            self.conv3.weight.copy_(0.01 * torch.randn(self.conv3.weight.shape, generator=g))
            self.conv3.weight[1, 0, 0, 0] += gain
            self.conv3.bias.zero_()
            self.conv3.bias[1] = -gain * (offset + 3.0)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.conv3(x)


def spot_model_folder(folder: Path, size: int = 40) -> Path:
    """A model folder on the spot case's grid (2 mm, `size` pixels); the tests swap in SpotNetwork."""
    torch.manual_seed(0)
    network = build_network("mobilenet_v3_large", in_channels=len(ROLES) * SLICES, num_classes=2)
    config = ModelConfig(name="spot-test-model", backbone="mobilenet_v3_large",
                         pixel_spacing_mm=[SPACING_MM, SPACING_MM], slice_spacing_mm=SPACING_MM,
                         in_plane_size=[size, size], probability_threshold=0.1, operating_point=0.5,
                         synthetic_training_data=True, training={"data": "none (fixed test network)"})
    return save_model_folder(folder, network.state_dict(), config)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.sum(a & b)) / total


def matched_lesions(components_a: np.ndarray, lesions_a: List[Lesion], components_b: np.ndarray,
                    lesions_b: List[Lesion]) -> List[Tuple[Lesion, Lesion, float]]:
    """Pairs (lesion of a, lesion of b, Dice) where each lesion of a overlaps exactly one of b
    and that one overlaps it alone; raises AssertionError otherwise."""
    pairs = []
    partners: Dict[int, int] = {}
    for lesion in lesions_a:
        overlapping = np.unique(components_b[components_a == lesion.index])
        overlapping = overlapping[overlapping > 0]
        assert len(overlapping) == 1, f"lesion {lesion.index} overlaps {len(overlapping)} lesions of the other map"
        other = next(candidate for candidate in lesions_b if candidate.index == int(overlapping[0]))
        assert other.index not in partners, f"lesion {other.index} matches two lesions"
        partners[other.index] = lesion.index
        pairs.append((lesion, other, dice(components_a == lesion.index, components_b == other.index)))
    assert len(partners) == len(lesions_b), "a lesion of the other map matches none"
    return pairs
