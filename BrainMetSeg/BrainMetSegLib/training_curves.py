"""A training job's curves, as points to plot: loss and validation AP / sensitivity per epoch.

The x axis is the epoch for every curve: the per-epoch values sit on whole epochs and the
logged training steps between them (step / steps per epoch), so the noisy step loss and the
epoch summaries line up. A curve holds only the values that were measured: a run without
validation cases has no AP points, rather than zeros. The Slicer panel draws these points in
a chart (scene/training_plot.py); the documentation's picture of the panel draws the same.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .job_status import History

STEP_LOSS = "loss (logged steps)"
TRAIN_LOSS = "training loss"
VALIDATION_AP = "validation AP"
VALIDATION_SENSITIVITY = "validation max sensitivity"
CURVES: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
    (STEP_LOSS, (0.62, 0.62, 0.62)),
    (TRAIN_LOSS, (0.15, 0.15, 0.15)),
    (VALIDATION_AP, (0.80, 0.10, 0.10)),
    (VALIDATION_SENSITIVITY, (0.10, 0.35, 0.85)),
)
"""Curve name (also its legend entry) and colour, in drawing order."""

Points = Tuple[np.ndarray, np.ndarray]


def _points(x: Sequence[float], y: Sequence[Optional[float]]) -> Points:
    """The (x, y) pairs whose y was measured, as float arrays."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if b is not None]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*pairs)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def steps_per_epoch(total_steps: Optional[int], epochs: Optional[int]) -> Optional[float]:
    """Steps of one epoch from a job status's totals; None while they are not known."""
    if not total_steps or not epochs:
        return None
    return total_steps / epochs


def history_points(history: History, per_epoch: Optional[float]) -> Dict[str, Points]:
    """Each curve's (epoch, value) points. Without `per_epoch` (steps per epoch, not known
    before the run's first step) the step curve is empty: its steps have no place on the axis."""
    if per_epoch:
        steps = _points(np.asarray(history.steps, dtype=np.float64) / float(per_epoch), history.loss)
    else:
        steps = _points([], [])
    return {
        STEP_LOSS: steps,
        TRAIN_LOSS: _points(history.epochs, history.train_loss),
        VALIDATION_AP: _points(history.epochs, history.ap),
        VALIDATION_SENSITIVITY: _points(history.epochs, history.sensitivity),
    }
