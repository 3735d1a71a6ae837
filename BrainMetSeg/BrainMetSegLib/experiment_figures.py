"""The experiment's figures as PNG files: PR curves, paper Fig. 3 and Fig. 5.

matplotlib runs headless (Agg, set on a private Figure, never through pyplot's global state),
so the report is written the same on a server, in CI and inside Slicer's Python.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .atomic import atomic_path
from .metrics import DIAMETER_BINS, CaseEvaluation, pr_curve

Series = Tuple[str, Sequence[CaseEvaluation]]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(str(tmp), format="png")
    return path


def plot_pr_curves(path: Path, title: str, series: Sequence[Series]) -> Path:
    """Pooled lesion-detection PR curves (metrics.pr_curve), one per row; AP in the legend."""
    from .metrics import summarise

    figure = _figure(6.0, 4.6)
    axes = figure.add_subplot(1, 1, 1)
    for label, evaluations in series:
        _, precision, recall = pr_curve(evaluations)
        ap = summarise(evaluations)["ap"]
        if len(recall) == 0 or np.isnan(recall).all():
            axes.plot([], [], label=f"{label} (no prediction)")
            continue
        axes.step(np.concatenate([[0.0], recall]), np.concatenate([[precision[0]], precision]), where="pre",
                  label=f"{label} (AP {100 * ap:.0f})" if ap is not None else label)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall (lesions detected)")
    axes.set_ylabel("precision (predicted lesions that are TP)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper right")
    return _save(figure, path)


def plot_probability_histograms(path: Path, panels: Sequence[Tuple[str, Sequence[int], Sequence[int],
                                                                    Optional[float], Optional[float]]]) -> Path:
    """Paper Fig. 3: per model, the predicted probability of ground-truth lesion voxels (blue)
    and of background brain voxels (red), each normalised to its own total, log scale, with
    the Shannon entropy of each histogram (100 bins, bits)."""
    count = max(1, len(panels))
    figure = _figure(3.4 * count, 3.4)
    edges = np.linspace(0.0, 1.0, len(panels[0][1]) + 1 if panels else 101)
    for index, (title, lesion, background, lesion_bits, background_bits) in enumerate(panels):
        axes = figure.add_subplot(1, count, index + 1)
        smallest = 1.0
        for counts, colour, name, bits in ((background, "tab:red", "GT normal", background_bits),
                                           (lesion, "tab:blue", "GT lesion", lesion_bits)):
            counts = np.asarray(counts, dtype=float)
            if counts.sum() == 0:
                continue
            share = counts / counts.sum()
            smallest = min(smallest, float(share[share > 0].min()))
            entropy = "n/a" if bits is None else f"{bits:.2f}"
            axes.stairs(share, edges, fill=True, alpha=0.5, color=colour, label=f"{name} (H = {entropy} bits)")
        axes.set_yscale("log")
        axes.set_ylim(smallest / 2, 3.0)
        axes.set_xlim(0, 1)
        axes.set_xlabel("predicted probability")
        if index == 0:
            axes.set_ylabel("share of voxels")
        axes.set_title(title, fontsize=9)
        axes.legend(fontsize=7, loc="upper center")
    return _save(figure, path)


def plot_sensitivity_by_diameter(path: Path, series: Sequence[Tuple[str, List[List[Optional[float]]]]],
                                 lesions_per_bin: Sequence[int]) -> Path:
    """Paper Fig. 5: sensitivity per equivalent-diameter bin; bars are the mean over seeds,
    whiskers the spread (sd) where there are several; bins without test lesions stay empty."""
    keys = [key for key, _, _ in DIAMETER_BINS]
    figure = _figure(7.5, 4.2)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(series))
    positions = np.arange(len(keys))
    for index, (label, per_seed) in enumerate(series):
        values = np.array([[np.nan if v is None else v for v in seed] for seed in per_seed],
                          dtype=float).reshape(-1, len(keys))
        finite = np.isfinite(values)
        seeds = finite.sum(axis=0)
        mean = np.where(finite, values, 0.0).sum(axis=0) / np.maximum(seeds, 1)
        squares = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0)
        spread = np.where(seeds > 1, np.sqrt(squares / np.maximum(seeds - 1, 1)), 0.0)
        axes.bar(positions + (index - (len(series) - 1) / 2) * width, mean, width,
                 yerr=spread if (seeds > 1).any() else None, capsize=2, label=label)
    axes.set_xticks(positions)
    axes.set_xticklabels([f"{key} mm\n({n} lesions)" for key, n in zip(keys, lesions_per_bin)], fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("sensitivity (max)")
    axes.set_xlabel("equivalent-sphere diameter of the test lesion")
    axes.set_title("Sensitivity by lesion size (paper Fig. 5)", fontsize=10)
    axes.legend(fontsize=7)
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)
