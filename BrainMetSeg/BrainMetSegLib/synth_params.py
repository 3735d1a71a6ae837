"""Every parameter of the synthetic cohort, in one place, with the two presets.

The synthetic cohort stands in for BrainMetShare, so whether the paper's phenomena appear on it
depends on these numbers (lesion sizes and contrast, how much enhancing vessels look like small
lesions). Keeping them in one frozen dataclass makes every change visible in review, and the
cohort writer stores them in `synth.json` next to the data so a result can be traced to them.

Conventions: lengths in mm; a `(low, high)` pair is a range sampled uniformly per case (or per
lesion / vessel where the comment says so); intensities are relative to white matter (WM = 1)
of the same sequence before the per-case scale, bias field and noise.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, Tuple

from .errors import BrainMetSegError
from .roles import ROLES

Range = Tuple[float, float]

STRATUM_NAMES = ("1-3", "4-10", "10+")
"""Lesion-count strata of the paper's test set (17 patients each)."""

TISSUES = ("csf", "gm", "oedema", "necrosis", "lesion", "vessel", "dura", "choroid")

CONTRAST: Dict[str, Dict[str, Range]] = {
    # Relative to WM = 1, sampled per case. "lesion" is the solid/enhancing tumour on the
    # sequences without contrast agent (t1_pre iso/hypointense, flair mildly bright); on t1_gd
    # and bravo it is replaced by the per-lesion enhancement below. "vessel" on t1_gd is derived
    # from bravo's with `vessel_se_fraction` (spin echo suppresses flowing blood).
    "t1_pre": {"csf": (0.25, 0.35), "gm": (0.74, 0.82), "oedema": (0.76, 0.86), "necrosis": (0.35, 0.55),
               "lesion": (0.74, 0.92), "vessel": (0.45, 0.75), "dura": (0.60, 0.80), "choroid": (0.60, 0.80)},
    "t1_gd": {"csf": (0.24, 0.34), "gm": (0.76, 0.84), "oedema": (0.78, 0.88), "necrosis": (0.38, 0.55),
              "lesion": (0.0, 0.0), "vessel": (0.0, 0.0), "dura": (1.25, 1.65), "choroid": (1.35, 1.80)},
    "bravo": {"csf": (0.17, 0.27), "gm": (0.64, 0.74), "oedema": (0.70, 0.82), "necrosis": (0.33, 0.50),
              "lesion": (0.0, 0.0), "vessel": (1.60, 2.40), "dura": (1.35, 1.85), "choroid": (1.45, 1.95)},
    "flair": {"csf": (0.08, 0.18), "gm": (1.12, 1.28), "oedema": (1.55, 2.05), "necrosis": (1.15, 1.70),
              "lesion": (1.05, 1.45), "vessel": (0.35, 0.65), "dura": (0.80, 1.10), "choroid": (0.70, 1.00)},
}


@dataclass(frozen=True)
class SynthParams:
    """Generation parameters; `PRESETS["default"]` is BrainMetShare-like, `"small"` is for CPUs."""

    # --- grid: array axes are columns (patient right -> left), rows (anterior -> posterior),
    # axial slices (inferior -> superior), as the BrainMetShare importer lays them out.
    shape: Tuple[int, int, int] = (256, 256, 160)
    spacing: Tuple[float, float, float] = (0.9375, 0.9375, 1.0)

    # --- anatomy: the MNI152 2009a template, varied per case.
    scale: Range = (0.88, 1.02)               # isotropic size factor (the MNI brain is larger than most)
    axis_scale_jitter: float = 0.03           # extra per-axis factor, uniform in 1 +- this
    max_rotation_deg: Tuple[float, float, float] = (8.0, 5.0, 10.0)  # about R-L (pitch), A-P (roll), S-I (yaw)
    max_shift_mm: Tuple[float, float] = (5.0, 5.0)                   # in-plane translation
    top_margin_mm: Range = (3.0, 10.0)        # gap between the vertex and the top slice
    deformation_mm: float = 2.5               # s.d. of the smooth displacement at its control points
    deformation_grid: int = 5                 # control points per axis of that displacement
    sulci_contrast: float = 0.55              # depth of the procedural sulcal CSF (0: template only)
    sulci_wavelength_mm: float = 11.0         # typical gyral spacing of that pattern

    # --- lesion counts: the three strata of the paper's test set.
    stratum_counts: Tuple[Tuple[int, int], ...] = ((1, 3), (4, 10), (11, 40))  # inclusive bounds
    stratum_weights: Tuple[float, float, float] = (0.45, 0.35, 0.20)      # train/val mix; test is balanced
    many_lesions_mean_extra: float = 8.0      # 10+ stratum: 11 + geometric extra with this mean, capped

    # --- lesion sizes: diameter = offset + stratum factor * lognormal(median, sigma), capped.
    diameter_offset_mm: float = 1.5
    diameter_median_mm: float = 2.8
    diameter_sigma: float = 0.85
    diameter_max_mm: float = 30.0
    stratum_size_factor: Tuple[float, float, float] = (1.6, 1.0, 0.85)  # few lesions -> larger ones

    # --- lesion placement and shape.
    junction_fraction: float = 0.8            # share placed at the grey/white junction (else any parenchyma)
    min_gap_mm: float = 3.0                   # between lesion surfaces, so labels never merge
    elongation: float = 0.15                  # ellipsoidal deviation of the radius
    lumpiness: Range = (0.05, 0.15)           # s.d. of lobulations / radius, smallest to largest lesions
    ring_min_diameter_mm: float = 10.0        # from this size a lesion may be ring-enhancing ...
    ring_probability: float = 0.85            # ... with this probability (necrotic core inside)
    rim_thickness_mm: Range = (1.5, 3.5)
    enhancement: Range = (1.45, 2.10)         # bravo lesion / WM, per lesion
    subtle_probability: float = 0.35          # share of lesions that enhance faintly ...
    subtle_enhancement: Range = (1.10, 1.35)  # ... with this bravo lesion / WM
    se_lesion_gain: Range = (0.95, 1.20)      # t1_gd enhancement above WM relative to bravo's, per lesion
    oedema_ratio: Range = (0.3, 2.0)          # oedema reach beyond the lesion / lesion radius, per lesion
    oedema_diameters_mm: Range = (8.0, 20.0)  # oedema ramps up from none to full over these diameters

    # --- confounders (never labelled).
    cortical_vessels: Tuple[int, int] = (60, 90)        # count per case
    cortical_radius_mm: Range = (0.4, 1.2)
    cortical_length_mm: Range = (20.0, 80.0)
    cortical_depth_mm: Range = (0.5, 5.0)               # they wander in this band under the surface
    deep_vessels: Tuple[int, int] = (30, 50)            # medullary veins and perforators, run inwards
    deep_radius_mm: Range = (0.25, 0.60)
    deep_length_mm: Range = (8.0, 30.0)
    vessel_step_mm: float = 0.5
    vessel_turn: float = 0.12                 # s.d. of the direction change per sqrt(mm)
    vessel_taper: float = 0.6                 # radius at the far end / radius at the start
    vessel_se_fraction: Range = (0.35, 0.85)  # t1_gd vessel enhancement / bravo's (black-blood effect;
                                              # slow-flow veins keep much of it)
    choroid_count: int = 2                    # enhancing choroid plexus blobs in the ventricles
    choroid_diameter_mm: Range = (5.0, 9.0)
    dura_thickness_mm: float = 1.0            # enhancing rim left at the brain edge by skull stripping
    dura_coverage: float = 0.5                # share of the surface where that rim shows
    falx_thickness_mm: float = 1.0

    # --- contrasts, scanner and noise.
    contrast: Dict[str, Dict[str, Range]] = field(default_factory=lambda: {r: dict(t) for r, t in CONTRAST.items()})
    wm_intensity: Range = (300.0, 1200.0)     # stored value of white matter, per sequence and case
    bias_sd: float = 0.10                     # s.d. of the log bias field at its control points
    bias_grid: int = 4
    noise: Dict[str, Range] = field(default_factory=lambda: {
        "t1_pre": (0.020, 0.040), "t1_gd": (0.025, 0.045), "bravo": (0.015, 0.035), "flair": (0.030, 0.060)})
    # Rician noise: s.d. of each quadrature channel / WM, per sequence and case

    # --- cohort split, as the paper's 100/5/51 of 156 patients.
    val_fraction: float = 5 / 156
    test_fraction: float = 51 / 156

    def to_json(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


PRESETS: Dict[str, SynthParams] = {
    "default": SynthParams(),
    # 2 mm voxels, ~100x100x80: a case in well under a second. Lesions and vessels are larger so
    # that most lesions still span a few voxels and vessels are not lost to partial volume.
    "small": SynthParams(
        shape=(100, 100, 80), spacing=(2.0, 2.0, 2.0), top_margin_mm=(4.0, 10.0),
        diameter_offset_mm=3.0, diameter_median_mm=3.5, diameter_sigma=0.75, min_gap_mm=4.0,
        cortical_vessels=(30, 45), cortical_radius_mm=(0.7, 1.5), deep_vessels=(30, 45),
        deep_radius_mm=(0.6, 1.0), vessel_step_mm=1.0, dura_thickness_mm=1.5, falx_thickness_mm=1.5,
        rim_thickness_mm=(2.5, 4.0), sulci_contrast=0.35,
    ),
}


def preset(name: str) -> SynthParams:
    try:
        return PRESETS[name]
    except KeyError:
        raise BrainMetSegError(f"synthetic preset {name!r}: unknown; expected one of {', '.join(PRESETS)}") from None


def validate(params: SynthParams) -> SynthParams:
    """Refuse values the generator cannot honour, naming the parameter."""
    def fail(name: str, reason: str) -> BrainMetSegError:
        return BrainMetSegError(f"synthetic parameter {name}: {reason}")

    if len(params.shape) != 3 or any(int(n) < 8 for n in params.shape):
        raise fail("shape", f"{params.shape}; expected three sizes of at least 8 voxels")
    if len(params.spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in params.spacing):
        raise fail("spacing", f"{params.spacing}; expected three positive sizes in mm")
    for item in dataclasses.fields(params):
        value = getattr(params, item.name)
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            if value[0] > value[1]:
                raise fail(item.name, f"range {value} has low > high")
    if len(params.stratum_counts) != len(STRATUM_NAMES) or len(params.stratum_weights) != len(STRATUM_NAMES):
        raise fail("stratum_counts", f"expected {len(STRATUM_NAMES)} strata ({', '.join(STRATUM_NAMES)})")
    if any(lo < 1 or lo > hi for lo, hi in params.stratum_counts):
        raise fail("stratum_counts", f"{params.stratum_counts}; expected 1 <= low <= high per stratum")
    if min(params.stratum_weights) < 0 or sum(params.stratum_weights) <= 0:
        raise fail("stratum_weights", f"{params.stratum_weights}; expected non-negative weights, not all zero")
    if not (params.val_fraction >= 0 and params.test_fraction >= 0 and params.val_fraction + params.test_fraction < 1):
        raise fail("val_fraction", "val and test fractions must be >= 0 and leave cases for training")
    if params.diameter_max_mm <= params.diameter_offset_mm:
        raise fail("diameter_max_mm", f"{params.diameter_max_mm} must exceed diameter_offset_mm")
    missing = [role for role in ROLES if role not in params.contrast or role not in params.noise]
    if missing:
        raise fail("contrast", f"no contrast or noise entry for {', '.join(missing)}")
    for role in ROLES:
        absent = [t for t in TISSUES if t not in params.contrast[role]]
        if absent:
            raise fail("contrast", f"{role} lacks {', '.join(absent)}")
    return params
