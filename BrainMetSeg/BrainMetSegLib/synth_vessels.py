"""Normal enhancement that is not a lesion: vessels, dura, falx and choroid plexus.

On post-contrast T1 these are what makes small metastases hard to find: a vessel crossing an
axial slice is a bright dot, as a 3 mm metastasis is. Cortical vessels wander in sulci just
under the brain surface, medullary veins and perforators run inwards through the white matter,
the dura left at the edge by skull stripping enhances in patches, the falx in the midline, and
the choroid plexus in the ventricles. None of them is labelled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from .synth_anatomy import Anatomy
from .synth_fields import lookup, random_unit_vectors, render_tubes, smooth_field
from .synth_params import SynthParams

DEEP_VESSEL_MAX_DEPTH_MM = 35.0
CHOROID_MIN_DEPTH_MM = 15.0


@dataclass
class Confounders:
    vessels: np.ndarray      # float32 occupancy on the crop
    dura: np.ndarray         # float32 occupancy: dura rim and falx
    choroid: np.ndarray      # float32 occupancy: choroid plexus
    counts: Dict[str, int]


def _depth_gradient(depth: np.ndarray, points: np.ndarray, spacing: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Depth at points (voxel coordinates) and the unit vector pointing deeper (in mm axes)."""
    here = lookup(depth, points)
    gradient = np.empty_like(points)
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1.0
        gradient[:, axis] = (lookup(depth, points + step) - lookup(depth, points - step)) / (2 * spacing[axis])
    norm = np.linalg.norm(gradient, axis=1, keepdims=True)
    return here, gradient / np.maximum(norm, 1e-6)


def _walk(rng: np.random.Generator, params: SynthParams, anatomy: Anatomy, starts: np.ndarray,
          lengths: np.ndarray, radii: np.ndarray, target_depth: np.ndarray, inward: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Persistent random walks, all vessels at once; cortical ones steer back to their depth,
    deep ones drift inwards. Returns centre-line points (voxel coordinates) and radii (mm)."""
    spacing = anatomy.spacing
    step = params.vessel_step_mm
    if len(starts) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    position = starts * spacing
    _, direction = _depth_gradient(anatomy.depth, starts, spacing)
    noise = random_unit_vectors(rng, len(starts))
    if inward:
        direction = direction + 0.4 * noise
    else:  # tangential to the surface
        direction = noise - np.sum(noise * direction, axis=1, keepdims=True) * direction
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
    alive = np.ones(len(starts), dtype=bool)
    points, point_radii = [], []
    for index in range(int(np.ceil(lengths.max() / step)) + 1):
        travelled = index * step
        active = alive & (travelled <= lengths)
        if not active.any():
            break
        voxels = position / spacing
        points.append(voxels[active])
        point_radii.append(radii[active] * (1 - (1 - params.vessel_taper) * travelled / lengths[active]))
        depth, deeper = _depth_gradient(anatomy.depth, voxels, spacing)
        if inward:
            direction = direction + 0.15 * deeper
        else:
            direction = direction + 0.3 * np.clip(target_depth - depth, -2, 2)[:, None] * deeper
        direction = direction + params.vessel_turn * np.sqrt(step) * rng.standard_normal(direction.shape)
        direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
        position = position + direction * step
        depth_next = lookup(anatomy.depth, position / spacing)
        alive &= depth_next > 0
        if inward:
            alive &= depth_next < DEEP_VESSEL_MAX_DEPTH_MM
    return np.concatenate(points), np.concatenate(point_radii)


def _starts(rng: np.random.Generator, pool: np.ndarray, shape, count: int) -> np.ndarray:
    picks = pool[rng.integers(0, len(pool), count)]
    return np.stack(np.unravel_index(picks, shape), -1) + rng.uniform(-0.5, 0.5, (count, 3))


def build_confounders(rng: np.random.Generator, params: SynthParams, anatomy: Anatomy) -> Confounders:
    """Vessels, dura and choroid plexus each draw from their own stream, so that changing the
    vessel parameters leaves the dura and choroid plexus of a seed as they were."""
    vessel_rng, dura_rng, choroid_rng = (np.random.default_rng(s) for s in rng.integers(0, 2 ** 63, size=3))
    vessels, counts = _vessels(vessel_rng, params, anatomy)
    dura = _dura(dura_rng, params, anatomy)
    choroid, counts["choroid_plexus"] = _choroid(choroid_rng, params, anatomy)
    return Confounders(vessels, dura, choroid, counts)


def _vessels(rng: np.random.Generator, params: SynthParams, anatomy: Anatomy) -> Tuple[np.ndarray, Dict[str, int]]:
    shape, spacing = anatomy.brain.shape, anatomy.spacing
    brain, depth = anatomy.brain, anatomy.depth
    n_cortical = int(rng.integers(params.cortical_vessels[0], params.cortical_vessels[1] + 1))
    band = params.cortical_depth_mm
    cortical = _walk(
        rng, params, anatomy,
        _starts(rng, np.flatnonzero(brain & (depth > band[0]) & (depth < band[1])), shape, n_cortical),
        rng.uniform(*params.cortical_length_mm, n_cortical), rng.uniform(*params.cortical_radius_mm, n_cortical),
        rng.uniform(*band, n_cortical), inward=False)
    n_deep = int(rng.integers(params.deep_vessels[0], params.deep_vessels[1] + 1))
    deep = _walk(
        rng, params, anatomy,
        _starts(rng, np.flatnonzero(brain & (depth > 1.5) & (depth < 5.0) & (anatomy.gm > 0.3)), shape, n_deep),
        rng.uniform(*params.deep_length_mm, n_deep), rng.uniform(*params.deep_radius_mm, n_deep),
        np.zeros(n_deep), inward=True)
    vessels = render_tubes(shape, np.concatenate([cortical[0], deep[0]]), np.concatenate([cortical[1], deep[1]]), spacing)
    vessels *= anatomy.brain_fraction
    return vessels, {"cortical_vessels": n_cortical, "deep_vessels": n_deep}


def _dura(rng: np.random.Generator, params: SynthParams, anatomy: Anatomy) -> np.ndarray:
    """Patchy enhancing rim under the brain surface, and the falx in the interhemispheric fissure."""
    shape, depth = anatomy.brain.shape, anatomy.depth
    ramp = float(np.mean(anatomy.spacing))
    rim = np.clip((params.dura_thickness_mm - depth) / ramp + 0.5, 0.0, 1.0) * anatomy.brain_fraction
    patches = smooth_field(rng, shape, 8, 1.0)
    sample = patches[rim > 0.5]
    threshold = np.quantile(sample[:: max(1, len(sample) // 20000)], 1 - params.dura_coverage) if len(sample) else 0.0
    spread = max(float(sample.std()) * 0.15, 1e-6) if len(sample) else 1.0
    dura = rim * np.clip((patches - threshold) / spread + 0.5, 0.0, 1.0)
    falx = (np.clip((params.falx_thickness_mm / 2 - np.abs(anatomy.template_x)) / ramp + 0.5, 0.0, 1.0)
            * anatomy.csf * (anatomy.template_z > 10.0) * (depth < 30.0))
    return np.maximum(dura, falx).astype(np.float32)


def _choroid(rng: np.random.Generator, params: SynthParams, anatomy: Anatomy) -> Tuple[np.ndarray, int]:
    """Lumpy enhancing blobs in the lateral ventricles, one per side."""
    shape, spacing = anatomy.brain.shape, anatomy.spacing
    ventricles = anatomy.brain & (anatomy.csf > 0.7) & (anatomy.depth > CHOROID_MIN_DEPTH_MM)
    choroid_points, choroid_radii = [], []
    for side in range(params.choroid_count):
        pool = np.flatnonzero(ventricles & ((anatomy.template_x > 4.0) if side % 2 == 0 else (anatomy.template_x < -4.0)))
        if len(pool) == 0:
            continue
        centre = _starts(rng, pool, shape, 1)
        diameter = rng.uniform(*params.choroid_diameter_mm)
        lobes = centre + rng.normal(0, diameter / 4, (5, 3)) / spacing
        choroid_points.append(lobes)
        choroid_radii.append(np.full(5, diameter / 4))
    choroid = np.zeros(shape, dtype=np.float32)
    if choroid_points:
        choroid = render_tubes(shape, np.concatenate(choroid_points), np.concatenate(choroid_radii), spacing)
        choroid *= anatomy.csf
    return choroid, len(choroid_points)
