"""Tiny synthetic cases for tests of any module: a whole brain with lesions in ~0.2 s.

`tiny_params()` is the `small` preset on a coarser grid (about 2.7 mm voxels); `tiny_case()`
returns the four sequences, the label and the generator's description of the case (lesion
centres in RAS mm, diameters, strata), so tests can check their answers against known lesions.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from BrainMetSegLib.synth import synthesize_case
from BrainMetSegLib.synth_params import PRESETS, SynthParams
from BrainMetSegLib.volumes import Volume


def tiny_params(**changes) -> SynthParams:
    """The small preset on a 64 x 76 x 60 grid of 2.6 x 2.6 x 2.8 mm voxels (plus any changes)."""
    base = dataclasses.replace(PRESETS["small"], shape=(64, 76, 60), spacing=(2.6, 2.6, 2.8),
                               diameter_offset_mm=4.0, min_gap_mm=5.0)
    return dataclasses.replace(base, **changes)


def tiny_case(seed: int = 0, n_lesions: Optional[int] = 3,
              **changes) -> Tuple[Dict[str, Volume], Volume, Dict[str, object]]:
    return synthesize_case(seed, tiny_params(**changes), n_lesions)
