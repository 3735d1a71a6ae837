"""Pictures of a case for documentation and reports: four sequences and the lesion label.

Slices are shown as radiologists read them (axial, patient's right on the image's left,
anterior at the top) whatever the array axis order, so a picture of an imported BrainMetShare
case and of a synthetic one can be compared side by side.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Tuple, Union

import numpy as np

from .atomic import atomic_path
from .case import Case
from .errors import BrainMetSegError
from .roles import LABEL_ROLE, ROLES
from .volumes import Volume

PathLike = Union[str, "os.PathLike[str]"]

SHORT_TITLES = {"t1_pre": "T1 pre", "t1_gd": "T1 post-Gd (spin echo)", "bravo": "BRAVO post-Gd (gradient echo)",
                "flair": "FLAIR"}


def radiological_axes(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The array re-indexed [right -> left, anterior -> posterior, inferior -> superior].

    Each array axis goes to the RAS axis it is closest to; an oblique grid is shown as is on
    its nearest axes (a picture, not a resampling).
    """
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    ras_of_axis = np.argmax(np.abs(direction), axis=0)
    if sorted(ras_of_axis.tolist()) != [0, 1, 2]:
        raise BrainMetSegError("cannot show the volume axially: two array axes point the same way")
    order = [int(np.flatnonzero(ras_of_axis == ras)[0]) for ras in range(3)]
    view = np.transpose(array, order)
    wanted = (-1.0, -1.0, 1.0)  # x falls (to the left), y falls (to the back), z rises
    for ras, axis in enumerate(order):
        if np.sign(direction[ras, axis]) != wanted[ras]:
            view = np.flip(view, axis=ras)
    return view


def _as_arrays(case_or_volumes) -> Tuple[dict, Optional[np.ndarray]]:
    if isinstance(case_or_volumes, Case):
        images = {role: radiological_axes(case_or_volumes.images[i], case_or_volumes.affine)
                  for i, role in enumerate(ROLES)}
        label = case_or_volumes.label
        return images, None if label is None else radiological_axes(label, case_or_volumes.affine)
    if not isinstance(case_or_volumes, Mapping):
        raise BrainMetSegError(f"render_case_png: expected a Case or a mapping of roles to volumes, "
                               f"got {type(case_or_volumes).__name__}")
    missing = [role for role in ROLES if role not in case_or_volumes]
    if missing:
        raise BrainMetSegError(f"render_case_png: missing sequence(s) {', '.join(missing)}")
    images = {role: radiological_axes(np.asarray(case_or_volumes[role].array), case_or_volumes[role].affine)
              for role in ROLES}
    shapes = {image.shape for image in images.values()}
    if len(shapes) != 1:
        raise BrainMetSegError(f"render_case_png: the sequences have different shapes {sorted(shapes)}; "
                               "load them as a case first (it resamples onto bravo)")
    label_volume: Optional[Volume] = case_or_volumes.get(LABEL_ROLE)
    label = None if label_volume is None else radiological_axes(np.asarray(label_volume.array), label_volume.affine)
    return images, label


def _brain_window(bravo: np.ndarray) -> Tuple[slice, slice]:
    """In-plane box around the brain (all slices) with a small margin, so the brain fills the picture."""
    occupied = np.any(bravo != 0, axis=2)
    if not occupied.any():
        return slice(None), slice(None)
    window = []
    for axis in range(2):
        used = np.flatnonzero(np.any(occupied, axis=1 - axis))
        margin = max(2, int(0.04 * bravo.shape[axis]))
        window.append(slice(max(int(used[0]) - margin, 0), min(int(used[-1]) + margin + 1, bravo.shape[axis])))
    return window[0], window[1]


def default_slice(images: dict, label: Optional[np.ndarray]) -> int:
    """The axial slice with the most lesion voxels, else the middle of the brain."""
    if label is not None and np.any(label):
        return int(np.argmax(np.count_nonzero(label, axis=(0, 1))))
    occupied = np.flatnonzero(np.any(images["bravo"] != 0, axis=(0, 1)))
    return int(occupied[len(occupied) // 2]) if len(occupied) else images["bravo"].shape[2] // 2


def render_case_png(case_or_volumes: Union[Case, Mapping[str, Volume]], path: PathLike,
                    slice_index: Optional[int] = None, title: Optional[str] = None) -> Path:
    """Write a PNG: the four sequences on one axial slice (top) and the same with the label
    outlined in red (bottom). `slice_index` counts axial slices from the inferior end."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # headless, never pyplot's global state
    from matplotlib.figure import Figure

    images, label = _as_arrays(case_or_volumes)
    depth = images["bravo"].shape[2]
    index = default_slice(images, label) if slice_index is None else int(slice_index)
    if not 0 <= index < depth:
        raise BrainMetSegError(f"slice_index: {slice_index} is outside the {depth} axial slices")
    window = _brain_window(images["bravo"])
    rows = 2 if label is not None else 1
    figure = Figure(figsize=(4 * len(ROLES), 4.3 * rows), facecolor="black")
    FigureCanvasAgg(figure)
    for column, role in enumerate(ROLES):
        volume = images[role].astype(np.float32)
        brain = volume[volume > 0]
        high = 1.1 * float(np.percentile(brain, 99.5)) if brain.size else 1.0  # WM grey, enhancement white
        picture = volume[window + (index,)].T  # rows: anterior -> posterior, columns: right -> left
        for row in range(rows):
            axes = figure.add_subplot(rows, len(ROLES), row * len(ROLES) + column + 1)
            axes.imshow(picture, cmap="gray", vmin=0.0, vmax=high, interpolation="nearest")
            outline = None if row == 0 else label[window + (index,)].T
            if outline is not None and np.any(outline):
                axes.contour(outline.astype(np.float32), levels=[0.5], colors="red", linewidths=0.9)
            axes.set_axis_off()
            if row == 0:
                axes.set_title(SHORT_TITLES[role], color="white", fontsize=12)
    caption = f"axial slice {index}" + (" — bottom: lesion label in red" if rows == 2 else "")
    figure.suptitle(f"{title} — {caption}" if title else caption, color="white", fontsize=13)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9 if rows == 1 else 0.93, wspace=0.02, hspace=0.04)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80, facecolor="black")
    return path
