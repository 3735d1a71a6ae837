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
from typing import Dict, List, Tuple

import numpy as np

from .synth_anatomy import Anatomy
from .synth_fields import random_unit_vectors
from .synth_params import STRATUM_NAMES, SynthParams

PLACEMENT_TRIES = 64
"""Candidate centres tested at once for each lesion; rounds shrink the lesion if all fail."""


@dataclass
class LesionSpec:
    centre: np.ndarray          # crop voxel coordinates (float)
    diameter_mm: float
    location: str               # "junction" or "parenchyma"
    ring: bool                  # ring-enhancing with a necrotic core
    rim_mm: float
    enhancement: float          # bravo lesion / WM
    se_gain: float              # t1_gd enhancement above WM relative to bravo's
    oedema_mm: float            # reach of the oedema beyond the lesion edge
    shape: np.ndarray           # (3, 3) symmetric: ellipsoidal deviation of the radius
    lobes: np.ndarray           # (3, 3) unit directions of the lobulations
    phases: np.ndarray          # (3,)
    rim_axis: np.ndarray        # (3,) the rim is thicker on this side
    lobe_amplitude: float       # size of the lobulations relative to the radius

    def radius(self, unit: np.ndarray) -> np.ndarray:
        """Radius (mm) in the directions `unit` (..., 3): irregular but star-shaped."""
        ellipsoid = np.einsum("...a,ab,...b->...", unit, self.shape, unit)
        lobes = np.sin(3.0 * unit @ self.lobes.T + self.phases).mean(axis=-1)
        return self.diameter_mm / 2 * (1 + ellipsoid + self.lobe_amplitude * lobes)


@dataclass
class LesionPatch:
    """A lesion's maps on its bounding box `box` of the crop."""
    box: Tuple[slice, slice, slice]
    occupancy: np.ndarray       # float32 fraction of each voxel inside the lesion (rim + core)
    core: np.ndarray            # float32 fraction inside the necrotic core


def draw_count(rng: np.random.Generator, params: SynthParams, stratum: int) -> int:
    low, high = params.stratum_counts[stratum]
    if STRATUM_NAMES[stratum] == "10+":
        extra = rng.geometric(1.0 / (1.0 + params.many_lesions_mean_extra)) - 1
        return int(min(low + extra, high))
    return int(rng.integers(low, high + 1))


def stratum_of(count: int, params: SynthParams) -> int:
    for index, (low, high) in enumerate(params.stratum_counts):
        if low <= count <= high:
            return index
    raise ValueError(f"{count} lesions fall in no stratum of {params.stratum_counts}")


def draw_diameters(rng: np.random.Generator, params: SynthParams, stratum: int, count: int) -> np.ndarray:
    """Long-tailed diameters (mm), largest first so that big lesions are placed while room is left."""
    tail = rng.lognormal(np.log(params.diameter_median_mm), params.diameter_sigma, size=count)
    diameters = params.diameter_offset_mm + params.stratum_size_factor[stratum] * tail
    return np.sort(np.minimum(diameters, params.diameter_max_mm))[::-1]


def draw_lesion(rng: np.random.Generator, params: SynthParams, diameter: float) -> Dict[str, object]:
    """Everything about a lesion but its place."""
    shape = rng.normal(size=(3, 3))
    shape = (shape + shape.T) / 2
    shape -= np.eye(3) * np.trace(shape) / 3
    shape *= params.elongation / max(np.abs(np.linalg.eigvalsh(shape)).max(), 1e-9)
    subtle = rng.random() < params.subtle_probability
    enhancement = rng.uniform(*(params.subtle_enhancement if subtle else params.enhancement))
    low, high = params.oedema_diameters_mm
    oedema_weight = float(np.clip((diameter - low) / max(high - low, 1e-6), 0.0, 1.0))
    return dict(
        diameter_mm=float(diameter),
        ring=bool(diameter >= params.ring_min_diameter_mm and rng.random() < params.ring_probability),
        rim_mm=float(rng.uniform(*params.rim_thickness_mm)),
        enhancement=float(enhancement), se_gain=float(rng.uniform(*params.se_lesion_gain)),
        oedema_mm=float(diameter / 2 * rng.uniform(*params.oedema_ratio) * oedema_weight),
        shape=shape, lobes=random_unit_vectors(rng, 3), phases=rng.uniform(0, 2 * np.pi, 3),
        rim_axis=random_unit_vectors(rng, 1)[0], lobe_amplitude=params.lumpiness,
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
        properties = draw_lesion(rng, params, diameter)
        location = "junction" if rng.random() < params.junction_fraction else "parenchyma"
        for _ in range(12):
            pool = pools[location]
            picks = pool[rng.integers(0, len(pool), PLACEMENT_TRIES)]
            centres = np.stack(np.unravel_index(picks, brain.shape), -1) + rng.uniform(-0.5, 0.5, (PLACEMENT_TRIES, 3))
            ok = _fits(centres, properties["diameter_mm"], anatomy, placed, params.min_gap_mm)
            if ok.any():
                placed.append(LesionSpec(centre=centres[int(np.argmax(ok))], location=location, **properties))
                break
            properties["diameter_mm"] = max(properties["diameter_mm"] * 0.85, 2.0 * float(spacing.max()))
        else:
            raise RuntimeError(f"no room for a lesion of {diameter:.1f} mm after shrinking it")
    return placed


def _fits(centres: np.ndarray, diameter: float, anatomy: Anatomy, placed: List[LesionSpec], gap: float) -> np.ndarray:
    radius = diameter / 2 * 1.3  # irregularity: the radius may exceed its nominal value
    depth = anatomy.depth[tuple(np.round(centres).astype(int).T)]
    reach = np.ceil(radius / anatomy.spacing) + 2
    inside = np.all((centres - reach >= 0) & (centres + reach < np.asarray(anatomy.brain.shape)), axis=1)
    ok = inside & (depth >= 0.75 * radius)
    for other in placed:
        distance = np.linalg.norm((centres - other.centre) * anatomy.spacing, axis=1)
        ok &= distance >= radius + other.diameter_mm / 2 * 1.3 + gap
    return ok


def render_lesions(lesions: List[LesionSpec], anatomy: Anatomy) -> Tuple[List[LesionPatch], np.ndarray, np.ndarray]:
    """Per-lesion patches, the case's oedema map and its label (both on the crop)."""
    spacing = anatomy.spacing
    ramp = float(np.mean(spacing))
    oedema = np.zeros(anatomy.brain.shape, dtype=np.float32)
    label = np.zeros(anatomy.brain.shape, dtype=bool)
    patches = []
    for lesion in lesions:
        reach = lesion.diameter_mm / 2 * 1.3 + lesion.oedema_mm * 1.6 + 2 * ramp
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
            rim = lesion.rim_mm * (1 + 0.5 * unit @ lesion.rim_axis)
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
