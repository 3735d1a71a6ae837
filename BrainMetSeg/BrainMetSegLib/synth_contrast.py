"""The four sequences of a synthetic case, from tissue, lesion and confounder maps.

Each voxel mixes the signals of what fills it (partial volume): CSF, grey and white matter,
oedema, lesion rim and necrotic core, vessels, dura, choroid plexus, with per-case contrasts
from `SynthParams.contrast`. Post-contrast sequences make lesions enhance (per lesion, some
faintly); vessels enhance strongly on the gradient echo (bravo) and less on the spin echo
(t1_gd), which suppresses flowing blood; they are flow voids on t1_pre and FLAIR. Then come a
smooth bias field per sequence, Rician noise, a per-case intensity scale and integer storage,
as a scanner writes them.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .roles import ROLES
from .synth_anatomy import Anatomy
from .synth_fields import smooth_field
from .synth_lesions import LesionPatch, LesionSpec
from .synth_params import TISSUES, SynthParams
from .synth_vessels import Confounders

MAX_STORED = 32767


def draw_contrast(rng: np.random.Generator, params: SynthParams) -> Dict[str, Dict[str, float]]:
    """This case's tissue intensities relative to WM, per sequence."""
    contrast = {role: {tissue: float(rng.uniform(*params.contrast[role][tissue])) for tissue in TISSUES}
                for role in ROLES}
    se_fraction = float(rng.uniform(*params.vessel_se_fraction))
    contrast["t1_gd"]["vessel"] = 1.0 + (contrast["bravo"]["vessel"] - 1.0) * se_fraction
    return contrast


class _BrainVoxels:
    """Gathers maps onto the brain voxels only: everything outside them is zero anyway."""

    def __init__(self, brain: np.ndarray):
        self.shape = brain.shape
        self.index = np.flatnonzero(brain)
        self.position = np.full(brain.size, -1, dtype=np.int64)
        self.position[self.index] = np.arange(len(self.index))

    def gather(self, volume: np.ndarray) -> np.ndarray:
        return volume.reshape(-1)[self.index]

    def sparse(self, volume: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(positions, weights) of the brain voxels where `volume` is non-zero."""
        values = self.gather(volume)
        where = np.flatnonzero(values)
        return where, values[where]

    def patch(self, box, weights: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        flat = np.ravel_multi_index(np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij"),
                                    self.shape).reshape(-1)
        position = self.position[flat]
        keep = position >= 0
        return position[keep], weights.reshape(-1)[keep]

    def scatter(self, values: np.ndarray, dtype) -> np.ndarray:
        out = np.zeros(int(np.prod(self.shape)), dtype=dtype)
        out[self.index] = values
        return out.reshape(self.shape)


def _blend(signal: np.ndarray, where: Tuple[np.ndarray, np.ndarray], value: float) -> None:
    """In place: a fraction (the weights) of these voxels now holds something of intensity `value`."""
    position, weight = where
    signal[position] += weight * (np.float32(value) - signal[position])


def compose(rng: np.random.Generator, params: SynthParams, anatomy: Anatomy, lesions: List[LesionSpec],
            patches: List[LesionPatch], oedema: np.ndarray, confounders: Confounders,
            contrast: Dict[str, Dict[str, float]]) -> Dict[str, np.ndarray]:
    """Stored (int16) sequences on the crop; zero outside the brain."""
    voxels = _BrainVoxels(anatomy.brain)
    wm, gm, csf = (voxels.gather(m) for m in (anatomy.wm, anatomy.gm, anatomy.csf))
    layers = [("oedema", voxels.sparse(oedema)), ("dura", voxels.sparse(confounders.dura)),
              ("choroid", voxels.sparse(confounders.choroid)), ("vessel", voxels.sparse(confounders.vessels))]
    lesion_parts = [(voxels.patch(p.box, p.occupancy - p.core), voxels.patch(p.box, p.core)) for p in patches]
    images = {}
    for role in ROLES:
        values = contrast[role]
        signal = wm + gm * np.float32(values["gm"]) + csf * np.float32(values["csf"])
        for tissue, where in layers:
            _blend(signal, where, values[tissue])
        for lesion, (solid_part, core_part) in zip(lesions, lesion_parts):
            if role == "bravo":
                solid = lesion.enhancement
            elif role == "t1_gd":
                solid = 1.0 + (lesion.enhancement - 1.0) * lesion.se_gain
            else:
                solid = values["lesion"]
            _blend(signal, solid_part, solid)
            _blend(signal, core_part, values["necrosis"])
        signal *= np.exp(voxels.gather(smooth_field(rng, voxels.shape, params.bias_grid, params.bias_sd)))
        sigma = np.float32(rng.uniform(*params.noise[role]))
        real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        scale = np.float32(rng.uniform(*params.wm_intensity))
        magnitude = np.round(np.sqrt(real * real + imaginary * imaginary) * scale)
        images[role] = voxels.scatter(np.clip(magnitude, 1, MAX_STORED).astype(np.int16), np.int16)
    return images
