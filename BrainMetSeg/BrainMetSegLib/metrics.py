"""Lesion-level metrics exactly as DESIGN.md §Lesions and metrics defines them (paper §3.4).

Evaluation is split in two so that training can run it every epoch: `evaluate_case` does the
per-voxel work once per case (components, the TP rule, per-lesion overlaps, the probability
histogram) and keeps only a few numbers per lesion in a JSON-friendly `CaseEvaluation`;
`summarise` pools any set of those into the reported metrics without touching a voxel again.

The rules, in short: predicted lesions are 26-connected components of probability >= 0.1
with confidence = mean probability. A prediction is a TP when its centroid lies in the closed
box of a ground-truth voxel or within 1 mm of a ground-truth voxel centre; it is matched to
the lesion of the nearest ground-truth voxel centre. One PR curve is pooled over all cases,
with the distinct confidences as thresholds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import BrainMetSegError
from .lesions import (DEFAULT_THRESHOLD, check_affine, check_probability, component_statistics,
                      connected_components, equivalent_diameter_mm, rank_components)
from .volumes import apply_affine

MATCH_DISTANCE_MM = 1.0
"""A centroid this close to a ground-truth voxel centre is a TP even outside every voxel box."""
HISTOGRAM_BINS = 100
FROC_FP_RATES = (0.5, 1.0, 2.0, 4.0, 8.0)
DIAMETER_BINS = (("0-3", 0.0, 3.0), ("3-6", 3.0, 6.0), ("6-10", 6.0, 10.0), ("10-20", 10.0, 20.0),
                 ("20+", 20.0, math.inf))
"""Equivalent-sphere diameter bins [low, high) in mm, with their JSON keys."""
SUMMARY_KEYS = ("ap", "ap_ci95", "ap_strict", "max_sensitivity", "tp_dice", "fp_per_case", "froc",
                "sensitivity_by_diameter", "lesion_entropy_bits", "n_cases", "n_lesions", "n_predictions")
_BOX_TOLERANCE = 1e-6
"""Index units: the voxel box is closed, and round-off must not push a centroid on a face out."""


@dataclass
class PredictedLesion:
    confidence: float
    is_tp: bool
    lesion: int
    """0-based index of the matched ground-truth lesion of this case, -1 for a false positive."""


@dataclass
class CaseEvaluation:
    """Everything `summarise` needs from one case; `to_dict()` is plain JSON."""

    case_id: str
    n_lesions: int
    lesion_diameters_mm: List[float]
    """Equivalent-sphere diameter per ground-truth lesion (cc3d order)."""
    lesion_voxels: List[int]
    predictions: List[PredictedLesion]
    """Most confident first."""
    tp_overlap_voxels: List[int]
    """Per ground-truth lesion: its voxels inside the union of its TP components."""
    tp_predicted_voxels: List[int]
    """Per ground-truth lesion: voxels of the union of its TP components (0 when unmatched)."""
    probability_histogram: List[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    """Counts of the predicted probability over ground-truth lesion voxels, 100 bins on [0, 1]."""

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "CaseEvaluation":
        values = dict(data)
        values["predictions"] = [PredictedLesion(**p) for p in values["predictions"]]  # type: ignore[union-attr]
        return cls(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- one case


def evaluate_case(probability: np.ndarray, label: np.ndarray, affine: np.ndarray,
                  threshold: float = DEFAULT_THRESHOLD, case_id: str = "") -> CaseEvaluation:
    """Match the predicted lesions of `probability` to the lesions of `label` (non-zero = lesion)."""
    probability = check_probability(probability)
    affine = check_affine(affine)
    label = np.asarray(label)
    if label.shape != probability.shape:
        raise BrainMetSegError(f"label: shape {label.shape} differs from the probability map's {probability.shape}"
                               + (f" (case {case_id})" if case_id else ""))
    truth, n_lesions = connected_components(label)
    in_lesion = truth > 0
    truth_values = truth[in_lesion]
    lesion_voxels = np.bincount(truth_values, minlength=n_lesions + 1)[1:]
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))

    predicted, confidence = rank_components(probability, threshold)
    n_predictions = len(confidence)
    predicted_voxels, centroids_ijk, _ = component_statistics(predicted)
    matched = _match(centroids_ijk, truth, affine)

    tp = matched >= 0
    tp_predicted = np.bincount(matched[tp], weights=predicted_voxels[tp], minlength=n_lesions)
    lesion_of_component = np.zeros(n_predictions + 1, dtype=np.int64)
    lesion_of_component[1:] = matched + 1  # FPs map to 0, which no lesion voxel carries
    overlap = truth_values[lesion_of_component[predicted[in_lesion]] == truth_values]
    tp_overlap = np.bincount(overlap, minlength=n_lesions + 1)[1:]
    histogram = np.histogram(probability[in_lesion], bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]

    return CaseEvaluation(
        case_id=case_id,
        n_lesions=int(n_lesions),
        lesion_diameters_mm=[float(d) for d in equivalent_diameter_mm(lesion_voxels * voxel_mm3)],
        lesion_voxels=[int(v) for v in lesion_voxels],
        predictions=[PredictedLesion(float(c), bool(m >= 0), int(m)) for c, m in zip(confidence, matched)],
        tp_overlap_voxels=[int(v) for v in tp_overlap],
        tp_predicted_voxels=[int(v) for v in tp_predicted],
        probability_histogram=[int(v) for v in histogram],
    )


def _match(centroids_ijk: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Matched lesion (0-based) per centroid, -1 for false positives; vectorised over centroids.

    Box test in index space, where every voxel box is the unit cube around its centre whatever
    the spacing or rotation: a centroid on a face or corner touches up to 8 boxes, all checked.
    Distance test and matching with a KD-tree of ground-truth voxel centres in RAS mm.
    """
    from scipy.spatial import cKDTree

    count = len(centroids_ijk)
    if count == 0 or not truth.any():
        return np.full(count, -1, dtype=np.int64)
    low = np.ceil(centroids_ijk - 0.5 - _BOX_TOLERANCE).astype(np.int64)
    high = np.floor(centroids_ijk + 0.5 + _BOX_TOLERANCE).astype(np.int64)
    corners = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)], dtype=bool)  # (8, 3)
    candidates = np.where(corners[None], high[:, None, :], low[:, None, :])  # (n, 8, 3)
    inside_grid = np.all((candidates >= 0) & (candidates < np.array(truth.shape)), axis=2)
    clipped = np.clip(candidates, 0, np.array(truth.shape) - 1)
    in_box = np.any(inside_grid & (truth[clipped[..., 0], clipped[..., 1], clipped[..., 2]] > 0), axis=1)

    truth_ijk = np.argwhere(truth > 0)
    distance, nearest = cKDTree(apply_affine(affine, truth_ijk)).query(apply_affine(affine, centroids_ijk))
    is_tp = in_box | (distance <= MATCH_DISTANCE_MM + 1e-9)
    lesion = truth[tuple(truth_ijk[nearest].T)].astype(np.int64) - 1
    return np.where(is_tp, lesion, -1)


# ---------------------------------------------------------------------------------- pooling


@dataclass
class _Pooled:
    n_cases: int
    confidence: np.ndarray        # (P,) all predictions
    is_tp: np.ndarray             # (P,) bool
    is_strict_tp: np.ndarray      # (P,) bool: only the most confident TP of each lesion
    detected_at: np.ndarray       # (L,) highest TP confidence per lesion, -inf when never detected
    diameters: np.ndarray         # (L,)
    dice: np.ndarray              # (matched lesions,)
    histogram: np.ndarray         # (100,)

    @property
    def n_lesions(self) -> int:
        return len(self.detected_at)


def _pool(evaluations: Sequence[CaseEvaluation]) -> _Pooled:
    if not evaluations:
        raise BrainMetSegError("evaluations: no cases to summarise")
    confidence, is_tp, strict, detected, diameters, dice = [], [], [], [], [], []
    histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    for case in evaluations:
        conf = np.array([p.confidence for p in case.predictions], dtype=float)
        lesion = np.array([p.lesion if p.is_tp else -1 for p in case.predictions], dtype=np.int64)
        tp = lesion >= 0
        best = np.full(case.n_lesions, -np.inf)
        np.maximum.at(best, lesion[tp], conf[tp])
        # the first TP of each lesion in decreasing confidence (stable) is its strict TP
        order = np.argsort(-conf, kind="stable")
        first = np.zeros(len(conf), dtype=bool)
        seen_lesions, first_position = np.unique(lesion[order], return_index=True)
        first[order[first_position[seen_lesions >= 0]]] = True
        voxels = np.array(case.lesion_voxels, dtype=float)
        overlap = np.array(case.tp_overlap_voxels, dtype=float)
        predicted = np.array(case.tp_predicted_voxels, dtype=float)
        matched = predicted > 0
        confidence.append(conf)
        is_tp.append(tp)
        strict.append(first)
        detected.append(best)
        diameters.append(np.array(case.lesion_diameters_mm, dtype=float))
        dice.append(2 * overlap[matched] / (voxels[matched] + predicted[matched]))
        histogram += np.asarray(case.probability_histogram, dtype=np.int64)
    return _Pooled(len(evaluations), *(np.concatenate(x) for x in (confidence, is_tp, strict, detected,
                                                                    diameters, dice)), histogram)


def _curve(pooled: _Pooled, strict: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (distinct confidences, decreasing) with predictions, TPs and detected lesions at each.

    A threshold t keeps every prediction with confidence >= t, so tied predictions enter together.
    """
    thresholds = np.unique(pooled.confidence)[::-1]
    positives = pooled.is_strict_tp if strict else pooled.is_tp

    def at_or_above(values: np.ndarray) -> np.ndarray:
        return len(values) - np.searchsorted(np.sort(values), thresholds, side="left")

    return (thresholds, at_or_above(pooled.confidence), at_or_above(pooled.confidence[positives]),
            at_or_above(pooled.detected_at[np.isfinite(pooled.detected_at)]))


def _average_precision(pooled: _Pooled, strict: bool = False) -> float:
    """Σ over thresholds in decreasing order of (recall − previous recall) × precision."""
    _, predictions, tps, detected = _curve(pooled, strict)
    if len(predictions) == 0:
        return 0.0
    recall = detected / pooled.n_lesions
    gains = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(gains * tps / predictions))


def hanley_mcneil_ci95(area: float, n_positive: int, n_negative: int) -> Tuple[float, float]:
    """95% CI of an area by Hanley & McNeil (1983), symmetric and clipped to [0, 1]."""
    a = float(area)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) \
        / (n_positive * n_negative)
    half = 1.96 * math.sqrt(max(variance, 0.0))
    return max(0.0, a - half), min(1.0, a + half)


def summarise(evaluations: Sequence[CaseEvaluation]) -> Dict[str, object]:
    """The reported metrics, keys as SUMMARY_KEYS; AP and sensitivities None without lesions.

    `tp_dice` is None when no lesion was matched and `lesion_entropy_bits` when there is no
    lesion voxel. The AP interval is symmetric (A ± 1.96·SE), unlike some of the paper's.
    """
    pooled = _pool(evaluations)
    n_lesions, n_predictions = pooled.n_lesions, len(pooled.confidence)
    false_positives = int(n_predictions - np.count_nonzero(pooled.is_tp))
    summary: Dict[str, object] = {
        "ap": None, "ap_ci95": None, "ap_strict": None, "max_sensitivity": None,
        "tp_dice": float(np.mean(pooled.dice)) if len(pooled.dice) else None,
        "fp_per_case": false_positives / pooled.n_cases,
        "froc": {_rate_key(x): None for x in FROC_FP_RATES},
        "sensitivity_by_diameter": {key: None for key, _, _ in DIAMETER_BINS},
        "lesion_entropy_bits": entropy_bits(pooled.histogram),
        "n_cases": pooled.n_cases, "n_lesions": n_lesions, "n_predictions": n_predictions,
    }
    if n_lesions == 0:
        return summary
    ap = _average_precision(pooled)
    detected = np.isfinite(pooled.detected_at)
    summary["ap"] = ap
    summary["ap_ci95"] = list(hanley_mcneil_ci95(ap, n_lesions, max(1, false_positives)))
    summary["ap_strict"] = _average_precision(pooled, strict=True)
    summary["max_sensitivity"] = float(np.count_nonzero(detected)) / n_lesions
    summary["froc"] = {_rate_key(x): _recall_at_fp_rate(pooled, x)[1] for x in FROC_FP_RATES}
    for key, low, high in DIAMETER_BINS:
        in_bin = (pooled.diameters >= low) & (pooled.diameters < high)
        if in_bin.any():
            summary["sensitivity_by_diameter"][key] = float(np.count_nonzero(detected & in_bin)) / int(in_bin.sum())  # type: ignore[index]
    return summary


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


def entropy_bits(histogram: Sequence[float]) -> Optional[float]:
    """Shannon entropy (bits) of a renormalised histogram (paper Fig. 3); None when it is empty."""
    histogram = np.asarray(histogram, dtype=float)
    total = histogram.sum()
    if total == 0:
        return None
    p = histogram[histogram > 0] / total
    return float(-np.sum(p * np.log2(p)) + 0.0)


def _recall_at_fp_rate(pooled: _Pooled, max_fp_per_case: float) -> Tuple[Optional[float], float]:
    """Lowest threshold whose FP per case is <= the limit, and the recall there.

    FP count only grows as the threshold falls, so the admissible thresholds are the highest
    ones and the lowest of them has the highest recall. (None, 0.0) when none is admissible.
    """
    thresholds, predictions, tps, detected = _curve(pooled)
    admissible = np.flatnonzero((predictions - tps) / pooled.n_cases <= max_fp_per_case + 1e-12)
    if len(admissible) == 0:
        return None, 0.0
    last = admissible[-1]
    return float(thresholds[last]), float(detected[last]) / pooled.n_lesions


def pr_curve(evaluations: Sequence[CaseEvaluation]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds decreasing, precision, recall) of the pooled curve; recall NaN without lesions."""
    pooled = _pool(evaluations)
    thresholds, predictions, tps, detected = _curve(pooled)
    recall = detected / pooled.n_lesions if pooled.n_lesions else np.full(len(thresholds), np.nan)
    return thresholds, tps / np.maximum(predictions, 1), recall


def operating_point(evaluations: Sequence[CaseEvaluation], max_fp_per_case: float = 1.0) -> Optional[float]:
    """Confidence cut-off with the highest recall at <= `max_fp_per_case` (the lowest such threshold).

    None without ground-truth lesions, without predictions, or when even the most confident
    prediction alone exceeds the limit.
    """
    if not math.isfinite(max_fp_per_case) or max_fp_per_case < 0:
        raise BrainMetSegError(f"max_fp_per_case: {max_fp_per_case!r}; expected a number >= 0")
    pooled = _pool(evaluations)
    if pooled.n_lesions == 0:
        return None
    return _recall_at_fp_rate(pooled, max_fp_per_case)[0]


# ---------------------------------------------------------------------------------- text


def format_summary(summary: Mapping[str, object]) -> str:
    """The summary as aligned text for a terminal or a report; `n/a` where a metric is null."""
    def number(value: object, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    ci = summary["ap_ci95"]
    interval = "" if ci is None else f"  95% CI [{ci[0]:.3f}, {ci[1]:.3f}] (Hanley-McNeil, symmetric)"  # type: ignore[index]
    froc = summary["froc"]
    by_diameter = summary["sensitivity_by_diameter"]
    rows = [
        ("AP (mAP)", number(summary["ap"]) + interval),
        ("AP, one TP per lesion", number(summary["ap_strict"])),
        ("max sensitivity", number(summary["max_sensitivity"])),
        ("TP Dice", number(summary["tp_dice"])),
        ("FP per case", number(summary["fp_per_case"], 2)),
        ("FROC (sens. at FP/case)", "  ".join(f"{k}: {number(v)}" for k, v in froc.items())),  # type: ignore[union-attr]
        ("sensitivity by diameter", "  ".join(f"{k} mm: {number(v)}" for k, v in by_diameter.items())),  # type: ignore[union-attr]
        ("lesion entropy (bits)", number(summary["lesion_entropy_bits"])),
        ("cases / lesions / predictions",
         f"{summary['n_cases']} / {summary['n_lesions']} / {summary['n_predictions']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
