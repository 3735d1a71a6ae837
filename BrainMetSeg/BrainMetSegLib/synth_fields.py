"""Building blocks of the synthetic cohort: smooth random fields and partial-volume shapes.

Smooth fields (bias fields, deformations, patchy dura) are cubic B-splines on a coarse grid of
random coefficients, evaluated as a tensor product one axis at a time: cheap on a full volume
and, done with einsum rather than BLAS, bit-identical from run to run. Thin shapes (vessels,
small lesions) get a partial-volume profile whose integral across the shape equals its true
width, so a vessel thinner than a voxel is faint instead of vanishing or filling the voxel.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def _cubic_bspline(u: np.ndarray) -> np.ndarray:
    u = np.abs(u)
    return np.where(u < 1, 2.0 / 3.0 - u ** 2 + u ** 3 / 2, np.where(u < 2, (2 - u) ** 3 / 6, 0.0))


def bspline_weights(n_out: int, n_ctrl: int) -> np.ndarray:
    """(n_out, n_ctrl) weights spreading n_ctrl control points evenly over n_out samples.

    Samples map to control coordinates [1, n_ctrl - 2], where all four neighbouring basis
    functions exist, so the weights of every sample sum to one (no fading at the edges).
    """
    n_ctrl = max(int(n_ctrl), 4)
    t = 1.0 + np.arange(n_out) * ((n_ctrl - 3) / max(n_out - 1, 1))
    return _cubic_bspline(t[:, None] - np.arange(n_ctrl)[None, :])


def expand_coefficients(coefficients: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Evaluate a 3D grid of B-spline coefficients on `shape` samples spanning the same extent.

    Each product contracts only the few control points of one axis, so the sums are short and
    their order fixed: the result does not depend on the number of BLAS threads.
    """
    w0, w1, w2 = (bspline_weights(n, c).astype(np.float32) for n, c in zip(shape, coefficients.shape))
    field = np.tensordot(w0, coefficients.astype(np.float32), axes=(1, 0))   # (I, b, c)
    field = np.matmul(w1, field)                                             # (I, J, c)
    return np.matmul(field, w2.T)                                            # (I, J, K)


def smooth_field(rng: np.random.Generator, shape: Sequence[int], grid: int, sd: float) -> np.ndarray:
    """A smooth random field over `shape`, `grid` control points per axis of s.d. `sd`."""
    grid = max(int(grid), 4)
    return expand_coefficients(rng.normal(0.0, sd, size=(grid, grid, grid)), shape)


def thin_profile(distance: np.ndarray, radius: np.ndarray, ramp: float) -> np.ndarray:
    """Fraction of a voxel (of size `ramp`) filled by a shape of the given radius at this distance.

    A linear edge one voxel wide; for shapes thinner than a voxel the peak is lowered to 2r/ramp,
    keeping the integral across the shape at 2r (its true width).
    """
    peak = np.minimum(1.0, 2.0 * radius / ramp)
    reach = np.maximum(radius, ramp / 2.0)
    return (peak * np.clip((reach - distance) / ramp + 0.5, 0.0, 1.0)).astype(np.float32)


def render_tubes(shape: Tuple[int, int, int], points: np.ndarray, radii: np.ndarray,
                 spacing: Sequence[float]) -> np.ndarray:
    """Occupancy of tubes given by centre-line points (voxel coordinates) and their radii (mm).

    Every point stamps a ball with the thin profile onto its neighbourhood; overlapping stamps
    keep the maximum, so a densely sampled centre line becomes a smooth tube.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    out = np.zeros(int(np.prod(shape)), dtype=np.float32)
    if len(points) == 0:
        return out.reshape(shape)
    ramp = float(np.mean(spacing))
    reach = np.ceil((float(np.max(radii)) + ramp) / spacing).astype(int)
    offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    # Points sit within half a voxel of the voxel they are rounded to: farther offsets are empty.
    offsets = offsets[np.linalg.norm(offsets * spacing, axis=1) <= float(np.max(radii)) + ramp + np.linalg.norm(spacing) / 2]
    voxels = np.round(points).astype(np.int64)[:, None, :] + offsets[None, :, :]
    distance = np.linalg.norm((voxels - points[:, None, :]) * spacing, axis=-1)
    occupancy = thin_profile(distance, np.asarray(radii, dtype=np.float64)[:, None], ramp)
    keep = (occupancy > 0) & np.all((voxels >= 0) & (voxels < np.asarray(shape)), axis=-1)
    flat = np.ravel_multi_index(tuple(voxels[keep].T), shape)
    np.maximum.at(out, flat, occupancy[keep])
    return out.reshape(shape)


def lookup(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Nearest-voxel values at points (voxel coordinates), clamped to the volume."""
    index = np.clip(np.round(points).astype(np.int64), 0, np.asarray(volume.shape) - 1)
    return volume[index[:, 0], index[:, 1], index[:, 2]]


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
