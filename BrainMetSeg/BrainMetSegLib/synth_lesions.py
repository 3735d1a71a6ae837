"""Metastases of a synthetic case: how many, how large, where, and their partial-volume maps.

Counts follow the paper's three strata (1-3, 4-10, 10+ lesions); diameters are long-tailed
(most 2-6 mm, a few up to ~30 mm); most lesions sit at the grey/white-matter junction, where
haematogenous metastases lodge. Lesions of 10 mm and more are usually ring-enhancing around a
necrotic core; vasogenic oedema spreads around larger lesions along the white matter. The label
is the whole lesion (rim and core), never the oedema, and lesions keep a gap so that each one is
exactly one connected component of the label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .synth_anatomy import Anatomy
from .synth_fields import random_unit_vectors
from .synth_params import STRATUM_NAMES, SynthParams

LOBES = 5
PLACEMENT_TRIES = 64
"""Candidate centres tested at once for each lesion; rounds shrink the lesion if all fail."""


def _sphere_directions(count: int = 500) -> np.ndarray:
    """Evenly spread unit vectors (Fibonacci sphere) to bound a lesion's radius."""
    k = np.arange(count) + 0.5
    z = 1 - 2 * k / count
    angle = np.pi * (1 + 5 ** 0.5) * k
    r = np.sqrt(1 - z ** 2)
    return np.stack([r * np.cos(angle), r * np.sin(angle), z], -1)


DIRECTIONS = _sphere_directions()


@dataclass
class LesionSpec:
    diameter_mm: float
    ring: bool                  # ring-enhancing with a necrotic core
    rim_mm: float
    enhancement: float          # bravo lesion / WM
    se_gain: float              # t1_gd enhancement above WM relative to bravo's
    oedema_mm: float            # reach of the oedema beyond the lesion edge
    shape: np.ndarray           # (3, 3) symmetric: ellipsoidal deviation of the radius
    lobes: np.ndarray           # (LOBES, 3) unit directions of the lobulations
    frequencies: np.ndarray     # (LOBES,) their angular frequencies
    phases: np.ndarray          # (LOBES,)
    rim_axis: np.ndarray        # (3,) the rim is thicker on this side
    lobe_amplitude: float       # size of the lobulations relative to the radius
    centre: Optional[np.ndarray] = None  # crop voxel coordinates (float), set when placed
    location: str = ""          # "junction" or "parenchyma", set when placed

    @property
    def max_radius_mm(self) -> float:
        """Largest radius over all directions (with a margin for directions between samples)."""
        return float(self.radius(DIRECTIONS).max()) * 1.05

    def radius(self, unit: np.ndarray) -> np.ndarray:
        """Radius (mm) in the directions `unit` (..., 3): irregular but star-shaped."""
        ellipsoid = np.einsum("...a,ab,...b->...", unit, self.shape, unit)
        lobes = np.sin(self.frequencies * (unit @ self.lobes.T) + self.phases).sum(axis=-1)
        return self.diameter_mm / 2 * (1 + ellipsoid + self.lobe_amplitude * lobes / np.sqrt(len(self.phases) / 2))


@dataclass
class LesionPatch:
    """A lesion's maps on its bounding box `box` of the crop."""
    box: Tuple[slice, slice, slice]
    occupancy: np.ndarray       # float32 fraction of each voxel inside the lesion (rim + core)
    core: np.ndarray            # float32 fraction inside the necrotic core


def draw_count(rng: np.random.Generator, params: SynthParams, stratum: int) -> int:
    low, high = params.stratum_counts[stratum]
    if stratum == len(STRATUM_NAMES) - 1:  # the open-ended stratum: a geometric tail, capped
        extra = rng.geometric(1.0 / (1.0 + params.many_lesions_mean_extra)) - 1
        return int(min(low + extra, high))
    return int(rng.integers(low, high + 1))


def stratum_of(count: int, params: SynthParams) -> int:
    """The stratum of a lesion count; counts beyond the last bound belong to the last ("10+")."""
    for index, (low, high) in enumerate(params.stratum_counts):
        if low <= count <= high:
            return index
    return len(STRATUM_NAMES) - 1


def draw_diameters(rng: np.random.Generator, params: SynthParams, stratum: int, count: int) -> np.ndarray:
    """Long-tailed diameters (mm), largest first so that big lesions are placed while room is left."""
    tail = rng.lognormal(np.log(params.diameter_median_mm), params.diameter_sigma, size=count)
    diameters = params.diameter_offset_mm + params.stratum_size_factor[stratum] * tail
    return np.sort(np.minimum(diameters, params.diameter_max_mm))[::-1]


def draw_lesion(rng: np.random.Generator, params: SynthParams, diameter: float) -> LesionSpec:
    """Everything about a lesion but its place."""
    shape = rng.normal(size=(3, 3))
    shape = (shape + shape.T) / 2
    shape -= np.eye(3) * np.trace(shape) / 3
    shape *= params.elongation / max(np.abs(np.linalg.eigvalsh(shape)).max(), 1e-9)
    subtle = rng.random() < params.subtle_probability
    enhancement = rng.uniform(*(params.subtle_enhancement if subtle else params.enhancement))
    low, high = params.oedema_diameters_mm
    size = (diameter - params.diameter_offset_mm) / max(params.diameter_max_mm - params.diameter_offset_mm, 1e-6)
    lumpiness = params.lumpiness[0] + (params.lumpiness[1] - params.lumpiness[0]) * float(np.clip(size, 0.0, 1.0))
    oedema_weight = float(np.clip((diameter - low) / max(high - low, 1e-6), 0.0, 1.0))
    return LesionSpec(
        diameter_mm=float(diameter),
        ring=bool(diameter >= params.ring_min_diameter_mm and rng.random() < params.ring_probability),
        rim_mm=float(rng.uniform(*params.rim_thickness_mm)),
        enhancement=float(enhancement), se_gain=float(rng.uniform(*params.se_lesion_gain)),
        oedema_mm=float(diameter / 2 * rng.uniform(*params.oedema_ratio) * oedema_weight),
        shape=shape, lobes=random_unit_vectors(rng, LOBES), frequencies=rng.uniform(2.0, 5.0, LOBES),
        phases=rng.uniform(0, 2 * np.pi, LOBES), rim_axis=random_unit_vectors(rng, 1)[0], lobe_amplitude=lumpiness,
    )


def place_lesions(rng: np.random.Generator, params: SynthParams, anatomy: Anatomy,
                  diameters: np.ndarray) -> List[LesionSpec]:
    """Centres at the grey/white junction (or anywhere in the parenchyma), inside the brain,
    a gap apart. A lesion that finds no room is shrunk and tried again."""
    spacing = anatomy.spacing
    brain = anatomy.brain
    pools = {
        "junction": np.flatnonzero(brain & (anatomy.gm > 0.25) & (anatomy.gm < 0.75) & (anatomy.wm > 0.2)),
        "parenchyma": np.flatnonzero(brain & (anatomy.gm + anatomy.wm > 0.8)),
    }
    placed: List[LesionSpec] = []
    for diameter in diameters:
        lesion = draw_lesion(rng, params, diameter)
        lesion.location = "junction" if rng.random() < params.junction_fraction else "parenchyma"
        pool = pools[lesion.location]
        for _ in range(12):
            picks = pool[rng.integers(0, len(pool), PLACEMENT_TRIES)]
            centres = np.stack(np.unravel_index(picks, brain.shape), -1) + rng.uniform(-0.5, 0.5, (PLACEMENT_TRIES, 3))
            ok = _fits(centres, lesion, anatomy, placed, params.min_gap_mm)
            if ok.any():
                lesion.centre = centres[int(np.argmax(ok))]
                placed.append(lesion)
                break
            lesion.diameter_mm = max(lesion.diameter_mm * 0.85, 2.0 * float(spacing.max()))
        else:
            raise RuntimeError(f"no room for a lesion of {diameter:.1f} mm after shrinking it")
    return placed


def _fits(centres: np.ndarray, lesion: LesionSpec, anatomy: Anatomy, placed: List[LesionSpec], gap: float) -> np.ndarray:
    radius = lesion.max_radius_mm
    depth = anatomy.depth[tuple(np.round(centres).astype(int).T)]
    reach = np.ceil(radius / anatomy.spacing) + 2
    inside = np.all((centres - reach >= 0) & (centres + reach < np.asarray(anatomy.brain.shape)), axis=1)
    ok = inside & (depth >= 0.6 * radius)
    for other in placed:
        distance = np.linalg.norm((centres - other.centre) * anatomy.spacing, axis=1)
        ok &= distance >= radius + other.max_radius_mm + gap
    return ok


def render_lesions(lesions: List[LesionSpec], anatomy: Anatomy) -> Tuple[List[LesionPatch], np.ndarray, np.ndarray]:
    """Per-lesion patches, the case's oedema map and its label (both on the crop)."""
    spacing = anatomy.spacing
    ramp = float(np.mean(spacing))
    oedema = np.zeros(anatomy.brain.shape, dtype=np.float32)
    label = np.zeros(anatomy.brain.shape, dtype=bool)
    patches = []
    for lesion in lesions:
        reach = lesion.max_radius_mm + lesion.oedema_mm * 1.6 + 2 * ramp
        low = np.maximum(np.floor(lesion.centre - reach / spacing), 0).astype(int)
        high = np.minimum(np.ceil(lesion.centre + reach / spacing) + 1, anatomy.brain.shape).astype(int)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        grid = np.meshgrid(*[(np.arange(a, b) - c) * s for a, b, c, s in zip(low, high, lesion.centre, spacing)],
                           indexing="ij")
        offset = np.stack(grid, -1)
        distance = np.linalg.norm(offset, axis=-1)
        unit = offset / np.maximum(distance, 1e-6)[..., None]
        radius = lesion.radius(unit)
        inside = np.clip((radius - distance) / ramp + 0.5, 0.0, 1.0).astype(np.float32)
        inside *= anatomy.brain_fraction[box]
        core = np.zeros_like(inside)
        if lesion.ring:
            rim = lesion.rim_mm * (1 + 0.5 * unit @ lesion.rim_axis
                                   + 0.3 * np.sin(lesion.frequencies[0] * (unit @ lesion.lobes[1]) + lesion.phases[2]))
            core = np.clip((radius - rim - distance) / ramp + 0.5, 0.0, 1.0).astype(np.float32) * inside
        if lesion.oedema_mm > 0:
            reach_oedema = radius + lesion.oedema_mm * (1 + 0.4 * np.sin(2.0 * unit @ lesion.lobes[0] + lesion.phases[1]))
            spread = np.clip((reach_oedema - distance) / (ramp + 0.3 * lesion.oedema_mm) + 0.5, 0.0, 1.0)
            weight = spread * (anatomy.wm[box] + 0.25 * anatomy.gm[box]) * (1 - inside)
            np.maximum(oedema[box], weight.astype(np.float32), out=oedema[box])
        mask = inside >= 0.5
        centre = tuple(np.round(lesion.centre).astype(int) - low)
        mask[centre] = True  # the smallest lesions keep at least their centre voxel
        label[box] |= mask & anatomy.brain[box]
        patches.append(LesionPatch(box, inside, core))
    return patches, oedema, label
