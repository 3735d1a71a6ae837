"""The synthetic cohort: the built-in stand-in for BrainMetShare, which cannot be redistributed.

A case is made in five independent random streams (anatomy, lesions, confounders, contrast,
noise), so changing, say, the lesion parameters leaves the anatomy of a seed unchanged. The same
seed and parameters give identical arrays. A cohort splits like the paper (100/5/51 of 156:
mostly train, a few val, and a test set with equally many cases of 1-3, 4-10 and 10+ lesions);
`synth.json` next to it records the preset, the seed, every parameter and what each case holds.
The parameters live in synth_params.py; docs/synthetic-data.md shows a case next to a
description of real BrainMetShare images.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from . import __version__
from .atomic import atomic_write_json
from .case import Case, case_from_volumes
from .dataset import DATASET_JSON, CaseEntry, write_case, write_dataset_json
from .errors import BrainMetSegError
from .roles import ROLES
from .synth_anatomy import build_anatomy
from .synth_contrast import compose, draw_contrast
from .synth_lesions import draw_count, draw_diameters, place_lesions, render_lesions, stratum_of
from .synth_params import PRESETS, STRATUM_NAMES, SynthParams, preset, validate
from .synth_vessels import build_confounders
from .volumes import Volume, apply_affine

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[float, str], None]
SYNTH_JSON = "synth.json"


def synthesize_case(seed: int, params: Optional[SynthParams] = None,
                    n_lesions: Optional[int] = None) -> Tuple[Dict[str, Volume], Volume, Dict[str, object]]:
    """Four sequences (ROLES order), the label and a description of one synthetic case.

    `n_lesions` fixes the lesion count (else drawn from the strata mix of `params`).
    """
    params = validate(params if params is not None else PRESETS["default"])
    if n_lesions is not None and n_lesions < 1:
        raise BrainMetSegError(f"n_lesions: {n_lesions}; a synthetic case has at least one lesion")
    anatomy_rng, lesion_rng, confounder_rng, contrast_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(5))
    anatomy = build_anatomy(anatomy_rng, params)
    if n_lesions is None:
        weights = np.asarray(params.stratum_weights, dtype=float)
        stratum = int(lesion_rng.choice(len(weights), p=weights / weights.sum()))
        n_lesions = draw_count(lesion_rng, params, stratum)
    stratum = stratum_of(int(n_lesions), params)
    lesions = place_lesions(lesion_rng, params, anatomy,
                            draw_diameters(lesion_rng, params, stratum, int(n_lesions)))
    patches, oedema, label_crop = render_lesions(lesions, anatomy)
    confounders = build_confounders(confounder_rng, params, anatomy)
    contrast = draw_contrast(contrast_rng, params)
    images = compose(noise_rng, params, anatomy, lesions, patches, oedema, confounders, contrast)

    volumes = {role: Volume(_embed(images[role], anatomy.crop, anatomy.shape), anatomy.affine.copy()) for role in ROLES}
    label = Volume(_embed(label_crop.astype(np.uint8), anatomy.crop, anatomy.shape), anatomy.affine.copy())
    start = np.array([s.start for s in anatomy.crop], dtype=float)
    centres = apply_affine(anatomy.affine, np.array([lesion.centre + start for lesion in lesions]))
    meta = {
        "seed": int(seed),
        "stratum": STRATUM_NAMES[stratum],
        "n_lesions": len(lesions),
        "shape": list(anatomy.shape),
        "spacing": [float(s) for s in params.spacing],
        "pose": anatomy.pose,
        "lesions": [{
            "centre_ras": [round(float(v), 2) for v in centre],
            "diameter_mm": round(lesion.diameter_mm, 2),
            "location": lesion.location,
            "ring": lesion.ring,
            "enhancement": round(lesion.enhancement, 3),
            "oedema_mm": round(lesion.oedema_mm, 2),
        } for lesion, centre in zip(lesions, centres)],
        "confounders": confounders.counts,
        "contrast": {role: {k: round(v, 3) for k, v in values.items()} for role, values in contrast.items()},
    }
    return volumes, label, meta


def _embed(crop_array: np.ndarray, crop, shape) -> np.ndarray:
    full = np.zeros(shape, dtype=crop_array.dtype)
    full[crop] = crop_array
    return full


def make_case(seed: int = 0, small: bool = False, params: Optional[SynthParams] = None,
              n_lesions: Optional[int] = None, case_id: str = "synthetic") -> Case:
    """A synthetic case in memory, ready for the pipeline (self-tests, demos)."""
    params = params if params is not None else PRESETS["small" if small else "default"]
    volumes, label, _ = synthesize_case(seed, params, n_lesions)
    return case_from_volumes(volumes, label, case_id=case_id)


@dataclass(frozen=True)
class CasePlan:
    case_id: str
    split: str
    stratum: int
    seed: int


def _largest_remainder(total: int, weights) -> List[int]:
    weights = np.asarray(weights, dtype=float) / np.sum(weights)
    counts = np.floor(weights * total).astype(int)
    order = np.argsort(-(weights * total - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


def plan_cohort(cases: int, seed: int, params: Optional[SynthParams] = None,
                val_cases: Optional[int] = None) -> List[CasePlan]:
    """Case ids, splits, lesion-count strata and per-case seeds of a cohort.

    Test cases are balanced across the strata (a multiple of three, as the paper's 17+17+17);
    train and val cases follow `stratum_weights`. Case seeds derive from the cohort seed.
    `val_cases` replaces the preset's validation share (5 of 156, as the paper): in a small
    cohort that share is one case, too few for model selection to tell epochs apart.
    """
    params = validate(params if params is not None else PRESETS["default"])
    if cases < 1:
        raise BrainMetSegError(f"--cases: {cases}; expected at least 1")
    n_test = 3 * (int(round(cases * params.test_fraction)) // 3)
    if val_cases is None:
        n_val = max(1, int(round(cases * params.val_fraction))) if cases - n_test >= 2 else 0
    elif isinstance(val_cases, bool) or not isinstance(val_cases, int) or not 0 <= val_cases < cases - n_test:
        raise BrainMetSegError(f"--val-cases: {val_cases!r}; expected a whole number from 0 to {cases - n_test - 1}, "
                               f"which leaves a training case of the {cases} ({n_test} of them test cases)")
    else:
        n_val = val_cases
    n_train = cases - n_test - n_val
    strata_test = [s for s in range(len(STRATUM_NAMES)) for _ in range(n_test // 3)]
    strata_rest = [s for s, n in enumerate(_largest_remainder(n_train + n_val, params.stratum_weights)) for _ in range(n)]
    sequence = np.random.SeedSequence(int(seed))
    plan_rng = np.random.default_rng(sequence.spawn(1)[0])
    rest = plan_rng.permutation(len(strata_rest))
    entries = ([("train", strata_rest[i]) for i in rest[:n_train]] + [("val", strata_rest[i]) for i in rest[n_train:]]
               + [("test", s) for s in strata_test])
    entries = [entries[i] for i in plan_rng.permutation(len(entries))]
    width = max(3, len(str(cases)))
    seeds = np.random.SeedSequence([int(seed), 1]).generate_state(cases, dtype=np.uint64)
    return [CasePlan(f"Mets_{index + 1:0{width}d}", split, stratum, int(seeds[index]))
            for index, (split, stratum) in enumerate(entries)]


def _write_planned_case(out: Path, plan: CasePlan, params: SynthParams, overwrite: bool) -> Tuple[CaseEntry, Dict[str, object]]:
    """Generate and write one planned case; module-level so that worker processes can run it."""
    count = draw_count(np.random.default_rng(plan.seed), params, plan.stratum)
    volumes, label, meta = synthesize_case(plan.seed, params, n_lesions=count)
    folder = write_case(out, plan.case_id, volumes, label, overwrite=overwrite)
    return CaseEntry(plan.case_id, folder, plan.split, "complete"), {"id": plan.case_id, "split": plan.split, **meta}


def write_cohort(out: PathLike, cases: int, seed: int, params: Optional[SynthParams] = None,
                 preset_name: str = "default", overwrite: bool = False,
                 progress: Optional[Progress] = None, workers: int = 1,
                 val_cases: Optional[int] = None) -> List[CaseEntry]:
    """Generate a cohort into `out` (dataset layout + dataset.json + synth.json).

    `workers` > 1 generates cases in that many processes: every case has its own seed, so the
    files are identical to a one-process run, and a full-size cohort (seconds per case) is
    ready in a fraction of the time on a many-core machine.
    """
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial
    from multiprocessing import get_context

    from tqdm import tqdm

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BrainMetSegError(f"--workers: {workers!r}; expected a whole number of processes >= 1")
    params = validate(params if params is not None else preset(preset_name))
    out = Path(out)
    plans = plan_cohort(cases, seed, params, val_cases)
    if out.exists() and not out.is_dir():
        raise BrainMetSegError(f"{out}: exists and is not a folder")
    if not overwrite:
        taken = [out / name for name in (DATASET_JSON, SYNTH_JSON) if (out / name).exists()]
        taken += [out / plan.case_id for plan in plans if (out / plan.case_id).is_dir() and any((out / plan.case_id).iterdir())]
        if taken:
            raise BrainMetSegError(f"{taken[0]}: already exists; pass --overwrite to replace the synthetic cohort in {out}")
    bar = tqdm(total=len(plans), desc="synth", unit="case", disable=not sys.stderr.isatty())
    written: List[Tuple[CaseEntry, Dict[str, object]]] = []

    def record(result: Tuple[CaseEntry, Dict[str, object]]) -> None:
        written.append(result)
        bar.update(1)
        if progress is not None:
            progress(len(written) / len(plans), f"generated {result[0].case_id}")

    if workers == 1:
        for plan in plans:
            record(_write_planned_case(out, plan, params, overwrite))
    else:
        # spawn, not fork: a caller may hold threads (torch, Qt) that a forked child would inherit locked
        with ProcessPoolExecutor(max_workers=min(workers, len(plans)), mp_context=get_context("spawn")) as pool:
            for result in pool.map(partial(_write_planned_case, out, params=params, overwrite=overwrite), plans):
                record(result)
    bar.close()
    entries = [entry for entry, _ in written]
    write_dataset_json(out, entries)
    atomic_write_json(out / SYNTH_JSON, {
        "format": 1, "generator": f"brainmetseg {__version__} synth", "preset": preset_name, "seed": int(seed),
        "val_cases": val_cases, "params": params.to_json(), "cases": [described for _, described in written]})
    if progress is not None:
        progress(1.0, f"wrote {len(entries)} synthetic cases to {out}")
    return entries
