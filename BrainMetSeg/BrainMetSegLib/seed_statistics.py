"""Mean and spread over training seeds: the only statistics the experiment report draws.

Seeds are few (three at most in the committed reports), so the sample sd is given as it is,
with no interval pretending to more.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple


def mean_sd(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float], int]:
    """Mean and sample standard deviation of the values present (None when fewer than 2)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None, 0
    mean = sum(present) / len(present)
    if len(present) < 2:
        return mean, None, len(present)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1)), len(present)


def mean_sd_text(mean: Optional[float], sd: Optional[float], scale: float = 1.0, digits: int = 1,
                 sd_digits: Optional[int] = None) -> str:
    """"mean ± sd" the way every report table prints it: "–" without a mean, the mean alone
    without a spread (one seed has none)."""
    if mean is None:
        return "–"
    spread = "" if sd is None else f" ± {scale * sd:.{digits if sd_digits is None else sd_digits}f}"
    return f"{scale * mean:.{digits}f}{spread}"
