"""Censoring: remove annotated lesions to simulate the false negatives of incomplete labels.

This is how the paper (§3.2) tests the lopsided loss, and DESIGN §Method fixes the rules:
lesions are 26-connected components of the label;

- *stochastic*: each lesion is removed independently with probability `rate`. The random
  stream of a case is seeded by (seed, CRC-32 of its id), so a case is censored the same
  way whatever other cases are censored with it and in whatever order;
- *size*: the ceil(rate * N) smallest of all N lesions of all given cases together, by volume
  in mm^3 (rounded to 1e-6 mm^3, so that equal volumes computed on different grids tie),
  ties broken by case id (plain string order) then lesion index.

Lesion indices are the component labels in raster order of the label array (1-based), which
is deterministic, so a plan made from volumes alone can be applied to the label later
(the `censor` command reads every label twice instead of holding all of them at once).
Callers pass training and validation labels only: test labels are never censored.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .errors import BrainMetSegError
from .lesions import check_affine, connected_components

MODES = ("stochastic", "size")
MODE_TITLES = {"stochastic": "stochastic", "size": "size-based"}
VOLUME_DECIMALS = 6


@dataclass
class CaseCensoring:
    """One case's lesions (index i + 1 has volumes_mm3[i]) and which were removed."""

    case_id: str
    volumes_mm3: List[float]
    removed: List[int] = field(default_factory=list)

    @property
    def lesions(self) -> int:
        return len(self.volumes_mm3)

    @property
    def kept(self) -> List[int]:
        removed = set(self.removed)
        return [index for index in range(1, self.lesions + 1) if index not in removed]

    def _entries(self, indices: Sequence[int]) -> List[Dict[str, object]]:
        return [{"index": index, "volume_mm3": round(self.volumes_mm3[index - 1], 3)} for index in indices]

    def to_json(self) -> Dict[str, object]:
        return {"id": self.case_id, "lesions": self.lesions,
                "kept": self._entries(self.kept), "removed": self._entries(self.removed)}


@dataclass
class CensorReport:
    """What censoring did: the plan (removed lesion indices per case) and its totals."""

    mode: str
    rate: float
    seed: int
    cases: List[CaseCensoring]

    @property
    def lesions(self) -> int:
        return sum(case.lesions for case in self.cases)

    @property
    def removed(self) -> int:
        return sum(len(case.removed) for case in self.cases)

    @property
    def kept(self) -> int:
        return self.lesions - self.removed

    def case(self, case_id: str) -> CaseCensoring:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise BrainMetSegError(f"censoring: no case '{case_id}' in the plan")

    def to_json(self) -> Dict[str, object]:
        return {"mode": self.mode, "rate": self.rate, "seed": self.seed, "lesions": self.lesions,
                "kept": self.kept, "removed": self.removed, "cases": [case.to_json() for case in self.cases]}

    def to_text(self) -> str:
        """A table a person reads after `brainmetseg censor`: per case and overall."""
        headers = ("case", "lesions", "kept", "removed", "removed mm3")
        rows = [[case.case_id, str(case.lesions), str(len(case.kept)), str(len(case.removed)),
                 f"{sum(case.volumes_mm3[i - 1] for i in case.removed):.1f}"] for case in self.cases]
        total_volume = sum(case.volumes_mm3[i - 1] for case in self.cases for i in case.removed)
        rows.append(["all", str(self.lesions), str(self.kept), str(self.removed), f"{total_volume:.1f}"])
        widths = [max(len(h), *(len(r[n]) for r in rows)) for n, h in enumerate(headers)]
        align = [str.ljust] + [str.rjust] * (len(headers) - 1)
        lines = [f"censoring: {MODE_TITLES[self.mode]}, rate {self.rate:g}, seed {self.seed}: "
                 f"removed {self.removed} of {self.lesions} lesion(s) in {len(self.cases)} case(s)"]
        lines += ["  ".join(a(c, w) for a, c, w in zip(align, row, widths)) for row in [list(headers)] + rows]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- checks


def check_options(mode: str, rate: float, seed: int) -> Tuple[str, float, int]:
    """Refuse options that would not mean a censoring: names the option and the reason."""
    if mode not in MODES:
        raise BrainMetSegError(f"censoring mode: {mode!r}; expected one of {', '.join(MODES)}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0 <= rate <= 1:
        raise BrainMetSegError(f"censoring rate: {rate!r}; expected a fraction of lesions between 0 and 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BrainMetSegError(f"censoring seed: {seed!r}; expected a non-negative integer")
    return mode, float(rate), int(seed)


def _check_label(label: np.ndarray, case_id: str) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 3 or label.dtype.kind not in "biuf":
        raise BrainMetSegError(f"{case_id}: label of shape {label.shape} ({label.dtype}); expected a 3D label map")
    if label.dtype.kind == "f" and not (np.all(np.isfinite(label)) and np.array_equal(label, np.round(label))):
        raise BrainMetSegError(f"{case_id}: non-integer label values; expected 0 (background) and 1 (lesion)")
    if label.dtype.kind in "if" and label.size and label.min() < 0:
        raise BrainMetSegError(f"{case_id}: negative label value {label.min():g}; expected 0 (background) and 1 (lesion)")
    return label


# ---------------------------------------------------------------------------------- steps


def lesion_volumes(label: np.ndarray, affine: np.ndarray, case_id: str = "label") -> Tuple[np.ndarray, np.ndarray]:
    """Components (int32, 1..N in raster order; every non-zero label value is lesion) and
    the volume of each in mm^3, shape (N,)."""
    label = _check_label(label, case_id)
    affine = check_affine(affine, f"{case_id}: affine")
    components, count = connected_components(label)
    voxels = np.bincount(components.ravel(), minlength=count + 1)[1:]
    return components, voxels * abs(float(np.linalg.det(affine[:3, :3])))


def plan_censoring(volumes: Mapping[str, Sequence[float]], mode: str, rate: float, seed: int) -> CensorReport:
    """Which lesions to remove, from each case's lesion volumes (index i + 1 = volumes[i])."""
    mode, rate, seed = check_options(mode, rate, seed)
    cases = [CaseCensoring(case_id, [float(v) for v in case_volumes]) for case_id, case_volumes in volumes.items()]
    if mode == "stochastic":
        for case in cases:
            stream = np.random.default_rng([seed, zlib.crc32(case.case_id.encode("utf-8"))])
            draws = stream.random(case.lesions)
            case.removed = [int(i) + 1 for i in np.flatnonzero(draws < rate)]
    else:
        ranked = sorted((round(volume, VOLUME_DECIMALS), case.case_id, index + 1, n)
                        for n, case in enumerate(cases) for index, volume in enumerate(case.volumes_mm3))
        total = len(ranked)
        count = int(math.ceil(round(rate * total, 9)))  # 0.3 * 10 is 3.0000000000000004 in floats
        for _, _, index, n in ranked[:count]:
            cases[n].removed.append(index)
        for case in cases:
            case.removed.sort()
    return CensorReport(mode, rate, seed, cases)


def apply_censoring(label: np.ndarray, components: np.ndarray, removed: Sequence[int]) -> np.ndarray:
    """A copy of `label` (same type and values) with the voxels of the `removed` components set to 0."""
    keep = np.ones(int(components.max(initial=0)) + 1, dtype=bool)
    keep[np.asarray(list(removed), dtype=int)] = False
    keep[0] = True
    return np.where(keep[components], label, np.zeros((), dtype=label.dtype)).astype(label.dtype, copy=False)


def censor_labels(labels: Mapping[str, Tuple[np.ndarray, np.ndarray]], mode: str, rate: float,
                  seed: int) -> Tuple[Dict[str, np.ndarray], CensorReport]:
    """Censor every case of `labels` (case id -> (label, affine)); size-based censoring ranks
    the lesions of all of them together, so pass training and validation labels at once."""
    check_options(mode, rate, seed)
    volumes = {case_id: lesion_volumes(label, affine, case_id)[1] for case_id, (label, affine) in labels.items()}
    report = plan_censoring(volumes, mode, rate, seed)
    censored = {}
    for case in report.cases:  # components again rather than all of them held at once
        label, affine = labels[case.case_id]
        components, _ = lesion_volumes(label, affine, case.case_id)
        censored[case.case_id] = apply_censoring(np.asarray(label), components, case.removed)
    return censored, report
