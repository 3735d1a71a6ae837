"""3D volumes with their physical geometry: read, write, compare, resample.

A Volume is an array plus an affine that maps the array's own indices (i, j, k, 1) to RAS
millimetres, the convention of NIfTI and of Slicer's display. NRRD (and ITK) store LPS, so
the conversion happens here, at the file edge, and nowhere else. Every refusal names the
file and the reason, because users meet these errors first when they point the tool at
their own data.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import numpy as np

from .atomic import atomic_path
from .errors import BrainMetSegError

PathLike = Union[str, "os.PathLike[str]"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
SUPPORTED_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""RAS = diag(-1, -1, 1) LPS; the matrix is its own inverse, so it converts both ways."""


@dataclass(eq=False)
class Volume:
    """A 3D array indexed [i, j, k] and the affine (i, j, k, 1) -> RAS mm of its voxel centres."""

    array: np.ndarray
    affine: np.ndarray
    path: Optional[Path] = None

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """Columns are the RAS unit vectors along i, j and k."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """RAS position of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry, new voxel values (e.g. a probability map on this grid)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the volume's {self.array.shape}")
        return Volume(array, self.affine.copy(), self.path)


def format_shape(shape: Tuple[int, ...]) -> str:
    return "x".join(str(int(n)) for n in shape)


def volume_suffix(path: PathLike) -> str:
    """The recognised file suffix, or a refusal naming the file and the formats we read."""
    name = Path(path).name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise BrainMetSegError(
        f"{path}: unsupported file type; expected {', '.join(SUPPORTED_SUFFIXES)}")


def make_affine(spacing, direction=None, origin=None) -> np.ndarray:
    """Affine from spacing, RAS direction columns (default identity) and RAS origin."""
    affine = np.eye(4)
    rotation = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    affine[:3, :3] = rotation * np.asarray(spacing, dtype=float)[None, :]
    if origin is not None:
        affine[:3, 3] = np.asarray(origin, dtype=float)
    return affine


def apply_affine(affine: np.ndarray, points) -> np.ndarray:
    """Map index points of shape (..., 3) through a 4x4 affine (indices -> RAS mm)."""
    points = np.asarray(points, dtype=float)
    return points @ affine[:3, :3].T + affine[:3, 3]


# ---------------------------------------------------------------------------------- reading


def read_volume(path: PathLike) -> Volume:
    """Read a NIfTI or NRRD volume, keeping its on-disk voxel type.

    Refused: a missing file, an unsupported or unreadable one, a 2D image (or a single
    slice), a 4D image (unless its extra axes have length 1, which are dropped), non-numeric
    voxels and NaN/Inf values.
    """
    path = Path(path)
    suffix = volume_suffix(path)
    if not path.exists():
        raise BrainMetSegError(f"{path}: file not found")
    if not path.is_file():
        raise BrainMetSegError(f"{path}: not a file")
    try:
        if suffix in NIFTI_SUFFIXES:
            array, affine = _read_nifti(path)
        else:
            array, affine = _read_nrrd(path)
    except BrainMetSegError:
        raise
    except Exception as error:  # readers fail in many ways on corrupt files; all mean "unreadable"
        raise BrainMetSegError(f"{path}: cannot read the file ({type(error).__name__}: {error})") from error
    array = _squeeze_to_3d(array, path)
    check_voxels(array, path)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BrainMetSegError(f"{path}: invalid geometry (singular or non-finite voxel-to-world matrix)")
    return Volume(array, affine, path)


def _read_nifti(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.load(str(path), mmap=False)
    # dataobj keeps the stored type unless the header scales values (then floats, as it must)
    array = np.asarray(image.dataobj)
    return np.array(array, copy=True), np.asarray(image.affine, dtype=float)


def _read_nrrd(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    dimension = image.GetDimension()
    array = sitk.GetArrayFromImage(image)  # ITK index order reversed: (..., k, j, i) [+ components]
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        array = np.moveaxis(array, -1, 0)  # components become the slowest axis, as a 4th dimension
    array = array.transpose(tuple(range(array.ndim))[::-1])
    if dimension < 3:  # a 2D colour image must not pass for a volume of three slices
        raise BrainMetSegError(f"{path}: 2D image (shape {format_shape(array.shape)}); expected a 3D volume")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)[:3, :3]
    spacing = np.asarray(image.GetSpacing(), dtype=float)[:3]
    origin = np.asarray(image.GetOrigin(), dtype=float)[:3]
    lps = make_affine(spacing, direction, origin)
    return array, _LPS_TO_RAS @ lps


def _squeeze_to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    shape = format_shape(array.shape)
    if array.ndim < 3 or min(array.shape[:3]) == 1:
        raise BrainMetSegError(f"{path}: 2D image (shape {shape}); expected a 3D volume")
    if array.ndim > 3:
        if any(n != 1 for n in array.shape[3:]):
            raise BrainMetSegError(f"{path}: {array.ndim}D image (shape {shape}); expected a 3D volume")
        array = array.reshape(array.shape[:3])
    return array


def check_voxels(array: np.ndarray, source: object) -> None:
    """Refuse voxel types we cannot compute with and non-finite values, naming `source`."""
    if array.dtype.kind not in "biuf":
        raise BrainMetSegError(f"{source}: unsupported voxel type {array.dtype}; expected scalar numbers")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - np.count_nonzero(finite))
            raise BrainMetSegError(f"{source}: {bad} voxel(s) are NaN or infinite; expected finite values")


# ---------------------------------------------------------------------------------- writing


def write_volume(volume: Volume, path: PathLike) -> None:
    """Write atomically, picking the format by extension; floats as float32, integers as given.

    NIfTI gets identical sform and qform (code 1, scanner) as Slicer and ITK expect; NRRD is
    written in LPS with gzip encoding. A .nhdr header and its .raw.gz data file land together.
    """
    path = Path(path)
    suffix = volume_suffix(path)
    array = _storage_array(volume.array, path)
    if suffix in NIFTI_SUFFIXES:
        with atomic_path(path) as tmp:
            _write_nifti(array, volume.affine, tmp)
    elif suffix == ".nrrd":
        with atomic_path(path) as tmp:
            _write_nrrd(array, volume.affine, tmp)
    else:
        with _detached_nrrd_folder(path) as tmp:
            _write_nrrd(array, volume.affine, tmp)


def _storage_array(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise BrainMetSegError(f"{path}: cannot write a {array.ndim}D array (shape {format_shape(array.shape)}); expected 3D")
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        if array.dtype.itemsize <= 4:
            return array
        if array.size == 0 or (array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max):
            return array.astype(np.int32)
        raise BrainMetSegError(f"{path}: integer values exceed 32 bits; cannot store them")
    raise BrainMetSegError(f"{path}: unsupported voxel type {array.dtype}")


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header.set_data_dtype(array.dtype)
    nib.save(image, str(path))


def _write_nrrd(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    lps = _LPS_TO_RAS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
    sitk.WriteImage(image, str(path), True)


@contextlib.contextmanager
def _detached_nrrd_folder(path: Path) -> Iterator[Path]:
    """Write a .nhdr and its data file in a private folder, then move the data, header last.

    ITK names the data file after the header, so the header is written under its final name
    in a temporary folder next to the destination; each file is then renamed atomically.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield folder / path.name
        for written in sorted(folder.iterdir(), key=lambda p: p.name == path.name):
            os.replace(written, path.parent / written.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------- geometry


def same_grid(a: Volume, b: Volume, atol: float = 1e-3) -> bool:
    """True when both volumes sample the same voxel centres (shape and affine agree)."""
    return a.array.shape == b.array.shape and bool(np.allclose(a.affine, b.affine, atol=atol, rtol=0))


def _box_corners(volume: Volume) -> np.ndarray:
    """RAS corners of the volume's extent (voxel boxes, half a voxel beyond the centres)."""
    shape = np.asarray(volume.array.shape[:3], dtype=float)
    unit = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    return apply_affine(volume.affine, unit * shape - 0.5)


def overlaps(a: Volume, b: Volume) -> bool:
    """True when the physical extents of the two volumes share some volume.

    Both extents are parallelepipeds, so the separating-axis test is exact: they are disjoint
    if and only if their projections are disjoint on a face normal of either or on a cross
    product of an edge of each.
    """
    edges_a, edges_b = a.affine[:3, :3].T, b.affine[:3, :3].T
    normals = [np.cross(e[i], e[(i + 1) % 3]) for e in (edges_a, edges_b) for i in range(3)]
    normals += [np.cross(u, v) for u in edges_a for v in edges_b]
    axes = np.array([n / np.linalg.norm(n) for n in normals if np.linalg.norm(n) > 1e-9])
    proj_a, proj_b = _box_corners(a) @ axes.T, _box_corners(b) @ axes.T
    gap = np.maximum(proj_b.min(axis=0) - proj_a.max(axis=0), proj_a.min(axis=0) - proj_b.max(axis=0))
    return bool(np.all(gap < -1e-6))


def resample_like(volume: Volume, reference: Volume, order: int) -> Volume:
    """Resample `volume` onto `reference`'s grid: order 1 linear (float32), 0 nearest (same type).

    Points outside the volume's extent (its voxel boxes) become 0; inside it, values near the
    border are taken from the nearest edge voxel rather than blended with zero.
    """
    from scipy import ndimage

    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), not {order}")
    ref_to_vol = np.linalg.inv(volume.affine) @ reference.affine
    source = volume.array.astype(np.float32) if order == 1 else volume.array
    out = ndimage.affine_transform(source, ref_to_vol[:3, :3], offset=ref_to_vol[:3, 3],
                                   output_shape=reference.array.shape[:3], order=order,
                                   mode="nearest", output=source.dtype)
    out[~_inside_extent(ref_to_vol, reference.array.shape[:3], volume.array.shape[:3])] = 0
    return Volume(out, reference.affine.copy(), volume.path)


def _inside_extent(ref_to_vol: np.ndarray, out_shape, in_shape, tol: float = 1e-4) -> np.ndarray:
    """Boolean mask over the output grid: which voxel centres fall inside the input's extent."""
    grids = [np.arange(n, dtype=np.float32).reshape([-1 if d == axis else 1 for d in range(3)])
             for axis, n in enumerate(out_shape)]
    inside = np.ones(tuple(out_shape), dtype=bool)
    for row in range(3):
        coordinate = float(ref_to_vol[row, 3]) + sum(float(ref_to_vol[row, c]) * grids[c] for c in range(3))
        inside &= (coordinate >= -0.5 - tol) & (coordinate <= in_shape[row] - 0.5 + tol)
    return inside
