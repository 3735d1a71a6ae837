"""The healthy brain of a synthetic case: the MNI152 template, posed and deformed per case.

The vendored template (data/, 1.5 mm grey- and white-matter probabilities and brain mask) is
an average of 152 brains, so its sulci are blurred; a fixed band-pass pattern of sulcal CSF is
carved into the cortex once at load, so cases show folded cortex as single scans do. Each case
then scales, rotates, shifts and smoothly deforms it onto a BrainMetShare-like axial grid.
Everything is computed only in the crop of the grid that holds the brain; outside it the
sequences are zero, as in skull-stripped data.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

from .brainmetshare import axial_affine
from .synth_fields import smooth_field
from .synth_params import SynthParams
from .volumes import read_volume

DATA_FOLDER = Path(__file__).resolve().parent / "data"
TEMPLATE_FILES = {name: f"mni_icbm152_2009a_{name}_1.5mm.nii.gz" for name in ("gm", "wm", "brain")}
SULCI_SEED = 20200406
"""The sulcal pattern is part of the template, identical for every case and every run."""
OUTSIDE_DEPTH_MM = -10.0


@dataclass(frozen=True)
class Template:
    gm: np.ndarray           # float32 probabilities on the template grid
    wm: np.ndarray
    depth: np.ndarray        # float32 signed distance to the brain surface, mm (> 0 inside)
    affine: np.ndarray       # template index -> MNI RAS mm
    brain_points: np.ndarray  # (N, 3) RAS of a subsample of brain voxels, for posing


@dataclass
class Anatomy:
    """Tissue of one case on the crop `crop` of the full grid `shape` (affine: index -> RAS)."""

    shape: Tuple[int, int, int]
    affine: np.ndarray
    crop: Tuple[slice, slice, slice]
    gm: np.ndarray           # float32 fractions of each crop voxel; gm + wm + csf = brain_fraction
    wm: np.ndarray
    csf: np.ndarray
    brain_fraction: np.ndarray
    brain: np.ndarray        # bool, brain_fraction >= 0.5: the non-zero voxels of every sequence
    depth: np.ndarray        # float32 mm below the brain surface (negative outside)
    template_x: np.ndarray   # float32 MNI x (mm, 0 on the midline) of each voxel
    template_z: np.ndarray   # float32 MNI z (mm)
    pose: Dict[str, object]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


@functools.lru_cache(maxsize=4)
def load_template(sulci_contrast: float, sulci_wavelength_mm: float) -> Template:
    volumes = {name: read_volume(DATA_FOLDER / file) for name, file in TEMPLATE_FILES.items()}
    affine = volumes["brain"].affine
    spacing = float(np.mean(np.linalg.norm(affine[:3, :3], axis=0)))
    gm, wm, brain = (volumes[name].array.astype(np.float32) / 255.0 for name in ("gm", "wm", "brain"))
    inside = brain >= 0.5
    depth = np.where(inside, ndimage.distance_transform_edt(inside, sampling=spacing) - spacing / 2,
                     spacing / 2 - ndimage.distance_transform_edt(~inside, sampling=spacing)).astype(np.float32)
    if sulci_contrast > 0:
        gm = gm - _sulci(gm.shape, spacing, sulci_wavelength_mm, depth) * sulci_contrast * gm
    points = np.argwhere(inside)[::16].astype(np.float64)
    brain_points = points @ affine[:3, :3].T + affine[:3, 3]
    return Template(gm.astype(np.float32), wm, depth, affine, brain_points)


def _sulci(shape, spacing: float, wavelength_mm: float, depth: np.ndarray) -> np.ndarray:
    """Thin sheets (zero crossings of band-pass noise) fading out 12-20 mm deep: sulcal CSF."""
    rng = np.random.default_rng(SULCI_SEED)
    noise = rng.standard_normal(shape).astype(np.float32)
    sigma = wavelength_mm / (4.0 * spacing)
    band = ndimage.gaussian_filter(noise, sigma) - ndimage.gaussian_filter(noise, 2.0 * sigma)
    band /= band.std()
    sheets = np.exp(-(band / 0.35) ** 2)
    return sheets * np.clip((20.0 - depth) / 8.0, 0.0, 1.0)


def _inside_box(coords, shape) -> np.ndarray:
    inside = np.ones(coords[0].shape, dtype=bool)
    for coord, n in zip(coords, shape):
        inside &= (coord > -1) & (coord < n)
    return inside


def _sample(volume: np.ndarray, coords, where: np.ndarray, outside: float) -> np.ndarray:
    """Trilinear samples of `volume` at the template coordinates of the voxels in `where`."""
    out = np.full(where.shape, outside, dtype=np.float32)
    out[where] = ndimage.map_coordinates(volume, [c[where] for c in coords], order=1, cval=outside,
                                         prefilter=False)
    return out


def _rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def build_anatomy(rng: np.random.Generator, params: SynthParams) -> Anatomy:
    """Pose (scale, rotation, shift, smooth deformation) the template onto this case's grid."""
    template = load_template(params.sulci_contrast, params.sulci_wavelength_mm)
    shape = tuple(int(n) for n in params.shape)
    spacing = np.asarray(params.spacing, dtype=np.float64)
    affine = axial_affine(shape, spacing)  # the geometry an imported BrainMetShare case gets

    scale = rng.uniform(*params.scale) * (1 + rng.uniform(-1, 1, 3) * params.axis_scale_jitter)
    angles = rng.uniform(-1, 1, 3) * np.asarray(params.max_rotation_deg)
    forward = _rotation(angles) @ np.diag(scale)             # template offsets -> case offsets
    centre = 0.5 * (template.brain_points.min(0) + template.brain_points.max(0))
    posed = (template.brain_points - centre) @ forward.T
    top_slice_z = affine[2, 2] * (shape[2] - 1) + affine[2, 3]
    shift = np.array([*(rng.uniform(-1, 1, 2) * np.asarray(params.max_shift_mm)),
                      top_slice_z - rng.uniform(*params.top_margin_mm) - posed[:, 2].max()])

    # Crop: the grid box holding the posed brain, widened by the largest plausible deformation.
    margin = 4.0 * params.deformation_mm + 3.0 * float(spacing.max())
    corners = np.linalg.solve(affine[:3, :3], (np.stack([posed.min(0), posed.max(0)]) + shift - affine[:3, 3]).T).T
    low = np.maximum(np.floor(corners.min(0) - margin / spacing), 0).astype(int)
    high = np.minimum(np.ceil(corners.max(0) + margin / spacing) + 1, shape).astype(int)
    crop = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    crop_shape = tuple(int(b - a) for a, b in zip(low, high))

    # Template index of every crop voxel: inverse pose, plus a smooth displacement in case mm.
    to_template = np.linalg.inv(template.affine)[:3, :3] @ np.linalg.inv(forward)
    linear = to_template @ affine[:3, :3]
    offset = to_template @ (affine[:3, :3] @ low + affine[:3, 3] - shift) + np.linalg.solve(
        template.affine[:3, :3], centre - template.affine[:3, 3])
    linear, offset, to_template = (m.astype(np.float32) for m in (linear, offset, to_template))
    axes = [np.arange(n, dtype=np.float32) for n in crop_shape]
    displacement = [smooth_field(rng, crop_shape, params.deformation_grid, params.deformation_mm) for _ in range(3)]
    coords = []
    for c in range(3):
        coord = (linear[c, 0] * axes[0][:, None, None] + linear[c, 1] * axes[1][None, :, None]
                 + linear[c, 2] * axes[2][None, None, :] + offset[c])
        for b in range(3):
            coord = coord + to_template[c, b] * displacement[b]
        coords.append(coord.astype(np.float32))
    del displacement

    # Interpolate only where it matters: depth inside the template's box, tissue in the brain.
    depth = _sample(template.depth, coords, _inside_box(coords, template.depth.shape), OUTSIDE_DEPTH_MM)
    near_brain = depth > -2.0 * float(spacing.max())
    gm = _sample(template.gm, coords, near_brain, 0.0)
    wm = _sample(template.wm, coords, near_brain, 0.0)
    template_x = (coords[0] * np.float32(template.affine[0, 0]) + np.float32(template.affine[0, 3]))
    template_z = (coords[2] * np.float32(template.affine[2, 2]) + np.float32(template.affine[2, 3]))
    del coords

    ramp = float(np.mean(spacing))
    brain_fraction = np.clip(depth / ramp + 0.5, 0.0, 1.0).astype(np.float32)
    tissue = gm + wm
    squeeze = np.minimum(1.0, brain_fraction / np.maximum(tissue, 1e-6)).astype(np.float32)
    gm *= squeeze
    wm *= squeeze
    csf = np.maximum(brain_fraction - gm - wm, 0.0).astype(np.float32)
    pose = {"scale": [round(float(s), 4) for s in scale], "rotation_deg": [round(float(a), 2) for a in angles],
            "shift_mm": [round(float(s), 2) for s in shift]}
    return Anatomy(shape, affine, crop, gm, wm, csf, brain_fraction, depth > 0, depth,
                   template_x, template_z, pose)
